"""Checks, before anything is created, that a cloud can deploy one stack or a whole class.

No Pulumi here, so the `lab` command can run the same checks (`lab class preview`) that the
program runs before declaring its first resource. Two steps:

- `read_cloud(conn)` reads, with one call per kind, what the project and user can see: images,
  flavors, networks, key pairs, the lab's resources by student tag, quotas and usage;
- `check(facts, stacks)` is pure: it compares that snapshot with the stacks' configurations and
  returns every problem at once, each naming the config key to change, the stacks concerned
  and what exists instead, plus a quota table (resource, need, free).

`connect()` opens the connection the way the OpenStack provider would (clouds.yaml and
OS_CLOUD, OS_* variables, or `openstack:*` provider settings) and turns authentication and
connection failures into one `CloudUnreachable` naming the cloud, the user and the auth URL.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.config import LabConfig
from lab.names import PROJECT, ROLES, STACK_TAG_PREFIX, STUDENT_TAG_PREFIX, Role, physical_name
from lab.quota import FlavorSize, Needs, stack_needs
from lab.topology import build_topology

# Which stack created a resource: with the student tag, it tells a student id's owner.
# TODO(lead): belongs in lab/names.py next to STUDENT_TAG_PREFIX (see the report of issue 10).
StackConfig = tuple[str, LabConfig]  # (stack name, its validated configuration)

# Quota names as Needs spells them -> (API, the API's name).
_NETWORK_QUOTAS = {
    "networks": "networks",
    "subnets": "subnets",
    "ports": "ports",
    "routers": "routers",
    "floating_ips": "floating_ips",
    "security_groups": "security_groups",
    "security_group_rules": "security_group_rules",
}
UNLIMITED = -1


class CloudUnreachable(Exception):
    """Authentication or connection failed; the message names cloud, user and auth URL."""


class CloudNotAnswering(CloudUnreachable):
    """Nothing answered at the auth URL (as opposed to credentials being refused)."""


class CloudReadFailed(CloudUnreachable):
    """Logged in, but reading what the checks need failed (an API error, a missing right)."""


@dataclass(frozen=True)
class Problem:
    key: str  # the config key as typed, with its namespace: "calculator-lab:image"; or "quota"
    stacks: tuple[str, ...]
    message: str
    available: tuple[str, ...] = ()  # what exists instead (images, flavors, networks...)

    def render(self) -> str:
        text = f"{self.key} ({', '.join(self.stacks)}): {self.message}"
        if self.available:
            text += "; available: " + ", ".join(self.available)
        return text


@dataclass(frozen=True)
class QuotaRow:
    resource: str
    need: int  # what the stacks still have to create (what they already hold is not counted)
    limit: int  # UNLIMITED (-1) when the project has no limit
    used: int

    @property
    def free(self) -> int | None:
        return None if self.limit == UNLIMITED else max(self.limit - self.used, 0)

    @property
    def short(self) -> bool:
        return self.free is not None and self.need > self.free


@dataclass(frozen=True)
class Report:
    problems: tuple[Problem, ...]
    quota: tuple[QuotaRow, ...]
    notes: tuple[str, ...] = ()  # worth knowing, not blocking (servers in ERROR, ...)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = [problem.render() for problem in self.problems]
        short = [row for row in self.quota if row.short]
        if short:
            lines.append("quota: the project cannot hold what the stacks still need:")
            lines.append(f"  {'resource':<22}{'need':>6}{'free':>6}{'limit':>7}{'used':>6}")
            lines += [
                f"  {r.resource:<22}{r.need:>6}{r.free:>6}{r.limit:>7}{r.used:>6}" for r in short
            ]
        return "\n".join(lines)


@dataclass(frozen=True)
class LabResources:
    """What the project already holds of one student id (found by the student tag)."""

    stacks: frozenset[str]  # values of the stack tags found; "" for resources without one
    names: tuple[str, ...]  # physical names, for messages
    held: Needs  # counted like Needs, to take off a re-run's quota need


@dataclass(frozen=True)
class CloudFacts:
    """A snapshot of what one project and user see; everything `check` needs."""

    cloud: str
    images: Mapping[str, str]  # name -> status
    flavors: Mapping[str, FlavorSize]
    networks: Mapping[str, tuple[str, bool]]  # name -> (id, router:external)
    key_pairs: frozenset[str]
    quota: Mapping[str, tuple[int, int]]  # Needs field -> (limit, used)
    students: Mapping[str, LabResources] = field(default_factory=dict)
    failed_servers: Mapping[str, str] = field(default_factory=dict)  # name -> Nova's fault
    image_distros: Mapping[str, str] = field(default_factory=dict)  # name -> Glance os_distro


# --- the checks (pure) -------------------------------------------------------------------------


def check(facts: CloudFacts, stacks: Sequence[StackConfig]) -> Report:
    """Every problem of deploying `stacks` on the cloud `facts` describes, and the quota table."""
    openstack = [(stack, config) for stack, config in stacks if config.target == "openstack"]
    problems: list[Problem] = []
    problems += _image_problems(facts, openstack)
    problems += _flavor_problems(facts, openstack)
    problems += _network_problems(facts, openstack)
    problems += _key_pair_problems(facts, openstack)
    problems += _student_problems(facts, openstack)
    rows = quota_rows(facts, openstack)
    if any(row.short for row in rows):
        short = ", ".join(row.resource for row in rows if row.short)
        problems.append(
            Problem(
                "quota",
                tuple(stack for stack, _ in openstack),
                f"not enough {short} left in the project (table below); free some or ask"
                " for a higher quota",
            )
        )
    notes = tuple(
        f"server {name} is in ERROR: {fault}"
        for name, fault in sorted(facts.failed_servers.items())
        if any(name.startswith(f"{config.student}-") for _, config in openstack)
    )
    return Report(tuple(problems), tuple(rows), notes)


def _by_choice(
    stacks: Sequence[StackConfig], choices: str, default: str
) -> dict[tuple[str, str], list[str]]:
    """(config key, chosen name) -> stacks, for the image or flavor of every role."""
    users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for stack, config in stacks:
        overrides: Mapping[Role, str] = getattr(config, choices)
        fallback: str | None = getattr(config, default)
        for role in ROLES:
            if role in overrides:
                key, name = f"{_alias(choices)}.{role}", overrides[role]
            else:
                key, name = default, fallback or ""
            if stack not in users[(key, name)]:
                users[(key, name)].append(stack)
    return users


def _alias(field_name: str) -> str:
    info = LabConfig.model_fields[field_name]
    return info.alias or field_name


# Distributions whose images cannot run the calculator as the user data installs it (Alpine's
# cloud images have no Python, and the unit is systemd's).
UNFIT_DISTROS = frozenset({"alpine"})


def _image_problems(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[Problem]:
    fit = tuple(
        sorted(
            name
            for name, status in facts.images.items()
            if status == "active" and facts.image_distros.get(name) not in UNFIT_DISTROS
        )
    )
    problems = []
    for (key, name), users in _by_choice(stacks, "image_by_role", "image").items():
        status = facts.images.get(name)
        distro = facts.image_distros.get(name)
        if status == "active" and distro not in UNFIT_DISTROS:
            continue
        if status is None:
            what = f"no image named '{name}'"
        elif status != "active":
            what = f"image '{name}' is {status}"
        else:
            what = (
                f"image '{name}' is {distro} (os_distro): no Python or systemd for the calculator"
            )
        problems.append(Problem(f"{PROJECT}:{key}", tuple(users), what, fit))
    return problems


def _flavor_problems(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[Problem]:
    problems = []
    for (key, name), users in _by_choice(stacks, "flavor_by_role", "flavor").items():
        if name not in facts.flavors:
            problems.append(
                Problem(
                    f"{PROJECT}:{key}",
                    tuple(users),
                    f"no flavor named '{name}'",
                    tuple(sorted(facts.flavors)),
                )
            )
    return problems


def _network_problems(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[Problem]:
    external = tuple(sorted(name for name, (_, ext) in facts.networks.items() if ext))
    by_name: dict[str, list[str]] = defaultdict(list)
    by_id: dict[tuple[str, str], list[str]] = defaultdict(list)
    for stack, config in stacks:
        by_name[config.external_network or ""].append(stack)
        if config.external_network_id:
            by_id[(config.external_network or "", config.external_network_id)].append(stack)
    problems = []
    for name, users in by_name.items():
        found = facts.networks.get(name)
        if found is None:
            message = f"no network named '{name}'"
        elif not found[1]:
            message = f"network '{name}' is not external (no floating IPs, no router gateway)"
        else:
            continue
        problems.append(Problem(f"{PROJECT}:externalNetwork", tuple(users), message, external))
    for (name, wanted), users in by_id.items():
        found = facts.networks.get(name)
        if found is not None and found[0] != wanted:
            problems.append(
                Problem(
                    f"{PROJECT}:externalNetworkId",
                    tuple(users),
                    f"{wanted} is not the id of '{name}' ({found[0]}); set that id, or remove"
                    " the key to look the network up by name:"
                    " pulumi config rm externalNetworkId",
                )
            )
    return problems


def _key_pair_problems(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[Problem]:
    users: dict[str, list[str]] = defaultdict(list)
    for stack, config in stacks:
        if config.key_pair and config.key_pair not in facts.key_pairs:
            users[config.key_pair].append(stack)
    return [
        Problem(
            f"{PROJECT}:keyPair",
            tuple(stacks_),
            f"no key pair named '{name}' for this user (key pairs are per user); or give a"
            ' public key instead: pulumi config set sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)"',
            tuple(sorted(facts.key_pairs)),
        )
        for name, stacks_ in users.items()
    ]


def _student_problems(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[Problem]:
    problems = []
    claimed: dict[str, list[str]] = defaultdict(list)
    for stack, config in stacks:
        claimed[config.student].append(stack)
    for student, users in claimed.items():
        if len(users) > 1:
            problems.append(
                Problem(
                    f"{PROJECT}:student",
                    tuple(users),
                    f"stacks {', '.join(users)} all use student id '{student}': physical names"
                    " would collide; give each its own",
                )
            )
    for stack, config in stacks:
        found = facts.students.get(config.student)
        others = (
            sorted(owner for owner in found.stacks if owner and owner != stack) if found else []
        )
        if found and others:
            shown = ", ".join(found.names[:4]) + (", ..." if len(found.names) > 4 else "")
            problems.append(
                Problem(
                    f"{PROJECT}:student",
                    (stack,),
                    f"student id '{config.student}' belongs to stack {', '.join(others)}"
                    f" (it holds {shown}); choose another id: pulumi config set student"
                    f" {config.student}-2",
                )
            )
    return problems


def quota_rows(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[QuotaRow]:
    """Need (minus what each stack already holds) against limit and usage, per quota."""
    remaining = Needs()
    for stack, config in stacks:
        need = stack_needs(config, build_topology(config), facts.flavors)
        found = facts.students.get(config.student)
        mine = found is not None and found.stacks <= {stack, ""}
        remaining += _minus(need, found.held) if found is not None and mine else need
    counts = dict(remaining.items())
    return [
        QuotaRow(resource, counts[resource], limit, used)
        for resource, (limit, used) in facts.quota.items()
    ]


def _minus(need: Needs, held: Needs) -> Needs:
    return Needs(**{name: max(value - getattr(held, name), 0) for name, value in need.items()})


# --- reading the cloud (one call per kind) -----------------------------------------------------


def read_cloud(conn: Any, cloud: str = "", attempts: int = 3) -> CloudFacts:
    """The snapshot `check` needs, read as the stack's user.

    Another stack deleting at the same moment can make a listing fail on what it just removed
    (Neutron answers 404 for the whole list of rules when one group goes away meanwhile), so
    the read is retried; a failure that persists is one `CloudReadFailed` line.
    """
    import openstack.exceptions as os_exc

    for attempt in range(1, attempts + 1):
        try:
            return _read_cloud_once(conn, cloud)
        except os_exc.NotFoundException as err:
            if attempt == attempts:
                raise CloudReadFailed(
                    f"preflight could not read {cloud}: {_first_line(err)}"
                ) from None
        except os_exc.SDKException as err:
            raise CloudReadFailed(f"preflight could not read {cloud}: {_first_line(err)}") from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _read_cloud_once(conn: Any, cloud: str) -> CloudFacts:
    project = conn.current_project_id
    networks = list(conn.network.networks())
    facts_networks = {n.name: (n.id, bool(n.is_router_external)) for n in networks}
    flavors = {
        f.name: FlavorSize(int(f.vcpus), int(f.ram)) for f in conn.compute.flavors(details=True)
    }
    key_pairs = frozenset(k.name for k in conn.compute.keypairs())
    servers = list(conn.compute.servers(details=True))
    images = [i for i in conn.image.images() if i.name]
    return CloudFacts(
        cloud=cloud,
        images={i.name: i.status for i in images},
        image_distros={i.name: getattr(i, "os_distro", None) or "" for i in images},
        flavors=flavors,
        networks=facts_networks,
        key_pairs=key_pairs,
        quota=_quota(conn, project, len(key_pairs)),
        students=_lab_resources(conn, project, networks, servers, key_pairs, flavors),
        failed_servers={
            s.name: _fault(s) for s in servers if s.status == "ERROR" and s.name is not None
        },
    )


def _fault(server: Any) -> str:
    fault = server.fault or {}
    message = fault.get("message") or "no fault recorded"
    return f"{message} (code {fault['code']})" if fault.get("code") else message


def _quota(conn: Any, project: str, key_pairs: int) -> dict[str, tuple[int, int]]:
    absolute = conn.compute.get_limits().absolute
    quota = {
        "instances": (absolute.instances, absolute.instances_used),
        "cores": (absolute.total_cores, absolute.total_cores_used),
        "ram_mib": (absolute.total_ram, absolute.total_ram_used),
        "key_pairs": (absolute.keypairs, key_pairs),
    }
    details = conn.network.get_quota(project, details=True)
    for name, attribute in _NETWORK_QUOTAS.items():
        entry = getattr(details, attribute) or {}
        used = int(entry.get("used", 0)) + int(entry.get("reserved", 0))
        quota[name] = (int(entry.get("limit", UNLIMITED)), used)
    return {name: (int(limit), int(used)) for name, (limit, used) in quota.items()}


def _tag_value(tags: Iterable[str], prefix: str) -> str | None:
    return next((tag.removeprefix(prefix) for tag in tags if tag.startswith(prefix)), None)


def _student_of(tags: Iterable[str]) -> str | None:
    return _tag_value(tags, STUDENT_TAG_PREFIX)


def _stack_of(tags: Iterable[str]) -> str:
    return _tag_value(tags, STACK_TAG_PREFIX) or ""


def _lab_resources(
    conn: Any,
    project: str,
    networks: Sequence[Any],
    servers: Sequence[Any],
    key_pairs: frozenset[str],
    flavors: Mapping[str, FlavorSize],
) -> dict[str, LabResources]:
    """The lab's resources in the project, grouped by the student tag they carry."""
    net = conn.network
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    owners: dict[str, set[str]] = defaultdict(set)
    names: dict[str, list[str]] = defaultdict(list)

    def tally(kind: str, items: Iterable[Any], owned: bool = True) -> dict[str, str]:
        """Counts tagged items per student; returns id -> student."""
        found = {}
        for item in items:
            student = _student_of(item.tags or ())
            if student is None:
                continue
            counts[student][kind] += 1
            if owned:
                owners[student].add(_stack_of(item.tags or ()))
                names[student].append(getattr(item, "name", None) or item.id)
            found[item.id] = student
        return found

    tally("networks", [n for n in networks if n.project_id == project])
    tally("subnets", net.subnets(project_id=project), owned=False)
    tally("ports", net.ports(project_id=project), owned=False)
    tally("routers", net.routers(project_id=project))
    tally("floating_ips", net.ips(project_id=project), owned=False)
    groups = tally("security_groups", net.security_groups(project_id=project), owned=False)
    for rule in net.security_group_rules(project_id=project):
        if rule.security_group_id in groups:
            counts[groups[rule.security_group_id]]["security_group_rules"] += 1
    for server in servers:
        student = _student_of(server.tags or ())
        if student is None:
            continue
        counts[student]["instances"] += 1
        size = flavors.get((server.flavor or {}).get("original_name", ""))
        counts[student]["cores"] += size.vcpus if size else 0
        counts[student]["ram_mib"] += size.ram_mib if size else 0
        owners[student].add(_stack_of(server.tags or ()))
        names[student].append(server.name)
    for student in counts:
        if physical_name(student, "key") in key_pairs:
            counts[student]["key_pairs"] += 1
    return {
        student: LabResources(
            stacks=frozenset(owners[student]),
            names=tuple(names[student]),
            held=Needs(**{k: v for k, v in kinds.items() if k in Needs.__dataclass_fields__}),
        )
        for student, kinds in counts.items()
    }


# --- connecting --------------------------------------------------------------------------------

# `openstack:*` provider settings -> openstacksdk's connect() arguments.
_PROVIDER_KEYS = {
    "cloud": "cloud",
    "authUrl": "auth_url",
    "userName": "username",
    "userId": "user_id",
    "password": "password",
    "tenantName": "project_name",
    "tenantId": "project_id",
    "userDomainName": "user_domain_name",
    "userDomainId": "user_domain_id",
    "projectDomainName": "project_domain_name",
    "projectDomainId": "project_domain_id",
    "domainName": "domain_name",
    "region": "region_name",
    "applicationCredentialId": "application_credential_id",
    "applicationCredentialSecret": "application_credential_secret",
    "cacertFile": "cacert",
}
_ENV_MARKERS = ("OS_CLOUD", "OS_AUTH_URL")


def credentials_present(env: Mapping[str, str], provider: Mapping[str, str]) -> bool:
    """Whether the provider would find a cloud: OS_CLOUD / OS_AUTH_URL, or provider settings."""
    return any(env.get(k) for k in _ENV_MARKERS) or bool(
        provider.get("cloud") or provider.get("authUrl")
    )


def connect(env: Mapping[str, str], provider: Mapping[str, str]) -> tuple[Any, str]:
    """An authenticated openstacksdk connection and a description of the cloud, or
    `CloudUnreachable` with one line naming the cloud, the user and the auth URL."""
    import keystoneauth1.exceptions as ks_exc
    import openstack
    import openstack.exceptions as os_exc

    arguments: dict[str, Any] = {
        _PROVIDER_KEYS[k]: v for k, v in provider.items() if k in _PROVIDER_KEYS and v
    }
    if str(provider.get("insecure", "")).lower() == "true":
        arguments["verify"] = False
    cloud = arguments.get("cloud") or env.get("OS_CLOUD") or ""
    described = (
        f"cloud '{cloud}'"
        if cloud
        else "the cloud of the openstack:* settings"
        if arguments.get("auth_url")
        else "the cloud of the OS_* variables"
    )
    # keystoneauth logs a warning of its own before failing; the error below says it all.
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    try:
        conn = openstack.connect(**arguments)
    except (os_exc.ConfigException, ks_exc.ClientException) as err:
        raise CloudUnreachable(f"OpenStack: cannot configure {described}: {err}") from None
    auth = conn.config.get_auth_args() if hasattr(conn, "config") else {}
    user = auth.get("username") or auth.get("user_id") or auth.get("application_credential_id")
    url = auth.get("auth_url") or "(no auth URL)"
    who = f"{described} (user {user or '?'}, auth URL {url})"
    try:
        conn.authorize()
    except (ks_exc.ClientException, os_exc.SDKException) as err:
        chain = _chain(err)
        reason = _first_line(chain[-1])
        if any(isinstance(e, ks_exc.Unauthorized) for e in chain) or "401" in str(err):
            raise CloudUnreachable(
                f"OpenStack refused the credentials of {who}: {reason}; check the password,"
                " user and project (openrc, clouds.yaml or openstack:* config)"
            ) from None
        if any(isinstance(e, (ks_exc.ConnectionError, ks_exc.DiscoveryFailure)) for e in chain):
            raise CloudNotAnswering(
                f"OpenStack cannot be reached for {who}: {reason}; check the auth URL and"
                " that the cloud is up"
            ) from None
        raise CloudUnreachable(f"OpenStack: cannot log in to {who}: {reason}") from None
    return conn, who


def _chain(err: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first (the last is the root cause)."""
    chain = [err]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 20:
        chain.append(cause)
    return chain


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]

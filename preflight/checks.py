"""The checks, pure: a cloud's snapshot against the stacks' configurations.

Every problem at once, each naming the config key as typed, the stacks concerned and what
exists instead; and the quota table (need, free, limit, used per resource).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lab.config import LabConfig
from lab.names import ROLES, Role, config_key
from lab.quota import Needs, stack_needs
from lab.topology import build_topology
from preflight.facts import UNLIMITED, CloudFacts, StackConfig
from preflight.images import Verdict, judge


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
    notes = tuple(_image_notes(facts, openstack)) + tuple(
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


def _image_problems(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[Problem]:
    def verdict(name: str) -> Verdict:
        return judge(*facts.image_os.get(name, ("", "")))

    fit = tuple(
        sorted(
            name
            for name, status in facts.images.items()
            if status == "active" and verdict(name).fit is not False
        )
    )
    problems = []
    for (key, name), users in _by_choice(stacks, "image_by_role", "image").items():
        status = facts.images.get(name)
        if status is None:
            what = f"no image named '{name}'"
        elif status != "active":
            what = f"image '{name}' is {status}"
        elif verdict(name).fit is False:
            distro, version = facts.image_os[name]
            what = (
                f"image '{name}' is {distro} {version} (os_distro, os_version):"
                f" {verdict(name).reason}"
            )
        else:
            continue
        problems.append(Problem(config_key(key), tuple(users), what, fit))
    return problems


def _image_notes(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[str]:
    """Images the stacks use that cannot be judged: worth a warning, not a refusal."""
    notes = []
    for (key, name), users in _by_choice(stacks, "image_by_role", "image").items():
        if facts.images.get(name) != "active":
            continue
        found = judge(*facts.image_os.get(name, ("", "")))
        if found.fit is None:
            notes.append(f"{config_key(key)} ({', '.join(users)}): image '{name}': {found.reason}")
    return notes


def _flavor_problems(facts: CloudFacts, stacks: Sequence[StackConfig]) -> list[Problem]:
    problems = []
    for (key, name), users in _by_choice(stacks, "flavor_by_role", "flavor").items():
        if name not in facts.flavors:
            problems.append(
                Problem(
                    config_key(key),
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
        problems.append(Problem(config_key("externalNetwork"), tuple(users), message, external))
    for (name, wanted), users in by_id.items():
        found = facts.networks.get(name)
        if found is not None and found[0] != wanted:
            problems.append(
                Problem(
                    config_key("externalNetworkId"),
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
            config_key("keyPair"),
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
                    config_key("student"),
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
                    config_key("student"),
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

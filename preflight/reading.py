"""Reading a cloud into the checks' snapshot as the stack's user: a call per kind, all at once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lab.names import STACK_TAG_PREFIX, STUDENT_TAG_PREFIX, TRIGGER_METADATA, physical_name
from lab.quota import FlavorSize, Needs
from lab.replacement import Seen
from preflight.connection import CloudReadFailed, first_line
from preflight.facts import UNLIMITED, CloudFacts, LabResources

# Network quotas: the name Needs gives each -> the name Neutron gives it.
_NETWORK_QUOTAS = {
    "networks": "networks",
    "subnets": "subnets",
    "ports": "ports",
    "routers": "routers",
    "floating_ips": "floating_ips",
    "security_groups": "security_groups",
    "security_group_rules": "security_group_rules",
}
# Server states that mean the server is going or gone; ERROR is failed, the rest are kept.
_GONE = frozenset({"DELETED", "SOFT_DELETED"})


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
                    f"preflight could not read {cloud}: {first_line(err)}"
                ) from None
        except os_exc.SDKException as err:
            raise CloudReadFailed(f"preflight could not read {cloud}: {first_line(err)}") from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _read_cloud_once(conn: Any, cloud: str) -> CloudFacts:
    project = conn.current_project_id
    net, compute = conn.network, conn.compute
    # One call per kind, independent of each other. Each service's first call also discovers
    # its API version (a request of its own): those go first, one per service at once, and
    # every other listing then at once.
    first: dict[str, Callable[[], Any]] = {
        "networks": lambda: list(net.networks()),
        "flavors": lambda: list(compute.flavors(details=True)),
        "images": lambda: [i for i in conn.image.images() if i.name],
    }
    then: dict[str, Callable[[], Any]] = {
        "key_pairs": lambda: list(compute.keypairs()),
        "servers": lambda: list(compute.servers(details=True)),
        "limits": lambda: compute.get_limits().absolute,
        "network_quota": lambda: net.get_quota(project, details=True),
        "subnets": lambda: list(net.subnets(project_id=project)),
        "ports": lambda: list(net.ports(project_id=project)),
        "routers": lambda: list(net.routers(project_id=project)),
        "ips": lambda: list(net.ips(project_id=project)),
        "security_groups": lambda: list(net.security_groups(project_id=project)),
        "rules": lambda: list(net.security_group_rules(project_id=project)),
    }
    with ThreadPoolExecutor(max_workers=len(then)) as pool:
        read = _all(pool, first)
        read |= _all(pool, then)
    networks, servers, images = read["networks"], read["servers"], read["images"]
    flavors = {f.name: FlavorSize(int(f.vcpus), int(f.ram)) for f in read["flavors"]}
    key_pairs = frozenset(k.name for k in read["key_pairs"])
    return CloudFacts(
        cloud=cloud,
        images={i.name: i.status for i in images},
        image_os={
            i.name: (getattr(i, "os_distro", None) or "", getattr(i, "os_version", None) or "")
            for i in images
        },
        flavors=flavors,
        networks={n.name: (n.id, bool(n.is_router_external)) for n in networks},
        key_pairs=key_pairs,
        quota=_quota(read["limits"], read["network_quota"], len(key_pairs)),
        students=_lab_resources(project, read, key_pairs, flavors),
        failed_servers={
            s.name: _fault(s) for s in servers if s.status == "ERROR" and s.name is not None
        },
        servers=seen_servers(servers),
    )


def _all(pool: ThreadPoolExecutor, calls: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Every call's result, the calls made at once; the first failure is raised."""
    pending = {key: pool.submit(call) for key, call in calls.items()}
    return {key: future.result() for key, future in pending.items()}


def read_servers(conn: Any, cloud: str = "") -> dict[str, tuple[Seen, ...]]:
    """Only the project's servers, as `CloudFacts.servers` has them: what deciding which
    servers to replace needs when the rest of the checks were made elsewhere (`lab class`)."""
    import openstack.exceptions as os_exc

    try:
        return seen_servers(list(conn.compute.servers(details=True)))
    except os_exc.SDKException as err:
        raise CloudReadFailed(f"preflight could not read {cloud}: {first_line(err)}") from None


def seen_servers(servers: Iterable[Any]) -> dict[str, tuple[Seen, ...]]:
    """Name -> the servers bearing it, with their state and the trigger each records."""
    seen: dict[str, list[Seen]] = defaultdict(list)
    for server in servers:
        if server.name is None or server.status in _GONE:
            continue
        metadata = getattr(server, "metadata", None) or {}
        seen[server.name].append(
            Seen(str(server.id), server.status == "ERROR", metadata.get(TRIGGER_METADATA))
        )
    return {name: tuple(found) for name, found in seen.items()}


def _fault(server: Any) -> str:
    fault = server.fault or {}
    message = fault.get("message") or "no fault recorded"
    return f"{message} (code {fault['code']})" if fault.get("code") else message


def _quota(absolute: Any, details: Any, key_pairs: int) -> dict[str, tuple[int, int]]:
    quota = {
        "instances": (absolute.instances, absolute.instances_used),
        "cores": (absolute.total_cores, absolute.total_cores_used),
        "ram_mib": (absolute.total_ram, absolute.total_ram_used),
        "key_pairs": (absolute.keypairs, key_pairs),
    }
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
    project: str,
    read: Mapping[str, Any],
    key_pairs: frozenset[str],
    flavors: Mapping[str, FlavorSize],
) -> dict[str, LabResources]:
    """The lab's resources in the project, grouped by the student tag they carry."""
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

    tally("networks", [n for n in read["networks"] if n.project_id == project])
    tally("subnets", read["subnets"], owned=False)
    tally("ports", read["ports"], owned=False)
    tally("routers", read["routers"])
    tally("floating_ips", read["ips"], owned=False)
    groups = tally("security_groups", read["security_groups"], owned=False)
    for rule in read["rules"]:
        if rule.security_group_id in groups:
            counts[groups[rule.security_group_id]]["security_group_rules"] += 1
    for server in read["servers"]:
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

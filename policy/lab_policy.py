"""The calculator lab's security rules as a Pulumi policy pack (pulumi-policy).

Rules, all mandatory:

- ``service-ports-not-public``: no ingress security-group rule opens a calculator service port
  (50001-50004) to the world: it needs a remote group, or a remote prefix that is not a /0.
- ``ssh-not-from-anywhere``: no ingress rule opens SSH (22) to the world, unless the policy's
  config says ``allowSshFromAnywhere: true``.
- ``single-floating-ip-on-front``: an OpenStack stack has exactly one floating IP; it is tagged
  ``calculator-lab:role=front`` and every association puts it on a port tagged the same way.
- ``single-published-container-is-front``: in a Docker stack exactly one container publishes
  ports, the one labelled ``calculator-lab.role=front``.
- ``no-privileged-container``: no container runs privileged.

The checks are plain functions over resource inputs as the engine passes them (camelCase keys).
During a preview some inputs are not known yet; a check that cannot decide says nothing rather
than guess, and the engine runs it again with known values during ``pulumi up``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from lab.names import FRONT, ROLE_LABEL, ROLE_TAG_PREFIX, SERVICE_PORT_RANGE, SSH_PORT

PACK_NAME: Final = "calculator-lab-security"

SEC_GROUP_RULE: Final = "openstack:networking/secGroupRule:SecGroupRule"
FLOATING_IP: Final = "openstack:networking/floatingIp:FloatingIp"
FLOATING_IP_ASSOCIATE: Final = "openstack:networking/floatingIpAssociate:FloatingIpAssociate"
PORT: Final = "openstack:networking/port:Port"
CONTAINER: Final = "docker:index/container:Container"

SERVICE_PORTS: Final = SERVICE_PORT_RANGE
ALL_PORTS: Final = (1, 65535)
SSH_CONFIG_KEY: Final = "allowSshFromAnywhere"

# Neutron protocols that carry ports; an empty protocol means "any", which includes them.
_PORTED_PROTOCOLS: Final = frozenset(
    {"any", "tcp", "udp", "sctp", "dccp", "udplite", "6", "17", "132", "33", "136"}
)


class _Unknown:
    """Marks an input the engine cannot know yet (a preview of a not yet created dependency)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final[_Unknown] = _Unknown()


def known(props: Mapping[str, Any], key: str) -> Any:
    """``props[key]``; None when absent, UNKNOWN when not known during a preview."""
    try:
        return props[key]
    except KeyError:
        return None
    except UnknownValueError:
        return UNKNOWN


def known_items(values: Any) -> list[Any] | _Unknown:
    """The elements of a list input, or UNKNOWN when the list or any element is unknown."""
    if isinstance(values, _Unknown):
        return UNKNOWN
    if values is None:
        return []
    items: list[Any] = []
    try:
        for index in range(len(values)):
            items.append(values[index])
    except UnknownValueError:
        return UNKNOWN
    return items


# ---------------------------------------------------------------------------------------------
# Security group rules


def ingress_port_range(props: Mapping[str, Any]) -> tuple[int, int] | _Unknown | None:
    """Ports an ingress rule opens; None for egress rules and port-less protocols (ICMP)."""
    direction = known(props, "direction")
    protocol = known(props, "protocol")
    low = known(props, "portRangeMin")
    high = known(props, "portRangeMax")
    if UNKNOWN in (direction, protocol, low, high):
        return UNKNOWN
    if direction is not None and str(direction).lower() != "ingress":
        return None
    name = str(protocol).lower() if protocol not in (None, "") else "any"
    if name not in _PORTED_PROTOCOLS:
        return None
    # Neutron reads a missing (or zero) bound as "every port".
    if not low and not high:
        return ALL_PORTS
    first = int(low or high)
    last = int(high or low)
    return (min(first, last), max(first, last))


def world_source(props: Mapping[str, Any]) -> str | _Unknown | None:
    """How a rule is open to the world ("0.0.0.0/0", "no remote"), or None if it is not."""
    for restricting in ("remoteGroupId", "remoteAddressGroupId"):
        value = known(props, restricting)
        # An unknown group id is still a group: the usual case when it refers to a new group.
        if isinstance(value, _Unknown) or value:
            return None
    prefix = known(props, "remoteIpPrefix")
    if isinstance(prefix, _Unknown):
        return UNKNOWN
    if not prefix:
        return "no remote_ip_prefix nor remote_group_id"
    if str(prefix).strip().endswith("/0"):
        return f"remote_ip_prefix {prefix}"
    return None


def _overlaps(ports: tuple[int, int], span: tuple[int, int]) -> bool:
    return ports[0] <= span[1] and span[0] <= ports[1]


def _describe(ports: tuple[int, int]) -> str:
    return str(ports[0]) if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def check_service_ports(name: str, props: Mapping[str, Any]) -> str | None:
    """A violation message if the rule opens a calculator service port to the world."""
    ports = ingress_port_range(props)
    if ports is None or isinstance(ports, _Unknown) or not _overlaps(ports, SERVICE_PORTS):
        return None
    source = world_source(props)
    if source is None or isinstance(source, _Unknown):
        return None
    return (
        f"security group rule '{name}' opens ports {_describe(ports)}, which include the "
        f"calculator services {_describe(SERVICE_PORTS)}, to the world ({source}). Only the "
        "front end may reach them: set remote_group_id to the front end's security group, "
        "or remote_ip_prefix to a subnet narrower than /0."
    )


def check_ssh(name: str, props: Mapping[str, Any], allow_anywhere: bool) -> str | None:
    """A violation message if the rule opens SSH to the world and that was not allowed."""
    if allow_anywhere:
        return None
    ports = ingress_port_range(props)
    if ports is None or isinstance(ports, _Unknown) or not _overlaps(ports, (SSH_PORT, SSH_PORT)):
        return None
    source = world_source(props)
    if source is None or isinstance(source, _Unknown):
        return None
    return (
        f"security group rule '{name}' opens SSH (port {SSH_PORT}, in {_describe(ports)}) to the "
        f"world ({source}). Set remote_ip_prefix to the address you connect from (a /32), or "
        f"allow it knowingly with the policy config {SSH_CONFIG_KEY}: true."
    )


# ---------------------------------------------------------------------------------------------
# Stack-wide rules. They see every resource, with the resources each input depends on.


class Resource(Protocol):
    """What the stack checks read of a resource (pulumi_policy.PolicyResource has it)."""

    resource_type: str
    name: str
    urn: str

    @property
    def props(self) -> Mapping[str, Any]: ...

    @property
    def property_dependencies(self) -> Mapping[str, Sequence[Resource]]: ...


@dataclass(frozen=True)
class Violation:
    """A stack-level violation, attached to one resource when there is one to blame."""

    message: str
    urn: str | None = None


def role_from_tags(tags: Any) -> str | _Unknown | None:
    """The role a ``calculator-lab:role=<role>`` tag names, None if no such tag."""
    items = known_items(tags)
    if isinstance(items, _Unknown):
        return UNKNOWN
    for tag in items:
        if isinstance(tag, str) and tag.startswith(ROLE_TAG_PREFIX):
            return tag.removeprefix(ROLE_TAG_PREFIX)
    return None


def role_from_labels(labels: Any) -> str | _Unknown | None:
    """The role a container's ``calculator-lab.role`` label names, None if no such label."""
    items = known_items(labels)
    if isinstance(items, _Unknown):
        return UNKNOWN
    for label in items:
        key = known(label, "label")
        if isinstance(key, _Unknown):
            return UNKNOWN
        if key == ROLE_LABEL:
            value = known(label, "value")
            return value if isinstance(value, _Unknown) else str(value)
    return None


def _of_type(resources: Iterable[Resource], resource_type: str) -> list[Resource]:
    return [r for r in resources if r.resource_type == resource_type]


def _names(resources: Iterable[Resource]) -> str:
    return ", ".join(f"'{r.name}'" for r in resources)


def check_floating_ips(resources: Sequence[Resource]) -> list[Violation]:
    """Exactly one floating IP in an OpenStack stack, tagged and associated as the front end."""
    if not any(r.resource_type.startswith("openstack:") for r in resources):
        return []
    violations: list[Violation] = []
    floating_ips = _of_type(resources, FLOATING_IP)
    if len(floating_ips) != 1:
        found = f": {_names(floating_ips)}" if floating_ips else ""
        violations.append(
            Violation(
                f"the stack has {len(floating_ips)} floating IPs{found}; the lab allows exactly "
                "one, for the front end. Keep a single openstack.networking.FloatingIp and "
                "reach the other services through the front end.",
                floating_ips[1].urn if len(floating_ips) > 1 else None,
            )
        )
    for fip in floating_ips:
        role = role_from_tags(known(fip.props, "tags"))
        if role is not UNKNOWN and role != FRONT:
            violations.append(
                Violation(
                    f"floating IP '{fip.name}' is tagged for role {role!r}, not {FRONT!r}; only "
                    f"the front end is public: tag it '{ROLE_TAG_PREFIX}{FRONT}' and give it to "
                    "the front end's port.",
                    fip.urn,
                )
            )
    for association in _of_type(resources, FLOATING_IP_ASSOCIATE):
        violations.extend(_check_association(association))
    return violations


def _check_association(association: Resource) -> list[Violation]:
    ports = [
        r for r in association.property_dependencies.get("portId", []) if r.resource_type == PORT
    ]
    if not ports:
        return [
            Violation(
                f"floating IP association '{association.name}' takes its port_id from no "
                "openstack.networking.Port of this stack, so nothing shows it is the front end: "
                "pass the front end Port's id output.",
                association.urn,
            )
        ]
    violations = []
    for port in ports:
        role = role_from_tags(known(port.props, "tags"))
        if role is not UNKNOWN and role != FRONT:
            shown = "no role tag" if role is None else f"role {role!r}"
            violations.append(
                Violation(
                    f"floating IP association '{association.name}' puts the public address on "
                    f"port '{port.name}' ({shown}); only the port tagged "
                    f"'{ROLE_TAG_PREFIX}{FRONT}' may have it.",
                    association.urn,
                )
            )
    return violations


def _publishes_ports(container: Resource) -> bool | _Unknown:
    items = known_items(known(container.props, "ports"))
    return items if isinstance(items, _Unknown) else bool(items)


def check_published_containers(resources: Sequence[Resource]) -> list[Violation]:
    """In a Docker stack exactly one container publishes ports, and it is the front end."""
    containers = _of_type(resources, CONTAINER)
    if not containers:
        return []
    decided = [(c, _publishes_ports(c)) for c in containers]
    if any(isinstance(p, _Unknown) for _, p in decided):
        return []
    publishing = [c for c, p in decided if p]
    violations = []
    if len(publishing) != 1:
        found = f": {_names(publishing)}" if publishing else ""
        violations.append(
            Violation(
                f"{len(publishing)} containers publish ports on the host{found}; exactly one, "
                "the front end, may. Drop `ports` from the others: they are reached over the "
                "private networks.",
                publishing[1].urn if len(publishing) > 1 else None,
            )
        )
    for container in publishing:
        role = role_from_labels(known(container.props, "labels"))
        if role is not UNKNOWN and role != FRONT:
            shown = "no role label" if role is None else f"role {role!r}"
            violations.append(
                Violation(
                    f"container '{container.name}' ({shown}) publishes ports; only the "
                    f"container labelled {ROLE_LABEL}={FRONT} may.",
                    container.urn,
                )
            )
    return violations


def check_privileged(name: str, props: Mapping[str, Any]) -> str | None:
    """A violation message if the container runs privileged."""
    if known(props, "privileged") is True:
        return (
            f"container '{name}' runs privileged; remove `privileged` and add only the "
            "capabilities it needs (capabilities.adds)."
        )
    return None


# ---------------------------------------------------------------------------------------------
# The pack


def _validate_service_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == SEC_GROUP_RULE:
        message = check_service_ports(args.name, args.props)
        if message:
            report(message, None)


def _validate_ssh(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == SEC_GROUP_RULE:
        allow = bool(args.get_config().get(SSH_CONFIG_KEY, False))
        message = check_ssh(args.name, args.props, allow)
        if message:
            report(message, None)


def _validate_privileged(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == CONTAINER:
        message = check_privileged(args.name, args.props)
        if message:
            report(message, None)


def _report_all(violations: Iterable[Violation], report: ReportViolation) -> None:
    for violation in violations:
        report(violation.message, violation.urn)


def _validate_floating_ips(args: StackValidationArgs, report: ReportViolation) -> None:
    _report_all(check_floating_ips(args.resources), report)


def _validate_containers(args: StackValidationArgs, report: ReportViolation) -> None:
    _report_all(check_published_containers(args.resources), report)


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """Every rule of the lab, mandatory."""
    mandatory = EnforcementLevel.MANDATORY
    return [
        ResourceValidationPolicy(
            name="service-ports-not-public",
            description="Calculator service ports 50001-50004 are never open to the world.",
            validate=_validate_service_ports,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="ssh-not-from-anywhere",
            description="SSH is not open to 0.0.0.0/0 or ::/0 unless allowSshFromAnywhere.",
            validate=_validate_ssh,
            enforcement_level=mandatory,
            config_schema=PolicyConfigSchema(
                properties={SSH_CONFIG_KEY: {"type": "boolean", "default": False}}
            ),
        ),
        StackValidationPolicy(
            name="single-floating-ip-on-front",
            description="Exactly one floating IP, on the front end's port.",
            validate=_validate_floating_ips,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="single-published-container-is-front",
            description="Exactly one container publishes ports: the front end.",
            validate=_validate_containers,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="no-privileged-container",
            description="No container runs privileged.",
            validate=_validate_privileged,
            enforcement_level=mandatory,
        ),
    ]


def serve() -> None:
    """Registers the pack with the engine; only meaningful when the engine runs this pack."""
    PolicyPack(
        name=PACK_NAME, policies=list(policies()), enforcement_level=EnforcementLevel.MANDATORY
    )

"""The Docker target's plan: the calculator image, the bridge networks and the containers.

The same Topology as the OpenStack VMs, drawn with other materials: subnets become bridge
networks with the same CIDRs, VMs become containers at the same fixed addresses, a router with
no external gateway (the client topology's inter-subnet router) becomes a forwarding container,
and the floating IP becomes the one port published on the host. The gateway router itself is
Docker's NAT on the small `<student>-public` network. The components take these specs as they
are; nothing here talks to Docker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from lab.cloud_init import APP_DIR, AppFile, app_files
from lab.config import LabConfig
from lab.names import ROLE_LABEL, TRIGGER_LABEL, physical_name, student_labels
from lab.topology import HostRoute, Node, Router, Topology
from specs.docker import (
    PUBLIC,
    BridgeSpec,
    ContainerSpec,
    ImageSpec,
    NetworksSpec,
    PublishedPort,
)

# What the calculator drops to after its one privileged step: the conventional "nobody".
UNPRIVILEGED = "65534:65534"
# `ip route` needs NET_ADMIN, setpriv needs SETUID/SETGID/SETPCAP to drop to nobody.
ROUTING_CAPABILITIES = ("NET_ADMIN", "SETGID", "SETPCAP", "SETUID")
# Build recipe files: not shipped into the image, but they change what gets built.
RECIPE_FILES = ("Dockerfile", ".dockerignore")
IMAGE_REPOSITORY = "calculator-lab/calculator"

# Python because the image has no curl; urlopen raises on any status but 2xx, exit code 1.
_HEALTH_PROBE = (
    "import sys, urllib.request; "
    "urllib.request.urlopen('http://127.0.0.1:' + sys.argv[1] + '/health', timeout=2)"
)
# The router has no service to ask: it is healthy when forwarding is on in its namespace.
_FORWARDING_PROBE = (
    "import sys; sys.exit(open('/proc/sys/net/ipv4/ip_forward').read().strip() != '1')"
)
# Idles until stopped; the container's init (tini) turns `docker stop` into a prompt exit.
IDLE_COMMAND = ("python3", "-c", "import signal; signal.pause()")


@dataclass(frozen=True)
class DockerPlan:
    image: ImageSpec
    networks: NetworksSpec
    routers: tuple[ContainerSpec, ...]
    front: ContainerSpec  # the one container with a published port
    services: tuple[ContainerSpec, ...]
    published: PublishedPort


def plan_docker(config: LabConfig, topology: Topology) -> DockerPlan:
    student = config.student
    labels = student_labels(student)
    routed = routed_subnets(topology)
    bridges = tuple(
        BridgeSpec(
            key=subnet.key,
            name=subnet_network_name(student, subnet.key),
            cidr=str(subnet.cidr),
            gateway=str(docker_gateway(topology, subnet.key)),
            internal=subnet.key not in routed,
        )
        for subnet in topology.subnets
    )
    routers = tuple(
        _router_container(student, router, labels)
        for router in topology.routers
        # The external router is Docker's NAT on the public network, not a container.
        if not router.external
    )
    recipe = {name: (APP_DIR / name).read_bytes() for name in RECIPE_FILES}
    image = ImageSpec(
        name=image_name(student, image_tag(app_files(), recipe, config.docker_base_image)),
        context=build_context(),
        base_image=config.docker_base_image,
        labels=labels,
    )

    def container(node: Node, *, public: bool = False) -> ContainerSpec:
        return _node_container(
            student, topology, node, labels, public, config.image_by_role.get(node.role)
        )

    return DockerPlan(
        image=image,
        networks=NetworksSpec(bridges, physical_name(student, PUBLIC), labels),
        routers=routers,
        front=container(topology.front, public=True),
        services=tuple(container(node) for node in topology.services),
        published=PublishedPort(
            topology.front.port, config.docker_host_port, str(config.docker_host_address)
        ),
    )


def containers(plan: DockerPlan) -> tuple[ContainerSpec, ...]:
    return (*plan.routers, plan.front, *plan.services)


def with_triggers(plan: DockerPlan, triggers: Mapping[str, str]) -> DockerPlan:
    """The plan with each container's replacement trigger (container name -> trigger), which
    the container also carries as a label, for the program to read back."""

    def triggered(spec: ContainerSpec) -> ContainerSpec:
        trigger = triggers[spec.name]
        labels = {**spec.labels, TRIGGER_LABEL: trigger}
        return dataclasses.replace(spec, labels=labels, replacement_trigger=trigger)

    return dataclasses.replace(
        plan,
        routers=tuple(map(triggered, plan.routers)),
        front=triggered(plan.front),
        services=tuple(map(triggered, plan.services)),
    )


def image_tag(files: tuple[AppFile, ...], recipe: dict[str, bytes], base_image: str) -> str:
    """A tag that changes whenever the image's content would: sources, recipe or base image.

    Tagging by content (not `latest`) makes a rebuild a replacement with a new name, so the
    old image's deletion can never remove the new one.
    """
    digest = hashlib.sha256()
    for name, content in sorted(recipe.items()):
        digest.update(f"recipe:{name}:{len(content)}\n".encode())
        digest.update(content)
    for app_file in files:
        digest.update(f"file:{app_file.relative_path}:{len(app_file.content)}\n".encode())
        digest.update(app_file.content)
    digest.update(f"base:{base_image}\n".encode())
    return digest.hexdigest()[:16]


def image_name(student: str, tag: str) -> str:
    # One repository per student, so two stacks on one engine never touch each other's image.
    return f"{physical_name(IMAGE_REPOSITORY, student)}:{tag}"


def build_context(app_dir: Path = APP_DIR, cwd: Path | None = None) -> str:
    """The build context as the engine's client sees it.

    Relative to the project directory when it is inside it (Pulumi runs program and providers
    there), so the stack's state does not depend on where the checkout lives.
    """
    here = (cwd or Path.cwd()).resolve()
    try:
        return app_dir.resolve().relative_to(here).as_posix()
    except ValueError:
        return os.fspath(app_dir.resolve())


def subnet_network_name(student: str, subnet_key: str) -> str:
    # Docker gives a container with several non-internal networks its default route (and its
    # published ports) on the network whose name sorts first; "<student>-public" must win over
    # a routed lab subnet, hence the "subnet-" prefix.
    return physical_name(student, f"subnet-{subnet_key}")


def _router_container(student: str, router: Router, labels: Mapping[str, str]) -> ContainerSpec:
    key = f"{router.key}-router"
    return ContainerSpec(
        key=key,
        name=physical_name(student, key),
        hostname=key,
        command=IDLE_COMMAND,
        user=UNPRIVILEGED,
        env=(),
        attachments=tuple((i.subnet, str(i.ip)) for i in router.interfaces),
        health=forwarding_test(),
        labels={**labels, ROLE_LABEL: key},
        # Namespaced: turns on forwarding in this container only, never on the host.
        sysctls={"net.ipv4.ip_forward": "1"},
    )


def _node_container(
    student: str,
    topology: Topology,
    node: Node,
    labels: Mapping[str, str],
    public: bool,
    image: str | None,
) -> ContainerSpec:
    routes = container_routes(topology, node.subnet)
    attachments: tuple[tuple[str, str | None], ...] = ((node.subnet, str(node.ip)),)
    if public:
        attachments += ((PUBLIC, None),)
    return ContainerSpec(
        key=node.role,
        name=physical_name(student, node.role),
        hostname=node.role,
        command=tuple(node_command(node.role, routes)),
        # With routes it starts as root, only to add them (see node_command).
        user="0:0" if routes else UNPRIVILEGED,
        env=tuple(environment_list(topology.environment(node.role))),
        attachments=attachments,
        health=health_test(node.port),
        labels={**labels, ROLE_LABEL: node.role},
        # A node without routes needs no capability at all.
        capabilities=ROUTING_CAPABILITIES if routes else (),
        after_routers=bool(routes),
        image=image,
    )


def container_routes(topology: Topology, node_subnet: str) -> tuple[HostRoute, ...]:
    """The static routes a container on `node_subnet` needs to reach the rest of the topology.

    A subnet's host routes (DHCP option 121 in OpenStack) apply as they are. A subnet whose
    gateway is a router without external gateway (the services' inter-subnet router) is, in
    OpenStack, the default route of its VMs; Docker cannot point a default route at another
    container (it uses its own gateway address, held by nobody here, or none on an internal
    network), so the container gets one route per other subnet through that router instead.
    """
    subnet = topology.subnet(node_subnet)
    routes = list(subnet.host_routes)
    gateway_router = _router_at(topology, node_subnet, subnet.gateway_ip)
    if gateway_router is not None and not gateway_router.external:
        routes += [
            HostRoute(other.cidr, subnet.gateway_ip)
            for other in topology.subnets
            if other.key != node_subnet and not any(r.destination == other.cidr for r in routes)
        ]
    return tuple(routes)


def routed_subnets(topology: Topology) -> frozenset[str]:
    """Subnets a router container forwards through (interfaces of routers with no gateway)."""
    return frozenset(
        interface.subnet
        for router in topology.routers
        if not router.external
        for interface in router.interfaces
    )


def docker_gateway(topology: Topology, subnet_key: str) -> IPv4Address:
    """The address Docker reserves as a lab subnet's gateway: the lowest one nobody claims.

    Docker always reserves one (by default the first host address); naming it explicitly keeps
    it off every node and router address, and keeps the engine's read-back equal to the
    program's (engines differ in whether they report a gateway they picked themselves).
    """
    subnet = topology.subnet(subnet_key)
    claimed = {node.ip for node in topology.nodes if node.subnet == subnet_key} | {
        interface.ip
        for router in topology.routers
        for interface in router.interfaces
        if interface.subnet == subnet_key
    }
    return next(ip for ip in subnet.cidr.hosts() if ip not in claimed)


def _router_at(topology: Topology, subnet_key: str, address: object) -> Router | None:
    for router in topology.routers:
        if any(i.subnet == subnet_key and i.ip == address for i in router.interfaces):
            return router
    return None


def node_command(role: str, routes: Sequence[HostRoute]) -> list[str]:
    """The container's command: add the routes as root, then run the role with no privilege.

    Without routes the container starts unprivileged from the image's USER and needs no
    shell. With routes it starts as root with NET_ADMIN only for `ip route`; setpriv then drops
    the user, the groups and every capability (bounding set included) before Python starts.
    """
    calculator = ["python3", "-m", "calculator", role]
    if not routes:
        return calculator
    uid, gid = UNPRIVILEGED.split(":")
    steps = [f"ip route replace {route.destination} via {route.next_hop}" for route in routes]
    drop = [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]
    steps.append("exec " + shlex.join([*drop, *calculator]))
    return ["sh", "-ec", " && ".join(steps)]


def health_test(port: int) -> tuple[str, ...]:
    return ("CMD", "python3", "-c", _HEALTH_PROBE, str(port))


def forwarding_test() -> tuple[str, ...]:
    return ("CMD", "python3", "-c", _FORWARDING_PROBE)


def environment_list(environment: Mapping[str, str]) -> list[str]:
    """`KEY=value` lines in a stable order, so a re-run of `pulumi up` sees no change."""
    return [f"{key}={value}" for key, value in sorted(environment.items())]

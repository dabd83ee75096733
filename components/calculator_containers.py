"""The lab's topology as local Docker objects: the calculator image, bridge networks, containers.

- CalculatorImage builds apps/calculator/Dockerfile on the engine and removes the image again
  on tear-down.
- LabNetworks turns every subnet of the topology into a bridge network with the same CIDR
  and no host address (so no route from the host), plus one small `<student>-public`
  network: the analog of the external network, the only one with a way out.
- CalculatorContainers runs each node at its topology address, and each router that has no
  external gateway (the client topology's inter-subnet router) as a forwarding container at
  its interface addresses. The gateway router itself is Docker's NAT on the public network.

Only the front end publishes a port on the host: the analog of the floating IP.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pulumi
import pulumi_docker as docker

from lab.topology import HostRoute, Node, Router, Topology

# What the calculator drops to after its one privileged step: the conventional "nobody".
UNPRIVILEGED = "65534:65534"
LABEL_PREFIX = "calculator-lab"
# No address for the host on a lab subnet's bridge: the host has no route into it, and the
# gateway address Docker gives the containers (see docker_gateway) is held by nobody.
NO_HOST_ADDRESS = {"com.docker.network.bridge.inhibit_ipv4": "true"}
# A routed subnet cannot be "internal" (see LabNetworks); this keeps it from being NATed out.
NO_MASQUERADE = {"com.docker.network.bridge.enable_ip_masquerade": "false"}
HEALTH_INTERVAL = "2s"
HEALTH_TIMEOUT = "3s"
HEALTH_RETRIES = 5
# `pulumi up` waits for every container to report healthy, so it ends with a working stack.
WAIT_TIMEOUT_SECONDS = 90


# --- pure helpers: what each container runs ---------------------------------------------------


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
IDLE_COMMAND = ["python3", "-c", "import signal; signal.pause()"]


def health_test(port: int) -> list[str]:
    return ["CMD", "python3", "-c", _HEALTH_PROBE, str(port)]


def forwarding_test() -> list[str]:
    return ["CMD", "python3", "-c", _FORWARDING_PROBE]


def environment_list(environment: Mapping[str, str]) -> list[str]:
    """`KEY=value` lines in a stable order, so a re-run of `pulumi up` sees no change."""
    return [f"{key}={value}" for key, value in sorted(environment.items())]


def _healthcheck(test: list[str]) -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=test,
        interval=HEALTH_INTERVAL,
        timeout=HEALTH_TIMEOUT,
        retries=HEALTH_RETRIES,
        start_period="2s",
    )


def _labels(labels: Mapping[str, str]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())]


# --- CalculatorImage ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CalculatorImageArgs:
    # repository:tag; the tag should change with the image's content (see targets/docker.py),
    # so a rebuilt image never shares a name with the one it replaces.
    image_name: str
    context: str  # directory holding the Dockerfile and the calculator package
    base_image: str
    labels: Mapping[str, str] = field(default_factory=dict)


class CalculatorImage(pulumi.ComponentResource):
    """The calculator image, built by the engine from the Dockerfile in the build context."""

    image_id: pulumi.Output[str]
    """The built image's id (sha256:...), what containers run."""
    image_name: pulumi.Output[str]
    """repository:tag of the built image."""

    def __init__(
        self, name: str, args: CalculatorImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:CalculatorImage", name, None, opts)
        # RemoteImage, not docker.Image: only RemoteImage deletes the local image on destroy
        # (keep_locally=False); docker.Image leaves its tag behind.
        image = docker.RemoteImage(
            f"{name}-image",
            name=args.image_name,
            build=docker.RemoteImageBuildArgs(
                context=args.context,
                dockerfile="Dockerfile",
                build_args={"BASE_IMAGE": args.base_image},
                labels=dict(args.labels),
                # The engine's own build endpoint: works with any engine version and needs no
                # buildx plugin or builder instance on the machine.
                use_legacy_builder=True,
            ),
            keep_locally=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image_id = image.image_id
        self.image_name = image.name
        self.register_outputs({"image_id": self.image_id, "image_name": self.image_name})


# --- LabNetworks -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabNetworksArgs:
    student: str
    topology: Topology
    labels: Mapping[str, str] = field(default_factory=dict)


def subnet_network_name(student: str, subnet_key: str) -> str:
    # Docker gives a container with several non-internal networks its default route (and its
    # published ports) on the network whose name sorts first; "<student>-public" must win over
    # a routed lab subnet, hence the "subnet-" prefix.
    return f"{student}-subnet-{subnet_key}"


class LabNetworks(pulumi.ComponentResource):
    """One bridge per topology subnet (same CIDR, no host address) and the public bridge.

    A subnet is Docker-"internal" (no route out at all) unless a router container forwards
    through it: Docker filters internal bridges with iptables rules that drop every packet
    whose destination lies outside the subnet, and with bridge netfilter on (Docker turns it
    on) that includes packets bridged to the router. A routed subnet is closed instead by
    having no host address and no masquerading.
    """

    names: dict[str, pulumi.Output[str]]
    """Subnet key -> Docker network name."""
    public_name: pulumi.Output[str]
    """The `<student>-public` network, the front end's way to the host."""

    def __init__(
        self, name: str, args: LabNetworksArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:LabNetworks", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = [docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())]
        routed = routed_subnets(args.topology)
        self.names = {}
        for subnet in args.topology.subnets:
            internal = subnet.key not in routed
            network = docker.Network(
                f"{name}-{subnet.key}",
                name=subnet_network_name(args.student, subnet.key),
                driver="bridge",
                internal=internal,
                ipam_configs=[
                    docker.NetworkIpamConfigArgs(
                        subnet=str(subnet.cidr),
                        gateway=str(docker_gateway(args.topology, subnet.key)),
                    )
                ],
                options=NO_HOST_ADDRESS if internal else {**NO_HOST_ADDRESS, **NO_MASQUERADE},
                labels=labels,
                opts=child,
            )
            self.names[subnet.key] = network.name
        # Docker picks a free subnet for it: nothing in the lab addresses it.
        public = docker.Network(
            f"{name}-public",
            name=f"{args.student}-public",
            driver="bridge",
            labels=labels,
            opts=child,
        )
        self.public_name = public.name
        self.register_outputs({"names": self.names, "public_name": self.public_name})


# --- CalculatorContainers ----------------------------------------------------------------------


@dataclass(frozen=True)
class CalculatorContainersArgs:
    student: str
    topology: Topology
    image_id: pulumi.Input[str]
    networks: Mapping[str, pulumi.Input[str]]  # subnet key -> network name
    public_network: pulumi.Input[str]
    host_address: str  # where the front end's port is published
    host_port: int
    labels: Mapping[str, str] = field(default_factory=dict)


class CalculatorContainers(pulumi.ComponentResource):
    """The five calculator containers and the routers the topology needs between subnets."""

    private_ips: pulumi.Output[dict[str, str]]
    """Container name -> address on its topology subnet."""
    floating_ips: pulumi.Output[dict[str, str]]
    """Container name -> host address its port is published on (only the front end)."""
    frontend_address: pulumi.Output[str]
    """The host address of the front end's published port."""

    def __init__(
        self,
        name: str,
        args: CalculatorContainersArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("calculator-lab:components:CalculatorContainers", name, None, opts)
        self._name = name
        self._args = args
        topology = args.topology

        # Routers first: a node whose first packet needs the router must not start before it.
        routers = [
            self._router(router)
            for router in topology.routers
            # The external router is Docker's NAT on the public network, not a container.
            if not router.external
        ]
        nodes = {node.role: self._node(node, routers) for node in topology.nodes}

        front_name = self._container_name("front")
        self.private_ips = pulumi.Output.all(
            *[nodes[node.role].name for node in topology.nodes]
        ).apply(
            lambda names: {
                name: str(node.ip) for name, node in zip(names, topology.nodes, strict=True)
            }
        )
        self.frontend_address = nodes["front"].id.apply(lambda _: args.host_address)
        self.floating_ips = self.frontend_address.apply(lambda address: {front_name: address})
        self.register_outputs(
            {
                "private_ips": self.private_ips,
                "floating_ips": self.floating_ips,
                "frontend_address": self.frontend_address,
            }
        )

    def _container_name(self, role: str) -> str:
        return f"{self._args.student}-{role}"

    def _router(self, router: Router) -> docker.Container:
        args = self._args
        return docker.Container(
            f"{self._name}-{router.key}-router",
            name=f"{args.student}-{router.key}-router",
            hostname=f"{router.key}-router",
            image=args.image_id,
            command=IDLE_COMMAND,
            user=UNPRIVILEGED,
            init=True,
            read_only=True,
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            # Namespaced: turns on forwarding in this container only, never on the host.
            sysctls={"net.ipv4.ip_forward": "1"},
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=args.networks[interface.subnet], ipv4_address=str(interface.ip)
                )
                for interface in router.interfaces
            ],
            healthcheck=_healthcheck(forwarding_test()),
            wait=True,
            wait_timeout=WAIT_TIMEOUT_SECONDS,
            restart="on-failure",
            labels=_labels({**args.labels, f"{LABEL_PREFIX}.role": f"{router.key}-router"}),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

    def _node(self, node: Node, routers: Sequence[docker.Container]) -> docker.Container:
        args = self._args
        routes = container_routes(args.topology, node.subnet)
        networks = [
            docker.ContainerNetworksAdvancedArgs(
                name=args.networks[node.subnet], ipv4_address=str(node.ip)
            )
        ]
        ports: list[docker.ContainerPortArgs] = []
        if node.exposed:
            networks.append(docker.ContainerNetworksAdvancedArgs(name=args.public_network))
            ports.append(
                docker.ContainerPortArgs(
                    internal=node.port,
                    external=args.host_port,
                    ip=args.host_address,
                    protocol="tcp",
                )
            )
        # `ip route` needs NET_ADMIN, setpriv needs SETUID/SETGID/SETPCAP to drop to nobody;
        # a node without routes needs no capability at all.
        adds = ["NET_ADMIN", "SETGID", "SETPCAP", "SETUID"] if routes else []
        return docker.Container(
            f"{self._name}-{node.role}",
            name=self._container_name(node.role),
            hostname=node.role,
            image=args.image_id,
            command=node_command(node.role, routes),
            user="0:0" if routes else UNPRIVILEGED,
            envs=environment_list(args.topology.environment(node.role)),
            init=True,
            read_only=True,
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=adds or None),
            security_opts=["no-new-privileges:true"],
            networks_advanced=networks,
            ports=ports or None,
            healthcheck=_healthcheck(health_test(node.port)),
            wait=True,
            wait_timeout=WAIT_TIMEOUT_SECONDS,
            restart="on-failure",
            labels=_labels({**args.labels, f"{LABEL_PREFIX}.role": node.role}),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(routers) if routes else None,
                # Names are fixed, so a replacement must remove the old container first.
                delete_before_replace=True,
            ),
        )

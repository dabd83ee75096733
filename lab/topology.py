"""The lab's topologies as plain data: subnets, routers, nodes and their addresses.

This is the single description both targets render (OpenStack VMs or Docker containers), so
every address decision lives here and nowhere else. Nothing in this module talks to a cloud.

Addressing conventions (documented in README):
- a subnet's routers take the top of the range (.254, .253), as in the handout (defaults
  resolved by `LabConfig.router_addresses`, and validated with the config);
- the front end takes host .10 of its subnet and the services .11 to .14 of theirs, so the
  front end's service URLs are known before anything is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from lab.config import LabConfig
from lab.names import FIRST_NODE_HOST, PORTS, SERVICE_ROLES, Role


@dataclass(frozen=True)
class HostRoute:
    destination: IPv4Network
    next_hop: IPv4Address


@dataclass(frozen=True)
class Subnet:
    key: str  # logical name, unique in the topology: "private", "client", "service"
    cidr: IPv4Network
    gateway_ip: IPv4Address
    host_routes: tuple[HostRoute, ...] = ()

    @property
    def dhcp_pool(self) -> tuple[IPv4Address, IPv4Address]:
        """Dynamic addresses stay clear of the fixed ones (.10-.14 nodes, top-of-range routers)."""
        return self.cidr.network_address + 16, self.cidr.broadcast_address - 3

    def __post_init__(self) -> None:
        if self.gateway_ip not in self.cidr:
            raise ValueError(f"gateway {self.gateway_ip} is outside {self.cidr}")


@dataclass(frozen=True)
class RouterInterface:
    subnet: str
    ip: IPv4Address


@dataclass(frozen=True)
class Router:
    key: str  # "gateway" or "inter"
    external: bool  # attached to the external network (and so to the internet)
    interfaces: tuple[RouterInterface, ...]
    routes: tuple[HostRoute, ...] = ()


@dataclass(frozen=True)
class Node:
    role: Role
    subnet: str
    ip: IPv4Address
    port: int
    exposed: bool  # gets the floating IP (OpenStack) or the published port (Docker)


@dataclass(frozen=True)
class Topology:
    name: str
    subnets: tuple[Subnet, ...]
    routers: tuple[Router, ...]
    nodes: tuple[Node, ...]
    _by_role: dict[Role, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_role", {node.role: node for node in self.nodes})
        subnet_keys = {subnet.key for subnet in self.subnets}
        taken: dict[IPv4Address, str] = {}
        claims = [(n.ip, n.subnet, n.role) for n in self.nodes] + [
            (i.ip, i.subnet, f"router {r.key}") for r in self.routers for i in r.interfaces
        ]
        for ip, subnet_key, owner in claims:
            if subnet_key not in subnet_keys:
                raise ValueError(f"{owner} is on unknown subnet {subnet_key}")
            if ip in taken:
                raise ValueError(f"{owner} and {taken[ip]} both claim {ip}")
            taken[ip] = owner
        if sum(node.exposed for node in self.nodes) != 1:
            raise ValueError("exactly one node (the front end) must be exposed")

    def node(self, role: Role) -> Node:
        return self._by_role[role]

    def subnet(self, key: str) -> Subnet:
        return next(subnet for subnet in self.subnets if subnet.key == key)

    @property
    def front(self) -> Node:
        return self.node("front")

    @property
    def services(self) -> tuple[Node, ...]:
        return tuple(self.node(role) for role in SERVICE_ROLES)

    def service_urls(self) -> dict[Role, str]:
        """The front end's view of each service, by fixed address."""
        return {node.role: f"http://{node.ip}:{node.port}" for node in self.services}

    def environment(self, role: Role) -> dict[str, str]:
        """The calculator's environment variables for one role (see apps/calculator/README.md)."""
        node = self.node(role)
        env = {"CALC_LISTEN_HOST": "0.0.0.0", "CALC_PORT": str(node.port)}  # noqa: S104
        if role == "front":
            env |= {f"CALC_{name.upper()}_URL": url for name, url in self.service_urls().items()}
        return env


def _host(network: IPv4Network, index: int) -> IPv4Address:
    return network.network_address + index


def _nodes(front_subnet: Subnet, service_subnet: Subnet) -> tuple[Node, ...]:
    front = Node(
        "front",
        front_subnet.key,
        _host(front_subnet.cidr, FIRST_NODE_HOST),
        PORTS["front"],
        exposed=True,
    )
    services = tuple(
        Node(
            role,
            service_subnet.key,
            _host(service_subnet.cidr, FIRST_NODE_HOST + i),
            PORTS[role],
            exposed=False,
        )
        for i, role in enumerate(SERVICE_ROLES, start=1)
    )
    return (front, *services)


def single_topology(config: LabConfig) -> Topology:
    """One private network behind a gateway router; the five nodes on it."""
    gateway_ip = config.router_addresses().gateway
    private = Subnet("private", config.network_cidr, gateway_ip)
    router = Router("gateway", external=True, interfaces=(RouterInterface("private", gateway_ip),))
    return Topology("single", (private,), (router,), _nodes(private, private))


def client_topology(config: LabConfig) -> Topology:
    """The handout's client request: front end and services on two subnets, two routers.

    The inter-subnet router has no external gateway, so the services have no route to the
    internet. The front end learns the way to the services from a DHCP host route (what the
    handout does by hand with `route add`); the service subnet's gateway is the inter-subnet
    router, so replies go back the same way.
    """
    addresses = config.router_addresses()
    gateway_ip = addresses.gateway
    inter_client_ip, inter_service_ip = addresses.inter_client, addresses.inter_service
    # Both set for the client topology.
    assert inter_client_ip is not None
    assert inter_service_ip is not None
    to_services = HostRoute(config.service_cidr, inter_client_ip)
    client = Subnet("client", config.client_cidr, gateway_ip, host_routes=(to_services,))
    service = Subnet("service", config.service_cidr, inter_service_ip)
    gateway = Router(
        "gateway",
        external=True,
        interfaces=(RouterInterface("client", gateway_ip),),
        # Hosts that ignore DHCP host routes send service traffic to their default gateway;
        # this extra route hands it on to the inter-subnet router instead of the internet.
        routes=(to_services,),
    )
    inter = Router(
        "inter",
        external=False,
        interfaces=(
            RouterInterface("client", inter_client_ip),
            RouterInterface("service", inter_service_ip),
        ),
    )
    return Topology("client", (client, service), (gateway, inter), _nodes(client, service))


def build_topology(config: LabConfig) -> Topology:
    return client_topology(config) if config.topology == "client" else single_topology(config)

"""What Neutron's reference design would build for a lab topology, as plain data.

`plan_for(topology)` turns the program's topology (`lab/topology.py`) into the pieces Neutron's
agents create on a network node, without touching the machine:

- one L2 segment (a Linux bridge) per subnet, plus the external network;
- one DHCP namespace per subnet running dnsmasq with a fixed address per MAC, the subnet's
  gateway as router option and its host routes as classless static routes (option 121, and 249
  for old clients), to which Neutron adds the default route because a client that receives
  option 121 ignores the router option (RFC 3442);
- one namespace per router with an interface on each of its subnets, forwarding on, its extra
  routes; an external router also gets a gateway port on the external network, SNAT for its
  subnets and, for the exposed node, the floating IP (DNAT in, SNAT out);
- an "outside" namespace on the external network: the machine a student types curl on;
- a NIC (MAC, segment, fixed address) per node, for the guests.

The plan is the interface between whoever knows the topology (today `lab/topology.py`, later
perhaps the test cloud's Neutron API) and `tools/dataplane/netns.py`, which builds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol

# Linux limits interface names to 15 bytes (IFNAMSIZ - 1).
IFNAME_MAX = 15
EXTERNAL_SEGMENT = "ext"
OUTSIDE = "outside"
#: DevStack's default public range: the external network the floating IPs come from.
DEFAULT_EXTERNAL_CIDR = IPv4Network("172.24.4.0/24")
#: The first floating IP handed out (hosts below it are the outside host and router gateways).
FLOATING_IP_HOST = 100


# What the plan reads from a topology: the attributes of lab/topology.py's dataclasses, as
# read-only protocols so that any description with the same shape (a Neutron API reader, a
# test's fake) can be planned too.
class HostRouteLike(Protocol):
    @property
    def destination(self) -> IPv4Network: ...
    @property
    def next_hop(self) -> IPv4Address: ...


class SubnetLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def cidr(self) -> IPv4Network: ...
    @property
    def gateway_ip(self) -> IPv4Address: ...
    @property
    def host_routes(self) -> Sequence[HostRouteLike]: ...
    @property
    def dhcp_pool(self) -> tuple[IPv4Address, IPv4Address]: ...


class RouterInterfaceLike(Protocol):
    @property
    def subnet(self) -> str: ...
    @property
    def ip(self) -> IPv4Address: ...


class RouterLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def external(self) -> bool: ...
    @property
    def interfaces(self) -> Sequence[RouterInterfaceLike]: ...
    @property
    def routes(self) -> Sequence[HostRouteLike]: ...


class NodeLike(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def subnet(self) -> str: ...
    @property
    def ip(self) -> IPv4Address: ...
    @property
    def port(self) -> int: ...
    @property
    def exposed(self) -> bool: ...


class TopologyLike(Protocol):
    @property
    def subnets(self) -> Sequence[SubnetLike]: ...
    @property
    def routers(self) -> Sequence[RouterLike]: ...
    @property
    def nodes(self) -> Sequence[NodeLike]: ...


@dataclass(frozen=True)
class Route:
    destination: IPv4Network
    via: IPv4Address


@dataclass(frozen=True)
class Port:
    """A veth pair: `ifname` (with `address`) inside a namespace, `peer` on the segment's bridge."""

    segment: str
    ifname: str
    peer: str
    address: IPv4Interface

    def __post_init__(self) -> None:
        for name in (self.ifname, self.peer):
            if not 0 < len(name) <= IFNAME_MAX:
                raise ValueError(f"interface name {name!r} is not 1 to {IFNAME_MAX} bytes")


@dataclass(frozen=True)
class Namespace:
    key: str  # "qrouter-gateway", "qdhcp-client", "outside": unique in the plan
    ports: tuple[Port, ...]
    routes: tuple[Route, ...] = ()
    forwarding: bool = False
    #: Extra addresses on a port, as (ifname, address): a router's floating IPs.
    extra_addresses: tuple[tuple[str, IPv4Interface], ...] = ()
    #: iptables rules for the nat table, each as the arguments after `iptables -t nat`.
    nat_rules: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class FixedLease:
    mac: str
    ip: IPv4Address
    hostname: str


@dataclass(frozen=True)
class DhcpServer:
    namespace: str
    ifname: str
    subnet: IPv4Network
    router: IPv4Address
    #: Option 121/249, in order; empty when the subnet has no host routes.
    classless_routes: tuple[Route, ...]
    leases: tuple[FixedLease, ...]


@dataclass(frozen=True)
class GuestNic:
    role: str
    segment: str
    mac: str
    ip: IPv4Address
    port: int  # the TCP port its service listens on
    exposed: bool


@dataclass(frozen=True)
class Plan:
    segments: tuple[str, ...]  # one bridge each
    namespaces: tuple[Namespace, ...]
    dhcp: tuple[DhcpServer, ...]
    guests: tuple[GuestNic, ...]
    #: Floating IP of each exposed role, on the external network.
    floating_ips: dict[str, IPv4Address]
    external: IPv4Network

    def namespace(self, key: str) -> Namespace:
        return next(ns for ns in self.namespaces if ns.key == key)

    def guest(self, role: str) -> GuestNic:
        return next(nic for nic in self.guests if nic.role == role)

    @property
    def outside_address(self) -> IPv4Address:
        return self.namespace(OUTSIDE).ports[0].address.ip


def guest_mac(ip: IPv4Address) -> str:
    """Neutron's fa:16:3e prefix and the address's last three bytes: unique per topology,
    and readable in dnsmasq's log."""
    tail = ip.packed[1:]
    return "fa:16:3e:" + ":".join(f"{byte:02x}" for byte in tail)


def _host(network: IPv4Network, index: int) -> IPv4Address:
    return network.network_address + index


def _interface(network: IPv4Network, address: IPv4Address) -> IPv4Interface:
    return IPv4Interface(f"{address}/{network.prefixlen}")


def _port(owner: str, segment: str, ifname: str, address: IPv4Interface) -> Port:
    # The bridge side is named after both ends (owner: a short tag of the namespace), so names
    # stay unique in the namespace that holds the bridges.
    return Port(segment, ifname, f"{owner}-{segment}"[:IFNAME_MAX], address)


def _dhcp(subnet: SubnetLike, nodes: Sequence[NodeLike]) -> tuple[Namespace, DhcpServer]:
    key = f"qdhcp-{subnet.key}"
    # Neutron's DHCP port takes an address from the subnet's allocation pool, like any port.
    address = _interface(subnet.cidr, subnet.dhcp_pool[0])
    namespace = Namespace(key, (_port("d", subnet.key, "ns-dhcp", address),))
    routes = tuple(Route(r.destination, r.next_hop) for r in subnet.host_routes)
    if routes:
        routes += (Route(IPv4Network("0.0.0.0/0"), subnet.gateway_ip),)
    leases = tuple(
        FixedLease(guest_mac(node.ip), node.ip, node.role)
        for node in nodes
        if node.subnet == subnet.key
    )
    return namespace, DhcpServer(key, "ns-dhcp", subnet.cidr, subnet.gateway_ip, routes, leases)


def _router(
    router: RouterLike,
    subnets: dict[str, SubnetLike],
    nodes: Sequence[NodeLike],
    gateway: IPv4Interface,
    floating_ips: dict[str, IPv4Address],
    outside: IPv4Address,
) -> Namespace:
    key = f"qrouter-{router.key}"
    owner = f"r{router.key[:5]}"
    ports = [
        _port(owner, i.subnet, f"qr-{i.subnet}", _interface(subnets[i.subnet].cidr, i.ip))
        for i in router.interfaces
    ]
    routes = [Route(r.destination, r.next_hop) for r in router.routes]
    if not router.external:
        return Namespace(key, tuple(ports), tuple(routes), forwarding=True)
    ports.append(_port(owner, EXTERNAL_SEGMENT, "qg-ext", gateway))
    routes.append(Route(IPv4Network("0.0.0.0/0"), outside))
    attached = {i.subnet for i in router.interfaces}
    extra: list[tuple[str, IPv4Interface]] = []
    nat: list[tuple[str, ...]] = []
    for node in nodes:
        if node.subnet in attached and node.role in floating_ips:
            fip = str(floating_ips[node.role])
            extra.append(("qg-ext", IPv4Interface(f"{fip}/32")))
            # As Neutron's L3 agent: DNAT arriving traffic and the router's own, and give the
            # node's outgoing traffic the floating address (before the subnet-wide SNAT).
            dnat = ("-d", f"{fip}/32", "-j", "DNAT", "--to-destination", str(node.ip))
            nat += [
                ("-A", "PREROUTING", *dnat),
                ("-A", "OUTPUT", *dnat),
                ("-A", "POSTROUTING", "-s", f"{node.ip}/32", "-o", "qg-ext",
                 "-j", "SNAT", "--to-source", fip),
            ]  # fmt: skip
    for subnet_key in sorted(attached):
        nat.append(
            ("-A", "POSTROUTING", "-s", str(subnets[subnet_key].cidr), "-o", "qg-ext",
             "-j", "SNAT", "--to-source", str(gateway.ip))
        )  # fmt: skip
    return Namespace(key, tuple(ports), tuple(routes), True, tuple(extra), tuple(nat))


def plan_for(topology: TopologyLike, external: IPv4Network = DEFAULT_EXTERNAL_CIDR) -> Plan:
    """The data plane Neutron would build for `topology`, with `external` as public network."""
    subnets = {subnet.key: subnet for subnet in topology.subnets}
    if EXTERNAL_SEGMENT in subnets:
        raise ValueError(f"no subnet may be called {EXTERNAL_SEGMENT!r}: the external one is")
    for subnet in topology.subnets:
        if subnet.cidr.overlaps(external):
            raise ValueError(f"subnet {subnet.key} {subnet.cidr} overlaps external {external}")
    outside = _host(external, 1)
    external_routers = [router for router in topology.routers if router.external]
    exposed = [node for node in topology.nodes if node.exposed]
    floating_ips = {
        node.role: _host(external, FLOATING_IP_HOST + i) for i, node in enumerate(exposed)
    }
    namespaces: list[Namespace] = [
        Namespace(OUTSIDE, (_port("o", EXTERNAL_SEGMENT, "eth0", _interface(external, outside)),))
    ]  # fmt: skip
    for index, router in enumerate(topology.routers):
        gateway = _interface(external, _host(external, 2 + index))
        namespaces.append(_router(router, subnets, topology.nodes, gateway, floating_ips, outside))
    dhcp = []
    for subnet in topology.subnets:
        namespace, server = _dhcp(subnet, topology.nodes)
        namespaces.append(namespace)
        dhcp.append(server)
    if exposed and not external_routers:
        raise ValueError("an exposed node needs a router with an external gateway")
    guests = tuple(
        GuestNic(node.role, node.subnet, guest_mac(node.ip), node.ip, node.port, node.exposed)
        for node in topology.nodes
    )
    return Plan(
        segments=(*subnets, EXTERNAL_SEGMENT),
        namespaces=tuple(namespaces),
        dhcp=tuple(dhcp),
        guests=guests,
        floating_ips=floating_ips,
        external=external,
    )

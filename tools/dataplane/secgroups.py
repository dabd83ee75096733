"""Neutron security groups as one nftables ruleset: a pure function, API state in, text out.

`render(state)` turns the ports of some networks, their security groups and the members of the
groups their rules name into the ruleset `tools/dataplane/sgfw.py` loads with `nft -f`. It
enforces what Neutron's firewall drivers enforce on a port with port security:

- anti-spoofing: a port may send only from its MAC and fixed IPs (or an allowed address
  pair), ARP included; a DHCP client's DISCOVER/REQUEST (from 0.0.0.0) is let out;
- its security group rules, IPv4 only (the lab's networks have no IPv6; IPv6 to or from a
  filtered port is dropped): ingress and egress, protocol, port range or ICMP type and code,
  `remote_ip_prefix`, `remote_group_id` expanded to the addresses of the group's members;
- statefulness: a packet of an established or related connection passes both ways; anything
  else that no rule allows is dropped, in both directions (a port with no group sends nothing).

Why two tables. The taps are ports of Linux bridges, so filtering per tap needs the bridge
family (only there do `iifname`/`oifname` name the bridge port), but this kernel has no
conntrack for the bridge family (`ct state` there fails with "Protocol error": no
CONFIG_NF_CONNTRACK_BRIDGE). Bridged IPv4 does reach the inet family's hooks through
br_netfilter, where conntrack works but only the bridge is named. So `table bridge` does the
stateless part per tap (anti-spoofing, ARP) and writes the packet's source and destination
port into its mark (low 16 bits: the sending port's index, high 16 bits: the receiving
port's); `table inet` matches the mark to run the stateful security-group rules of those ports.
Conntrack zones, one per network (by bridge), keep a routed flow seen on two bridges apart, as
Neutron's firewall does.

Names as Nova and os-vif give them: a port's tap is `tap` + its id's first 11 characters; a
network's bridge is `brq` + its id's first 11 characters (os-vif's linux_bridge plugin,
and the bridge our interface driver makes for Neutron's agents, docs/dataplane-findings.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_network

TABLE = "calclab_sg"
#: Protocols whose rules may carry a port range (Neutron accepts these with ranges).
PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "udplite", "dccp"})
#: Neutron's protocol numbers written as the names nftables knows.
PROTOCOL_NAMES = {"1": "icmp", "6": "tcp", "17": "udp", "132": "sctp", "136": "udplite"}
MAX_PORTS = 0xFFFF  # the mark holds a port's index in 16 bits
DHCP_CLIENT, DHCP_SERVER = 68, 67


def tap_name(port_id: str) -> str:
    return "tap" + port_id[:11]


def bridge_name(network_id: str) -> str:
    return "brq" + network_id[:11]


@dataclass(frozen=True)
class Rule:
    """One security group rule as Neutron holds it (`None`: not set)."""

    id: str
    direction: str  # "ingress" or "egress"
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None

    def __post_init__(self) -> None:
        if self.direction not in ("ingress", "egress"):
            raise ValueError(f"rule {self.id}: direction {self.direction!r}")
        if self.remote_ip_prefix is not None and self.remote_group_id is not None:
            raise ValueError(f"rule {self.id}: both a remote prefix and a remote group")


@dataclass(frozen=True)
class SecurityGroup:
    id: str
    name: str
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class AddressPair:
    """An allowed address pair: the port may also send from `ip` (a CIDR) with `mac`."""

    ip: str
    mac: str


@dataclass(frozen=True)
class Port:
    id: str
    name: str
    network_id: str
    mac: str
    fixed_ips: tuple[IPv4Address, ...]
    security_group_ids: tuple[str, ...] = ()
    allowed_address_pairs: tuple[AddressPair, ...] = ()
    port_security: bool = True

    @property
    def tap(self) -> str:
        return tap_name(self.id)


@dataclass(frozen=True)
class State:
    """What the firewall is rendered from.

    `ports`: the ports to filter (those whose taps the firewall's namespace holds);
    `groups`: every security group those ports' rules may involve, by id;
    `members`: every port of the project that is in a group (for remote groups), filtered or
    not: a port elsewhere is a remote group's member all the same.
    """

    ports: tuple[Port, ...]
    groups: Mapping[str, SecurityGroup]
    members: tuple[Port, ...] = field(default=())

    def member_addresses(self, group_id: str) -> list[IPv4Network]:
        """The addresses a remote group stands for: its members' fixed IPs and address pairs
        (as Neutron's ipset of the group holds them)."""
        found: set[IPv4Network] = set()
        for port in self.members:
            if group_id in port.security_group_ids:
                found.update(IPv4Network(ip) for ip in port.fixed_ips)
                found.update(_pair_networks(port.allowed_address_pairs))
        return sorted(found)


def _pair_networks(pairs: Iterable[AddressPair]) -> list[IPv4Network]:
    networks = []
    for pair in pairs:
        network = ip_network(pair.ip, strict=False)
        if isinstance(network, IPv4Network):
            networks.append(network)
    return networks


def _address(network: IPv4Network) -> str:
    return str(network.network_address) if network.prefixlen == 32 else str(network)


def _set(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _quote(name: str) -> str:
    return f'"{name}"'


def _ident(name: str) -> str:
    """A chain's or counter's name; nft 1.0.6 refuses quoted ones in declarations."""
    if not name.replace("-", "").replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not a name nft takes unquoted: {name!r}")
    return name


def _protocol(rule: Rule) -> str | None:
    """The rule's protocol as nftables names it, None for any."""
    if rule.protocol in (None, "", "any"):
        return None
    assert rule.protocol is not None
    return PROTOCOL_NAMES.get(rule.protocol, rule.protocol)


def _l4_match(rule: Rule) -> str:
    """Protocol, then port range or ICMP type and code (Neutron keeps ICMP's type in
    port_range_min and its code in port_range_max)."""
    protocol = _protocol(rule)
    if protocol is None:
        return ""
    low, high = rule.port_range_min, rule.port_range_max
    if protocol == "icmp":
        if low is None:
            return "meta l4proto icmp"
        return f"icmp type {low}" + ("" if high is None else f" icmp code {high}")
    if protocol in PORT_PROTOCOLS:
        if low is None and high is None:
            return f"meta l4proto {protocol}"
        low = high if low is None else low
        high = low if high is None else high
        ports = str(low) if low == high else f"{low}-{high}"
        return f"{protocol} dport {ports}"
    return f"meta l4proto {protocol}"


def _rule_line(rule: Rule, state: State, verdict: str) -> str:
    """One rule of a port's ingress or egress chain, or a comment saying why it has none."""
    if rule.ethertype != "IPv4":
        return f"# rule {rule.id}: {rule.ethertype}, not enforced (IPv6 is dropped)"
    side = "saddr" if rule.direction == "ingress" else "daddr"
    parts = []
    if rule.remote_group_id is not None:
        members = state.member_addresses(rule.remote_group_id)
        if not members:
            return f"# rule {rule.id}: remote group {rule.remote_group_id} has no members"
        parts.append(f"ip {side} " + _set([_address(m) for m in members]))
    elif rule.remote_ip_prefix is not None:
        prefix = ip_network(rule.remote_ip_prefix, strict=False)
        if prefix.prefixlen != 0:
            parts.append(f"ip {side} {_address(IPv4Network(prefix))}")
    match = _l4_match(rule)
    if match:
        parts.append(match)
    return " ".join([*parts, verdict, f'comment "rule {rule.id}"'])


def _port_rules(port: Port, state: State, direction: str) -> list[str]:
    verdict = "accept" if direction == "ingress" else "return"
    lines = []
    # Groups and rules in id order: Neutron lists them in no fixed order, and the agent reloads
    # only when the text changes.
    for group_id in sorted(port.security_group_ids):
        group = state.groups.get(group_id)
        if group is None:
            lines.append(f"# group {group_id}: not readable, its rules are not applied")
            continue
        for rule in sorted(group.rules, key=lambda rule: rule.id):
            if rule.direction == direction:
                lines.append(_rule_line(rule, state, verdict))
    return lines


def _sources(port: Port) -> list[tuple[str, str]]:
    """(MAC, address) pairs the port may send from: its fixed IPs, then its address pairs."""
    pairs = [(port.mac, str(ip)) for ip in port.fixed_ips]
    for pair, network in zip(
        port.allowed_address_pairs, _pair_networks(port.allowed_address_pairs), strict=False
    ):
        pairs.append((pair.mac or port.mac, _address(network)))
    return pairs


def _from_port_chain(port: Port, index: int) -> list[str]:
    """Layer 2, frames the port sends: mark them with its index, drop what it may not send."""
    lines = [f"meta mark set meta mark & 0xffff0000 | {index:#010x}"]
    for mac, address in _sources(port):
        lines.append(f"ether saddr {mac} arp saddr ether {mac} arp saddr ip {address} return")
    # ARP probes (duplicate address detection) come from 0.0.0.0.
    lines.append(f"ether saddr {port.mac} arp saddr ether {port.mac} arp saddr ip 0.0.0.0 return")
    lines.append(
        f"ether saddr {port.mac} ip saddr 0.0.0.0 ip daddr 255.255.255.255"
        f" udp sport {DHCP_CLIENT} udp dport {DHCP_SERVER} return"
    )
    for mac, address in _sources(port):
        lines.append(f"ether saddr {mac} ip saddr {address} return")
    lines.append(f"counter name {_ident('spoof-' + port.tap)} drop")
    return lines


def _to_port_chain(index: int) -> list[str]:
    """Layer 2, frames to the port: mark them with its index; only IPv4 and ARP get there."""
    return [
        f"meta mark set meta mark & 0x0000ffff | {index << 16:#010x}",
        "ether type { ip, arp } return",
        "drop",
    ]


def _egress_chain(port: Port, state: State) -> list[str]:
    return [
        f"udp sport {DHCP_CLIENT} udp dport {DHCP_SERVER} return",
        *_port_rules(port, state, "egress"),
        f"counter name {_ident('egress-' + port.tap)} drop",
    ]


def _ingress_chain(port: Port, state: State) -> list[str]:
    return [
        f"udp sport {DHCP_SERVER} udp dport {DHCP_CLIENT} accept",
        *_port_rules(port, state, "ingress"),
        f"counter name {_ident('ingress-' + port.tap)} drop",
    ]


def _chain(name: str, lines: Sequence[str], hook: str | None = None) -> list[str]:
    body = [f"\t\t{hook}"] if hook else []
    body += [f"\t\t{line}" for line in lines]
    return [f"\tchain {_ident(name)} {{", *body, "\t}"]


def filtered_ports(state: State) -> list[Port]:
    """The ports the ruleset filters, in the order that gives each its index (from 1)."""
    ports = sorted((p for p in state.ports if p.port_security), key=lambda p: p.tap)
    if len(ports) > MAX_PORTS:
        raise ValueError(f"{len(ports)} ports: at most {MAX_PORTS} fit in the mark")
    taps = [p.tap for p in ports]
    if len(set(taps)) != len(taps):
        raise ValueError("two ports share a tap name (their ids' first 11 characters)")
    return ports


def render(state: State) -> str:
    """The whole ruleset: replaces our two tables at once when loaded with `nft -f`."""
    ports = filtered_ports(state)
    networks = sorted({p.network_id for p in ports})
    out = [
        "# calculator-lab security groups (tools/dataplane/sgfw.py), rendered from Neutron's API",
        # Creating then deleting makes the load replace our tables whether or not they exist,
        # in the same transaction as the new ones: no moment without a firewall.
        f"table bridge {TABLE} {{}}",
        f"delete table bridge {TABLE}",
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        "",
        f"table bridge {TABLE} {{",
    ]
    out += [f"\tcounter {_ident('spoof-' + p.tap)} {{}}" for p in ports]
    dispatch = [f"iifname {_quote(p.tap)} jump {_ident('from-' + p.tap)}" for p in ports]
    dispatch += [f"oifname {_quote(p.tap)} jump {_ident('to-' + p.tap)}" for p in ports]
    out += _chain("forward", dispatch, "type filter hook forward priority filter; policy accept;")
    for index, port in enumerate(ports, start=1):
        out += _chain("from-" + port.tap, _from_port_chain(port, index))
        out += _chain("to-" + port.tap, _to_port_chain(index))
    out += ["}", "", f"table inet {TABLE} {{"]
    for port in ports:
        out += [f"\tcounter {_ident(kind + '-' + port.tap)} {{}}" for kind in ("egress", "ingress")]
    zones = [
        f"iifname {_quote(bridge_name(net))} ct zone set {zone}"
        for zone, net in enumerate(networks, start=1)
    ]
    out += _chain("zones", zones, "type filter hook prerouting priority raw; policy accept;")
    forward = [
        "ct state established,related accept",
        "ct state invalid counter name invalid drop",
    ]
    for index, port in enumerate(ports, start=1):
        forward.append(
            f"meta mark & 0x0000ffff == {index:#010x} jump {_ident('egress-' + port.tap)}"
        )
    for index, port in enumerate(ports, start=1):
        forward.append(
            f"meta mark & 0xffff0000 == {index << 16:#010x} jump {_ident('ingress-' + port.tap)}"
        )
    out.insert(out.index(f"table inet {TABLE} {{") + 1, "\tcounter invalid {}")
    out += _chain("forward", forward, "type filter hook forward priority filter; policy accept;")
    for port in ports:
        out += _chain("egress-" + port.tap, _egress_chain(port, state))
        out += _chain("ingress-" + port.tap, _ingress_chain(port, state))
    out.append("}")
    return "\n".join(out) + "\n"

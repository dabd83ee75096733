"""The security-group firewall agent: Neutron's API state in, one nftables ruleset applied.

    python -m tools.dataplane.sgfw --cloud testcloud --network bob-client --network bob-service \\
        [--netns NS] [--once | --interval SECONDS] [--print] [--save FILE]

It filters every port of the given networks (or of all networks the credentials see) that is
not Neutron's own (device_owner `network:…`: router interfaces, DHCP) and has port security:
the VMs' ports, whether or not a server holds them yet. Ports are chosen by network rather
than by host binding because a project member (who runs the lab) cannot read
`binding:host_id`, and because one namespace holds every tap of those networks in our data
plane. Remote groups are expanded from every
port the credentials can see.

Each round reads the API (openstacksdk), renders with `secgroups.render` and, when the text
differs from what it last loaded, loads it with `nft -f` in `--netns` (the namespace holding
the bridges and taps), atomically. Before the first load it turns on br_netfilter's
`bridge-nf-call-iptables` in that namespace: without it bridged packets never reach the inet
table and every security group rule would silently pass everything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, ip_address
from pathlib import Path
from typing import Any

import openstack

from tools.dataplane.secgroups import AddressPair, Port, Rule, SecurityGroup, State, render

BR_NETFILTER = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables")


class FirewallError(RuntimeError):
    """The API could not be read as asked, or nft refused the ruleset."""


def _port(raw: Any) -> Port:
    fixed = []
    for entry in raw.fixed_ips or ():
        address = ip_address(entry["ip_address"])
        if isinstance(address, IPv4Address):
            fixed.append(address)
    pairs = tuple(
        AddressPair(pair["ip_address"], pair.get("mac_address") or raw.mac_address)
        for pair in raw.allowed_address_pairs or ()
    )
    return Port(
        id=raw.id,
        name=raw.name or "",
        network_id=raw.network_id,
        mac=raw.mac_address,
        fixed_ips=tuple(fixed),
        security_group_ids=tuple(raw.security_group_ids or ()),
        allowed_address_pairs=pairs,
        # None: the extension is off, and Neutron then filters every port.
        port_security=raw.is_port_security_enabled is not False,
    )


def _rule(raw: Any) -> Rule:
    return Rule(
        id=raw["id"],
        direction=raw["direction"],
        ethertype=raw.get("ethertype") or "IPv4",
        protocol=raw.get("protocol"),
        port_range_min=raw.get("port_range_min"),
        port_range_max=raw.get("port_range_max"),
        remote_ip_prefix=raw.get("remote_ip_prefix"),
        remote_group_id=raw.get("remote_group_id"),
    )


def read_state(conn: Any, networks: Sequence[str]) -> State:
    """The ports of `networks` (names or ids; none: every network) and the security groups
    around them."""
    network_ids = []
    for name in networks:
        network = conn.network.find_network(name, ignore_missing=True)
        if network is None:
            raise FirewallError(f"no network {name!r} visible to these credentials")
        network_ids.append(network.id)
    raw_ports = list(conn.network.ports())
    everything = [_port(raw) for raw in raw_ports]
    filtered = tuple(
        port
        for port, raw in zip(everything, raw_ports, strict=True)
        if (not networks or port.network_id in network_ids)
        and not (raw.device_owner or "").startswith("network:")
    )
    groups = {
        raw.id: SecurityGroup(
            raw.id, raw.name or "", tuple(_rule(r) for r in raw.security_group_rules or ())
        )
        for raw in conn.network.security_groups()
    }
    members = tuple(port for port in everything if port.security_group_ids)
    return State(filtered, groups, members)


def _in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def enable_br_netfilter(netns: str | None) -> None:
    for name in BR_NETFILTER:
        sysctl = f"net.bridge.{name}=1"
        subprocess.run(_in_netns(netns, ["sysctl", "-q", "-w", sysctl]), check=True, timeout=30)


def apply(ruleset: str, netns: str | None) -> None:
    """Load `ruleset` in one nft transaction (all of it or none of it)."""
    result = subprocess.run(
        _in_netns(netns, ["nft", "-f", "-"]),
        input=ruleset,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise FirewallError(f"nft refused the ruleset: {result.stderr.strip()}")


def remove(netns: str | None) -> None:
    """Delete our tables (the ports are then unfiltered)."""
    for family in ("bridge", "inet"):
        subprocess.run(
            _in_netns(netns, ["nft", "delete", "table", family, "calclab_sg"]),
            capture_output=True,
            timeout=30,
            check=False,
        )


def connect(cloud: str) -> Any:
    return openstack.connect(cloud=cloud)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sgfw", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cloud", required=True, help="a clouds.yaml entry")
    parser.add_argument(
        "--network", action="append", default=[], help="name or id (repeat; none: all networks)"
    )
    parser.add_argument("--netns", help="the namespace holding the taps (default: ours)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between reads")
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    parser.add_argument("--print", action="store_true", help="print the ruleset, load nothing")
    parser.add_argument("--save", type=Path, help="also write each loaded ruleset here")
    args = parser.parse_args(argv)

    conn = connect(args.cloud)
    loaded: str | None = None
    while True:
        try:
            state = read_state(conn, args.network)
            ruleset = render(state)
            if args.print:
                sys.stdout.write(ruleset)
                return 0
            if ruleset != loaded:
                if loaded is None:
                    enable_br_netfilter(args.netns)
                apply(ruleset, args.netns)
                loaded = ruleset
                if args.save:
                    args.save.write_text(ruleset)
                ports = ", ".join(f"{p.name or p.id} ({p.tap})" for p in state.ports)
                print(f"sgfw: loaded {len(state.ports)} ports: {ports}", flush=True)
        except (FirewallError, openstack.exceptions.SDKException) as error:
            print(f"sgfw: {error}", file=sys.stderr, flush=True)
            if args.once:
                return 1
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())

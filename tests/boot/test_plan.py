"""The data plane planned from the program's own topology (no root, no guests): what Neutron
would build, derived from lab/topology.py for both topologies."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from lab.config import load_config
from lab.topology import Topology, build_topology
from tools.dataplane.plan import EXTERNAL_SEGMENT, OUTSIDE, Plan, Route, guest_mac, plan_for


def _plan(topology: str) -> tuple[Topology, Plan]:
    built = build_topology(load_config({"topology": topology}, "student"))
    return built, plan_for(built)


def test_client_dhcp_carries_the_host_route_and_the_default_route() -> None:
    topology, plan = _plan("client")
    client = next(server for server in plan.dhcp if server.subnet == IPv4Network("192.168.1.0/24"))
    assert client.router == IPv4Address("192.168.1.254")
    # Neutron appends the default route: a client given option 121 ignores the router option.
    assert client.classless_routes == (
        Route(IPv4Network("192.168.2.0/24"), IPv4Address("192.168.1.253")),
        Route(IPv4Network("0.0.0.0/0"), IPv4Address("192.168.1.254")),
    )
    service = next(
        server for server in plan.dhcp if server.subnet == topology.subnet("service").cidr
    )
    assert service.router == IPv4Address("192.168.2.254")
    assert service.classless_routes == ()
    leases = {lease.hostname: lease.ip for server in plan.dhcp for lease in server.leases}
    assert leases == {node.role: node.ip for node in topology.nodes}


def test_client_routers_sit_where_the_topology_puts_them() -> None:
    topology, plan = _plan("client")
    gateway = plan.namespace("qrouter-gateway")
    inter = plan.namespace("qrouter-inter")
    assert {str(port.address) for port in inter.ports} == {"192.168.1.253/24", "192.168.2.254/24"}
    assert inter.forwarding
    assert not inter.routes, "the inter-subnet router has no way out, like the program's"
    assert {port.segment for port in gateway.ports} == {"client", EXTERNAL_SEGMENT}
    assert Route(IPv4Network("192.168.2.0/24"), IPv4Address("192.168.1.253")) in gateway.routes
    fip = plan.floating_ips["front"]
    assert any(str(fip) in rule for rule in gateway.nat_rules)
    assert str(fip) in {str(address.ip) for _, address in gateway.extra_addresses}
    dnat = [rule for rule in gateway.nat_rules if "DNAT" in rule]
    assert {rule[1] for rule in dnat} == {"PREROUTING", "OUTPUT"}
    assert all(rule[-1] == str(topology.front.ip) for rule in dnat)
    snat_sources = [rule[rule.index("-s") + 1] for rule in gateway.nat_rules if "SNAT" in rule]
    # the floating IP's own SNAT must come before the subnet-wide one, or it never matches
    assert snat_sources == [f"{topology.front.ip}/32", "192.168.1.0/24"]


def test_single_topology_has_one_subnet_one_router_and_no_host_routes() -> None:
    topology, plan = _plan("single")
    assert plan.segments == ("private", EXTERNAL_SEGMENT)
    assert [ns.key for ns in plan.namespaces] == [OUTSIDE, "qrouter-gateway", "qdhcp-private"]
    assert plan.dhcp[0].classless_routes == ()
    assert {nic.role: nic.ip for nic in plan.guests} == {n.role: n.ip for n in topology.nodes}


@pytest.mark.parametrize("topology", ["single", "client"])
def test_names_fit_linux_and_macs_are_unique(topology: str) -> None:
    _, plan = _plan(topology)
    peers = [port.peer for ns in plan.namespaces for port in ns.ports]
    assert len(peers) == len(set(peers)), "bridge-side names collide"
    macs = [nic.mac for nic in plan.guests]
    assert len(macs) == len(set(macs))
    assert guest_mac(IPv4Address("192.168.2.11")) == "fa:16:3e:a8:02:0b"


def test_external_network_must_not_overlap_a_subnet() -> None:
    topology, _ = _plan("client")
    with pytest.raises(ValueError, match="overlaps external"):
        plan_for(topology, IPv4Network("192.168.0.0/16"))

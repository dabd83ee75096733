"""The pure topology description both targets render."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from lab.config import load_config
from lab.topology import HostRoute, Node, Subnet, Topology, build_topology


def test_single_network_places_router_at_254_and_nodes_from_10() -> None:
    topology = build_topology(load_config({"topology": "single"}, "alice"))
    (private,) = topology.subnets
    assert private.cidr == IPv4Network("10.0.2.0/24")
    assert private.gateway_ip == IPv4Address("10.0.2.254")
    assert private.host_routes == ()
    (router,) = topology.routers
    assert router.external
    assert [(i.subnet, str(i.ip)) for i in router.interfaces] == [("private", "10.0.2.254")]
    assert {n.role: str(n.ip) for n in topology.nodes} == {
        "front": "10.0.2.10",
        "sum": "10.0.2.11",
        "sub": "10.0.2.12",
        "mul": "10.0.2.13",
        "div": "10.0.2.14",
    }


def test_client_topology_is_the_handouts_layout() -> None:
    topology = build_topology(load_config({"topology": "client"}, "alice"))
    client, service = topology.subnets
    assert (str(client.cidr), str(client.gateway_ip)) == ("192.168.1.0/24", "192.168.1.254")
    # The front end learns the way to the services by DHCP instead of `route add`.
    assert client.host_routes == (
        HostRoute(IPv4Network("192.168.2.0/24"), IPv4Address("192.168.1.253")),
    )
    # Replies from the services go back through the inter-subnet router.
    assert (str(service.cidr), str(service.gateway_ip)) == ("192.168.2.0/24", "192.168.2.254")
    gateway, inter = topology.routers
    assert gateway.external
    assert not inter.external
    assert [str(i.ip) for i in gateway.interfaces] == ["192.168.1.254"]
    assert [(i.subnet, str(i.ip)) for i in inter.interfaces] == [
        ("client", "192.168.1.253"),
        ("service", "192.168.2.254"),
    ]
    assert topology.front.subnet == "client"
    assert {n.subnet for n in topology.services} == {"service"}
    assert [n.role for n in topology.nodes if n.exposed] == ["front"]


def test_front_end_environment_points_at_every_service() -> None:
    topology = build_topology(load_config({"topology": "client"}, "alice"))
    env = topology.environment("front")
    assert env["CALC_PORT"] == "50000"
    assert env["CALC_SUM_URL"] == "http://192.168.2.11:50001"
    assert env["CALC_DIV_URL"] == "http://192.168.2.14:50004"
    assert "CALC_SUM_URL" not in topology.environment("sum")
    assert topology.environment("mul")["CALC_PORT"] == "50003"


def test_dhcp_pool_avoids_fixed_addresses() -> None:
    subnet = Subnet("s", IPv4Network("10.0.0.0/27"), IPv4Address("10.0.0.30"))
    first, last = subnet.dhcp_pool
    assert (str(first), str(last)) == ("10.0.0.16", "10.0.0.28")


def test_topology_refuses_two_owners_for_one_address() -> None:
    subnet = Subnet("s", IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.254"))
    nodes = (
        Node("front", "s", IPv4Address("10.0.0.10"), 50000, exposed=True),
        Node("sum", "s", IPv4Address("10.0.0.10"), 50001, exposed=False),
    )
    with pytest.raises(ValueError, match=r"both claim 10\.0\.0\.10"):
        Topology("t", (subnet,), (), nodes)

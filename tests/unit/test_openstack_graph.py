"""The OpenStack resource graph of both topologies, under Pulumi mocks.

Each test runs the whole program (`__main__.py`) and inspects what it declared: addresses,
routes, which ports are open to whom, the single floating IP, the user data.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.unit.program import EXTERNAL_NETWORK_ID, FLOATING_IP, Declared, Program, run

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPOFVePzrOpa7eDkuiuq+IG/Fpc6rGH7fq0i4kE4jaQC a@b"
SERVICE_PORTS = {"sum": 50001, "sub": 50002, "mul": 50003, "div": 50004}


@pytest.fixture(scope="module")
def client() -> Program:
    return run(
        {
            "target": "openstack",
            "topology": "client",
            "externalNetwork": "public",
            "externalNetworkId": "ext-uuid",
            "image": "debian-12",
            "flavor": "m1.tiny",
            "flavorByRole": {"front": "m1.small"},
            "sshPublicKey": SSH_KEY,
            "sshAllowedCidr": "198.51.100.0/24",
            "dnsNameservers": ["192.0.2.53"],
        },
        stack="alice",
    )


@pytest.fixture(scope="module")
def single() -> Program:
    return run(
        {
            "target": "openstack",
            "topology": "single",
            "externalNetwork": "public",
            "image": "debian-12",
            "flavor": "m1.tiny",
            "keyPair": "bob-laptop",
        },
        stack="bob",
    )


def subnet_by_cidr(program: Program, cidr: str) -> Declared:
    (subnet,) = [s for s in program.of_type(":Subnet") if s.inputs["cidr"] == cidr]
    return subnet


def router_ports(program: Program, router_name: str) -> dict[str, str]:
    """IP -> subnet id of every interface of a router."""
    router = program.named(router_name)
    ports = {}
    for interface in program.of_type(":RouterInterface"):
        if interface.inputs["routerId"] == router.id:
            port = program.by_id(interface.inputs["portId"])
            (fixed,) = port.inputs["fixedIps"]
            ports[fixed["ipAddress"]] = fixed["subnetId"]
    return ports


def ingress_rules(program: Program, group_name: str) -> list[dict[str, Any]]:
    group = program.named(group_name)
    return [
        rule.inputs
        for rule in program.of_type(":SecGroupRule")
        if rule.inputs["securityGroupId"] == group.id
    ]


# --- client topology -------------------------------------------------------------------------


def test_client_subnets_gateways_and_dhcp(client: Program) -> None:
    front_subnet = subnet_by_cidr(client, "192.168.1.0/24")
    service_subnet = subnet_by_cidr(client, "192.168.2.0/24")
    assert front_subnet.inputs["gatewayIp"] == "192.168.1.254"
    assert service_subnet.inputs["gatewayIp"] == "192.168.2.254"
    assert front_subnet.inputs["dnsNameservers"] == ["192.0.2.53"]
    assert front_subnet.inputs["allocationPools"] == [
        {"start": "192.168.1.16", "end": "192.168.1.252"}
    ]
    assert front_subnet.inputs["name"] == "alice-client"
    assert service_subnet.inputs["name"] == "alice-service"


def test_client_subnet_pushes_the_host_route_to_the_services(client: Program) -> None:
    (route,) = client.of_type(":SubnetRoute")
    assert route.inputs["subnetId"] == subnet_by_cidr(client, "192.168.1.0/24").id
    assert route.inputs["destinationCidr"] == "192.168.2.0/24"
    assert route.inputs["nextHop"] == "192.168.1.253"


def test_client_routers_sit_at_the_lab_addresses(client: Program) -> None:
    front_subnet = subnet_by_cidr(client, "192.168.1.0/24").id
    service_subnet = subnet_by_cidr(client, "192.168.2.0/24").id
    gateway = client.named("gateway-router-router")
    inter = client.named("inter-router-router")
    assert gateway.inputs["externalNetworkId"] == "ext-uuid"
    assert "externalNetworkId" not in inter.inputs  # no way out for the services
    assert router_ports(client, "gateway-router-router") == {"192.168.1.254": front_subnet}
    assert router_ports(client, "inter-router-router") == {
        "192.168.1.253": front_subnet,
        "192.168.2.254": service_subnet,
    }
    (extra,) = client.of_type(":RouterRoute")
    assert extra.inputs == {
        "routerId": gateway.id,
        "destinationCidr": "192.168.2.0/24",
        "nextHop": "192.168.1.253",
    }


def test_client_vms_get_fixed_addresses_on_their_subnets(client: Program) -> None:
    ports = {p.inputs["name"]: p.inputs for p in client.of_type(":Port")}
    assert ports["alice-front"]["fixedIps"][0]["ipAddress"] == "192.168.1.10"
    for index, role in enumerate(SERVICE_PORTS, start=11):
        fixed = ports[f"alice-{role}"]["fixedIps"][0]
        assert fixed["ipAddress"] == f"192.168.2.{index}"
        assert fixed["subnetId"] == subnet_by_cidr(client, "192.168.2.0/24").id


def test_front_end_is_open_to_the_world_on_50000_only(client: Program) -> None:
    rules = ingress_rules(client, "calculator-front-sg")
    world = [r for r in rules if r.get("remoteIpPrefix") == "0.0.0.0/0"]
    assert sorted((r["protocol"], r["portRangeMin"]) for r in world) == [
        ("icmp", 8),
        ("tcp", 50000),
    ]
    ssh = [r for r in rules if r["protocol"] == "tcp" and r["portRangeMin"] == 22]
    assert [r["remoteIpPrefix"] for r in ssh] == ["198.51.100.0/24"]


@pytest.mark.parametrize(("role", "port"), SERVICE_PORTS.items())
def test_each_service_port_is_open_only_to_the_front_end(
    client: Program, role: str, port: int
) -> None:
    front_group = client.named("calculator-front-sg")
    rules = ingress_rules(client, f"calculator-{role}-sg")
    assert all(r.get("remoteGroupId") == front_group.id for r in rules)
    assert all("remoteIpPrefix" not in r for r in rules)
    tcp_ports = sorted(r["portRangeMin"] for r in rules if r["protocol"] == "tcp")
    assert tcp_ports == [22, port]  # its own port, and SSH via the front end as jump host
    for rule in rules:
        assert rule["direction"] == "ingress"
        assert rule["portRangeMin"] == rule["portRangeMax"] or rule["protocol"] == "icmp"


def test_every_vm_port_carries_only_its_own_security_group(client: Program) -> None:
    for role in ("front", *SERVICE_PORTS):
        port = client.named(f"calculator-{role}-port")
        assert port.inputs["securityGroupIds"] == [client.named(f"calculator-{role}-sg").id]


def test_exactly_one_floating_ip_bound_to_the_front_end_port(client: Program) -> None:
    (floating_ip,) = client.of_type(":FloatingIp")
    (association,) = client.of_type(":FloatingIpAssociate")
    assert floating_ip.inputs["pool"] == "public"
    assert "calculator-lab:role=front" in floating_ip.inputs["tags"]
    assert association.inputs["portId"] == client.named("calculator-front-port").id
    assert association.inputs["floatingIp"] == FLOATING_IP


def test_instances_boot_from_their_port_with_the_configured_flavor(client: Program) -> None:
    instances = {i.inputs["name"]: i.inputs for i in client.of_type(":Instance")}
    assert set(instances) == {"alice-front", "alice-sum", "alice-sub", "alice-mul", "alice-div"}
    assert instances["alice-front"]["flavorName"] == "m1.small"  # the per-role override
    assert instances["alice-sum"]["flavorName"] == "m1.tiny"
    for name, instance in instances.items():
        assert instance["imageName"] == "debian-12"
        assert instance["keyPair"] == "alice-key"
        assert instance["networks"] == [{"port": client.named(f"calculator-{name[6:]}-port").id}]


def test_user_data_starts_the_right_role_with_the_service_addresses(client: Program) -> None:
    instances = {i.inputs["name"]: i.inputs for i in client.of_type(":Instance")}
    front = yaml.safe_load(instances["alice-front"]["userData"])
    (unit,) = [f for f in front["write_files"] if f["path"].endswith(".service")]
    assert unit["path"] == "/etc/systemd/system/calculator-front.service"
    assert "ExecStart=/usr/bin/python3 -m calculator front" in unit["content"]
    for role, port in SERVICE_PORTS.items():
        index = 11 + list(SERVICE_PORTS).index(role)
        expected = f"Environment=CALC_{role.upper()}_URL=http://192.168.2.{index}:{port}"
        assert expected in unit["content"]
    div = yaml.safe_load(instances["alice-div"]["userData"])
    (div_unit,) = [f for f in div["write_files"] if f["path"].endswith(".service")]
    assert "Environment=CALC_PORT=50004" in div_unit["content"]
    assert "CALC_SUM_URL" not in div_unit["content"]


def test_key_pair_is_created_from_the_public_key(client: Program) -> None:
    (key,) = client.of_type(":Keypair")
    assert key.inputs == {"name": "alice-key", "publicKey": SSH_KEY}


def test_every_physical_name_carries_the_student(client: Program) -> None:
    named = [r for r in client.resources if r.custom and "name" in r.inputs]
    assert len(named) > 20
    for resource in named:
        assert resource.inputs["name"].startswith("alice-"), resource.name


def test_every_resource_is_parented_to_a_component(client: Program) -> None:
    for resource in client.resources:
        if resource.custom and resource.type != "openstack:compute/keypair:Keypair":
            assert "calculator-lab:components:" in resource.parent, resource.name


def test_no_lookup_when_the_external_network_id_is_given(client: Program) -> None:
    assert client.invokes == []


def test_client_outputs(client: Program) -> None:
    assert client.outputs["calculatorUrl"] == f"http://{FLOATING_IP}:50000"
    assert client.outputs["frontendFloatingIp"] == FLOATING_IP
    assert client.outputs["floatingIps"] == {"alice-front": FLOATING_IP}
    assert client.outputs["privateIps"] == {
        "alice-front": "192.168.1.10",
        "alice-sum": "192.168.2.11",
        "alice-sub": "192.168.2.12",
        "alice-mul": "192.168.2.13",
        "alice-div": "192.168.2.14",
    }
    assert client.outputs["topology"] == "client"


# --- single topology -------------------------------------------------------------------------


def test_single_is_one_network_behind_one_router(single: Program) -> None:
    (subnet,) = single.of_type(":Subnet")
    assert (subnet.inputs["cidr"], subnet.inputs["gatewayIp"]) == ("10.0.2.0/24", "10.0.2.254")
    (router,) = single.of_type(":Router")
    # Without an id in config the external network is looked up by name (needs a live cloud).
    assert router.inputs["externalNetworkId"] == EXTERNAL_NETWORK_ID
    assert single.invokes == ["openstack:networking/getNetwork:getNetwork"]
    assert router_ports(single, "gateway-router-router") == {"10.0.2.254": subnet.id}
    assert single.of_type(":SubnetRoute") == []
    assert single.of_type(":RouterRoute") == []
    assert len(single.of_type(":FloatingIp")) == 1


def test_single_without_ssh_cidr_opens_no_ssh_at_all(single: Program) -> None:
    rules = [r.inputs for r in single.of_type(":SecGroupRule")]
    assert not [r for r in rules if r["protocol"] == "tcp" and r["portRangeMin"] == 22]
    assert single.of_type(":Keypair") == []
    for instance in single.of_type(":Instance"):
        assert instance.inputs["keyPair"] == "bob-laptop"


def test_single_outputs(single: Program) -> None:
    assert single.outputs["privateIps"]["bob-div"] == "10.0.2.14"
    assert single.outputs["topology"] == "single"


def test_bad_config_creates_nothing() -> None:
    import pulumi

    with pytest.raises(pulumi.RunError) as caught:
        run({"target": "openstack", "topology": "client", "serviceCidr": "192.168.1.0/25"})
    assert "calculator-lab:serviceCidr: 192.168.1.0/25 overlaps clientCidr" in str(caught.value)
    assert "calculator-lab:externalNetwork: is required" in str(caught.value)

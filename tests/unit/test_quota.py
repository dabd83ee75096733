"""The quota sums of lab/quota.py, against the topology model and against what the program
actually declares under Pulumi mocks (an independent count, by resource type)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from lab.config import load_config
from lab.quota import FlavorSize, Needs, flavors_by_role, stack_needs, total_needs
from lab.topology import build_topology
from tests.unit.program import run

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPOFVePzrOpa7eDkuiuq+IG/Fpc6rGH7fq0i4kE4jaQC a@b"
FLAVORS = {"m1.tiny": FlavorSize(1, 512), "m1.small": FlavorSize(2, 2048)}

CASES: dict[str, dict[str, Any]] = {
    "single, key pair, SSH closed": {"topology": "single", "keyPair": "laptop"},
    "single, public key, SSH open": {
        "topology": "single",
        "sshPublicKey": SSH_KEY,
        "sshAllowedCidr": "198.51.100.0/24",
    },
    "client, public key, SSH open, big front": {
        "topology": "client",
        "sshPublicKey": SSH_KEY,
        "sshAllowedCidr": "198.51.100.0/24",
        "flavorByRole": {"front": "m1.small"},
    },
    "client, no key": {"topology": "client"},
}


def needs_of(values: dict[str, Any], stack: str = "alice") -> Needs:
    config = load_config(values, stack)
    return stack_needs(config, build_topology(config), FLAVORS)


@pytest.mark.parametrize("case", CASES)
def test_needs_match_what_the_program_declares(case: str, openstack_config: dict[str, Any]) -> None:
    values = openstack_config | {"externalNetworkId": "ext-uuid"} | CASES[case]
    declared = Counter(
        r.type.rsplit(":", 1)[1] for r in run(values).resources if r.type.startswith("openstack:")
    )
    needs = needs_of(values)
    assert needs.instances == declared["Instance"]
    assert needs.networks == declared["Network"]
    assert needs.subnets == declared["Subnet"]
    assert needs.routers == declared["Router"]
    assert needs.router_interfaces == declared["RouterInterface"]
    assert needs.floating_ips == declared["FloatingIp"]
    assert needs.security_groups == declared["SecGroup"]
    assert needs.key_pairs == declared["Keypair"]
    # Neutron adds a DHCP port per subnet and two egress rules per group on top of ours.
    assert needs.ports == declared["Port"] + declared["Subnet"]
    assert needs.security_group_rules == declared["SecGroupRule"] + 2 * declared["SecGroup"]


def test_cores_and_ram_follow_each_roles_flavor(openstack_config: dict[str, Any]) -> None:
    values = openstack_config | CASES["client, public key, SSH open, big front"]
    config = load_config(values, "bob")
    assert flavors_by_role(config) == {
        "front": "m1.small",
        "sum": "m1.tiny",
        "sub": "m1.tiny",
        "mul": "m1.tiny",
        "div": "m1.tiny",
    }
    needs = needs_of(values)
    assert (needs.cores, needs.ram_mib) == (2 + 4 * 1, 2048 + 4 * 512)


def test_an_unknown_flavor_adds_no_cores(openstack_config: dict[str, Any]) -> None:
    needs = needs_of(openstack_config | {"flavorByRole": {"front": "m9.huge"}})
    assert (needs.instances, needs.cores, needs.ram_mib) == (5, 4, 4 * 512)


def test_the_single_topologys_counts(openstack_config: dict[str, Any]) -> None:
    needs = needs_of(openstack_config | {"sshAllowedCidr": "198.51.100.0/24", "keyPair": "k"})
    assert needs == Needs(
        instances=5,
        cores=5,
        ram_mib=5 * 512,
        key_pairs=0,
        networks=1,
        subnets=1,
        ports=5 + 1 + 1,
        routers=1,
        router_interfaces=1,
        floating_ips=1,
        security_groups=5,
        security_group_rules=5 * (3 + 2),
    )


def test_a_class_sums_its_stacks(openstack_config: dict[str, Any]) -> None:
    single = needs_of(openstack_config | CASES["single, key pair, SSH closed"], "ann")
    client = needs_of(openstack_config | CASES["client, no key"], "ben")
    total = total_needs([single, client, client])
    assert total.instances == 15
    assert total.routers == 1 + 2 + 2
    assert total.ports == single.ports + 2 * client.ports
    assert total_needs([]) == Needs()
    assert dict(total.items())["security_groups"] == 15

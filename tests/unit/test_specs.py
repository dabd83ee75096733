"""The specs check their own invariants when made, and the plans make every one of them."""

from __future__ import annotations

import dataclasses

import pytest

from lab.config import load_config
from lab.openstack_plan import plan_openstack, server_names
from lab.topology import build_topology
from specs.openstack import IngressRule

OPENSTACK = {
    "target": "openstack",
    "topology": "client",
    "externalNetwork": "public",
    "image": "debian-12",
    "flavor": "m1.small",
    "sshAllowedCidr": "203.0.113.7/32",
    "keyPair": "bob-key",
}


@pytest.mark.parametrize(
    ("from_cidr", "from_vm"), [(None, None), ("0.0.0.0/0", "front")], ids=["neither", "both"]
)
def test_a_rule_names_exactly_one_source(from_cidr: str | None, from_vm: str | None) -> None:
    with pytest.raises(ValueError, match="rule sum-app: give exactly one of"):
        IngressRule("sum-app", 50001, from_cidr=from_cidr, from_vm=from_vm)


def test_specs_are_frozen() -> None:
    rule = IngressRule("front-app", 50000, from_cidr="0.0.0.0/0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.port = 22  # type: ignore[misc]


def test_the_openstack_plan_takes_the_front_end_apart_and_rules_name_planned_vms() -> None:
    config = load_config(OPENSTACK, "bob")
    plan = plan_openstack(config, build_topology(config), "bob")
    assert plan.front.key == "front"
    assert [vm.key for vm in plan.services] == ["sum", "sub", "mul", "div"]
    keys = {plan.front.key, *(vm.key for vm in plan.services)}
    networks = {network.key for network in plan.networks}
    for vm in (plan.front, *plan.services):
        assert vm.subnet in networks
        assert all(rule.from_vm in keys for rule in vm.ingress if rule.from_vm is not None)
    for router in plan.routers:
        assert {i.subnet for i in router.interfaces} <= networks
        assert "calculator-lab:stack=bob" in router.tags


def test_each_vm_is_declared_with_the_trigger_of_its_server() -> None:
    config = load_config(OPENSTACK, "bob")
    topology = build_topology(config)
    names = server_names(config, topology)
    assert names == ["bob-front", "bob-sum", "bob-sub", "bob-mul", "bob-div"]
    plan = plan_openstack(config, topology, "bob", {name: f"t-{name}" for name in names})
    for vm in (plan.front, *plan.services):
        assert vm.replacement_trigger == f"t-{vm.physical_name}"
    # Without a reading of the cloud (offline, mocks) nothing is declared for replacement.
    unread = plan_openstack(config, topology, "bob")
    assert {vm.replacement_trigger for vm in (unread.front, *unread.services)} == {None}

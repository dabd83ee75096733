"""The lab's vocabulary has one home (lab/names.py); the calculator app keeps its own default
ports because guests run it without the program, so this pins the two together."""

from __future__ import annotations

from calculator.config import DEFAULT_PORTS

from lab.names import (
    PORTS,
    ROLES,
    SERVICE_PORT_RANGE,
    SERVICE_ROLES,
    bare_key,
    config_key,
    namespace_values,
    node_tags,
    physical_name,
)


def test_the_app_defaults_are_the_programs_ports() -> None:
    assert dict(DEFAULT_PORTS) == dict(PORTS)


def test_service_port_range_spans_exactly_the_services() -> None:
    low, high = SERVICE_PORT_RANGE
    assert sorted(PORTS[role] for role in SERVICE_ROLES) == list(range(low, high + 1))
    assert PORTS["front"] not in range(low, high + 1)


def test_roles_are_front_then_the_four_services() -> None:
    assert ROLES == ("front", "sum", "sub", "mul", "div")
    assert ROLES[1:] == SERVICE_ROLES


def test_names_and_tags_carry_the_student() -> None:
    assert physical_name("alice", "front") == "alice-front"
    assert node_tags("alice", "sum") == ["calculator-lab:role=sum", "calculator-lab:student=alice"]


def test_config_keys_gain_and_lose_the_project_prefix() -> None:
    assert config_key("image") == "calculator-lab:image"
    assert bare_key(config_key("flavorByRole.front")) == "flavorByRole.front"
    assert bare_key("openstack:cloud") is None
    assert bare_key("openstack:cloud", "openstack") == "cloud"
    config = {"calculator-lab:image": "debian-12", "openstack:cloud": "x", "calculator-lab": 1}
    assert namespace_values(config) == {"image": "debian-12"}
    assert namespace_values(config, "openstack") == {"cloud": "x"}

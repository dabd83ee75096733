"""The config model: defaults, and one message per kind of bad input, each naming its key."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.config import ConfigError, LabConfig, load_config

REPO = Path(__file__).resolve().parents[2]


def error_for(values: dict[str, Any], stack: str = "alice") -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(values, stack)
    return str(caught.value)


def test_defaults_are_the_local_docker_single_network() -> None:
    config = load_config({}, "Dev")
    assert config.target == "docker"
    assert config.topology == "single"
    assert config.student == "dev"  # the stack name, lowercased
    assert config.network_cidr == IPv4Network("10.0.2.0/24")
    assert config.client_cidr == IPv4Network("192.168.1.0/24")
    assert config.service_cidr == IPv4Network("192.168.2.0/24")


def test_structured_values_arrive_as_json_text(openstack_config: dict[str, Any]) -> None:
    openstack_config["flavorByRole"] = '{"front": "m1.small"}'
    openstack_config["dnsNameservers"] = '["192.0.2.53"]'
    config = load_config(openstack_config, "alice")
    assert config.flavor_by_role == {"front": "m1.small"}
    assert [str(ip) for ip in config.dns_nameservers] == ["192.0.2.53"]


def test_pulumi_yaml_declares_every_key_with_the_models_default() -> None:
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    model_keys = {field.alias or name for name, field in LabConfig.model_fields.items()}
    assert set(declared) == model_keys
    # Declared defaults, fed back through the model, give the model's own defaults.
    from_yaml = load_config({key: spec["default"] for key, spec in declared.items()}, "x")
    assert from_yaml == load_config({}, "x")
    for key, spec in declared.items():
        assert spec.get("description"), f"{key} has no description in Pulumi.yaml"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"topology": "mesh"}, "calculator-lab:topology: Input should be 'single' or 'client'"),
        ({"target": "aws"}, "calculator-lab:target: Input should be 'openstack' or 'docker'"),
        ({"networkCidr": "10.0.2/33"}, "calculator-lab:networkCidr: '10.0.2/33' is not a CIDR"),
        ({"networkCidr": "10.0.2.5/24"}, "has host bits set"),
        ({"networkCidr": "10.0.2.0/29"}, "calculator-lab:networkCidr: 10.0.2.0/29 is too small"),
        (
            {"clientCidr": "fd00::/64", "topology": "client"},
            "calculator-lab:clientCidr: 'fd00::/64' is IPv6",
        ),
        (
            {"topology": "client", "serviceCidr": "192.168.1.128/25"},
            "calculator-lab:serviceCidr: 192.168.1.128/25 overlaps clientCidr 192.168.1.0/24",
        ),
        (
            {"topology": "client", "interRouterServiceIp": "192.168.1.253"},
            "calculator-lab:interRouterServiceIp: 192.168.1.253 is outside its subnet 192.168.2.0/24",
        ),
        (
            {"gatewayRouterIp": "10.0.2.12"},
            "calculator-lab:gatewayRouterIp: 10.0.2.12 is reserved for the calculator's VMs",
        ),
        (
            {"gatewayRouterIp": "10.0.2.255"},
            "calculator-lab:gatewayRouterIp: 10.0.2.255 is the network or broadcast address",
        ),
        (
            {"topology": "client", "interRouterClientIp": "192.168.1.254"},
            "calculator-lab:interRouterClientIp: must differ from gatewayRouterIp",
        ),
        (
            {"target": "openstack"},
            "calculator-lab:externalNetwork: is required when target is openstack",
        ),
        (
            {"sshAllowedCidr": "10.1.1.1/16", "keyPair": "k"},
            "calculator-lab:sshAllowedCidr: '10.1.1.1/16' is not a CIDR network",
        ),
        (
            {"sshAllowedCidr": "anywhere", "keyPair": "k"},
            "calculator-lab:sshAllowedCidr: 'anywhere' is not a CIDR network",
        ),
        (
            {"sshAllowedCidr": "192.0.2.0/24"},
            "calculator-lab:sshAllowedCidr: opens SSH, but no key is set",
        ),
        (
            {"keyPair": "k", "sshPublicKey": "ssh-ed25519 AAAA me"},
            "calculator-lab:sshPublicKey: set either keyPair or sshPublicKey",
        ),
        (
            {"sshPublicKey": "hunter2"},
            "calculator-lab:sshPublicKey: expected an OpenSSH public key line",
        ),
        (
            {"student": "Alice Smith"},
            "calculator-lab:student: 'Alice Smith' must start with a lowercase letter",
        ),
        ({"topolgy": "client"}, "calculator-lab:topolgy: unknown key; did you mean 'topology'?"),
        ({"flavorByRole": {"frontend": "m1.small"}}, "calculator-lab:flavorByRole.frontend"),
        (
            {"dockerHostPort": "70000"},
            "calculator-lab:dockerHostPort: Input should be less than or equal to 65535",
        ),
    ],
)
def test_bad_values_name_the_key_and_the_fix(values: dict[str, Any], expected: str) -> None:
    message = error_for(values)
    assert message.startswith("invalid stack configuration:")
    assert expected in message


def test_every_missing_openstack_key_is_reported_at_once() -> None:
    message = error_for({"target": "openstack"})
    for key in ("externalNetwork", "image", "flavor"):
        assert f"calculator-lab:{key}: is required when target is openstack" in message


def test_an_empty_string_means_unset(openstack_config: dict[str, Any]) -> None:
    openstack_config |= {"keyPair": "", "gatewayRouterIp": "", "sshAllowedCidr": ""}
    config = load_config(openstack_config, "alice")
    assert config.key_pair is None
    assert config.gateway_router_ip is None
    assert config.ssh_allowed_cidr is None


def test_a_valid_client_configuration_with_custom_addresses(
    openstack_config: dict[str, Any],
) -> None:
    openstack_config |= {
        "topology": "client",
        "clientCidr": "172.16.10.0/24",
        "serviceCidr": "172.16.20.0/24",
        "interRouterClientIp": "172.16.10.200",
    }
    config = load_config(openstack_config, "alice")
    assert str(config.inter_router_client_ip) == "172.16.10.200"

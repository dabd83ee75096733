"""The lab's policy pack (policy/): its rules on hand-made inputs, then through the real engine.

The first half calls the rule functions with inputs shaped as the engine passes them (camelCase
keys, unknown values during a preview) and needs nothing but the venv. The second half, marked
``engine``, previews throwaway programs (tests/engine/fixtures/) with ``--policy-pack policy``:
a good stack passes, and each deliberately bad one is rejected, naming every violation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy import lab_policy as lp

from .conftest import (
    DUMMY_OPENSTACK,
    FIXTURES,
    MakeStack,
    Pulumi,
    Toolchain,
    docker_daemon_answers,
    docker_host,
)

# ---------------------------------------------------------------------------------------------
# Rules on hand-made inputs


def rule(**props: Any) -> Mapping[str, Any]:
    base = {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}
    return unknown_checking_proxy({**base, **props})


@pytest.mark.parametrize(
    "props",
    [
        {"portRangeMin": 50001, "portRangeMax": 50004, "remoteIpPrefix": "0.0.0.0/0"},
        {"portRangeMin": 50003, "portRangeMax": 50003, "remoteIpPrefix": "::/0"},
        {"portRangeMin": 50002, "portRangeMax": 50002},
        {"portRangeMin": 49000, "portRangeMax": 50001, "remoteIpPrefix": "0.0.0.0/0"},
        # No protocol and no ports: every port of every protocol.
        {"protocol": None, "remoteIpPrefix": "0.0.0.0/0"},
        {"protocol": "udp", "remoteIpPrefix": ""},
    ],
)
def test_service_port_open_to_world_is_a_violation(props: dict[str, Any]) -> None:
    message = lp.check_service_ports("services-world", rule(**props))
    assert message is not None
    assert "'services-world'" in message
    assert "remote_group_id" in message


@pytest.mark.parametrize(
    "props",
    [
        {"portRangeMin": 50001, "portRangeMax": 50001, "remoteGroupId": "sg-front"},
        {"portRangeMin": 50001, "portRangeMax": 50004, "remoteIpPrefix": "192.168.1.0/24"},
        # The front end's own port is meant to be public.
        {"portRangeMin": 50000, "portRangeMax": 50000, "remoteIpPrefix": "0.0.0.0/0"},
        {"protocol": "icmp", "remoteIpPrefix": "0.0.0.0/0"},
        {"direction": "egress", "portRangeMin": 50001, "portRangeMax": 50004},
        # During a preview the front group's id is not known yet; it is still a group.
        {"portRangeMin": 50001, "portRangeMax": 50001, "remoteGroupId": UNKNOWN_STRING_VALUE},
        # An unknown prefix cannot be judged in a preview; `pulumi up` checks it known.
        {"portRangeMin": 50001, "portRangeMax": 50001, "remoteIpPrefix": UNKNOWN_STRING_VALUE},
    ],
)
def test_service_port_rules_that_pass(props: dict[str, Any]) -> None:
    assert lp.check_service_ports("ok", rule(**props)) is None


@pytest.mark.parametrize(
    "props",
    [
        {"portRangeMin": 22, "portRangeMax": 22, "remoteIpPrefix": "0.0.0.0/0"},
        {"portRangeMin": 22, "portRangeMax": 22, "remoteIpPrefix": "::/0"},
        {"portRangeMin": 22, "portRangeMax": 22},
        {"portRangeMin": 20, "portRangeMax": 25, "remoteIpPrefix": "0.0.0.0/0"},
    ],
)
def test_ssh_from_anywhere(props: dict[str, Any]) -> None:
    message = lp.check_ssh("front-ssh", rule(**props), allow_anywhere=False)
    assert message is not None
    assert "'front-ssh'" in message
    assert "allowSshFromAnywhere" in message
    assert lp.check_ssh("front-ssh", rule(**props), allow_anywhere=True) is None


def test_ssh_from_one_address_passes() -> None:
    props = rule(portRangeMin=22, portRangeMax=22, remoteIpPrefix="203.0.113.7/32")
    assert lp.check_ssh("front-ssh", props, allow_anywhere=False) is None


def resource(
    resource_type: str,
    name: str,
    props: dict[str, Any] | None = None,
    depends: Mapping[str, Sequence[PolicyResource]] | None = None,
) -> PolicyResource:
    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    return PolicyResource(
        resource_type,
        unknown_checking_proxy(props or {}),
        f"urn:pulumi:test::lab::{resource_type}::{name}",
        name,
        opts,
        None,
        None,
        [],
        {k: list(v) for k, v in (depends or {}).items()},
    )


def tagged(role: str) -> dict[str, Any]:
    return {"tags": [f"calculator-lab:role={role}", "calculator-lab:student=test"]}


FRONT_PORT = resource(lp.PORT, "front-port", tagged("front"))
SUM_PORT = resource(lp.PORT, "sum-port", tagged("sum"))
NETWORK = resource("openstack:networking/network:Network", "net")


def fip(name: str, role: str = "front") -> PolicyResource:
    return resource(lp.FLOATING_IP, name, tagged(role))


def association(name: str, *ports: PolicyResource) -> PolicyResource:
    return resource(lp.FLOATING_IP_ASSOCIATE, name, {"portId": "x"}, {"portId": ports})


def messages(violations: Sequence[lp.Violation]) -> str:
    return "\n".join(v.message for v in violations)


def test_one_floating_ip_on_the_front_port_passes() -> None:
    stack = [NETWORK, FRONT_PORT, SUM_PORT, fip("front-fip"), association("a", FRONT_PORT)]
    assert lp.check_floating_ips(stack) == []


def test_two_floating_ips_are_a_violation() -> None:
    stack = [FRONT_PORT, SUM_PORT, fip("front-fip"), fip("sum-fip", "sum")]
    violations = lp.check_floating_ips(stack)
    text = messages(violations)
    assert "2 floating IPs" in text
    assert "'front-fip'" in text
    assert "'sum-fip'" in text
    # The second one is also tagged for a role that must not be public.
    assert "role 'sum'" in text


def test_no_floating_ip_in_an_openstack_stack_is_a_violation() -> None:
    assert "0 floating IPs" in messages(lp.check_floating_ips([NETWORK, FRONT_PORT]))


def test_floating_ip_on_a_service_port_is_a_violation() -> None:
    stack = [FRONT_PORT, SUM_PORT, fip("front-fip"), association("front-fip-assoc", SUM_PORT)]
    violations = lp.check_floating_ips(stack)
    assert len(violations) == 1
    assert violations[0].urn is not None
    assert violations[0].urn.endswith("::front-fip-assoc")
    assert "'sum-port'" in violations[0].message
    assert "role 'sum'" in violations[0].message


def test_floating_ip_on_a_port_id_from_nowhere_is_a_violation() -> None:
    stack = [FRONT_PORT, fip("front-fip"), association("front-fip-assoc")]
    assert "takes its port_id from no" in messages(lp.check_floating_ips(stack))


def test_unknown_tags_are_not_judged() -> None:
    port = resource(lp.PORT, "front-port", {"tags": UNKNOWN_ARRAY_VALUE})
    stack = [port, fip("front-fip"), association("a", port)]
    assert lp.check_floating_ips(stack) == []


def test_floating_ip_rule_ignores_stacks_without_openstack() -> None:
    assert lp.check_floating_ips([resource(lp.CONTAINER, "front")]) == []


def container(name: str, role: str, publishes: bool, **extra: Any) -> PolicyResource:
    props: dict[str, Any] = {
        "image": "busybox",
        "labels": [{"label": "calculator-lab.role", "value": role}],
        **extra,
    }
    if publishes:
        props["ports"] = [{"internal": 50000, "external": 50000, "ip": "127.0.0.1"}]
    return resource(lp.CONTAINER, name, props)


def test_only_the_front_container_publishing_passes() -> None:
    stack = [container("front", "front", True), container("sum", "sum", False)]
    assert lp.check_published_containers(stack) == []


def test_two_publishing_containers_are_a_violation() -> None:
    stack = [container("front", "front", True), container("sum", "sum", True)]
    text = messages(lp.check_published_containers(stack))
    assert "2 containers publish ports" in text
    assert "'front'" in text
    assert "'sum'" in text
    assert "container 'sum' (role 'sum') publishes ports" in text


def test_a_service_publishing_instead_of_the_front_is_a_violation() -> None:
    stack = [container("front", "front", False), container("sum", "sum", True)]
    text = messages(lp.check_published_containers(stack))
    assert "container 'sum' (role 'sum') publishes ports" in text


def test_no_publishing_container_is_a_violation() -> None:
    stack = [container("front", "front", False)]
    assert "0 containers publish ports" in messages(lp.check_published_containers(stack))


def test_privileged_container() -> None:
    message = lp.check_privileged("sum", unknown_checking_proxy({"privileged": True}))
    assert message is not None
    assert "'sum'" in message
    assert lp.check_privileged("sum", unknown_checking_proxy({"privileged": False})) is None
    assert lp.check_privileged("sum", unknown_checking_proxy({})) is None


def test_every_policy_is_mandatory_and_named_once() -> None:
    policies = lp.policies()
    names = [p.name for p in policies]
    assert len(set(names)) == len(names) == 5
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in policies)


def test_ssh_policy_reads_its_config() -> None:
    ssh = next(p for p in lp.policies() if p.name == "ssh-not-from-anywhere")
    assert isinstance(ssh, ResourceValidationPolicy)
    assert ssh.config_schema is not None
    assert lp.SSH_CONFIG_KEY in ssh.config_schema.properties


# ---------------------------------------------------------------------------------------------
# Through the engine

OPENSTACK_PROGRAM = FIXTURES / "openstack_lab"
DOCKER_PROGRAM = FIXTURES / "docker_lab"
POLICY_FAILED = "mandatory"


@pytest.fixture
def openstack_cli(toolchain: Toolchain, pulumi_cli: Pulumi) -> Pulumi:
    toolchain.require("openstack")
    pulumi_cli.extra_env.update(DUMMY_OPENSTACK)
    return pulumi_cli


@pytest.fixture
def docker_cli(toolchain: Toolchain, pulumi_cli: Pulumi) -> Pulumi:
    toolchain.require("docker")
    host = docker_host()
    if not docker_daemon_answers(host):
        pytest.skip(f"no Docker daemon answers at {host} (start tools/docker-engine)")
    pulumi_cli.extra_env["DOCKER_HOST"] = host
    return pulumi_cli


@pytest.mark.engine
def test_good_openstack_stack_passes_the_policies(
    openstack_cli: Pulumi, make_stack: MakeStack
) -> None:
    result = make_stack(OPENSTACK_PROGRAM).preview_with_policy()
    assert result.code == 0, result.describe()
    assert "openstack:networking/floatingIp:FloatingIp" in result.output
    assert POLICY_FAILED not in result.output


@pytest.mark.engine
def test_bad_openstack_stack_is_rejected_naming_each_violation(
    openstack_cli: Pulumi, make_stack: MakeStack
) -> None:
    stack = make_stack(
        OPENSTACK_PROGRAM,
        config={
            "badServicePorts": "true",
            "sshCidr": "0.0.0.0/0",
            "extraFloatingIp": "true",
            "floatingIpOn": "sum",
        },
    )
    result = stack.preview_with_policy()
    assert result.code != 0, result.describe()
    out = result.output
    for expected in (
        "service-ports-not-public",
        "'services-world'",
        "'sub-app-no-remote'",
        "ssh-not-from-anywhere",
        "'front-ssh'",
        "single-floating-ip-on-front",
        "2 floating IPs",
        "'sum-fip'",
        "floating IP association 'front-fip-association'",
    ):
        assert expected in out, f"{expected!r} missing from:\n{result.describe()}"


@pytest.mark.engine
def test_ssh_from_anywhere_passes_only_when_configured(
    openstack_cli: Pulumi, make_stack: MakeStack
) -> None:
    stack = make_stack(OPENSTACK_PROGRAM, config={"sshCidr": "0.0.0.0/0"})
    refused = stack.preview_with_policy()
    assert refused.code != 0, refused.describe()
    assert "ssh-not-from-anywhere" in refused.output
    allowed = stack.preview_with_policy(
        policy_config={"ssh-not-from-anywhere": {lp.SSH_CONFIG_KEY: True}}
    )
    assert allowed.code == 0, allowed.describe()


@pytest.mark.engine
@pytest.mark.docker
def test_good_docker_stack_passes_the_policies(docker_cli: Pulumi, make_stack: MakeStack) -> None:
    result = make_stack(DOCKER_PROGRAM).preview_with_policy()
    assert result.code == 0, result.describe()
    assert POLICY_FAILED not in result.output


@pytest.mark.engine
@pytest.mark.docker
def test_bad_docker_stack_is_rejected(docker_cli: Pulumi, make_stack: MakeStack) -> None:
    stack = make_stack(DOCKER_PROGRAM, config={"servicePublishes": "true", "privileged": "true"})
    result = stack.preview_with_policy()
    assert result.code != 0, result.describe()
    for expected in (
        "single-published-container-is-front",
        "2 containers publish ports",
        "no-privileged-container",
        "container 'sum' runs privileged",
    ):
        assert expected in result.output, f"{expected!r} missing from:\n{result.describe()}"


def test_fixture_programs_exist() -> None:
    # Guards the engine tests above against a moved fixture turning into a silent skip.
    for program in (OPENSTACK_PROGRAM, DOCKER_PROGRAM):
        assert (program / "__main__.py").is_file(), program
    assert Path(lp.__file__).parent.joinpath("PulumiPolicy.yaml").is_file()

"""The `sshCommands` output: how a student reaches each VM (the front end is the jump host)."""

from __future__ import annotations

from typing import Any

from tests.unit.program import FLOATING_IP, run


def test_openstack_stacks_output_one_ssh_command_per_vm(openstack_config: dict[str, Any]) -> None:
    program = run(openstack_config | {"topology": "client", "sshUser": "ubuntu"}, stack="carol")
    assert program.outputs["sshCommands"] == {
        "carol-front": f"ssh ubuntu@{FLOATING_IP}",
        "carol-sum": f"ssh -J ubuntu@{FLOATING_IP} ubuntu@192.168.2.11",
        "carol-sub": f"ssh -J ubuntu@{FLOATING_IP} ubuntu@192.168.2.12",
        "carol-mul": f"ssh -J ubuntu@{FLOATING_IP} ubuntu@192.168.2.13",
        "carol-div": f"ssh -J ubuntu@{FLOATING_IP} ubuntu@192.168.2.14",
    }


def test_docker_stacks_have_no_ssh() -> None:
    assert "sshCommands" not in run({"target": "docker"}, stack="dev").outputs

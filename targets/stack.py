"""The program's entry point: read config once, validate it, render the chosen target."""

from __future__ import annotations

from typing import Any

import pulumi

from lab.config import PROJECT, ConfigError, LabConfig, load_config
from lab.topology import build_topology
from targets.config_source import read_namespace
from targets.outputs import StackOutputs
from targets.preflight_run import run_preflight


def read_project_config() -> dict[str, Any]:
    """Every `calculator-lab:*` value of the stack, keyed without the project prefix."""
    return read_namespace(PROJECT)


def validated_config() -> LabConfig:
    try:
        return load_config(read_project_config(), pulumi.get_stack())
    except ConfigError as err:
        # RunError: Pulumi prints the message alone, without a Python traceback.
        raise pulumi.RunError(str(err)) from None


def main() -> None:
    config = validated_config()
    seen = run_preflight(config)  # the cloud's side of validation, before any resource exists
    topology = build_topology(config)
    outputs: StackOutputs
    if config.target == "openstack":
        # Imported on demand: each target pulls in a large provider SDK the other never needs.
        from targets.openstack import deploy_openstack

        outputs = deploy_openstack(config, topology, seen)
    else:
        from targets.docker import deploy_docker

        outputs = deploy_docker(config, topology)
    outputs.export(
        topology.name,
        config.target,
        ssh_user=config.ssh_user if config.target == "openstack" else None,
    )

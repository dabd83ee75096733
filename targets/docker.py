"""The Docker target: the plan's specs (lab/docker_plan.py) handed to the components.

The calculator image, the networks and the containers; this module only wires what Pulumi
creates (the image's id, the networks' names) from one component into the next.
"""

from __future__ import annotations

import os
import uuid

import pulumi
from pulumi.runtime import mocks, settings

from components.calculator_containers import (
    CalculatorContainers,
    CalculatorContainersArgs,
    CalculatorImage,
    LabNetworks,
)
from lab.config import LabConfig
from lab.docker_plan import DockerPlan, containers, plan_docker, with_triggers
from lab.replacement import replacement_triggers
from lab.topology import Topology
from preflight.containers import DEFAULT_HOST, read_containers
from targets.config_source import read_namespace
from targets.outputs import StackOutputs


def reachable_host(published_on: str) -> str:
    """Where a browser on this machine reaches a port published on `published_on`: a port
    published on every address (0.0.0.0) is reached through loopback."""
    return "127.0.0.1" if published_on == "0.0.0.0" else published_on  # noqa: S104


def deploy_docker(config: LabConfig, topology: Topology) -> StackOutputs:
    plan = _triggered(plan_docker(config, topology), config.student)
    image = CalculatorImage("calculator-image", plan.image)
    networks = LabNetworks("networks", plan.networks)
    containers = CalculatorContainers(
        "calculator",
        CalculatorContainersArgs(
            routers=plan.routers,
            front=plan.front,
            services=plan.services,
            published=plan.published,
            image_id=image.image_id,
            networks=networks.names,
            public_network=networks.public_name,
        ),
    )
    port = plan.published.external
    return StackOutputs(
        calculator_url=containers.frontend_address.apply(
            lambda address: f"http://{reachable_host(address)}:{port}"
        ),
        frontend_address=containers.frontend_address,
        floating_ips=containers.floating_ips,
        private_ips=containers.private_ips,
    )


def _triggered(plan: DockerPlan, student: str) -> DockerPlan:
    """The plan with a replacement trigger for each container, from one listing of the
    engine's: a container stopped or removed out of band gets a new one (lab/replacement.py),
    so a plain `up` replaces it without refreshing the stack."""
    if isinstance(settings.get_monitor(), mocks.MockMonitor):
        return plan  # Pulumi's mocks: no engine to read
    # Where the provider looks: DOCKER_HOST, else `docker:host`, else the local socket.
    host = os.environ.get("DOCKER_HOST") or str(read_namespace("docker").get("host") or "")
    host = host or DEFAULT_HOST
    try:
        seen = read_containers(host, student)
    except (OSError, ValueError) as err:
        raise pulumi.RunError(f"the Docker engine at {host} cannot be read: {err}") from None
    if seen is None:
        pulumi.log.info(f"containers not read at {host}: one stopped or removed is not replaced")
        return plan
    names = [spec.name for spec in containers(plan)]
    return with_triggers(plan, replacement_triggers(names, seen, lambda: uuid.uuid4().hex))

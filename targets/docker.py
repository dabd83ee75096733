"""The Docker target: the plan's specs (lab/docker_plan.py) handed to the components.

The calculator image, the networks and the containers; this module only wires what Pulumi
creates (the image's id, the networks' names) from one component into the next.
"""

from __future__ import annotations

from components.calculator_containers import (
    CalculatorContainers,
    CalculatorContainersArgs,
    CalculatorImage,
    LabNetworks,
)
from lab.config import LabConfig
from lab.docker_plan import plan_docker
from lab.topology import Topology
from targets.outputs import StackOutputs


def reachable_host(published_on: str) -> str:
    """Where a browser on this machine reaches a port published on `published_on`: a port
    published on every address (0.0.0.0) is reached through loopback."""
    return "127.0.0.1" if published_on == "0.0.0.0" else published_on  # noqa: S104


def deploy_docker(config: LabConfig, topology: Topology) -> StackOutputs:
    plan = plan_docker(config, topology)
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

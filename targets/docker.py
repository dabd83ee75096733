"""The Docker target: the model's Docker plan (lab/docker_plan.py) handed to the components.

The mirror image of targets/openstack.py: the plan says what every network and container is;
this module builds the calculator image and translates the plan into the components' specs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from components.calculator_containers import (
    BridgeSpec,
    CalculatorContainers,
    CalculatorContainersArgs,
    CalculatorImage,
    CalculatorImageArgs,
    ContainerSpec,
    LabNetworks,
    LabNetworksArgs,
    PublishedPort,
)
from lab.cloud_init import APP_DIR, AppFile, app_files
from lab.config import LabConfig
from lab.docker_plan import ContainerPlan, plan_docker
from lab.names import physical_name
from lab.topology import Topology
from targets.outputs import StackOutputs

# Build recipe files: not shipped into the image, but they change what gets built.
RECIPE_FILES = ("Dockerfile", ".dockerignore")
IMAGE_REPOSITORY = "calculator-lab/calculator"


def image_tag(files: tuple[AppFile, ...], recipe: dict[str, bytes], base_image: str) -> str:
    """A tag that changes whenever the image's content would: sources, recipe or base image.

    Tagging by content (not `latest`) makes a rebuild a replacement with a new name, so the
    old image's deletion can never remove the new one.
    """
    digest = hashlib.sha256()
    for name, content in sorted(recipe.items()):
        digest.update(f"recipe:{name}:{len(content)}\n".encode())
        digest.update(content)
    for app_file in files:
        digest.update(f"file:{app_file.relative_path}:{len(app_file.content)}\n".encode())
        digest.update(app_file.content)
    digest.update(f"base:{base_image}\n".encode())
    return digest.hexdigest()[:16]


def image_name(student: str, tag: str) -> str:
    # One repository per student, so two stacks on one engine never touch each other's image.
    return f"{physical_name(IMAGE_REPOSITORY, student)}:{tag}"


def build_context(app_dir: Path = APP_DIR, cwd: Path | None = None) -> str:
    """The build context as the engine's client sees it.

    Relative to the project directory when it is inside it (Pulumi runs program and providers
    there), so the stack's state does not depend on where the checkout lives.
    """
    here = (cwd or Path.cwd()).resolve()
    try:
        return app_dir.resolve().relative_to(here).as_posix()
    except ValueError:
        return os.fspath(app_dir.resolve())


def reachable_host(published_on: str) -> str:
    """Where a browser on this machine reaches a port published on `published_on`: a port
    published on every address (0.0.0.0) is reached through loopback."""
    return "127.0.0.1" if published_on == "0.0.0.0" else published_on  # noqa: S104


def deploy_docker(config: LabConfig, topology: Topology) -> StackOutputs:
    plan = plan_docker(config, topology)
    recipe = {name: (APP_DIR / name).read_bytes() for name in RECIPE_FILES}
    tag = image_tag(app_files(), recipe, config.docker_base_image)

    image = CalculatorImage(
        "calculator-image",
        CalculatorImageArgs(
            image_name=image_name(config.student, tag),
            context=build_context(),
            base_image=config.docker_base_image,
            labels=plan.labels,
        ),
    )
    networks = LabNetworks(
        "networks",
        LabNetworksArgs(
            networks=[
                BridgeSpec(n.key, n.name, n.cidr, n.gateway, n.internal) for n in plan.networks
            ],
            public_name=plan.public_network,
            labels=plan.labels,
        ),
    )
    containers = CalculatorContainers(
        "calculator",
        CalculatorContainersArgs(
            routers=[_container_spec(c) for c in plan.routers],
            nodes=[_container_spec(c) for c in plan.nodes],
            image_id=image.image_id,
            networks=networks.names,
            public_network=networks.public_name,
        ),
    )
    port = config.docker_host_port
    return StackOutputs(
        calculator_url=containers.frontend_address.apply(
            lambda address: f"http://{reachable_host(address)}:{port}"
        ),
        frontend_address=containers.frontend_address,
        floating_ips=containers.floating_ips,
        private_ips=containers.private_ips,
    )


def _container_spec(plan: ContainerPlan) -> ContainerSpec:
    published = plan.published
    return ContainerSpec(
        key=plan.key,
        name=plan.name,
        hostname=plan.hostname,
        command=plan.command,
        user=plan.user,
        env=plan.env,
        attachments=plan.attachments,
        health=plan.health,
        labels=plan.labels,
        capabilities=plan.capabilities,
        sysctls=plan.sysctls,
        published=(
            PublishedPort(published.internal, published.external, published.host_address)
            if published is not None
            else None
        ),
        after_routers=plan.after_routers,
        image=plan.image,
    )

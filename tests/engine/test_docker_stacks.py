"""The repository's Docker stacks through the real engine: `pulumi up`, use, re-run, `destroy`.

For each of Pulumi.dev.yaml (client topology) and Pulumi.dev-single.yaml (single), a copy of
the program deploys on the local Docker engine with the local base image, and then:
`(5+6)*2` answers 22 through `calculatorUrl`; the services are closed to the host (no published
port, no host address on their bridge, no host route through any of this stack's bridges) and
work through the front end; a second `pulumi up` changes nothing; `pulumi destroy` leaves no
container, network or image of the stack. Times of each step are printed (`pytest -s`).

Traffic goes only to 127.0.0.1 and, from inside containers, to this stack's containers.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import docker_client
from tests.docker_client import BASE_IMAGE, STUDENT_LABEL, Docker

from .conftest import Pulumi, Stack, Toolchain
from .repo_program import copy_program

pytestmark = [pytest.mark.engine, pytest.mark.docker]

# Building the image and waiting for five healthy containers on a loaded 2-core machine.
UP_TIMEOUT = 600.0


def _leftovers(docker: Docker, student: str) -> dict[str, list[str]]:
    """What the engine still holds of the stack deployed for `student`."""
    return {
        **docker.labelled(f"{STUDENT_LABEL}={student}"),
        "images": docker(
            "images", "-q", "--filter", f"reference=calculator-lab/calculator-{student}"
        ).stdout.split(),
    }


@dataclass
class Deployment:
    stack: Stack
    student: str
    outputs: dict[str, Any]
    times: dict[str, float]


@pytest.fixture(params=["dev", "dev-single"])
def deployment(
    request: pytest.FixtureRequest, toolchain: Toolchain, tmp_path: Path
) -> Iterator[tuple[Deployment, Docker]]:
    toolchain.require("docker")
    docker = docker_client.connect()
    # Stricter than require_base_image, which skips outside CI: here a daemon that answers
    # without the base image has always counted as a broken setup.
    if not docker.has_image(BASE_IMAGE):
        pytest.fail(f"base image {BASE_IMAGE} missing (tools/docker-engine base-image)")

    stack_name: str = request.param
    workdir = copy_program(tmp_path / "program", (stack_name,))
    backend = tmp_path / "backend"
    backend.mkdir()
    pulumi = Pulumi(toolchain, backend, extra_env={"DOCKER_HOST": docker.host})
    pulumi("stack", "init", stack_name, "--secrets-provider", "passphrase", cwd=workdir, check=True)
    stack = Stack(pulumi, stack_name, workdir)
    # A student id of its own and a free port, so a developer's own `dev` stack is untouched.
    student = f"engine-{uuid.uuid4().hex[:6]}"
    for key, value in (
        ("student", student),
        ("dockerBaseImage", BASE_IMAGE),
        ("dockerHostPort", str(docker_client.free_port())),
    ):
        stack.run("config", "set", f"calculator-lab:{key}", value, check=True)

    up = stack.run("up", "--yes", "--skip-preview", timeout=UP_TIMEOUT)
    try:
        assert up.code == 0, up.describe()
        outputs = json.loads(stack.run("stack", "output", "--json", check=True).stdout)
        yield Deployment(stack, student, outputs, {"up": up.seconds}), docker
    finally:
        # Whatever happened above, the engine must not keep this stack's objects.
        destroy = stack.run("destroy", "--yes", "--skip-preview", timeout=UP_TIMEOUT)
        print(f"\n{stack_name}: up {up.seconds:.1f}s, destroy {destroy.seconds:.1f}s")
        assert destroy.code == 0, destroy.describe()
        assert _leftovers(docker, student) == {"containers": [], "networks": [], "images": []}


def _post(url: str, body: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    request.add_header("Content-Type", "text/plain")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode().strip()


def test_docker_stack_lifecycle(deployment: tuple[Deployment, Docker]) -> None:
    deployed, docker = deployment
    outputs, student = deployed.outputs, deployed.student
    url = outputs["calculatorUrl"]
    assert url.startswith("http://127.0.0.1:")
    assert outputs["frontendFloatingIp"] == "127.0.0.1"
    assert outputs["floatingIps"] == {f"{student}-front": "127.0.0.1"}
    assert outputs["target"] == "docker"
    private_ips: dict[str, str] = outputs["privateIps"]
    assert set(private_ips) == {
        f"{student}-{role}" for role in ("front", "sum", "sub", "mul", "div")
    }

    # The calculation goes host -> front end -> (router) -> services -> back.
    started = time.monotonic()
    assert _post(url + "/", "(5+6)*2") == (200, "22")
    first_answer = time.monotonic() - started

    # Every container is where the topology put it.
    infos = {c["Name"].lstrip("/"): c for c in docker.inspect(*private_ips)}
    for name, ip in private_ips.items():
        addresses = {
            net["IPAddress"] for net in infos[name]["NetworkSettings"]["Networks"].values()
        }
        assert ip in addresses, f"{name} is not at {ip}: {addresses}"

    # The services are closed to the host: nothing published, no host address on the lab
    # bridges, and the host's route to each service never enters one of this stack's bridges.
    # (Structural only: no packet is sent to a service address from the host.)
    network_ids = docker.labelled(f"{STUDENT_LABEL}={student}")["networks"]
    networks = json.loads(docker("network", "inspect", *network_ids).stdout)
    bridges = {f"br-{net['Id'][:12]}": net for net in networks}
    for bridge, net in bridges.items():
        if net["Name"] == f"{student}-public":
            continue
        assert docker_client.host_ipv4_addresses(bridge) == [], (
            f"host has an address on {net['Name']}"
        )
    for name, ip in private_ips.items():
        if name == f"{student}-front":
            continue
        assert not infos[name]["HostConfig"]["PortBindings"], f"{name} publishes a port"
        device = docker_client.host_route_device(ip)
        assert device not in bridges, f"the host reaches {name} through {device}"
    front_ports = infos[f"{student}-front"]["HostConfig"]["PortBindings"]
    assert list(front_ports) == ["50000/tcp"]
    assert front_ports["50000/tcp"][0]["HostIp"] == "127.0.0.1"

    # A second `pulumi up` finds nothing to do, even after reading the engine's state back.
    again = deployed.stack.run("up", "--yes", "--expect-no-changes", timeout=UP_TIMEOUT)
    assert again.code == 0, again.describe()
    refreshed = deployed.stack.run("preview", "--refresh", "--expect-no-changes")
    assert refreshed.code == 0, refreshed.describe()
    print(
        f"\n{deployed.stack.name}: first answer {first_answer * 1000:.0f} ms,"
        f" second up {again.seconds:.1f}s, refresh+preview {refreshed.seconds:.1f}s"
    )

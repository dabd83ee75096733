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
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import (
    REPO,
    VENV,
    Pulumi,
    Stack,
    Toolchain,
    docker_daemon_answers,
    docker_host,
)

pytestmark = [pytest.mark.engine, pytest.mark.docker]

BASE_IMAGE = os.environ.get("CALCLAB_DOCKER_BASE_IMAGE", "calculator-lab/base:bookworm")
# What the program needs at run time, copied so no stack file or state lands in the checkout.
PROGRAM_PATHS = ("__main__.py", "lab", "components", "apps/calculator")
# Building the image and waiting for five healthy containers on a loaded 2-core machine.
UP_TIMEOUT = 600.0


def _docker_cli() -> str:
    # Debian's client matches Debian's daemon.
    for candidate in ("/usr/bin/docker", "/usr/local/bin/docker"):
        if os.access(candidate, os.X_OK):
            return candidate
    return "docker"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Docker:
    host: str
    cli: str

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            [self.cli, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "DOCKER_HOST": self.host},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def inspect(self, *names: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self("inspect", *names))
        return result

    def leftovers(self, student: str) -> dict[str, list[str]]:
        label = f"label=calculator-lab.student={student}"
        return {
            "containers": self("ps", "-aq", "--filter", label).split(),
            "networks": self("network", "ls", "-q", "--filter", label).split(),
            "images": self(
                "images", "-q", "--filter", f"reference=calculator-lab/calculator-{student}"
            ).split(),
        }


def _copy_program(source_stack: str, workdir: Path) -> None:
    for relative in PROGRAM_PATHS:
        source = REPO / relative
        target = workdir / relative
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    # The copy runs elsewhere, so the project's relative virtualenv must become absolute.
    project["runtime"]["options"]["virtualenv"] = str(VENV)
    (workdir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    shutil.copy2(REPO / f"Pulumi.{source_stack}.yaml", workdir / f"Pulumi.{source_stack}.yaml")


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
    host = docker_host()
    if not docker_daemon_answers(host):
        message = f"no Docker daemon answers on {host} (tools/docker-engine start)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    docker = Docker(host, _docker_cli())
    if not docker("image", "ls", "-q", BASE_IMAGE).strip():
        pytest.fail(f"base image {BASE_IMAGE} missing (tools/docker-engine base-image)")

    stack_name: str = request.param
    workdir = tmp_path / "program"
    _copy_program(stack_name, workdir)
    backend = tmp_path / "backend"
    backend.mkdir()
    pulumi = Pulumi(toolchain, backend, extra_env={"DOCKER_HOST": host})
    pulumi("stack", "init", stack_name, "--secrets-provider", "passphrase", cwd=workdir, check=True)
    stack = Stack(pulumi, stack_name, workdir)
    # A student id of its own and a free port, so a developer's own `dev` stack is untouched.
    student = f"engine-{uuid.uuid4().hex[:6]}"
    for key, value in (
        ("student", student),
        ("dockerBaseImage", BASE_IMAGE),
        ("dockerHostPort", str(_free_port())),
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
        assert docker.leftovers(student) == {"containers": [], "networks": [], "images": []}


def _bridge(docker: Docker, network: str) -> str:
    (info,) = json.loads(docker("network", "inspect", network))
    network_id: str = info["Id"]
    return f"br-{network_id[:12]}"


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
    networks = json.loads(docker("network", "inspect", *docker.leftovers(student)["networks"]))
    bridges = {f"br-{net['Id'][:12]}": net for net in networks}
    for bridge, net in bridges.items():
        if net["Name"] == f"{student}-public":
            continue
        host_addresses = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", bridge],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert host_addresses.strip() == "", f"host has an address on {net['Name']}"
    for name, ip in private_ips.items():
        if name == f"{student}-front":
            continue
        assert not infos[name]["HostConfig"]["PortBindings"], f"{name} publishes a port"
        route = subprocess.run(
            ["ip", "-o", "route", "get", ip], capture_output=True, text=True, check=False
        ).stdout.split()
        device = route[route.index("dev") + 1] if "dev" in route else None
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

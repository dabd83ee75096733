"""The Docker daemon as tests reach it: which daemon, which client, and a CLI runner bound to both.

Every test layer that talks to Docker (tests/docker, tests/docker_engine, the engine tests that
deploy through Pulumi) finds the daemon the same way: DOCKER_HOST, else the one
tools/docker-engine runs. A daemon that does not answer skips the test on a developer machine
and fails it in CI, where `make test` starts the engine first. The host-side helpers look at a
bridge from the host's side only (addresses, routes); they send no packet.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import require_tool, skip_or_fail

REPO = Path(__file__).resolve().parents[1]
ENGINE_SCRIPT = REPO / "tools" / "docker-engine" / "docker-engine"
BASE_IMAGE = os.environ.get("CALCLAB_DOCKER_BASE_IMAGE", "calculator-lab/base:bookworm")
# The program labels every container, network and image of a stack with its student id.
STUDENT_LABEL = "calculator-lab.student"


def docker_host() -> str:
    """DOCKER_HOST, else the one `tools/docker-engine/docker-engine env` prints."""
    if host := os.environ.get("DOCKER_HOST"):
        return host
    if not ENGINE_SCRIPT.exists():
        skip_or_fail("no DOCKER_HOST and no tools/docker-engine")
    out = subprocess.run(
        [str(ENGINE_SCRIPT), "env"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and words[1].startswith("DOCKER_HOST="):
            return words[1].removeprefix("DOCKER_HOST=")
    raise AssertionError(f"`docker-engine env` printed no DOCKER_HOST:\n{out}")


def docker_daemon_answers(host: str) -> bool:
    """Whether a Docker daemon answers GET /_ping at a unix:// DOCKER_HOST.

    For tests that need the daemon but not the docker CLI (Pulumi's provider talks to it).
    """
    if not host.startswith("unix://"):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(host.removeprefix("unix://"))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status_line.startswith(b"HTTP/1.") and b" 200" in status_line


def docker_cli() -> str:
    # Debian's client matches Debian's daemon; a newer client elsewhere on PATH may insist on
    # the buildx plugin or speak an API version the daemon does not.
    for candidate in ("/usr/bin/docker", "/usr/local/bin/docker"):
        if os.access(candidate, os.X_OK):
            return candidate
    return require_tool("docker", f"{ENGINE_SCRIPT.relative_to(REPO)} install")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Docker:
    """The docker CLI bound to one daemon."""

    cli: str
    host: str
    timeout: float = 120

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.cli, *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=self.timeout if timeout is None else timeout,
            env={**os.environ, "DOCKER_HOST": self.host, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"docker {shlex.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def inspect(self, *names: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self("inspect", *names).stdout)
        return result

    def has_image(self, image: str) -> bool:
        return self("image", "inspect", image, check=False, timeout=30).returncode == 0

    def bridge(self, network: str) -> str:
        """The host interface behind a user-defined bridge network."""
        network_id = self("network", "inspect", "--format", "{{.Id}}", network).stdout.strip()
        return f"br-{network_id[:12]}"

    def labelled(self, label: str, *, check: bool = True) -> dict[str, list[str]]:
        """Ids of the containers (running or not) and networks carrying `label` ("key=value")."""
        selector = f"label={label}"
        return {
            "containers": self(
                "ps", "--all", "--quiet", "--filter", selector, check=check
            ).stdout.split(),
            "networks": self(
                "network", "ls", "--quiet", "--filter", selector, check=check
            ).stdout.split(),
        }


def connect() -> Docker:
    """A runner for the daemon tests use, after checking that it answers (else skip or fail)."""
    docker = Docker(docker_cli(), docker_host())
    proc = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=30)
    if proc.returncode != 0:
        script = ENGINE_SCRIPT.relative_to(REPO)
        reason = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
        skip_or_fail(
            f"no Docker daemon answers on {docker.host} ({reason}); start one with"
            f" `{script} install && {script} start && {script} base-image`"
        )
    return docker


def require_base_image(docker: Docker) -> None:
    """Skip (fail in CI) unless the daemon holds the local base image the lab builds on."""
    if not docker.has_image(BASE_IMAGE):
        skip_or_fail(
            f"base image {BASE_IMAGE} is missing; build it with"
            f" `{ENGINE_SCRIPT.relative_to(REPO)} base-image`"
        )


def host_ipv4_addresses(device: str) -> list[str]:
    """The IPv4 addresses the host holds on `device` (which must exist)."""
    out = subprocess.run(
        ["ip", "-json", "-4", "addr", "show", "dev", device],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [str(a["local"]) for entry in json.loads(out) for a in entry.get("addr_info", [])]


def host_route_device(ip: str) -> str | None:
    """The interface the host would send a packet for `ip` out of; None when it has no route."""
    out = subprocess.run(
        ["ip", "-json", "route", "get", ip], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return None  # "Network is unreachable": no route at all
    routes = json.loads(out.stdout)
    device = routes[0].get("dev") if routes else None
    return str(device) if device else None

"""The README's first command as a newcomer runs it: `make up`, `make check`, `make down`.

On a clone of the repository's committed files (nothing copied or rewritten), with the
toolchain `make test` built and the engine it started: `make up` deploys the shipped `dev`
stack and prints the calculator's URL, where `(5+6)*2` answers 22; `make check` passes;
`make down` removes every container and network of the stack; and `git status` shows nothing
after each command (no salt written, no generated file in the checkout). The state goes to a
backend of the test's own; the clone shares the checkout's virtualenv so that nothing is
installed twice. Times are printed (`pytest -s`), not asserted.

It deploys the shipped file as it is, so as student `dev` on host port 50000: on a developer's
machine where a `dev` stack runs already, it skips (in CI it fails) rather than touch it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import docker_client
from tests.docker_client import STUDENT_LABEL, Docker
from tests.helpers import skip_or_fail

from .conftest import REPO, VENV, Toolchain

pytestmark = [pytest.mark.engine, pytest.mark.docker]

STUDENT = "dev"  # Pulumi.dev.yaml names no student: the stack's name is the student's id
PORT = 50000
TIMEOUT = 900.0


@dataclass
class Checkout:
    root: Path
    env: dict[str, str]
    docker: Docker

    def make(self, target: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        result = subprocess.run(
            ["make", target],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
        print(f"\nmake {target}: exit {result.returncode} in {seconds:.1f}s")
        assert result.returncode == 0, f"make {target}:\n{result.stdout}\n{result.stderr}"
        return result, seconds

    def status(self) -> str:
        return subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def checkout(toolchain: Toolchain, tmp_path: Path) -> Iterator[Checkout]:
    toolchain.require("docker")
    docker = docker_client.connect()
    if docker.labelled(f"{STUDENT_LABEL}={STUDENT}")["containers"] or _port_in_use(PORT):
        skip_or_fail(f"a `{STUDENT}` stack or port {PORT} is in use here already")
    root = tmp_path / "calculator-lab"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root)], check=True)
    (root / ".venv").symlink_to(VENV)  # scripts/setup-venv finds its stamp and installs nothing
    # .gitignore's ".venv/" matches a directory, not this link: the link is the test's, not news.
    (root / ".git" / "info" / "exclude").write_text("/.venv\n")
    backend = tmp_path / "state"
    backend.mkdir()
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": backend.as_uri(),
        "DOCKER_HOST": docker.host,
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)  # the shipped salt is the empty passphrase's
    yield Checkout(root, env, docker)
    # Whatever failed above, take the stack down (a no-op when `make down` ran).
    subprocess.run(
        ["make", "down"], cwd=root, env=env, capture_output=True, timeout=TIMEOUT, check=False
    )


def test_make_up_check_and_down_as_the_readme_says(checkout: Checkout) -> None:
    up, _ = checkout.make("up")
    found = re.search(r"calculator: (http://\S+)", up.stdout + up.stderr)
    assert found, f"no calculator URL in the output of make up:\n{up.stdout}\n{up.stderr}"
    request = urllib.request.Request(found[1], data=b"(5+6)*2", method="POST")
    with urllib.request.urlopen(request, timeout=15) as response:
        assert (response.status, response.read()) == (200, b"22\n")
    assert checkout.status() == "", "make up left the checkout changed"

    again, seconds = checkout.make("up")
    print(f"warm make up: {seconds:.1f}s")
    assert "compiling" not in again.stdout + again.stderr

    checkout.make("check")

    checkout.make("down")
    left = checkout.docker.labelled(f"{STUDENT_LABEL}={STUDENT}")
    assert left == {"containers": [], "networks": []}
    assert checkout.status() == "", "make down left the checkout changed"

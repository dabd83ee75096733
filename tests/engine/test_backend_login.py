"""`pulumi login` is honoured by `lab`: a student who logged in to the class's backend deploys
there, not into the private directory under the cache (issue 22).

A fresh HOME and PULUMI_HOME (no PULUMI_BACKEND_URL) where the built CLI ran `pulumi login
file://<tmp>`; a cache of the test's own whose toolchain and Docker engine are links to the
real ones (nothing is built again), so that its `state/` is the private directory to watch.
`scripts/lab preview dev` must name the login's backend on its first line and create the stack
there; the shell that `eval "$(scripts/pulumi-env)"` gives must then see the same stack with a
plain `pulumi stack ls`, through the login's credentials folder alone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from labctl.paths import cache_dir
from tests.docker_client import docker_daemon_answers, docker_host
from tests.helpers import skip_or_fail

from .conftest import REPO, Toolchain

pytestmark = [pytest.mark.engine, pytest.mark.docker]

TIMEOUT = 600


def _stacks(backend: Path) -> list[str]:
    folder = backend / ".pulumi" / "stacks" / "calculator-lab"
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []


def test_lab_preview_goes_to_the_backend_of_pulumi_login(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    toolchain.require("docker")
    host = docker_host()
    if not docker_daemon_answers(host):
        skip_or_fail(
            f"no Docker engine answers at {host} (tools/docker-engine/docker-engine start)"
        )
    real = cache_dir()
    cache = tmp_path / "cache"
    cache.mkdir()
    for shared in ("pulumi-toolchain", "docker-engine"):
        (cache / shared).symlink_to(real / shared)
    home = tmp_path / "home"
    home.mkdir()
    login_state = tmp_path / "class-state"
    login_state.mkdir()
    # Only the system's PATH: the built CLI is found as ours, through the cache.
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(str(real))]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PULUMI_") and key not in ("HOME", "PATH", "CALCLAB_CACHE")
    }
    env |= {
        "HOME": str(home),
        # The CLI's default home is the account's (/etc/passwd), not $HOME: name a fresh one.
        "PULUMI_HOME": str(home / ".pulumi"),
        "PATH": os.pathsep.join([str(real / "docker-engine" / "bin"), *path]),
        "CALCLAB_CACHE": str(cache),
        "DOCKER_HOST": host,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }

    subprocess.run(
        [toolchain.bin_dir / "pulumi", "login", login_state.as_uri()],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    credentials = home / ".pulumi" / "credentials.json"
    assert json.loads(credentials.read_text())["current"] == login_state.as_uri()

    preview = subprocess.run(
        [REPO / "scripts" / "lab", "preview", "dev"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = preview.stderr + preview.stdout
    assert preview.returncode == 0, output
    first = preview.stderr.splitlines()[0]
    assert first == (
        f"lab: state backend {login_state.as_uri()} (from pulumi login, {credentials})"
    ), output
    assert _stacks(login_state) == ["dev.json"]
    assert _stacks(cache / "state") == [], "the stack went to the private directory"

    # The shell scripts/pulumi-env sets up: the toolchain's PULUMI_HOME, no backend variable,
    # and the login's credentials folder, where a plain `pulumi` finds the same backend.
    shell = subprocess.run(
        [
            "bash",
            "-c",
            f'eval "$({REPO}/scripts/pulumi-env)" && env | grep ^PULUMI_BACKEND_URL=;'
            " pulumi stack ls --json",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shell.stderr.startswith(f"lab: state backend {login_state.as_uri()}"), shell.stderr
    assert [s["name"] for s in json.loads(shell.stdout)] == ["dev"], shell.stdout + shell.stderr

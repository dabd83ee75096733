"""`lab class reap` on the local Docker engine, through the real engine and provider.

Two rosters on one private file backend: a class that ended in 2020 (student `a` deployed by
`lab class up`; `b` with a stack emptied before, as a `pulumi destroy` that kept it leaves it;
`c` never deployed) and a class that ends in 2099 (student `d`, whose stack must stay).

- `--dry-run` names what would go and changes nothing;
- a destroy that fails (the stack is locked by another process: a lock file in the backend,
  as a running `pulumi up` leaves it) makes the exit status 1, and the rest is reaped anyway;
- once the lock is gone, the same reap destroys `a` (its containers and networks gone, the
  count of resources freed from the engine's summary) and exits 0; the other class is left
  alone and said so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from labctl.classroom.automation import class_dir
from labctl.classroom.roster import load_roster
from tests import docker_client
from tests.docker_client import BASE_IMAGE, STUDENT_LABEL

from .conftest import PASSPHRASE, REPO, VENV, Toolchain

pytestmark = [pytest.mark.engine, pytest.mark.docker]

TIMEOUT = 900.0


def _roster(path: Path, ends: str, students: list[str]) -> Path:
    entries = "".join(
        f"  - id: {s}\n    dockerHostPort: {docker_client.free_port()}\n" for s in students
    )
    path.write_text(
        f"class: {path.stem}\nends: {ends}\n"
        + textwrap.dedent(
            f"""\
            defaults:
              target: docker
              topology: single
              dockerBaseImage: {BASE_IMAGE}
            students:
            """
        )
        + entries
    )
    return path


def test_reap_destroys_the_classes_that_ended_and_only_those(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    toolchain.require("docker")
    docker = docker_client.connect()
    if not docker.has_image(BASE_IMAGE):
        pytest.fail(f"base image {BASE_IMAGE} missing (tools/docker-engine base-image)")
    tag = uuid.uuid4().hex[:6]
    a, b, c, d = (f"rp{tag}-{s}" for s in "abcd")
    ended = _roster(tmp_path / "ended.yaml", "2020-01-01T00:00Z", [a, b, c])
    running = _roster(tmp_path / "running.yaml", "2099-01-15T18:00 Europe/Paris", [d])
    backend = tmp_path / "state"
    backend.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PULUMI_BACKEND_URL": backend.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "DOCKER_HOST": docker.host,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }

    def lab(*args: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            [str(VENV / "bin" / "python"), "-m", "labctl.classroom", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        print(
            f"lab class {' '.join(args)}: exit {done.returncode}, {time.monotonic() - started:.1f}s"
        )
        print(done.stderr[-3000:])
        return done

    def pulumi(roster: Path, *args: str) -> None:
        subprocess.run(
            [toolchain.bin_dir / "pulumi", *args],
            cwd=class_dir(load_roster(roster)),
            env={**toolchain.env, **env},  # the class's backend and passphrase
            check=True,
            capture_output=True,
            timeout=120,
        )

    def stacks() -> list[str]:
        folder = backend / ".pulumi" / "stacks" / "calculator-lab"
        return sorted(p.stem for p in folder.glob("*.json"))

    try:
        up = lab("up", str(ended), "--only", a)
        assert up.returncode == 0, up.stderr
        assert docker.labelled(f"{STUDENT_LABEL}={a}")["containers"]
        lab("status", str(running))  # writes the class directory of the other class
        pulumi(ended, "stack", "init", b, "--no-select")  # an empty stack, as after a destroy
        pulumi(running, "stack", "init", d, "--no-select")
        assert stacks() == [a, b, d]

        dry = lab("reap", str(ended), str(running), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert dry.stderr.startswith(f"lab: state backend {backend.as_uri()} (from "), dry.stderr
        assert re.search(rf"{a}: would destroy \d+ resources", dry.stderr), dry.stderr
        assert f"{b}: already gone" in dry.stderr
        assert f"{c}: already gone" in dry.stderr
        assert "class running: ends in" in dry.stderr
        assert "(2099-01-15 18:00 Europe/Paris): left alone" in dry.stderr
        assert "class ended: ended" in dry.stderr
        assert stacks() == [a, b, d]

        # Another process holds `a`'s lock: its destroy fails, the exit status says so.
        locks = backend / ".pulumi" / "locks" / "organization" / "calculator-lab" / a
        locks.mkdir(parents=True, exist_ok=True)
        (locks / "another.json").write_text(
            json.dumps(
                {"pid": 1, "username": "x", "hostname": "y", "timestamp": "2026-01-01T00:00:00Z"}
            )
        )
        locked = lab("reap", str(ended), str(running))
        assert locked.returncode == 1, locked.stderr
        # The failure names who holds the lock (labctl/locks.py), from the lock's own file.
        assert re.search(
            rf"{a}: failed: stack {a} is locked: x@y \(pid 1, since 2026-01-01T00:00:00Z\)"
            " is updating it",
            locked.stderr,
        ), locked.stderr
        assert f"{b}: already gone" in locked.stderr
        assert stacks() == [a, d]  # b's empty stack went; a stays for the next run
        (locks / "another.json").unlink()

        reap = lab("reap", str(ended), str(running))
        assert reap.returncode == 0, reap.stderr
        freed = re.search(rf"{a}: destroyed, (\d+) resources freed", reap.stderr)
        assert freed, reap.stderr
        assert int(freed[1]) >= 5  # the stack, the image, the network, the containers...
        assert f"{c}: already gone" in reap.stderr
        assert "class running: ends in" in reap.stderr
        assert stacks() == [d]
        assert docker.labelled(f"{STUDENT_LABEL}={a}") == {"containers": [], "networks": []}
    finally:
        lab("destroy", str(ended), "--yes")
        lab("destroy", str(running), "--yes")
        for roster in (ended, running):
            shutil.rmtree(class_dir(load_roster(roster)), ignore_errors=True)

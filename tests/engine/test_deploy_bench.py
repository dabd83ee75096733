"""The deploy benchmark (benchmarks/deploy_bench.py) runs end to end: one round, `alice` on
the test cloud and `dev` on Docker, through the real engine, providers, cloud and engine.

Its figures are not asserted (timings belong to the benchmark's printout, not to a test).
What is: it completes; every step has its Pulumi sample and its floor's; the floor holds
the same resource types and counts as the stack's state; round 1's create and preview are
broken down; the printed table has every row; and neither the stacks nor the floors leave
anything, checked here with openstacksdk and the Engine API, not with the benchmark's code.
Its stack names and student ids start with `bnt` (the benchmark's own default is `bn` with
hexadecimal digits, so the two never meet).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import docker_client

from .conftest import REPO, VENV, Toolchain

pytestmark = [pytest.mark.engine, pytest.mark.testcloud, pytest.mark.docker]

SCRIPT = REPO / "benchmarks" / "deploy_bench.py"
TIMEOUT = 1800.0
OPENSTACK_STEPS = ["create", "preview", "up (no change)", "resize front", "destroy"]
DOCKER_STEPS = ["create", "preview", "lab up (no change)", "destroy"]


def _named_in_project(conn: Any, prefix: str) -> list[str]:
    project = conn.current_project_id
    net = conn.network
    kinds = [
        conn.compute.servers(),
        net.ports(project_id=project),
        net.networks(project_id=project),
        net.routers(project_id=project),
        net.security_groups(project_id=project),
        conn.compute.keypairs(),
    ]
    names = [i.name for items in kinds for i in items if (i.name or "").startswith(prefix)]
    names += [
        i.floating_ip_address
        for i in net.ips(project_id=project)
        if any(t.startswith(f"calculator-lab:student={prefix}") for t in i.tags or [])
    ]
    return names


def test_the_deploy_benchmark_runs_and_cleans_up(
    toolchain: Toolchain, clouds_yaml: Path, member: Any, tmp_path: Path
) -> None:
    toolchain.require("openstack", "docker")
    docker = docker_client.connect()
    docker_client.require_base_image(docker)
    prefix = f"bnt{secrets.token_hex(1)}"
    report = tmp_path / "bench.json"
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
        "OS_CLOUD": os.environ.get("OS_CLOUD", "testcloud"),
        "DOCKER_HOST": docker.host,
        "COLUMNS": "250",  # rich's tables are not folded, so each row is one line
    }
    done = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            str(SCRIPT),
            "--rounds",
            "1",
            "--stacks",
            "alice,dev",
            "--prefix",
            prefix,
            "--json",
            str(report),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    sys.stdout.write(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr

    document = json.loads(report.read_text())
    assert document["complete"] is True
    runs = {run["shipped"]: run for run in document["stacks"]}
    assert set(runs) == {"alice", "dev"}
    for shipped, steps in (("alice", OPENSTACK_STEPS), ("dev", DOCKER_STEPS)):
        run = runs[shipped]
        assert run["error"] is None
        assert run["stack"].startswith(prefix)
        assert run["steps"] == steps
        for step in steps:
            assert len(run["pulumi"][step]) == 1, (shipped, step)
            assert len(run["floor"][document["floor_of"][step]]) == 1, (shipped, step)
        assert run["resources"], shipped
        assert run["resources"] == run["floor_resources"]
        assert set(run["breakdown"]) == {"create", "preview"}
        for got in run["breakdown"].values():
            assert sum(got["seconds"].values()) == pytest.approx(got["total"], rel=0.01)
        assert run["floor_leftovers"] == {}
        assert run["stack_leftovers"] == {}
        lines = [ln for ln in done.stdout.splitlines() if run["stack"] in ln or "│" in ln]
        for step in steps:
            assert any(f" {step} " in ln for ln in lines), f"no row for {shipped} {step}"
    assert len(runs["alice"]["preflight_alone"]) == 1

    # Not the benchmark's own word: nothing of either stack or floor is left.
    assert _named_in_project(member, prefix) == []
    for run in runs.values():
        for student in (run["stack"], run["floor_student"]):
            labelled = docker.labelled(f"{docker_client.STUDENT_LABEL}={student}")
            assert labelled == {"containers": [], "networks": []}, student

"""Objective 7 on Docker: commit the front end's container, run the stack from it, destroy.

`lab snapshot create` (the real command, in a subprocess) commits the front end's container
to an image `<student>-front-<name>`; `imageByRole.front` set to it and `pulumi up` replace that
container alone, at the same address and published port, and the calculator still answers;
`pulumi destroy` removes every container, network and the built image, and leaves the
snapshot, which `lab snapshot delete` removes.

The containers run read-only, so the committed image holds the calculator image's files as
they were plus the container's settings (command, environment, user, labels); there is no
writable layer to carry, and no volume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import docker_client
from tests.docker_client import BASE_IMAGE, STUDENT_LABEL, Docker

from .conftest import REPO, Pulumi, Stack, Toolchain
from .repo_program import copy_program
from .test_docker_stacks import UP_TIMEOUT, _post

pytestmark = [pytest.mark.engine, pytest.mark.docker]

STACK_FILE = "dev-single"  # one network, no router container: the shortest round trip

# Steps that change nothing: unchanged, and the refresh every up starts with (Pulumi.yaml).
QUIET_OPS = ("same", "refresh")


def lab_snapshot(stack: Stack, docker: Docker, *args: str) -> str:
    """`lab snapshot ARGS` as a student runs it, against the stack file in the stack's copy."""
    result = subprocess.run(
        [sys.executable, "-m", "labctl", "snapshot", *args],
        cwd=REPO,
        env={
            **stack.pulumi.env(),
            "DOCKER_HOST": docker.host,
            "PATH": f"{Path(docker.cli).parent}{os.pathsep}{stack.pulumi.env()['PATH']}",
            "CALCLAB_STACK_DIR": str(stack.workdir),
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"lab snapshot {args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def student_objects(docker: Docker, student: str) -> dict[str, list[str]]:
    """Containers, networks and images of the student still on the engine."""
    return {
        **docker.labelled(f"{STUDENT_LABEL}={student}"),
        "images": sorted(
            docker(
                "images", "-q", "--no-trunc", "--filter", f"label={STUDENT_LABEL}={student}"
            ).stdout.split()
        ),
    }


@pytest.fixture
def deployed(toolchain: Toolchain, tmp_path: Path) -> Iterator[tuple[Stack, str, Docker]]:
    toolchain.require("docker")
    docker = docker_client.connect()
    docker_client.require_base_image(docker)
    workdir = copy_program(tmp_path / "program", (STACK_FILE,))
    if not (workdir / "targets").exists():  # repo_program predates targets/ (see report)
        shutil.copytree(REPO / "targets", workdir / "targets")
    backend = tmp_path / "backend"
    backend.mkdir()
    pulumi = Pulumi(toolchain, backend, extra_env={"DOCKER_HOST": docker.host})
    student = f"snapd-{uuid.uuid4().hex[:6]}"
    # The stack is named after the student, so that `lab snapshot STACK` finds its file.
    (workdir / f"Pulumi.{STACK_FILE}.yaml").rename(workdir / f"Pulumi.{student}.yaml")
    pulumi("stack", "init", student, "--secrets-provider", "passphrase", cwd=workdir, check=True)
    stack = Stack(pulumi, student, workdir)
    for key, value in (
        ("student", student),
        ("dockerBaseImage", BASE_IMAGE),
        ("dockerHostPort", str(docker_client.free_port())),
    ):
        stack.run("config", "set", f"calculator-lab:{key}", value, check=True)
    try:
        stack.run("up", "--yes", "--skip-preview", timeout=UP_TIMEOUT, check=True)
        yield stack, student, docker
    finally:
        stack.run("destroy", "--yes", "--skip-preview", timeout=UP_TIMEOUT)
        # Clean-up after a failure only; the test checks what destroy leaves and deletes it.
        for image in student_objects(docker, student)["images"]:
            docker("image", "rm", "--force", image, check=False)
        assert student_objects(docker, student) == {"containers": [], "networks": [], "images": []}


def test_commit_restore_answer_destroy_delete(deployed: tuple[Stack, str, Docker]) -> None:
    stack, student, docker = deployed
    url = json.loads(stack.run("stack", "output", "--json", check=True).stdout)["calculatorUrl"]
    assert _post(url + "/", "(5+6)*2") == (200, "22")
    names = [f"{student}-{role}" for role in ("front", "sum", "sub", "mul", "div")]
    before = {c["Name"].lstrip("/"): c for c in docker.inspect(*names)}

    snapshot = f"{student}-front-s1"
    printed = lab_snapshot(stack, docker, "create", student, "front", "s1")
    committed = docker.inspect(snapshot)[0]
    assert printed.split()[:2] == [snapshot, committed["Id"]]
    labels = committed["Config"]["Labels"]
    assert labels["calculator-lab.student"] == student
    assert labels["calculator-lab.role"] == "front"
    listed = lab_snapshot(stack, docker, "list", student)
    assert [line.split("\t")[0] for line in listed.splitlines()] == [snapshot]

    # Restore: the config key, then up. Only the front end's container is replaced.
    stack.run("config", "set", "--path", "calculator-lab:imageByRole.front", snapshot, check=True)
    preview = json.loads(stack.run("preview", "--json", check=True).stdout)
    changed = {
        step["urn"].rsplit("::", 1)[1] for step in preview["steps"] if step["op"] not in QUIET_OPS
    }
    assert changed == {"calculator-front"}, preview["steps"]
    stack.run("up", "--yes", "--skip-preview", timeout=UP_TIMEOUT, check=True)

    after = {c["Name"].lstrip("/"): c for c in docker.inspect(*names)}
    front = after[f"{student}-front"]
    assert front["Id"] != before[f"{student}-front"]["Id"]
    assert front["Image"] == committed["Id"]
    for name in names[1:]:
        assert after[name]["Id"] == before[name]["Id"], f"{name} was replaced too"
    assert (
        front["HostConfig"]["PortBindings"]
        == before[f"{student}-front"]["HostConfig"]["PortBindings"]
    )
    addresses = {net["IPAddress"] for net in front["NetworkSettings"]["Networks"].values()}
    old = before[f"{student}-front"]["NetworkSettings"]["Networks"].values()
    assert {net["IPAddress"] for net in old} - {""} <= addresses
    assert _post(url + "/", "(5+6)*2") == (200, "22")
    again = stack.run("up", "--yes", "--expect-no-changes", timeout=UP_TIMEOUT)
    assert again.code == 0, again.describe()

    # destroy removes the stack's objects and its built image, not the snapshot.
    destroy = stack.run("destroy", "--yes", "--skip-preview", timeout=UP_TIMEOUT)
    assert destroy.code == 0, destroy.describe()
    assert student_objects(docker, student) == {
        "containers": [],
        "networks": [],
        "images": [committed["Id"]],
    }
    lab_snapshot(stack, docker, "delete", student, snapshot)
    assert student_objects(docker, student)["images"] == []
    assert lab_snapshot(stack, docker, "list", student) == ""

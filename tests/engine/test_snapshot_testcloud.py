"""Objective 7 on the test cloud: snapshot the front end, restore it through config, destroy.

`lab snapshot create` (the real command, in a subprocess) makes a Glance image of the front
end's server; `pulumi config set --path imageByRole.front <snapshot>` and `pulumi up` replace
that server and nothing else, on the same Neutron port, so its fixed address and floating IP
stay; `pulumi destroy` leaves the snapshot, which `lab snapshot delete` removes.

What is not real here: the test cloud runs Nova's fake driver, whose snapshot uploads no disk.
Nova creates the Glance image record and leaves it `queued`; the test plays the hypervisor's
part by giving it formats and a few bytes, as libvirt would upload the disk, after which
Glance marks it `active`. So this proves the API round trip, the naming and marks, and what
Pulumi replaces, not that a disk's contents come back (nothing boots on the fake driver).

Other engineers deploy in the same project: the student id is this test's own, and only its
own resources are checked for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Pulumi, Toolchain
from .repo_program import copy_program
from .test_openstack_testcloud import UP_TIMEOUT, LabStack, base_config, by_name

pytestmark = [pytest.mark.engine, pytest.mark.testcloud]

SNAPSHOT_TIMEOUT = 300.0

# Steps that change nothing: unchanged, and the refresh every up starts with (Pulumi.yaml).
QUIET_OPS = ("same", "refresh")


def lab_command(stack: LabStack, *args: str, timeout: float = SNAPSHOT_TIMEOUT) -> Any:
    """`lab snapshot ARGS` as a student runs it, against the stack file in the stack's copy."""
    return subprocess.Popen(
        [sys.executable, "-m", "labctl", "snapshot", *args],
        cwd=REPO,
        env={
            **stack.pulumi.env(),
            "CALCLAB_STACK_DIR": str(stack.workdir),
            "PYTHONPATH": str(REPO),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: Any, timeout: float = SNAPSHOT_TIMEOUT) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"lab snapshot exited {proc.returncode}\n{out}\n{err}"
    return str(out)


def play_the_hypervisor(conn: Any, image_name: str, proc: Any, within: float = 120) -> None:
    """Upload the disk the fake driver does not: a few bytes into Nova's queued image."""
    deadline = time.monotonic() + within
    while (image := conn.image.find_image(image_name)) is None or image.status != "queued":
        assert proc.poll() is None, "lab snapshot ended before Nova created the image"
        assert time.monotonic() < deadline, f"no queued image {image_name} in {within} s"
        time.sleep(1)
    conn.image.update_image(image, disk_format="raw", container_format="bare")
    response = conn.image.put(
        f"/images/{image.id}/file",
        data=b"\0" * 4096,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 204, response.text


def own_leftovers(conn: Any, student: str) -> dict[str, list[str]]:
    project = conn.current_project_id
    prefix = f"{student}-"
    net = conn.network
    found = {
        "servers": by_name(conn.compute.servers(), prefix),
        "ports": by_name(net.ports(project_id=project), prefix),
        "networks": by_name(net.networks(project_id=project), prefix),
        "routers": by_name(net.routers(project_id=project), prefix),
        "security_groups": by_name(net.security_groups(project_id=project), prefix),
        "floating_ips": {
            ip.id: ip
            for ip in net.ips(project_id=project)
            if (ip.description or "").endswith(f" {student}-front")
        },
    }
    return {kind: sorted(items) for kind, items in found.items() if items}


def wait_own_resources_gone(conn: Any, student: str, within: float = 90) -> dict[str, list[str]]:
    """Nova deletes servers (and Neutron their ports) a little after the API said yes."""
    deadline = time.monotonic() + within
    while (left := own_leftovers(conn, student)) and time.monotonic() < deadline:
        time.sleep(2)
    return left


@pytest.fixture
def snap_stack(
    toolchain: Toolchain, pulumi_cli: Pulumi, tmp_path: Path, clouds_yaml: Path, member: Any
) -> Iterator[LabStack]:
    toolchain.require("openstack")
    pulumi_cli.extra_env.update(
        {
            "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
            "OS_CLOUD": os.environ.get("OS_CLOUD", "testcloud"),
        }
    )
    student = f"snap-{uuid.uuid4().hex[:6]}"
    workdir = copy_program(tmp_path / "program")
    if not (workdir / "targets").exists():  # repo_program predates targets/ (see report)
        shutil.copytree(REPO / "targets", workdir / "targets")
    stack = LabStack(pulumi_cli, workdir, student, base_config("single", student))
    pulumi_cli("stack", "init", student, cwd=workdir, check=True)
    for key, value in stack.config.items():
        stack.run("config", "set", f"calculator-lab:{key}", value)
    try:
        yield stack
    finally:
        stack.run("destroy", "--yes", "--skip-preview", check=False)
        # Clean-up after a failure only: the test itself checks that destroy leaves the
        # snapshot and that `lab snapshot delete` removes it.
        for image in member.image.images(owner=member.current_project_id):
            if (image.name or "").startswith(f"{student}-"):
                member.image.delete_image(image)
        assert wait_own_resources_gone(member, student) == {}


def test_snapshot_restore_replaces_only_the_front_end_and_keeps_its_addresses(
    snap_stack: LabStack, member: Any
) -> None:
    stack, student = snap_stack, snap_stack.name
    stack.up()
    outputs = stack.outputs()
    servers = by_name(member.compute.servers(), f"{student}-")
    before = {name: server.id for name, server in servers.items()}
    port = member.network.find_port(f"{student}-front")
    floating = list(member.network.ips(port_id=port.id))
    assert len(floating) == 1

    # Snapshot through the command, as a student would; wait until Glance says active.
    snapshot = f"{student}-front-s1"
    proc = lab_command(stack, "create", student, "front", "s1")
    play_the_hypervisor(member, snapshot, proc)
    printed = finish(proc)
    image = member.image.find_image(snapshot)
    assert image.status == "active"
    assert printed.split()[:2] == [snapshot, image.id]
    assert image.properties["calculator-lab.student"] == student
    assert image.properties["calculator-lab.role"] == "front"
    assert image.properties["image_type"] == "snapshot"  # Nova's createImage made it
    listed = finish(lab_command(stack, "list", student))
    assert [line.split("\t")[0] for line in listed.splitlines()] == [snapshot]

    # Restore: the config key, then up. The preview names the one server to replace.
    stack.run("config", "set", "--path", "calculator-lab:imageByRole.front", snapshot)
    preview = json.loads(stack.run("preview", "--json").stdout)
    changed = {
        step["urn"].rsplit("::", 1)[1] for step in preview["steps"] if step["op"] not in QUIET_OPS
    }
    assert changed == {"calculator-front-instance"}, preview["steps"]
    stack.up("restore")

    after = {name: s.id for name, s in by_name(member.compute.servers(), f"{student}-").items()}
    assert set(after) == set(before)
    assert {n: i for n, i in after.items() if not n.endswith("-front")} == {
        n: i for n, i in before.items() if not n.endswith("-front")
    }, "a service was replaced too"
    # The provider rebuilds a server in place on a new image (Nova's rebuild: same server id)
    # or replaces it; either way the front end now runs the snapshot.
    front = member.compute.get_server(after[f"{student}-front"])
    assert front.image["id"] == image.id, "the front end does not run the snapshot"
    # The same Neutron port, so the same fixed address and the same floating IP on it.
    assert member.network.find_port(f"{student}-front").id == port.id
    assert member.network.get_port(port.id).device_id == front.id
    assert [ip.floating_ip_address for ip in member.network.ips(port_id=port.id)] == [
        floating[0].floating_ip_address
    ]
    restored = stack.outputs()
    assert restored["frontendFloatingIp"] == outputs["frontendFloatingIp"]
    assert restored["privateIps"] == outputs["privateIps"]
    stack.run("up", "--yes", "--skip-preview", "--expect-no-changes")

    # destroy takes the stack's resources, not the snapshot.
    stack.run("destroy", "--yes", "--skip-preview", timeout=UP_TIMEOUT)
    assert wait_own_resources_gone(member, student) == {}
    assert member.image.get_image(image.id).status == "active"
    finish(lab_command(stack, "delete", student, snapshot))
    assert member.image.find_image(image.id) is None
    assert finish(lab_command(stack, "list", student)) == ""

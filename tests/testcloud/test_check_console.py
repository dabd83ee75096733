"""`lab check` reading the console logs of the VMs that do not answer, through the test
cloud's real Nova API.

The servers are bare ones made as the student (no stack): `lab check` only needs their names,
which it takes from the stack's outputs (privateIps), so an outputs file names them. Nova's
fake driver answers every console request with the same three lines
(nova/virt/fake.py: 'FAKE CONSOLE OUTPUT', 'ANOTHER', 'LAST LINE') and no calculator line, so
what is checked here is the tail, the choice of servers, the parallel reads and a server that
is gone; the calculator line's parsing is tests/unit/test_check_console.py's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.paths import ROOT
from tests.apps.calc_cluster import Cluster, free_port

pytestmark = pytest.mark.testcloud

FAKE_CONSOLE = ["FAKE CONSOLE OUTPUT", "ANOTHER", "LAST LINE"]
ROLES_MADE = ("front", "sub", "div")


@pytest.fixture(scope="module")
def servers(member: Any) -> Iterator[dict[str, Any]]:
    """role -> an ACTIVE server named <student>-<role>, on a network of their own."""
    student = f"con-{uuid.uuid4().hex[:6]}"
    compute, net = member.compute, member.network
    flavor = compute.find_flavor("m1.tiny", ignore_missing=False)
    image = next(i for i in member.image.images(name="debian-12") if i.visibility == "public")
    network = net.create_network(name=f"{student}-net")
    made: dict[str, Any] = {}
    try:
        net.create_subnet(network_id=network.id, ip_version=4, cidr="10.79.0.0/24")
        for role in ROLES_MADE:
            made[role] = compute.create_server(
                name=f"{student}-{role}",
                flavor_id=flavor.id,
                image_id=image.id,
                networks=[{"uuid": network.id}],
            )
        for role, server in made.items():
            made[role] = compute.wait_for_server(
                server, status="ACTIVE", failures=["ERROR"], wait=180
            )
        yield made
    finally:
        for server in made.values():
            compute.delete_server(server, ignore_missing=True)
        for server in made.values():
            compute.wait_for_delete(server, wait=120)
        net.delete_network(network, ignore_missing=True)


def student_of(servers: dict[str, Any]) -> str:
    return str(servers["front"].name).removesuffix("-front")


def outputs_file(tmp_path: Path, url: str, student: str) -> Path:
    roles = ("front", "sum", "sub", "mul", "div")
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "calculatorUrl": url,
                "target": "openstack",
                "privateIps": {f"{student}-{r}": f"10.79.0.{10 + i}" for i, r in enumerate(roles)},
            }
        )
    )
    return path


def lab_check(clouds_yaml: Path, outputs: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = ["check", "--outputs-file", str(outputs), "--timeout", "0", *extra]
    return subprocess.run(
        [sys.executable, "-m", "labctl", *command],
        cwd=ROOT,
        env={
            **os.environ,
            "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
            "OS_CLOUD": os.environ.get("OS_CLOUD", "testcloud"),
            "PYTHONPATH": str(ROOT),
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )


def test_an_unreachable_front_end_shows_its_console_tail(
    clouds_yaml: Path, servers: dict[str, Any], tmp_path: Path
) -> None:
    student = student_of(servers)
    outputs = outputs_file(tmp_path, f"http://127.0.0.1:{free_port()}", student)
    result = lab_check(clouds_yaml, outputs)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    at = lines.index(f"front ({student}-front) console: no calculator line yet; its last 3 lines:")
    assert [line.strip() for line in lines[at + 1 : at + 4]] == FAKE_CONSOLE
    assert lines[at + 4].startswith("UNREACHABLE")

    report = json.loads(lab_check(clouds_yaml, outputs, "--json").stdout)
    assert report["verdict"] == "unreachable"
    assert report["consoles"] == [
        {
            "role": "front",
            "server": f"{student}-front",
            "line": None,
            "tail": FAKE_CONSOLE,
            "error": None,
        }
    ]


@pytest.mark.e2e
def test_failing_services_have_their_consoles_read_together(
    clouds_yaml: Path, servers: dict[str, Any], tmp_path: Path
) -> None:
    """A real front end on loopback with sub and div stopped: degraded, and exactly those two
    VMs' consoles are read (sum, mul and the front answer)."""
    student = student_of(servers)
    cluster = Cluster()
    try:
        cluster.services["sub"].stop()
        cluster.services["div"].stop()
        started = time.monotonic()
        result = lab_check(clouds_yaml, outputs_file(tmp_path, cluster.url, student), "--json")
        seconds = time.monotonic() - started
    finally:
        cluster.stop()
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] == "degraded"
    assert [(c["role"], c["server"], c["tail"]) for c in report["consoles"]] == [
        ("sub", f"{student}-sub", FAKE_CONSOLE),
        ("div", f"{student}-div", FAKE_CONSOLE),
    ]
    print(f"lab check with two console reads: {seconds:.1f} s")


def test_a_server_that_is_gone_is_one_line_and_the_report_stays(
    clouds_yaml: Path, member: Any, tmp_path: Path
) -> None:
    student = f"gone-{uuid.uuid4().hex[:6]}"  # no server of this student exists
    outputs = outputs_file(tmp_path, f"http://127.0.0.1:{free_port()}", student)
    result = lab_check(clouds_yaml, outputs)
    assert result.returncode == 1, result.stderr
    assert (
        f"front ({student}-front) console: no server {student}-front in this project (deleted, or the stack is down?)"
        in result.stdout
    )
    assert "UNREACHABLE" in result.stdout

"""`lab class` against the local OpenStack (tools/testcloud): a whole class through the real
engine and provider, driven by the Automation API, checked with openstacksdk.

- a class of three (single, client, client): up (each program takes the class's preflight
  instead of reading the cloud again), status (all deployed), a second up that touches nobody,
  destroy (every resource of those students gone, no stack left);
- a class that does not fit a lowered quota is refused before anything exists;
- a class where one entry names a missing image: that student is reported, the others deploy;
- Ctrl-C in the middle of `up`, then the same `up` again: converged, nothing duplicated.

Other engineers deploy into the same test cloud project at the same time, so each test uses
its own student ids (`cls-...`) and asserts that *its* resources are gone, not that the project
is empty. The console runs as `python -m labctl.classroom` (the `lab class` sub-app) with a
private file backend. Times are printed (pytest -s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labctl.classroom.automation import class_dir
from labctl.classroom.roster import load_roster

from .conftest import PASSPHRASE, REPO, VENV, Toolchain

pytestmark = [pytest.mark.engine, pytest.mark.testcloud]

PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPOFVePzrOpa7eDkuiuq+IG/Fpc6rGH7fq0i4kE4jaQC test@lab"
)
ROLES = ("front", "sum", "sub", "mul", "div")
CLASS_TIMEOUT = 1200.0
DEFAULTS = """\
defaults:
  target: openstack
  externalNetwork: public
  image: debian-12
  flavor: m1.tiny
"""


@dataclass
class Run:
    code: int
    stderr: str
    report: dict[str, Any] | None
    seconds: float

    @property
    def states(self) -> dict[str, str]:
        assert self.report is not None, self.stderr
        return {row["student"]: row["state"] for row in self.report["students"]}

    def row(self, student: str) -> dict[str, Any]:
        assert self.report is not None, self.stderr
        return next(r for r in self.report["students"] if r["student"] == student)


@dataclass
class ClassConsole:
    """Runs `lab class ...` on one roster with a private backend."""

    roster: Path
    env: dict[str, str]
    workdir: Path

    def command(self, operation: str, *args: str) -> tuple[list[str], Path]:
        report = self.workdir / f"{operation}-{time.monotonic_ns()}.json"
        argv = [str(VENV / "bin" / "python"), "-m", "labctl.classroom", operation]
        return [*argv, str(self.roster), "--report", str(report), *args], report

    def __call__(self, operation: str, *args: str) -> Run:
        argv, report = self.command(operation, *args)
        started = time.monotonic()
        done = subprocess.run(
            argv,
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLASS_TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
        print(f"lab class {operation} {' '.join(args)}: exit {done.returncode}, {seconds:.1f}s")
        print(done.stderr[-4000:])
        loaded = json.loads(report.read_text()) if report.exists() else None
        return Run(done.returncode, done.stderr, loaded, seconds)

    def start(self, operation: str, *args: str) -> tuple[subprocess.Popen[str], Path]:
        """In its own session, so a SIGINT to its process group is what a terminal's Ctrl-C is."""
        argv, report = self.command(operation, *args)
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        return process, report


@pytest.fixture
def headroom(member: Any, admin: Any) -> Iterator[Callable[[int], None]]:
    """Room in the shared project's quota for `servers` more servers (and their cores), for
    the test's duration: the seeded project allows 20 and other engineers deploy into it too.
    Only ever raised here; the original limits come back after the test."""
    project = member.current_project_id
    original = admin.compute.get_quota_set(project)

    def ensure(servers: int) -> None:
        used = sum(1 for _ in member.compute.servers())
        wanted = used + servers + 5
        if original.instances != -1 and original.instances < wanted:
            admin.compute.update_quota_set(
                project, instances=wanted, cores=max(original.cores, wanted)
            )

    yield ensure
    admin.compute.update_quota_set(project, instances=original.instances, cores=original.cores)


@pytest.fixture
def make_class(
    toolchain: Toolchain, clouds_yaml: Path, member: Any, tmp_path: Path
) -> Iterator[Callable[[str, Sequence[str]], ClassConsole]]:
    """A factory of class consoles; whatever a test leaves is destroyed, then checked gone."""
    toolchain.require("openstack")
    made: list[tuple[ClassConsole, Sequence[str]]] = []

    def make(body: str, students: Sequence[str]) -> ClassConsole:
        roster = tmp_path / f"class-{len(made)}.yaml"
        roster.write_text(DEFAULTS + textwrap.dedent(body))
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PULUMI_BACKEND_URL": (tmp_path / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
            "OS_CLOUD": os.environ.get("OS_CLOUD", "testcloud"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
        (tmp_path / "state").mkdir(exist_ok=True)
        console = ClassConsole(roster, env, tmp_path)
        made.append((console, students))
        return console

    yield make
    for console, students in made:
        if leftovers(member, students, wait=0):
            console("destroy", "--yes")
        shutil.rmtree(class_dir(load_roster(console.roster)), ignore_errors=True)
    remaining = {s: kinds for c, ss in made for s in ss if (kinds := leftovers(member, [s]))}
    assert not remaining, f"the class tests left resources: {remaining}"
    # Only the class's own names: other engineers add and remove stack files in the checkout.
    written = [
        f"Pulumi.{s}.yaml" for _, ss in made for s in ss if (REPO / f"Pulumi.{s}.yaml").exists()
    ]
    assert not written, f"lab class wrote stack files into the checkout: {written}"


def leftovers(conn: Any, students: Sequence[str], wait: float = 90.0) -> dict[str, list[str]]:
    """The students' resources still in the project, by kind. Nova deletes servers (and then
    Neutron their ports) a little after the API accepted it, hence the wait."""
    deadline = time.monotonic() + wait
    while True:
        found = _students_resources(conn, students)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(3)


def _students_resources(conn: Any, students: Sequence[str]) -> dict[str, list[str]]:
    project = conn.current_project_id
    net = conn.network
    prefixes = tuple(f"{s}-" for s in students)
    kinds = {
        "servers": conn.compute.servers(),
        "ports": net.ports(project_id=project),
        "routers": net.routers(project_id=project),
        "networks": net.networks(project_id=project),
        "security_groups": net.security_groups(project_id=project),
        "keypairs": conn.compute.keypairs(),
    }
    found = {
        kind: sorted(name for item in items if (name := item.name or "").startswith(prefixes))
        for kind, items in kinds.items()
    }
    student_tags = {f"calculator-lab:student={s}" for s in students}
    found["floating_ips"] = [
        ip.floating_ip_address
        for ip in net.ips(project_id=project)
        if student_tags & set(ip.tags or ()) or (ip.description or "").startswith(prefixes)
    ]
    return {kind: names for kind, names in found.items() if names}


def servers_of(conn: Any, student: str, within: float = 180.0) -> dict[str, Any]:
    """The student's servers by name, once Nova has finished building them."""
    deadline = time.monotonic() + within
    while True:
        servers = {
            s.name: s for s in conn.compute.servers() if (s.name or "").startswith(f"{student}-")
        }
        if not any(s.status == "BUILD" for s in servers.values()) or time.monotonic() > deadline:
            return servers
        time.sleep(2)


def assert_deployed(conn: Any, student: str, topology: str, url: str) -> None:
    """Exactly one lab of `topology` for the student: nothing missing, nothing duplicated."""
    project = conn.current_project_id
    net = conn.network
    servers = servers_of(conn, student)
    assert sorted(servers) == sorted(f"{student}-{role}" for role in ROLES)
    assert {s.status for s in servers.values()} == {"ACTIVE"}
    networks = [n.name for n in net.networks(project_id=project) if n.name.startswith(student)]
    routers = [r.name for r in net.routers(project_id=project) if r.name.startswith(student)]
    if topology == "single":
        assert (sorted(networks), sorted(routers)) == (
            [f"{student}-private"],
            [f"{student}-gateway"],
        )
    else:
        assert sorted(networks) == [f"{student}-client", f"{student}-service"]
        assert sorted(routers) == [f"{student}-gateway", f"{student}-inter"]
    front = next(net.ports(project_id=project, name=f"{student}-front"))
    ips = [ip for ip in net.ips(project_id=project) if ip.port_id == front.id]
    assert len(ips) == 1
    assert url == f"http://{ips[0].floating_ip_address}:50000"


# --- the tests -------------------------------------------------------------------------------


def test_a_class_of_three_up_status_and_destroy(
    make_class: Any, member: Any, headroom: Callable[[int], None]
) -> None:
    students = ["cls-a", "cls-b", "cls-c"]
    headroom(15)
    lab = make_class(
        f"""\
        students:
          - id: cls-a
            topology: single
            sshPublicKey: {PUBLIC_KEY}
          - id: cls-b
            topology: client
          - id: cls-c
            topology: client
        """,
        students,
    )
    up = lab("up")
    assert up.code == 0, up.stderr
    assert up.states == dict.fromkeys(students, "deployed")
    for student, topology in zip(students, ("single", "client", "client"), strict=True):
        row = up.row(student)
        assert row["action"] == "up"
        # The program took the class's preflight instead of reading the cloud again.
        assert row["preflight"].startswith("preflight: checked by lab class at "), row
        assert_deployed(member, student, topology, row["url"])
        # The test cloud has no data plane: the front end's address answers nothing.
        assert row["health"], row
    status = lab("status")
    assert status.code == 0, status.stderr
    assert status.states == dict.fromkeys(students, "deployed")
    assert [status.row(s)["url"] for s in students] == [up.row(s)["url"] for s in students]

    again = lab("up")
    assert again.code == 0, again.stderr
    assert {s: again.row(s)["action"] for s in students} == dict.fromkeys(students, "none (done)")

    down = lab("destroy", "--yes")
    assert down.code == 0, down.stderr
    assert down.states == dict.fromkeys(students, "destroyed")
    assert leftovers(member, students) == {}
    after = lab("status")
    assert after.states == dict.fromkeys(students, "absent")
    print(f"class of three: up {up.seconds:.0f}s, destroy {down.seconds:.0f}s")


def test_a_class_over_quota_is_refused_before_anything_exists(
    make_class: Any, member: Any, admin: Any
) -> None:
    students = [f"cls-q{i}" for i in range(1, 7)]
    lab = make_class(
        "students:\n" + "".join(f"  - id: {s}\n    topology: client\n" for s in students),
        students,
    )
    project = member.current_project_id
    original = admin.compute.get_quota_set(project)
    used = sum(1 for _ in member.compute.servers())
    # Room for two students' worth of servers: enough for the others deploying concurrently to
    # carry on through these few seconds, and far from the class's 30.
    limit = used + 10
    admin.compute.update_quota_set(project, instances=limit)
    try:
        refused = lab("up")
    finally:
        admin.compute.update_quota_set(project, instances=original.instances)
    assert refused.code == 3, refused.stderr
    assert "lab class up: refused before anything was created" in refused.stderr
    assert "not enough instances" in refused.stderr
    rows = [line.replace("│", " ").split() for line in refused.stderr.splitlines()]
    instances = next(row for row in rows if row[:1] == ["instances"])
    # resource, need, free: the class needs 30 servers and the project has 10 left (fewer if
    # another engineer's stack was created meanwhile).
    assert instances[1] == "30", instances
    assert int(instances[2]) <= 10, instances
    assert refused.report is None  # nothing ran, so no report
    assert leftovers(member, students, wait=0) == {}
    status = lab("status")
    assert status.states == dict.fromkeys(students, "absent")


def test_a_missing_image_fails_its_student_while_the_others_deploy(
    make_class: Any, member: Any, headroom: Callable[[int], None]
) -> None:
    students = ["cls-m1", "cls-m2"]
    headroom(10)
    lab = make_class(
        """\
        students:
          - id: cls-m1
            topology: single
            image: no-such-image
          - id: cls-m2
            topology: single
        """,
        students,
    )
    up = lab("up")
    assert up.code == 1, up.stderr
    assert up.states == {"cls-m1": "failed", "cls-m2": "deployed"}
    error = up.row("cls-m1")["error"]
    assert error.startswith(
        "preflight: line 9: calculator-lab:image: no image named 'no-such-image'"
    )
    assert "debian-12" in error  # what exists instead
    assert leftovers(member, ["cls-m1"], wait=0) == {}
    assert_deployed(member, "cls-m2", "single", up.row("cls-m2")["url"])
    down = lab("destroy", "--yes")
    assert down.states == {"cls-m1": "absent", "cls-m2": "destroyed"}


def test_ctrl_c_during_up_then_up_again_converges(
    make_class: Any, member: Any, headroom: Callable[[int], None]
) -> None:
    students = ["cls-i1", "cls-i2"]
    headroom(10)
    lab = make_class(
        """\
        students:
          - id: cls-i1
            topology: client
          - id: cls-i2
            topology: single
        """,
        students,
    )
    process, report_path = lab.start("up", "--workers", "2")
    deadline = time.monotonic() + 300
    # Interrupt once the engine is creating servers: networks, routers and ports exist then,
    # and the servers and floating IPs are still to come.
    while time.monotonic() < deadline and process.poll() is None:
        if any(s.name.startswith(("cls-i1-", "cls-i2-")) for s in member.compute.servers()):
            break
        time.sleep(1)
    assert process.poll() is None, "up finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=600)
    print(stderr[-4000:])
    assert process.returncode == 130, stderr
    interrupted = json.loads(report_path.read_text())
    assert interrupted["interrupted"] is True
    states = {row["student"]: row["state"] for row in interrupted["students"]}
    assert "cancelled" in states.values(), states
    assert set(states.values()) <= {"cancelled", "deployed"}

    again = lab("up")
    assert again.code == 0, again.stderr
    assert again.states == dict.fromkeys(students, "deployed")
    for student, topology in (("cls-i1", "client"), ("cls-i2", "single")):
        expected = "none (done)" if states[student] == "deployed" else "up --refresh"
        assert again.row(student)["action"] == expected
        assert_deployed(member, student, topology, again.row(student)["url"])
    third = lab("up")
    assert {s: third.row(s)["action"] for s in students} == dict.fromkeys(students, "none (done)")
    down = lab("destroy", "--yes")
    assert down.states == dict.fromkeys(students, "destroyed")
    assert leftovers(member, students) == {}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s", "-v"]))

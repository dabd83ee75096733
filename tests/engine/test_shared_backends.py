"""The shared state backends of docs/class.md, against real servers: an S3 API server (S3Proxy)
through Pulumi's `s3://` backend and a PostgreSQL cluster through `postgres://`, both started
by tools/backends (scripts/test-all starts them before pytest). Each test runs on both.

- secrets: a stack's secret, set with the class passphrase, is read back from another
  checkout with it, refused with a wrong one or none, and never reaches the store in clear;
- locks: an instructor's `lab class up` and a student's own `lab up` (from a clone of the
  repository) of the same Docker stack: whoever comes second is refused with one line naming
  the holder (user@host, pid), and `lab class status` shows the stack busy, each way round;
- outage: the backend server stopped in the middle of a class's `up` (a private server for
  the test, so the shared one keeps serving): a one-line failure naming the backend, no
  traceback; once it is back, the next `lab class up` converges (no duplicate container, the
  exported state consistent).

The holder is frozen (SIGSTOP) while its lock is examined, so that "at the same time" is not
left to timing; it is the real process, holding the real lock in the real store.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.classroom.automation import class_dir
from labctl.classroom.roster import load_roster
from tests import docker_client
from tests.docker_client import BASE_IMAGE, STUDENT_LABEL
from tests.helpers import skip_or_fail

from .conftest import PASSPHRASE, REPO, VENV, Toolchain

pytestmark = [pytest.mark.engine, pytest.mark.backends]

BACKENDS = REPO / "tools" / "backends" / "backends"
PSQL = "/usr/bin/psql"
TIMEOUT = 900.0
PROJECT = "calculator-lab"
ROLES = ("front", "sum", "sub", "mul", "div")


def _servers(directory: Path | None = None) -> dict[str, Any]:
    argv = [str(BACKENDS), *(["--dir", str(directory)] if directory else []), "env", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    described: dict[str, Any] = json.loads(done.stdout)
    return described


@dataclass
class Store:
    """One test's corner of a running server: a key prefix in the bucket, or a table."""

    kind: str
    server: dict[str, Any]
    tag: str = field(default_factory=lambda: "t" + uuid.uuid4().hex[:10])

    @property
    def url(self) -> str:
        if self.kind == "s3":
            bucket_url: str = self.server["url"]
            head, query = bucket_url.split("?", 1)
            return f"{head}/{self.tag}?{query}"
        return f"{self.server['url']}&table={self.tag}"

    @property
    def env(self) -> dict[str, str]:
        if self.kind == "s3":
            keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            return {key: self.server[key] for key in keys}
        return {}

    def blobs(self, prefix: str = "") -> dict[str, str]:
        """What the server itself holds under this test's corner, read from its own storage
        (S3Proxy's directories; the table, through psql): key -> text."""
        if self.kind == "s3":
            root = Path(self.server["data"]) / self.server["bucket"] / self.tag
            return {
                str(p.relative_to(root)): p.read_text(errors="replace")
                for p in sorted(root.rglob("*"))
                if p.is_file() and str(p.relative_to(root)).startswith(prefix)
            }
        dsn = self.server["url"]
        # The table is the test's own name (t + hex digits), the prefix a stack's lock folder.
        # Pulumi puts the URL's path, the database's name, in front of every key.
        base = self.server["url"].split("?")[0].rsplit("/", 1)[1] + "/"
        sql = (
            # Each blob is stored as {"data": "<base64>"}.
            f"SELECT substr(key, {len(base) + 1}) || chr(9) || (data->>'data') FROM {self.tag}"  # noqa: S608
            f" WHERE key LIKE '{base}{prefix}%'"
        )
        done = subprocess.run(
            [PSQL, dsn, "-X", "-A", "-t", "-c", sql],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0 and "does not exist" in done.stderr:
            return {}
        assert done.returncode == 0, done.stderr
        rows = (line.split("\t", 1) for line in done.stdout.splitlines() if "\t" in line)
        return {key: base64.b64decode(data).decode(errors="replace") for key, data in rows}

    def locks(self, stack: str) -> list[dict[str, Any]]:
        found = self.blobs(f".pulumi/locks/organization/{PROJECT}/{stack}/")
        return [json.loads(text) for text in found.values()]


def _require_server(kind: str, server: dict[str, Any]) -> None:
    if not server["running"]:
        skip_or_fail(
            f"no {kind} backend server answers ({server['url'].split('?')[0]}); start it with "
            f"tools/backends/backends install {kind} && tools/backends/backends start {kind}"
        )


@pytest.fixture(params=["s3", "postgres"])
def store(request: pytest.FixtureRequest) -> Store:
    kind: str = request.param
    server = _servers()[kind]
    _require_server(kind, server)
    return Store(kind, server)


def _pulumi_env(toolchain: Toolchain, store: Store, tmp_path: Path) -> dict[str, str]:
    credentials = tmp_path / "pulumi-credentials"
    credentials.mkdir(exist_ok=True)
    return {
        **toolchain.env,
        **store.env,
        "PULUMI_BACKEND_URL": store.url,
        "PULUMI_CREDENTIALS_PATH": str(credentials),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "NO_COLOR": "1",
    }


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    print(
        f"{' '.join([Path(argv[0]).name, *argv[1:4]])}: exit {done.returncode}, {time.monotonic() - started:.1f}s"
    )
    return done


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_need_the_class_passphrase(
    store: Store, toolchain: Toolchain, tmp_path: Path
) -> None:
    toolchain.require()
    program = tmp_path / "program"
    program.mkdir()
    project = {
        "name": PROJECT,
        "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": str(VENV)}},
    }
    (program / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    (program / "__main__.py").write_text(
        "import pulumi\n\npulumi.export('dbPassword', pulumi.Config().require_secret('dbPassword'))\n"
    )
    env = _pulumi_env(toolchain, store, tmp_path)
    pulumi = str(toolchain.bin_dir / "pulumi")
    stack = "secrets-" + store.tag
    secret = "s3cr3t-" + uuid.uuid4().hex

    passphrase = "PULUMI_CONFIG_PASSPHRASE"

    def run(
        *args: str, cwd: Path = program, phrase: str | None = PASSPHRASE
    ) -> subprocess.CompletedProcess[str]:
        chosen = {k: v for k, v in env.items() if k != passphrase}
        if phrase is not None:
            chosen[passphrase] = phrase
        return _run([pulumi, *args, "--stack", stack, "--non-interactive"], cwd, chosen)

    init = run("stack", "init", "--secrets-provider", "passphrase")
    assert init.returncode == 0, init.stderr
    try:
        assert run("config", "set", "--secret", "dbPassword", secret).returncode == 0
        up = run("up", "--yes", "--skip-preview")
        assert up.returncode == 0, up.stdout + up.stderr
        # The store holds the stack (and its history), the secret only as ciphertext.
        held = store.blobs(".pulumi/")
        assert f".pulumi/stacks/{PROJECT}/{stack}.json" in held, sorted(held)
        assert not [key for key, text in held.items() if secret in text]

        # Another checkout: the project file alone, no stack file (so no salt of its own).
        other = tmp_path / "other-checkout"
        other.mkdir()
        (other / "Pulumi.yaml").write_text((program / "Pulumi.yaml").read_text())
        read = run("stack", "output", "dbPassword", "--show-secrets", cwd=other)
        assert (read.returncode, read.stdout.strip()) == (0, secret), read.stderr
        wrong = run(
            "stack", "output", "dbPassword", "--show-secrets", cwd=other,
            phrase="not the class passphrase",
        )  # fmt: skip
        assert wrong.returncode != 0
        assert "incorrect passphrase" in wrong.stderr, wrong.stderr
        assert secret not in wrong.stdout + wrong.stderr
        none = run(
            "stack", "output", "dbPassword", "--show-secrets", cwd=other,
            phrase=None,
        )  # fmt: skip
        assert none.returncode != 0
        assert "PULUMI_CONFIG_PASSPHRASE" in none.stderr, none.stderr
        assert secret not in none.stdout + none.stderr

        # The stack's own config: readable with the passphrase, refused without.
        got = run("config", "get", "dbPassword")
        assert (got.returncode, got.stdout.strip()) == (0, secret), got.stderr
        refused = run("config", "get", "dbPassword", phrase="wrong")
        assert refused.returncode != 0
        assert "incorrect passphrase" in refused.stderr, refused.stderr
    finally:
        run("destroy", "--yes", "--skip-preview")
        run("stack", "rm", "--yes")


# --- a class and a student at the same time ----------------------------------------------------


def _roster(path: Path, student: str, port: int) -> Path:
    # A subnet of its own: other tests deploy the default 10.0.2.0/24 on the same engine.
    cidr = f"10.{secrets.randbelow(40) + 200}.{secrets.randbelow(250)}.0/24"
    path.write_text(
        textwrap.dedent(
            f"""\
            class: {path.stem}
            defaults:
              target: docker
              topology: single
              dockerBaseImage: {BASE_IMAGE}
            students:
              - id: {student}
                dockerHostPort: {port}
                networkCidr: {cidr}
            """
        )
    )
    return path


@dataclass
class Lab:
    """`lab class` on a roster and a student's `lab up` from their own clone, on one backend."""

    roster: Path
    student: str
    env: dict[str, str]
    clone: Path
    tmp: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    def class_command(self, operation: str, *args: str) -> tuple[list[str], Path]:
        report = self.tmp / f"{operation}-{time.monotonic_ns()}.json"
        argv = [str(VENV / "bin" / "python"), "-m", "labctl.classroom", operation]
        return [*argv, str(self.roster), "--report", str(report), *args], report

    def klass(self, operation: str, *args: str) -> tuple[int, str, dict[str, Any]]:
        argv, report = self.class_command(operation, *args)
        done = _run(argv, REPO, self.env)
        print(done.stderr[-3000:])
        row = {}
        if report.exists():
            row = json.loads(report.read_text())["students"][0]
        return done.returncode, done.stderr, row

    def start_class(self, operation: str, *args: str) -> subprocess.Popen[str]:
        argv, _ = self.class_command(operation, *args)
        return self.start(argv, REPO)

    def start(self, argv: list[str], cwd: Path) -> subprocess.Popen[str]:
        process = _start(argv, cwd, self.env)
        self.started.append(process)
        return process

    def student_up_argv(self) -> list[str]:
        return [str(self.clone / "scripts" / "lab"), "up", self.student]

    def containers(self) -> list[str]:
        docker = docker_client.connect()
        ids = docker.labelled(f"{STUDENT_LABEL}={self.student}")["containers"]
        return sorted(c["Name"].lstrip("/") for c in docker.inspect(*ids)) if ids else []


def _start(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    # Its own session: the test freezes and thaws its whole process group.
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_lock(
    store: Store, stack: str, process: subprocess.Popen[str], after: Path | None = None
) -> dict[str, Any]:
    """The lock `process` takes on `stack`; with `after`, once that file exists (`stack init`
    takes the lock for a moment too, before the stack file is written)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (after is None or after.exists()) and (found := store.locks(stack)):
            return found[0]
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"finished before it was seen holding the lock:\n{out}\n{err}")
        time.sleep(0.2)
    pytest.fail(f"no lock on {stack} after 300 s")


def _docker_or_fail(toolchain: Toolchain) -> None:
    toolchain.require("docker")
    docker = docker_client.connect()
    if not docker.has_image(BASE_IMAGE):
        pytest.fail(f"base image {BASE_IMAGE} missing (tools/docker-engine base-image)")


def _lab(store: Store, tmp_path: Path, *, clone: bool = True) -> Lab:
    student = "sb" + store.tag[1:7]
    roster = _roster(tmp_path / f"class-{store.tag}.yaml", student, docker_client.free_port())
    credentials = tmp_path / "pulumi-credentials"
    credentials.mkdir(exist_ok=True)
    env = {
        **os.environ,
        **store.env,
        "PYTHONPATH": str(REPO),
        "PULUMI_BACKEND_URL": store.url,
        "PULUMI_CREDENTIALS_PATH": str(credentials),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "DOCKER_HOST": docker_client.connect().host,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    # The student's own checkout: a clone of this one, sharing its virtualenv.
    checkout = tmp_path / "student-checkout"
    if clone:
        subprocess.run(
            ["git", "clone", "--quiet", "--shared", str(REPO), str(checkout)],
            check=True,
            timeout=120,
        )
        (checkout / ".venv").symlink_to(VENV)
    return Lab(roster, student, env, checkout, tmp_path)


@pytest.fixture
def lab(store: Store, toolchain: Toolchain, tmp_path: Path) -> Iterator[Lab]:
    _docker_or_fail(toolchain)
    made = _lab(store, tmp_path)
    yield made
    for process in made.started:  # a failed test may leave one frozen, or running
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGCONT)
            process.communicate(timeout=TIMEOUT)
    made.klass("destroy", "--yes")
    assert made.containers() == [], "the test left containers"
    subprocess.run(["rm", "-rf", str(class_dir(load_roster(made.roster)))], check=False)


def _student_stack_file(lab: Lab) -> None:
    """The student's Pulumi.<id>.yaml in their checkout: the roster's values, and the salt of
    the stack the class made (what `pulumi config` would have written for them)."""
    class_file = class_dir(load_roster(lab.roster)) / f"Pulumi.{lab.student}.yaml"
    document = yaml.safe_load(class_file.read_text())
    (lab.clone / f"Pulumi.{lab.student}.yaml").write_text(yaml.safe_dump(document))


def test_class_and_student_up_at_once_one_waits_for_the_other(lab: Lab, store: Store) -> None:
    # 1. The instructor's `lab class up` holds the stack: the student's own `lab up` is refused.
    instructor = lab.start_class("up")
    class_file = class_dir(load_roster(lab.roster)) / f"Pulumi.{lab.student}.yaml"
    holder = _wait_for_lock(store, lab.student, instructor, after=class_file)
    os.killpg(instructor.pid, signal.SIGSTOP)
    try:
        _student_stack_file(lab)
        refused = _run(lab.student_up_argv(), lab.clone, lab.env)
        status = lab.klass("status")
    finally:
        os.killpg(instructor.pid, signal.SIGCONT)
    who = f"{holder['username']}@{holder['hostname']} (pid {holder['pid']}, since "
    print(refused.stderr[-2000:])
    assert refused.returncode != 0
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lab: stack {lab.student} is locked: {who}"), refused.stderr
    assert "pulumi cancel --stack" in last
    assert "Traceback" not in refused.stderr
    assert status[2]["state"] == "busy", status[1]
    assert status[2]["error"].startswith(f"being updated by {who}"), status[2]
    _, err = instructor.communicate(timeout=TIMEOUT)
    assert instructor.returncode == 0, err[-3000:]
    deployed = lab.containers()
    assert deployed == sorted(f"{lab.student}-{role}" for role in ROLES)

    # 2. The student's `lab up` holds it: the class's `up` of that student fails, naming them.
    student = lab.start(lab.student_up_argv(), lab.clone)
    holder = _wait_for_lock(store, lab.student, student)
    os.killpg(student.pid, signal.SIGSTOP)
    try:
        code, stderr, row = lab.klass("up", "--force")
        busy = lab.klass("status")
    finally:
        os.killpg(student.pid, signal.SIGCONT)
    who = f"{holder['username']}@{holder['hostname']} (pid {holder['pid']}, since "
    assert code == 1, stderr
    assert row["state"] == "failed"
    assert row["error"].startswith(f"stack {lab.student} is locked: {who}"), row
    assert busy[2]["state"] == "busy", busy[1]
    out, err = student.communicate(timeout=TIMEOUT)
    assert student.returncode == 0, err[-3000:]
    assert "calculator: http://" in out
    assert lab.containers() == deployed  # the same five, nothing duplicated
    assert store.locks(lab.student) == []
    after = lab.klass("status")
    assert after[2]["state"] == "deployed", after[1]


# --- the backend goes away in the middle of an `up` --------------------------------------------


@pytest.fixture(params=["s3", "postgres"])
def private_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Path]]:
    """A server of the test's own (tools/backends --dir), which it may stop and start."""
    kind: str = request.param
    directory = tmp_path / "servers"
    started = subprocess.run(
        [str(BACKENDS), "--dir", str(directory), "start", kind],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    print(started.stderr)
    if started.returncode != 0:
        skip_or_fail(f"tools/backends could not start a private {kind} server: {started.stderr}")
    yield Store(kind, _servers(directory)[kind]), directory
    subprocess.run([str(BACKENDS), "--dir", str(directory), "stop"], timeout=120, check=False)


def _server(directory: Path, command: str, kind: str) -> float:
    started = time.monotonic()
    subprocess.run([str(BACKENDS), "--dir", str(directory), command, kind], check=True, timeout=180)
    return time.monotonic() - started


def test_backend_lost_mid_up_fails_clearly_and_the_next_up_converges(
    private_server: tuple[Store, Path], toolchain: Toolchain, tmp_path: Path
) -> None:
    store, directory = private_server
    _docker_or_fail(toolchain)
    lab = _lab(store, tmp_path, clone=False)
    try:
        instructor = lab.start_class("up")
        class_file = class_dir(load_roster(lab.roster)) / f"Pulumi.{lab.student}.yaml"
        _wait_for_lock(store, lab.student, instructor, after=class_file)
        deadline = time.monotonic() + 300
        while not lab.containers() and time.monotonic() < deadline:  # some of it is done
            time.sleep(0.2)
        assert instructor.poll() is None, "up finished before the server could be stopped"
        print(f"{store.kind} server stopped in {_server(directory, 'stop', store.kind):.1f}s")
        _, stderr = instructor.communicate(timeout=TIMEOUT)
        print(stderr[-3000:])
        assert instructor.returncode == 1, stderr
        assert "Traceback" not in stderr
        report = json.loads(sorted(lab.tmp.glob("up-*.json"))[-1].read_text())
        row = report["students"][0]
        assert row["state"] == "failed", row
        port = str(store.server["port"])
        assert f"127.0.0.1:{port}" in row["error"], row["error"]  # it names the backend
        left = lab.containers()
        print(f"left by the failed up: {left}")

        print(f"{store.kind} server started in {_server(directory, 'start', store.kind):.1f}s")
        code, stderr, row = lab.klass("up")
        assert code == 0, stderr
        assert row["state"] == "deployed", row
        assert row["action"].startswith("pulumi cancel (stale lock), up --refresh"), row
        assert lab.containers() == sorted(f"{lab.student}-{role}" for role in ROLES)
        assert store.locks(lab.student) == []
        # The state agrees with the engine: each container once, none pending.
        exported = subprocess.run(
            [
                str(toolchain.bin_dir / "pulumi"), "stack", "export", "--stack", lab.student,
                "--non-interactive",
            ],
            cwd=class_dir(load_roster(lab.roster)),
            env={**toolchain.env, **lab.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )  # fmt: skip
        deployment = json.loads(exported.stdout)["deployment"]
        assert not deployment.get("pending_operations"), deployment["pending_operations"]
        containers = [
            r["outputs"]["name"]
            for r in deployment["resources"]
            if r["type"] == "docker:index/container:Container"
        ]
        assert sorted(containers) == lab.containers()
        again = lab.klass("up")
        assert again[2]["action"] == "none (done)", again[2]
    finally:
        for process in lab.started:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=60)
        _server(directory, "start", store.kind)  # a no-op when it runs
        lab.klass("destroy", "--yes")
        assert lab.containers() == [], "the test left containers"
        subprocess.run(["rm", "-rf", str(class_dir(load_roster(lab.roster)))], check=False)

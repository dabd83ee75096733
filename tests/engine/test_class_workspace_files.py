"""The files `lab class` workers write, seen by strace: no two students' workers write one file
at the same time, and no worker installs a plugin (issue 22: Pulumi's races in many-stack runs).

The console's own code runs `up`, `status` and `destroy` of four students with two workers
(tests/engine/class_files_driver.py: the class's workspace, runner and Automation API calls)
against a private file backend, with the checkout's project file and a program that creates
nothing, so the run takes seconds; `strace -f` records every open for writing, rename, unlink
and truncate of the whole process tree, and each is put down to the student whose worker
started the process (the driver logs which worker thread ran which student, and when).

What two students' workers may both write, and why:
- the plugin's last-use marker (`<PULUMI_HOME>/plugins/<plugin>.lastused`): the CLI writes it
  empty before it runs a plugin, only its time counts, a failure is ignored
  (sdk/go/common/workspace/plugins.go, markPluginUsed); nothing there can be lost;
- the workspace settings file that `pulumi stack rm` rewrites (labctl/classroom/automation.py):
  by several students, but never by two `pulumi` processes alive at once;
- old logs in `<PULUMI_HOME>/logs`, removed: every CLI command writes its own log there and
  first deletes the logs past 7 days or beyond 500 MB, oldest first (pkg/logging/rotation.go),
  so two commands starting together may both try to delete the same old log; a log is
  created and written by one student's command only.
28 to 55 s on the shared 2 cores (4 students; strace slows the engine a little).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import pytest

from tests.helpers import require_tool

from .conftest import PASSPHRASE, REPO, VENV, Toolchain

pytestmark = pytest.mark.engine

STUDENTS = 4
WORKERS = 2
WRITE_CALLS = ("open", "openat", "creat", "rename", "renameat", "renameat2", "unlink", "unlinkat")
TRACED = ",".join([*WRITE_CALLS, "truncate", "clone", "clone3", "fork", "vfork"])
STRACE_OPTIONS = ("-f", "-q", "-ttt", "-y", "--seccomp-bpf", "-e", f"trace={TRACED}")
_LINE = re.compile(r"^(\d+) +([\d.]+) (.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\) += (-?\d+)(?:<(.*?)>)?")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_EXITED = re.compile(r"^\+\+\+ (?:exited|killed)")
_PATH = re.compile(r'(?:(?:AT_FDCWD|\d+)<([^>]*)>, )?"((?:[^"\\]|\\.)*)"')
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")


@dataclass
class Trace:
    """The process tree and its writes, from `strace -f -ttt -y`."""

    created: dict[int, tuple[int, float]] = field(default_factory=dict)  # tid: creator, when
    exited: dict[int, float] = field(default_factory=dict)
    writes: list[tuple[int, float, str, bool]] = field(default_factory=list)  # tid, when,
    # path, and whether the call removes it (unlink) rather than writes it

    @classmethod
    def parse(cls, text: str) -> Trace:
        trace = cls()
        pending: dict[int, str] = {}
        for raw in text.splitlines():
            match = _LINE.match(raw)
            if match is None:
                continue
            tid, when, rest = int(match[1]), float(match[2]), match[3]
            if _EXITED.match(rest):
                trace.exited[tid] = when
                continue
            if rest.endswith("<unfinished ...>"):
                pending[tid] = rest.removesuffix("<unfinished ...>")
                continue
            if resumed := _RESUMED.match(rest):
                rest = pending.pop(tid, resumed[1] + "(") + resumed[2]
            trace.add(tid, when, rest)
        return trace

    def add(self, tid: int, when: float, call: str) -> None:
        match = _CALL.match(call)
        if match is None:
            return
        name, args, result = match[1], match[2], int(match[3])
        if name in ("clone", "clone3", "fork", "vfork"):
            if result > 0:
                self.created[result] = (tid, when)
            return
        if name not in WRITE_CALLS and name != "truncate":
            return
        if name in ("open", "openat") and not any(flag in args for flag in _WRITE_FLAGS):
            return
        paths = [
            os.path.normpath(os.path.join(base or "", path)) for base, path in _PATH.findall(args)
        ]
        if name.startswith("rename"):
            paths = paths[-1:]  # the file written is the destination
        for path in paths[:1]:
            if not path.startswith(("/dev/", "/proc/")):
                self.writes.append((tid, when, path, name.startswith("unlink")))


@dataclass(frozen=True)
class Run:
    student: str
    thread: int
    start: float
    end: float


def owner(trace: Trace, runs: list[Run], tid: int, when: float) -> tuple[str, int] | None:
    """The student whose worker started `tid` (or is `tid`), and the process the worker
    started for it (its lifetime is the write's); None for the driver's own setup."""
    child = tid
    while True:
        for run in runs:
            if run.thread == tid and run.start <= when <= run.end:
                return run.student, child
        if tid not in trace.created:
            return None
        child = tid
        tid, when = trace.created[tid]


def test_no_two_workers_write_one_file_at_once(toolchain: Toolchain, tmp_path: Path) -> None:
    toolchain.require("openstack")
    strace = require_tool("strace", "apt-get install strace; scripts/test-all does")
    state = tmp_path / "state"
    state.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PULUMI_BACKEND_URL": state.as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
    }
    trace_file = tmp_path / "trace"
    driver = [str(VENV / "bin/python"), "-m", "tests.engine.class_files_driver"]
    done = subprocess.run(
        [
            strace,
            *STRACE_OPTIONS,
            "-o",
            str(trace_file),
            *driver,
            str(tmp_path),
            str(STUDENTS),
            str(WORKERS),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(done.stdout, done.stderr[-3000:], file=sys.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = [f"c20-w{i:02d}" for i in range(1, STUDENTS + 1)]
    for operation, final in (("up", "deployed"), ("status", "deployed"), ("destroy", "destroyed")):
        for student in ids:
            assert f"{operation} {student}: {final}" in done.stdout, done.stdout

    threads = json.loads((tmp_path / "threads.json").read_text())
    runs = [Run(r["student"], r["thread"], r["start"], r["end"]) for r in threads["runs"]]
    for operation in ("up", "status", "destroy"):  # a pool per operation, each thread two students
        pool = {r["thread"] for r in threads["runs"] if r["operation"] == operation}
        assert len(pool) == WORKERS, threads
    trace = Trace.parse(trace_file.read_text())
    writers: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    makers: dict[str, set[str]] = defaultdict(set)  # who wrote (rather than removed) each path
    for tid, when, path, removes in trace.writes:
        if found := owner(trace, runs, tid, when):
            student, process = found
            writers[path][student].add(process)
            if not removes:
                makers[path].add(student)

    # Not vacuous: each student's own files were seen, written by that student's worker only.
    for student in ids:
        own = [p for p, by in writers.items() if set(by) == {student} and student in p]
        assert any(p.endswith(f"/Pulumi.{student}.yaml") for p in own), sorted(writers)
        assert any(p.endswith(f"/stacks/calculator-lab/{student}.json") for p in own), own

    assert threads["acquisition_disabled"] == "true"
    plugins = [p for p in writers if "/plugins/" in p and not p.endswith(".lastused")]
    assert plugins == [], f"a worker wrote into a plugin directory: {plugins}"

    shared = {path: by for path, by in writers.items() if len(by) > 1}
    lastused = [p for p in shared if p.endswith(".lastused") and "/plugins/" in p]
    settings = [p for p in shared if p.endswith("-workspace.json") and "/workspaces/" in p]
    rotated = [p for p in shared if Path(p).parent.name == "logs" and len(makers[p]) <= 1]
    other = sorted(set(shared) - set(lastused) - set(settings) - set(rotated))
    assert other == [], f"files written by several students' workers: {other}"
    for path in settings:
        processes = sorted(
            (trace.created[pid][1], trace.exited[pid]) for by in shared[path].values() for pid in by
        )
        overlaps = [(a, b) for a, b in pairwise(processes) if b[0] < a[1]]
        assert overlaps == [], f"two `pulumi` processes wrote {path} at once: {overlaps}"
    # The file the fix is about: every destroy's `stack rm` tried to remove it.
    assert settings, f"no student's `pulumi stack rm` touched a workspace file: {sorted(shared)}"
    print(f"written by several students: {sorted(shared)}", file=sys.stderr)

"""A class of N students on the test cloud, measured: `lab class up`, `status` and `destroy` by
worker count, as an instructor types them (`scripts/lab class ...`).

The roster: N students (`PREFIX-01`, `PREFIX-02`, ...), each the shipped `Pulumi.alice.yaml`
(single topology; the test cloud's image, flavor and external network; its SSH key), on a
private file backend. For each worker count of `--workers` (2,4,8 by default), in that order:
`up`, `status`, `destroy --yes`, each measured:

- wall time and exit status; failures (students not in a good state, from `--report`);
- per-student seconds (the class report's `seconds`): median and maximum;
- CPU seconds of the whole process tree (the console, every `pulumi`, language host, program and
  provider; `wait4`'s rusage, which counts every descendant that was waited for);
- peak memory of the tree (RSS summed over its processes, sampled every SAMPLE_SECONDS) and of
  one student (the `pulumi ... --stack ID` process and its descendants: engine, language host,
  program, provider), the largest and the median over students;
- the test cloud's CPU seconds by service (its processes, found by the test cloud's directory
  in their command line) and the machine's busy cores, to tell what saturates: the cloud's API,
  the backend (here a local directory: the tree's own writes), or the instructor's machine.

Before the first `up`, the project's quota is raised as admin (cloud `testcloud-admin`) where
the class would not fit with `--quota-margin` to spare (the need is the preflight's own
computation, preflight.checks.quota_rows); the raised limits are restored at the end, unless
someone changed them meanwhile. Whatever happens (a failure, Ctrl-C), the class is destroyed
before the quota is restored, and the students' leftovers in the cloud are listed.

Run (the test cloud's environment first: eval "$(tools/testcloud/testcloud env)"):
    .venv/bin/python benchmarks/class_bench.py [--students 20] [--workers 2,4,8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openstack
import psutil
import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.classroom.automation import class_dir  # noqa: E402
from labctl.classroom.report import GOOD_STATES  # noqa: E402
from labctl.classroom.roster import load_roster  # noqa: E402
from labctl.cloud import holdings  # noqa: E402
from preflight.checks import quota_rows  # noqa: E402
from preflight.facts import UNLIMITED  # noqa: E402
from preflight.reading import read_cloud  # noqa: E402

PASSPHRASE = "calculator-lab-bench"  # noqa: S105 (the benchmark's own throwaway stacks)
SAMPLE_SECONDS = 0.5
OPERATIONS = ("up", "status", "destroy")
# The preflight's quota rows by the admin API that sets each (Nova's, else Neutron's names).
COMPUTE_QUOTAS = {"instances": "instances", "cores": "cores", "ram_mib": "ram"}
COMPUTE_QUOTAS |= {"key_pairs": "key_pairs"}
# The test cloud's services, by what their command lines hold (tools/testcloud).
SERVICES = (
    ("keystone", "keystone"),
    ("nova-api", "osapi_compute"),
    ("nova-api", "nova.wsgi"),
    ("nova-conductor", "nova-conductor"),
    ("nova-scheduler", "nova-scheduler"),
    ("nova-compute", "nova-compute"),
    ("neutron", "neutron"),
    ("glance", "glance"),
    ("placement", "placement"),
    ("mariadb", "mariadbd"),
    ("rabbitmq", "beam.smp"),
)

console = Console(highlight=False)
if not console.is_terminal:  # a log: room for the table instead of rich's 80 columns
    console.width = max(console.width, 170)


# --- what one operation cost ------------------------------------------------------------------


@dataclass
class Measure:
    workers: int
    operation: str
    exit_code: int
    wall_s: float
    cpu_s: float  # the whole tree: user + system
    peak_tree_mib: float
    peak_student_mib: float  # one student's `pulumi` and its descendants, the largest
    median_student_mib: float
    peak_student_parts_mib: dict[str, float]
    student_s_median: float | None
    student_s_max: float | None
    failures: list[str]
    states: dict[str, int]
    cloud_cpu_s: dict[str, float] = field(default_factory=dict)
    machine_busy_cores: float = 0.0
    load_average: float = 0.0


class Sampler(threading.Thread):
    """RSS of a process tree every SAMPLE_SECONDS: the tree's peak and each student's peak."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.peak_tree = 0
        self.peak_student: dict[str, int] = defaultdict(int)
        # At each student's peak: RSS by process name (engine, language host, program, provider).
        self.parts: dict[str, dict[str, int]] = {}

    def run(self) -> None:
        while not self.stop.wait(SAMPLE_SECONDS):
            try:
                self.sample()
            except psutil.Error:
                continue

    def sample(self) -> None:
        root = psutil.Process(self.root)
        processes = [root, *root.children(recursive=True)]
        rss: dict[int, int] = {}
        parent: dict[int, int] = {}
        name: dict[int, str] = {}
        stack_of: dict[int, str] = {}
        for process in processes:
            try:
                with process.oneshot():
                    rss[process.pid] = process.memory_info().rss
                    parent[process.pid] = process.ppid()
                    name[process.pid] = process.name()
                    argv = process.cmdline()
            except psutil.Error:
                continue
            if argv and Path(argv[0]).name == "pulumi" and "--stack" in argv:
                index = argv.index("--stack") + 1
                if index < len(argv):
                    stack_of[process.pid] = argv[index]
        self.peak_tree = max(self.peak_tree, sum(rss.values()))
        per_student: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for pid, size in rss.items():
            node: int | None = pid
            while node is not None and node not in stack_of:
                node = parent.get(node)
            if node is not None:
                per_student[stack_of[node]][name[pid]] += size
        for student, parts in per_student.items():
            if (size := sum(parts.values())) > self.peak_student[student]:
                self.peak_student[student] = size
                self.parts[student] = dict(parts)


def cloud_processes(cloud_dir: str | None) -> dict[int, str]:
    """The test cloud's processes (pid: service), from their command lines."""
    if not cloud_dir:
        return {}
    found = {}
    for process in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(process.info["cmdline"] or ())
        if cloud_dir not in line:
            continue
        found[process.info["pid"]] = next(
            (name for name, mark in SERVICES if mark in line), "other"
        )
    return found


def cpu_seconds(pids: Mapping[int, str]) -> dict[int, float]:
    times = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        times[pid] = t.user + t.system + t.children_user + t.children_system
    return times


def measure(argv: Sequence[str], env: Mapping[str, str], workers: int, operation: str) -> Measure:
    """Run one `lab class` command and measure it; its report is read from `--report`."""
    report_path = Path(argv[argv.index("--report") + 1])
    cloud = cloud_processes(env.get("CALCLAB_TESTCLOUD"))
    cloud_before = cpu_seconds(cloud)
    machine_before = psutil.cpu_times()
    log = report_path.with_suffix(".log")
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=REPO, env=dict(env), stdout=out, stderr=out)
        sampler = Sampler(process.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except KeyboardInterrupt:
            # The console got the Ctrl-C too and is cancelling its updates: let it finish, so
            # that the clean-up's destroy does not find the stacks locked.
            os.wait4(process.pid, 0)
            raise
        finally:
            sampler.stop.set()
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    sampler.join()
    machine_after = psutil.cpu_times()
    cloud_after = cpu_seconds(cloud)
    by_service: dict[str, float] = defaultdict(float)
    for pid, spent in cloud_after.items():
        if pid in cloud_before:
            by_service[cloud[pid]] += spent - cloud_before[pid]
    busy = _busy(machine_before, machine_after) * (psutil.cpu_count() or 1)

    report: dict[str, Any] = {}
    if report_path.exists():
        report = json.loads(report_path.read_text())
    rows = report.get("students", [])
    seconds = [r["seconds"] for r in rows if r.get("seconds") is not None]
    failures = [f"{r['student']}: {r['state']}: {r.get('error') or ''}".strip() for r in rows]
    failures = [f for r, f in zip(rows, failures, strict=True) if r["state"] not in GOOD_STATES]
    if process.returncode != 0 and not failures:
        tail = log.read_text().splitlines()[-5:]
        failures = [f"exit {process.returncode}: " + " | ".join(tail)]
    states: dict[str, int] = defaultdict(int)
    for row in rows:
        states[row["state"]] += 1
    students = sorted(sampler.peak_student.values())
    mib = 1024 * 1024
    largest = max(sampler.peak_student, key=sampler.peak_student.__getitem__, default=None)
    parts = sampler.parts.get(largest, {}) if largest else {}
    return Measure(
        workers=workers,
        operation=operation,
        exit_code=process.returncode,
        wall_s=round(wall, 1),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
        peak_tree_mib=round(sampler.peak_tree / mib),
        peak_student_mib=round(students[-1] / mib) if students else 0,
        median_student_mib=round(statistics.median(students) / mib) if students else 0,
        peak_student_parts_mib={k: round(v / mib) for k, v in sorted(parts.items())},
        student_s_median=round(statistics.median(seconds), 1) if seconds else None,
        student_s_max=round(max(seconds), 1) if seconds else None,
        failures=failures,
        states=dict(states),
        cloud_cpu_s={k: round(v, 1) for k, v in sorted(by_service.items())},
        machine_busy_cores=round(busy, 2),
        load_average=round(os.getloadavg()[0], 1),
    )


def _busy(before: Any, after: Any) -> float:
    total = sum(after) - sum(before)
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    return 0.0 if total <= 0 else 1 - idle / total


# --- the class, its quota, its clean-up --------------------------------------------------------


def write_roster(path: Path, prefix: str, students: int) -> list[str]:
    """The shipped Pulumi.alice.yaml for every student."""
    alice = yaml.safe_load((REPO / "Pulumi.alice.yaml").read_text())["config"]
    defaults = {key.split(":", 1)[1]: value for key, value in alice.items()}
    ids = [f"{prefix}-{i:02d}" for i in range(1, students + 1)]
    document = {
        "class": f"{prefix}-bench",
        "defaults": defaults,
        "students": [{"id": student} for student in ids],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return ids


def connect(cloud: str) -> Any:
    return openstack.connect(cloud=cloud)


@contextmanager
def quota_for(roster: Path, margin: int, record: dict[str, Any]) -> Iterator[None]:
    """The member project's quota raised (as admin) where the class would not fit with `margin`
    to spare; restored afterwards where nobody changed it meanwhile."""
    member, admin = connect(os.environ.get("OS_CLOUD", "testcloud")), connect("testcloud-admin")
    project = member.current_project_id
    loaded = load_roster(roster)
    rows = quota_rows(read_cloud(member), [(s.stack, s.config) for s in loaded.students])
    raised: dict[str, tuple[int, int]] = {}  # resource: (original, raised to)
    for row in rows:
        if row.limit == UNLIMITED or row.need == 0 or row.limit >= row.used + row.need + margin:
            continue
        raised[row.resource] = (row.limit, row.used + row.need + margin)
    record["quota_raised"] = {name: {"from": a, "to": b} for name, (a, b) in raised.items()}
    _set_quota(admin, project, {name: to for name, (_, to) in raised.items()})
    try:
        yield
    finally:
        now = _quota_now(admin, project, list(raised))
        restore = {n: a for n, (a, b) in raised.items() if now.get(n) == b}
        _set_quota(admin, project, restore)
        record["quota_restored"] = restore
        record["quota_changed_by_others"] = sorted(set(raised) - set(restore))
        member.close()
        admin.close()


def _set_quota(admin: Any, project: str, limits: Mapping[str, int]) -> None:
    compute = {COMPUTE_QUOTAS[n]: v for n, v in limits.items() if n in COMPUTE_QUOTAS}
    network = {n: v for n, v in limits.items() if n not in COMPUTE_QUOTAS}
    if compute:
        admin.compute.update_quota_set(project, **compute)
    if network:
        admin.network.update_quota(project, **network)


def _quota_now(admin: Any, project: str, names: Sequence[str]) -> dict[str, int]:
    compute = admin.compute.get_quota_set(project)
    network = admin.network.get_quota(project)
    return {
        n: int(getattr(compute, COMPUTE_QUOTAS[n]) if n in COMPUTE_QUOTAS else getattr(network, n))
        for n in names
    }


def leftovers(prefix: str) -> dict[str, list[str]]:
    """What of the students' is still in the cloud, by kind (names start with `PREFIX-`)."""
    conn = connect(os.environ.get("OS_CLOUD", "testcloud"))
    try:
        return holdings(conn, prefix)
    finally:
        conn.close()


def wait_for_leftovers(prefix: str, within: float = 120.0) -> dict[str, list[str]]:
    """Nova deletes servers, and then Neutron their ports, a little after the API said yes."""
    deadline = time.monotonic() + within
    while (found := leftovers(prefix)) and time.monotonic() < deadline:
        time.sleep(3)
    return found


# --- the run -----------------------------------------------------------------------------------


def lab_class(operation: str, roster: Path, workers: int, report: Path) -> list[str]:
    argv = [str(REPO / "scripts" / "lab"), "class", operation, str(roster)]
    argv += ["--workers", str(workers), "--report", str(report)]
    return [*argv, "--yes"] if operation == "destroy" else argv


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = args.work_dir or Path(tempfile.mkdtemp(prefix=f"{args.prefix}-bench-"))
    (work / "state").mkdir(parents=True, exist_ok=True)
    roster = work / "class.yaml"
    ids = write_roster(roster, args.prefix, args.students)
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": args.backend or (work / "state").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    record: dict[str, Any] = {
        "students": ids,
        "workers": args.workers,
        "work_dir": str(work),
        "cores": psutil.cpu_count(),
        "measures": [],
    }
    console.print(f"class_bench: {len(ids)} students, workers {args.workers}, in {work}")
    dirty = False
    try:
        with quota_for(roster, args.quota_margin, record):
            try:
                for workers in args.workers:
                    for operation in OPERATIONS:
                        report = work / f"{operation}-{workers}.json"
                        dirty = dirty or operation == "up"
                        result = measure(
                            lab_class(operation, roster, workers, report), env, workers, operation
                        )
                        record["measures"].append(asdict(result))
                        console.print(_line(result))
                        if operation == "destroy" and result.exit_code == 0:
                            dirty = False
            except KeyboardInterrupt:
                record["interrupted"] = True
            finally:
                if dirty:  # a failure or Ctrl-C midway: what the class made goes first
                    console.print("class_bench: destroying what the class made")
                    final = work / "destroy-cleanup.json"
                    cleanup = lab_class("destroy", roster, max(args.workers), final)
                    done = subprocess.run(cleanup, cwd=REPO, env=env, check=False)
                    record["cleanup_exit_code"] = done.returncode
                record["leftovers"] = wait_for_leftovers(args.prefix)
                if not record["leftovers"]:  # the class's directory of stack files, in the cache
                    shutil.rmtree(class_dir(load_roster(roster)), ignore_errors=True)
    finally:
        if args.json:
            args.json.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _line(m: Measure) -> str:
    failed = f", {len(m.failures)} failed: {m.failures[0]}" if m.failures else ""
    parts = ", ".join(f"{name} {mib:.0f}" for name, mib in m.peak_student_parts_mib.items())
    one = f"; one student at most {m.peak_student_mib:.0f} MiB ({parts})" if parts else ""
    return (
        f"  {m.operation} with {m.workers} workers: {m.wall_s:.0f} s, exit {m.exit_code}"
        f"{failed}{one}"
    )


def table(record: Mapping[str, Any]) -> Table:
    grid = Table(title=f"lab class, {len(record['students'])} students on the test cloud")
    columns = (
        "workers",
        "op",
        "wall s",
        "per student s (median/max)",
        "CPU s",
        "peak MiB (tree)",
        "one student MiB (max/median)",
        "failed",
        "busy cores",
        "cloud CPU s (top 3)",
    )
    for column in columns:
        grid.add_column(column, justify="right" if column != "cloud CPU s (top 3)" else "left")
    for m in record["measures"]:
        top = sorted(m["cloud_cpu_s"].items(), key=lambda kv: -kv[1])[:3]
        student = (
            f"{m['student_s_median']}/{m['student_s_max']}"
            if m["student_s_median"] is not None
            else "-"
        )
        grid.add_row(
            str(m["workers"]),
            m["operation"],
            f"{m['wall_s']:.0f}",
            student,
            f"{m['cpu_s']:.0f}",
            str(m["peak_tree_mib"]),
            f"{m['peak_student_mib']}/{m['median_student_mib']}",
            str(len(m["failures"])),
            f"{m['machine_busy_cores']:.2f}",
            ", ".join(f"{name} {s:.0f}" for name, s in top),
        )
    return grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument(
        "--workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[2, 4, 8],
        help="worker counts, comma-separated (default 2,4,8)",
    )
    parser.add_argument("--prefix", default="c20", help="student ids PREFIX-01, PREFIX-02, ...")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--quota-margin",
        type=int,
        default=5,
        help="room left in each quota above the class's need (default 5)",
    )
    parser.add_argument("--backend", help="a state backend URL (default: a private directory)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where the roster, the reports and each command's log go (default: a new one in /tmp)",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("OS_CLIENT_CONFIG_FILE"):
        parser.error('the test cloud\'s environment first: eval "$(tools/testcloud/testcloud env)"')
    record = run(args)
    console.print(table(record))
    if record.get("quota_raised"):
        console.print(f"quota raised for the run, then restored: {record['quota_raised']}")
    if record.get("leftovers"):
        console.print(f"[red]left in the cloud: {record['leftovers']}[/red]")
    if record.get("cleanup_exit_code"):
        console.print(f"[red]the clean-up's destroy failed: see {record['work_dir']}[/red]")
    if record.get("interrupted"):
        console.print("class_bench: interrupted (Ctrl-C): the measures above are all there are")
        return 130
    failed = any(m["failures"] for m in record["measures"])
    return 1 if failed or record.get("leftovers") or record.get("cleanup_exit_code") else 0


if __name__ == "__main__":
    sys.exit(main())

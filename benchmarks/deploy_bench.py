"""What a deploy costs, against the floor of the same resources made by the cloud's API directly.

For each stack (the shipped stack files: `alice`, single topology, and `bob`, client topology,
on the test cloud; `dev`, client topology, on the local Docker engine), copied under a fresh
stack name that is also its student id, in rounds:

- OpenStack: create (`pulumi up --skip-preview`), no-change `pulumi preview`, no-change
  `pulumi up` as a student types it (a preview, then the update), the front end resized
  (`flavorByRole.front`, `up --skip-preview`), `pulumi destroy`;
- Docker: create, no-change preview, no-change `scripts/lab up STACK` (what `make up` runs),
  destroy;

and in the same round the floor: the same resources, from the same plan, made and deleted
with openstacksdk or the Docker Engine API directly, each as soon as what it needs exists
(benchmarks/openstack_floor.py, docker_floor.py). A no-change command's floor is one read of
every resource, all at once (what a refresh cannot do with less). The floor's resource types
and counts are checked against the stack's own state after each create.

Round 1's create and preview are traced (`--otel-traces`); their time is split into
engine, plugins, refresh, provider, program start-up (imports, config, preflight) and program
(benchmarks/trace_breakdown.py). The preflight's own share is measured alone, in this
process, with the program's own functions. Medians, minima and maxima per step are printed,
each Pulumi figure with its ratio to its floor's median; `--json PATH` keeps every sample.

Run: .venv/bin/python benchmarks/deploy_bench.py [--rounds 3] [--stacks alice,bob,dev]
     [--json PATH]   (or `make bench-deploy`)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.docker_floor import DockerFloor, Engine, docker_floor  # noqa: E402
from benchmarks.docker_floor import leftovers as docker_leftovers  # noqa: E402
from benchmarks.openstack_floor import OpenStackFloor, openstack_floor  # noqa: E402
from benchmarks.openstack_floor import leftovers as openstack_leftovers  # noqa: E402
from benchmarks.services_env import docker_env, testcloud_env, toolchain_env  # noqa: E402
from benchmarks.trace_breakdown import COLUMNS, Breakdown, breakdown  # noqa: E402
from lab.config import LabConfig, load_config  # noqa: E402

PASSPHRASE = "calculator-lab-deploy-bench"  # noqa: S105 (the benchmark's own throwaway stacks)
TIMEOUT = 900.0
SHIPPED = {"alice": "openstack", "bob": "openstack", "dev": "docker"}
OPENSTACK_STEPS = ("create", "preview", "up (no change)", "resize front", "destroy")
DOCKER_STEPS = ("create", "preview", "lab up (no change)", "destroy")
# What each step is measured against: the floor's create, read, resize or destroy.
FLOOR_OF = {
    "create": "create",
    "preview": "read",
    "up (no change)": "read",
    "lab up (no change)": "read",
    "resize front": "resize",
    "destroy": "destroy",
}
TRACED = ("create", "preview")

# Wide enough for the tables in a log file; a terminal keeps its own width.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 180)


class BenchError(RuntimeError):
    pass


def say(text: str) -> None:
    console.print(f"[dim]{datetime.now(UTC):%H:%M:%S}[/dim] {text}")


# --- the program's copy and its stacks ---------------------------------------------------------


def copy_checkout(root: Path) -> Path:
    """The checkout's tracked files as they are now (edits included), with its virtualenv:
    `scripts/lab` and the program run from here, and no stack file lands in the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (root / ".venv").symlink_to(REPO / ".venv")
    return root


@dataclass
class Pulumi:
    """`pulumi` for one stack of the copy, on the benchmark's own state backend."""

    workdir: Path
    stack: str
    env: dict[str, str]

    def __call__(self, *args: str, trace: Path | None = None) -> float:
        extra = ["--otel-traces", trace.as_uri()] if trace is not None else []
        return self.command(["pulumi", *args, "--stack", self.stack, "--non-interactive", *extra])

    def command(self, argv: list[str]) -> float:
        started = time.monotonic()
        done = subprocess.run(
            argv,
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        seconds = time.monotonic() - started
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).splitlines()
            errors = [ln for ln in lines if "error" in ln.lower()][:20]
            tail = "\n".join([*errors, "...", *lines[-12:]])
            raise BenchError(f"{self.stack}: `{' '.join(argv[:3])}` failed:\n{tail}")
        return seconds

    def output(self, *args: str) -> str:
        return subprocess.run(
            ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=True,
        ).stdout

    def resource_kinds(self) -> dict[str, int]:
        """The stack's custom resources by type, from its state (no providers, no components)."""
        state = json.loads(self.output("stack", "export"))
        counts: dict[str, int] = {}
        for resource in state["deployment"].get("resources", []):
            kind = resource["type"]
            if resource.get("custom") and not kind.startswith("pulumi:providers:"):
                counts[kind] = counts.get(kind, 0) + 1
        return counts


def stack_file(root: Path, shipped: str, stack: str) -> dict[str, Any]:
    """Pulumi.<shipped>.yaml copied as Pulumi.<stack>.yaml (its salt belongs to the empty
    passphrase, so it is left out); the config values, keys without the project prefix."""
    text = (REPO / f"Pulumi.{shipped}.yaml").read_text()
    kept = [ln for ln in text.splitlines(keepends=True) if not ln.startswith("encryptionsalt:")]
    (root / f"Pulumi.{stack}.yaml").write_text("".join(kept))
    values = yaml.safe_load(text)["config"]
    return {key.removeprefix("calculator-lab:"): value for key, value in values.items()}


# --- samples ------------------------------------------------------------------------------------


@dataclass
class StackRun:
    shipped: str
    target: str
    stack: str
    floor_student: str
    pulumi: dict[str, list[float]] = field(default_factory=dict)
    floor: dict[str, list[float]] = field(default_factory=dict)
    breakdown: dict[str, dict[str, Any]] = field(default_factory=dict)
    preflight_alone: list[float] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=dict)
    floor_resources: dict[str, int] = field(default_factory=dict)
    floor_leftovers: dict[str, list[str]] = field(default_factory=dict)
    stack_leftovers: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failed_rounds: list[str] = field(default_factory=list)
    error: str | None = None

    def add(self, table: dict[str, list[float]], step: str, seconds: float) -> None:
        table.setdefault(step, []).append(seconds)

    @property
    def steps(self) -> tuple[str, ...]:
        return OPENSTACK_STEPS if self.target == "openstack" else DOCKER_STEPS


def _check_same_set(run: StackRun, kinds: dict[str, int], floor_kinds: dict[str, int]) -> None:
    run.resources, run.floor_resources = kinds, floor_kinds
    if kinds != floor_kinds:
        raise BenchError(
            f"{run.stack}: the floor's resources differ from the stack's: "
            f"stack {kinds}, floor {floor_kinds}"
        )


def _traced(step: str, number: int, traces: Path, stack: str) -> Path | None:
    return traces / f"{stack}-{step}.json" if number == 0 and step in TRACED else None


def _keep_breakdown(run: StackRun, step: str, trace: Path | None, seconds: float) -> None:
    if trace is None:
        return
    parsed: Breakdown = breakdown(trace, seconds)
    run.breakdown[step] = {"total": seconds, "seconds": parsed.seconds, "calls": parsed.calls}
    trace.unlink()


# --- OpenStack ----------------------------------------------------------------------------------


def _flavors_by_size(env: dict[str, str]) -> list[str]:
    conn = _connect(env)
    try:
        flavors = sorted(conn.compute.flavors(), key=lambda f: (f.disk, f.ram, f.vcpus, f.name))
        return [f.name for f in flavors]
    finally:
        conn.close()


def _connect(env: dict[str, str]) -> Any:
    import openstack  # here: only OpenStack stacks need it

    config = openstack.config.OpenStackConfig(config_files=[env["OS_CLIENT_CONFIG_FILE"]])
    return openstack.connection.Connection(config=config.get_one(cloud=env["OS_CLOUD"]))


def _preflight_alone(config: LabConfig, stack: str, env: dict[str, str]) -> float:
    """The program's preflight, run here by itself (connect, read the cloud, check)."""
    from preflight.checks import check
    from preflight.connection import connect
    from preflight.reading import read_cloud

    started = time.monotonic()
    conn, cloud = connect(env, {})
    try:
        report = check(read_cloud(conn, cloud), [(stack, config)])
    finally:
        conn.close()
    seconds = time.monotonic() - started
    if not report.ok:
        raise BenchError(f"{stack}: the preflight refuses the stack:\n{report.render()}")
    return seconds


def run_openstack(
    run: StackRun, pulumi: Pulumi, raw: dict[str, Any], rounds: int, traces: Path
) -> None:
    env = pulumi.env
    flavors = _flavors_by_size(env)
    front = (raw.get("flavorByRole") or {}).get("front") or raw["flavor"]
    # Nova resizes up, never down (a disk does not shrink): the change goes to the next larger
    # flavor; a front end already on the largest one starts one size down and is resized to
    # the shipped value.
    if flavors.index(front) + 1 < len(flavors):
        start, target = front, flavors[flavors.index(front) + 1]
    else:
        start, target = flavors[flavors.index(front) - 1], front
        run.notes.append(
            f"front end created as {start} (its shipped {front} is the cloud's largest "
            f"flavor) and resized to {target}"
        )
    pulumi("config", "set", "--path", "calculator-lab:flavorByRole.front", start)
    run.notes.append(f"resize: front end {start} -> {target}")
    floor_raw = {**raw, "flavorByRole": {**(raw.get("flavorByRole") or {}), "front": start}}
    floor_config = load_config(floor_raw, run.floor_student)
    stack_config = load_config(floor_raw, run.stack)

    for number in range(rounds):
        say(f"{run.stack} ({run.shipped}): round {number + 1}/{rounds}")
        samples: dict[str, list[float]] = {}
        try:
            try:
                trace = _traced("create", number, traces, run.stack)
                seconds = pulumi("up", "--yes", "--skip-preview", trace=trace)
                run.add(samples, "create", seconds)
                _keep_breakdown(run, "create", trace, seconds)
                kinds = pulumi.resource_kinds()
                trace = _traced("preview", number, traces, run.stack)
                seconds = pulumi("preview", "--expect-no-changes", trace=trace)
                run.add(samples, "preview", seconds)
                _keep_breakdown(run, "preview", trace, seconds)
                run.add(samples, "up (no change)", pulumi("up", "--yes", "--expect-no-changes"))
                pulumi("config", "set", "--path", "calculator-lab:flavorByRole.front", target)
                run.add(samples, "resize front", pulumi("up", "--yes", "--skip-preview"))
            except BenchError as err:
                # The cloud failing a step (a loaded test cloud sends a server to ERROR): the
                # round is not counted; the stack is destroyed and the next round goes on.
                run.failed_rounds.append(f"round {number + 1}: {err}")
                say(f"[red]{run.stack}: round {number + 1} failed, not counted: {err}[/red]")
        finally:
            run.add(samples, "destroy", pulumi("destroy", "--yes", "--skip-preview"))
            pulumi("config", "set", "--path", "calculator-lab:flavorByRole.front", start)
        if len(samples) < len(OPENSTACK_STEPS):
            continue
        for step, values in samples.items():
            run.pulumi.setdefault(step, []).extend(values)
        run.preflight_alone.append(_preflight_alone(stack_config, run.stack, env))

        floor = openstack_floor(_connect(env), floor_config)
        _check_same_set(run, kinds, floor.graph.kinds())
        with _floor_cleanup(run, floor):
            phase_started = time.monotonic()
            floor.conn.authorize()  # each command authenticates anew; so does each phase here
            seconds, failures = floor.create()
            _raise_failures(run, "create", failures)
            run.add(run.floor, "create", time.monotonic() - phase_started)
            run.add(run.floor, "read", _fresh_auth(floor, floor.read)[0])
            run.add(run.floor, "resize", _fresh_auth(floor, partial(floor.resize, target))[0])
            seconds, (_, failures) = _fresh_auth(floor, floor.destroy)
            _raise_failures(run, "destroy", failures)
            run.add(run.floor, "destroy", seconds)


T = TypeVar("T")


def _fresh_auth(floor: OpenStackFloor, phase: Callable[[], T]) -> tuple[float, T]:
    """A phase as a separate command runs it, authenticating first: (seconds, its result)."""
    started = time.monotonic()
    floor.conn.session.invalidate()
    floor.conn.authorize()
    result = phase()
    return time.monotonic() - started, result


def _raise_failures(run: StackRun, phase: str, failures: dict[str, BaseException]) -> None:
    if failures:
        first = "; ".join(f"{key}: {err}" for key, err in list(failures.items())[:3])
        raise BenchError(f"{run.stack}: the floor's {phase} failed ({first})")


@contextmanager
def _floor_cleanup(run: StackRun, floor: OpenStackFloor | DockerFloor) -> Iterator[None]:
    """Whatever happens inside, nothing of the floor's student is left afterwards: a failed
    tear-down is followed by a sweep of everything named or labelled for that student."""
    try:
        yield
    finally:
        if floor.made.keys():
            floor.destroy()  # a no-op for what the timed tear-down removed already
        # Nova lists a deleted server a little longer: what is still there after a minute
        # is left over, and swept.
        deadline = time.monotonic() + 60
        while floor.leftovers() and time.monotonic() < deadline:
            time.sleep(2)
        swept = floor.sweep()
        if swept:
            run.notes.append(f"floor sweep removed {swept}")
        run.floor_leftovers = floor.leftovers()


# --- Docker ---------------------------------------------------------------------------------


def run_docker(
    run: StackRun, pulumi: Pulumi, raw: dict[str, Any], rounds: int, traces: Path
) -> None:
    from tests.docker_client import BASE_IMAGE, free_port

    engine = Engine.at(pulumi.env["DOCKER_HOST"])
    port = free_port()
    for key, value in (("dockerBaseImage", BASE_IMAGE), ("dockerHostPort", str(port))):
        pulumi("config", "set", f"calculator-lab:{key}", value)
    floor_raw = {**raw, "dockerBaseImage": BASE_IMAGE, "dockerHostPort": free_port()}
    floor_config = load_config(floor_raw, run.floor_student)
    lab = [str(pulumi.workdir / "scripts" / "lab"), "up", run.stack]
    for number in range(rounds):
        say(f"{run.stack} ({run.shipped}): round {number + 1}/{rounds}")
        try:
            trace = _traced("create", number, traces, run.stack)
            seconds = pulumi("up", "--yes", "--skip-preview", trace=trace)
            run.add(run.pulumi, "create", seconds)
            _keep_breakdown(run, "create", trace, seconds)
            kinds = pulumi.resource_kinds()
            trace = _traced("preview", number, traces, run.stack)
            seconds = pulumi("preview", "--expect-no-changes", trace=trace)
            run.add(run.pulumi, "preview", seconds)
            _keep_breakdown(run, "preview", trace, seconds)
            run.add(run.pulumi, "lab up (no change)", pulumi.command(lab))
        finally:
            run.add(run.pulumi, "destroy", pulumi("destroy", "--yes", "--skip-preview"))

        floor = docker_floor(engine, floor_config)
        _check_same_set(run, kinds, floor.graph.kinds())
        with _floor_cleanup(run, floor):
            seconds, failures = floor.create()
            _raise_failures(run, "create", failures)
            run.add(run.floor, "create", seconds)
            run.add(run.floor, "read", floor.read())
            seconds, failures = floor.destroy()
            _raise_failures(run, "destroy", failures)
            run.add(run.floor, "destroy", seconds)


# --- the run ------------------------------------------------------------------------------------


def stack_leftovers(run: StackRun, env: dict[str, str], wait: float = 60.0) -> dict[str, list[str]]:
    """What the cloud or engine still holds of the Pulumi stack's student (its stack name),
    once Nova has finished deleting the servers it accepted to delete (or `wait` s)."""
    deadline = time.monotonic() + wait
    while True:
        if run.target == "docker":
            found = docker_leftovers(Engine.at(env["DOCKER_HOST"]), run.stack)
        else:
            conn = _connect(env)
            try:
                found = openstack_leftovers(conn, run.stack)
            finally:
                conn.close()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(2)


def bench(
    stacks: list[str],
    rounds: int,
    prefix: str,
    scratch: Path,
    after_each: Callable[[list[StackRun]], None],
) -> list[StackRun]:
    """Every stack's rounds in turn; `after_each(runs so far)` once each stack is done."""
    tag = secrets.token_hex(2)
    # The services' addresses go into this process's own environment too: the floors and the
    # preflight here reach them as the commands do.
    targets = {SHIPPED[s] for s in stacks}
    if "docker" in targets and "DOCKER_HOST" not in os.environ:
        os.environ["DOCKER_HOST"] = docker_env()["DOCKER_HOST"]
    if "openstack" in targets and "OS_CLOUD" not in os.environ:
        os.environ.update(testcloud_env())
    base = {**os.environ, **toolchain_env()}
    base |= {
        "PULUMI_BACKEND_URL": (scratch / "state").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_CREDENTIALS_PATH": str(scratch),
        "NO_COLOR": "1",
    }
    (scratch / "state").mkdir()
    traces = scratch / "traces"
    traces.mkdir()
    root = copy_checkout(scratch / "checkout")
    runs: list[StackRun] = []
    for shipped in stacks:
        target = SHIPPED[shipped]
        stack = f"{prefix}{tag}{shipped[0]}"
        run = StackRun(shipped, target, stack, floor_student=f"{stack}f")
        runs.append(run)
        pulumi = Pulumi(root, stack, dict(base))
        raw = stack_file(root, shipped, stack)
        try:
            pulumi.command(["pulumi", "stack", "init", stack, "--secrets-provider", "passphrase"])
            (run_openstack if target == "openstack" else run_docker)(
                run, pulumi, raw, rounds, traces
            )
        except Exception as err:
            run.error = f"{type(err).__name__}: {err}"
            say(f"[red]{stack}: {run.error}[/red]")
            traceback.print_exc()
        finally:
            run.stack_leftovers = stack_leftovers(run, pulumi.env)
        after_each(runs)
    return runs


# --- the report ---------------------------------------------------------------------------------


def _spread(samples: list[float]) -> str:
    if not samples:
        return "-"
    median = statistics.median(samples)
    if len(samples) == 1:
        return f"{median:.1f}"
    return f"{median:.1f} ({min(samples):.1f}-{max(samples):.1f})"


def report(
    runs: list[StackRun], rounds: int, loads: dict[str, Any], before: dict[str, Any] | None
) -> None:
    """The tables; with `before` (an earlier run's --json), its medians beside these."""
    earlier = {run["shipped"]: run for run in (before or {}).get("stacks", [])}
    table = Table(
        title=f"Deploys against their floor: median (min-max) seconds over {rounds} round(s)",
        title_justify="left",
    )
    columns = ["stack", "step", "pulumi", "floor", "floor step", "ratio"]
    if before is not None:
        columns += ["before", "now/before"]
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("stack", "step", "floor step") else "right"
        )
    for run in runs:
        label = f"{run.shipped} ({run.target}) as {run.stack}"
        for step in run.steps:
            ours, floor = run.pulumi.get(step, []), run.floor.get(FLOOR_OF[step], [])
            ratio = (
                f"{statistics.median(ours) / statistics.median(floor):.1f}x"
                if ours and floor
                else "-"
            )
            row = [label, step, _spread(ours), _spread(floor), FLOOR_OF[step], ratio]
            if before is not None:
                old = earlier.get(run.shipped, {}).get("pulumi", {}).get(step, [])
                row.append(_spread(old))
                change = statistics.median(ours) / statistics.median(old) if ours and old else None
                row.append(f"{change:.2f}x" if change is not None else "-")
            table.add_row(*row)
            label = ""
        table.add_section()
    console.print(table)

    parts = Table(
        title="Where the time goes (round 1, traced; seconds, slices add up to the total)",
        title_justify="left",
    )
    for column in ("stack", "step", "total", *COLUMNS, "preflight alone", "provider calls"):
        parts.add_column(
            column, justify="left" if column in ("stack", "step", "provider calls") else "right"
        )
    for run in runs:
        label = run.stack
        old_run = earlier.get(run.shipped, {})
        for step in TRACED:
            rows = [(step, run.breakdown.get(step), run.preflight_alone)]
            if before is not None:
                old = old_run.get("breakdown", {}).get(step)
                rows.append((f"{step}, before", old, old_run.get("preflight_alone", [])))
            for name, got, preflight in rows:
                if got is None:
                    continue
                alone = _spread(preflight) if run.target == "openstack" else "-"
                calls = " ".join(f"{k}:{v}" for k, v in sorted(got["calls"].items()))
                parts.add_row(
                    label,
                    name,
                    f"{got['total']:.1f}",
                    *(f"{got['seconds'][c]:.2f}" for c in COLUMNS),
                    alone,
                    calls,
                )
                label = ""
    console.print(parts)
    for run in runs:
        kinds = sum(run.resources.values())
        console.print(
            f"{run.stack}: {kinds} resources in the stack's state, "
            f"{sum(run.floor_resources.values())} in the floor"
            + (" (same types and counts)" if run.resources == run.floor_resources else "")
            + f"; floor left {run.floor_leftovers or 'nothing'}"
            + f"; stack left {run.stack_leftovers or 'nothing'}"
        )
        for note in run.notes:
            console.print(f"  {run.stack}: {note}")
        for failed in run.failed_rounds:
            console.print(f"  [red]{run.stack}: not counted: {failed}[/red]")
        if run.error:
            console.print(f"  [red]{run.stack}: FAILED: {run.error}[/red]")
    console.print(
        f"load average (1, 5, 15 min): at start {loads['start']}, at end {loads['end']}; "
        f"{os.cpu_count()} cores"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--stacks", default="alice,bob,dev", help="shipped stack files, comma-separated"
    )
    parser.add_argument("--json", type=Path, help="write every sample here")
    parser.add_argument(
        "--compare", type=Path, help="an earlier run's --json: its medians printed beside"
    )
    parser.add_argument(
        "--prefix", default="bn", help="start of every stack name and student id made"
    )
    args = parser.parse_args()
    stacks = [s for s in args.stacks.split(",") if s]
    unknown = [s for s in stacks if s not in SHIPPED]
    if unknown or not stacks:
        parser.error(f"--stacks: choose among {', '.join(SHIPPED)}")
    before = json.loads(args.compare.read_text()) if args.compare is not None else None
    loads: dict[str, Any] = {"start": [round(x, 2) for x in os.getloadavg()]}
    started = datetime.now(UTC)

    def save(runs: list[StackRun], complete: bool = False) -> None:
        """The samples so far (a long run that is stopped keeps what it measured)."""
        if args.json is None:
            return
        document = {
            "started": started.isoformat(),
            "complete": complete,
            "rounds": args.rounds,
            "load_average": loads | {"now": [round(x, 2) for x in os.getloadavg()]},
            "cores": os.cpu_count(),
            "floor_of": FLOOR_OF,
            "stacks": [run.__dict__ | {"steps": list(run.steps)} for run in runs],
        }
        args.json.write_text(json.dumps(document, indent=2, default=str))

    scratch = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    try:
        runs = bench(stacks, args.rounds, args.prefix, scratch, save)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    loads["end"] = [round(x, 2) for x in os.getloadavg()]
    report(runs, args.rounds, loads, before)
    save(runs, complete=True)
    failed = (run.error or run.failed_rounds for run in runs)
    if any(failed) or any(run.floor_leftovers or run.stack_leftovers for run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Runs one operation over a class's stacks: a bounded pool of workers, one student each.

Each worker drives one student's stack through the Automation API (`Stack.up/preview/refresh/
destroy`), never shelling out to `pulumi` itself, and records the result in the student's
`Outcome`; an exception in one student's run is that student's error, never the others'.

Converging re-runs: `up` skips a student whose last update succeeded with the values the roster
gives now (the stack's own history says so), refreshes first when the last operation did not
succeed (an interrupted or failed `up` may have left pending operations), and runs a plain `up`
otherwise. `destroy` skips stacks that are not in the backend.

Ctrl-C: queued students are not started. The terminal sends SIGINT to the whole foreground
process group, so each running `pulumi` receives it too and cancels its update itself: it
lets the resource operations in flight finish, writes the state and releases the stack's
lock (its providers run in their own process groups and are not interrupted). The console
waits for that and reports those students as `cancelled`. The Automation API's
`Stack.cancel()` is not used: on a file or object-store backend it only deletes the lock while
the update goes on. A second Ctrl-C makes `pulumi` stop at once; the next `up` refreshes
those stacks before updating them.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pulumi.automation import (
    CommandError,
    EngineEvent,
    LocalWorkspace,
    OpType,
    Stack,
    UpdateSummary,
)

from lab.config import decode_value
from lab.names import namespace_values
from labctl import locks
from labctl.backend import store_failure
from labctl.classroom import automation, orphans
from labctl.classroom import preflight as class_preflight
from labctl.classroom.health import HealthCheck
from labctl.classroom.report import ALREADY_GONE, ClassReport, Outcome, one_line
from labctl.classroom.roster import Roster, Student

Operation = Literal["up", "preview", "refresh", "destroy", "status", "reap"]

# How the program's preflight lines begin (targets/preflight_run.py, preflight/token.py).
PREFLIGHT_PREFIX = "preflight: "
# Steps that change nothing; the live table shows the others.
_QUIET_OPS = {OpType.SAME, OpType.READ}


@dataclass
class RunContext:
    """What every worker shares: the workspace, the stacks found in the backend, the stop flag."""

    ws: LocalWorkspace
    existing: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)
    health: HealthCheck | None = None
    extra_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # Pulumi.yaml's declared defaults
    force: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


# --- progress from the engine's events -------------------------------------------------------


class _Progress:
    """Turns a stack operation's engine events into the live table's step and a one-line error."""

    def __init__(self, outcome: Outcome, backend: str | None = None) -> None:
        self.outcome = outcome
        self.backend = backend  # the state backend's URL, to name it when it fails
        self.done = 0
        self.errors: list[str] = []
        self.lines: list[str] = []

    def on_event(self, event: EngineEvent) -> None:
        if (pre := event.resource_pre_event) is not None:
            meta = pre.metadata
            if meta.op not in _QUIET_OPS:
                name = meta.urn.rsplit("::", 1)[-1]
                self.outcome.detail = f"{self.done} done · {meta.op.value} {name}"
        elif event.res_outputs_event is not None:
            self.done += 1
        elif (diag := event.diagnostic_event) is not None and diag.severity == "error":
            self.errors.append(diag.message)
        elif diag is not None and diag.message.startswith(PREFLIGHT_PREFIX):
            # The program's word on its preflight: skipped for the class's check, or read.
            self.outcome.preflight = diag.message.strip()
        elif (summary := event.summary_event) is not None:
            self.outcome.changes = {
                op.value if isinstance(op, OpType) else str(op): count
                for op, count in summary.resource_changes.items()
            }

    def on_output(self, line: str) -> None:
        self.lines.append(line)
        del self.lines[:-50]

    def error(self, err: BaseException) -> str:
        """The most telling error line: a resource's diagnostic, else the CLI's `error:` line."""
        # The backend's own failures first: a lock, a store that stopped answering.
        everything = "\n".join([*self.errors, str(err)])
        if locked := locks.locked_message(self.outcome.stack, everything):
            return locked
        if lost := store_failure(everything, self.backend):
            return lost
        specific = [e for e in self.errors if "update failed" not in e and e.strip()]
        if specific:
            return essential(specific[0])
        if self.errors:
            return self.errors[0]
        text = str(err)
        if isinstance(err, CommandError):
            for raw in text.splitlines():
                # CommandError's text puts the CLI's stderr after a "stderr:" label.
                line = raw.strip().removeprefix("stderr:").strip()
                if line.startswith("error:"):
                    return line.removeprefix("error:").strip()
        return text


def essential(message: str) -> str:
    """A program's traceback reduced to the exception it ended with (what says what is
    wrong); any other message as it is."""
    if "Traceback (most recent call last)" not in message:
        return message
    lines = message.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Traceback"))
    # Frames are indented; the exception that ended the program is the last unindented line.
    unindented = [i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "\t")]
    if not unindented:
        return message
    last = unindented[-1]
    head = lines[0].strip() if start > 0 else ""
    return " ".join(part for part in (head, *lines[last:]) if part.strip())


# --- one student -----------------------------------------------------------------------------


def _history(stack: Stack) -> UpdateSummary | None:
    entries = stack.history(page_size=1, show_secrets=False)
    return entries[0] if entries else None


def _canonical(value: Any) -> str:
    # Stack history keeps config as strings (maps as JSON); the roster has YAML values.
    value = decode_value(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def is_done(
    last: UpdateSummary | None, values: Mapping[str, Any], defaults: Mapping[str, Any]
) -> bool:
    """True when the stack's last operation was a successful `up` with exactly these values
    (the engine records the project's declared defaults too, so they are expected as well)."""
    if last is None or last.kind != "update" or last.result != "succeeded":
        return False
    recorded = {
        key: _canonical(config.value) for key, config in namespace_values(last.config).items()
    }
    expected = {key: _canonical(value) for key, value in {**defaults, **values}.items()}
    return recorded == expected


def _url(stack: Stack) -> str | None:
    outputs = stack.outputs()
    value = outputs["calculatorUrl"].value if "calculatorUrl" in outputs else None
    return str(value) if value else None


def _after_deploy(ctx: RunContext, stack: Stack, outcome: Outcome) -> None:
    outcome.url = _url(stack)
    if ctx.health is not None and outcome.url:
        outcome.detail = "health check"
        outcome.health = ctx.health(outcome.url)


def _run_engine(
    ctx: RunContext, outcome: Outcome, action: str, call: Callable[[_Progress], object]
) -> bool:
    """Run one engine operation; False (with the outcome finished) when it failed."""
    if ctx.stop.is_set():
        outcome.finish("not started")
        return False
    progress = _Progress(outcome, ctx.env.get("PULUMI_BACKEND_URL"))
    outcome.start(action)
    try:
        call(progress)
    except CommandError as err:
        error = progress.error(err)
        # Pulumi says "update canceled" when a SIGINT reached it, whoever sent it.
        cancelled = ctx.stop.is_set() or "canceled" in error
        outcome.finish("cancelled" if cancelled else "failed", error)
        return False
    return True


def run_student(ctx: RunContext, operation: Operation, student: Student, outcome: Outcome) -> None:
    """One student's operation, start to finish; every failure ends up in `outcome`."""
    if ctx.stop.is_set():
        outcome.finish("not started")
        return
    try:
        _OPERATIONS[operation](ctx, student, outcome)
    except CommandError as err:
        outcome.finish("failed", _Progress(outcome, ctx.env.get("PULUMI_BACKEND_URL")).error(err))
    except Exception as err:  # one student's failure never stops the others
        outcome.finish("failed", f"{type(err).__name__}: {err}")


def _values(ctx: RunContext, student: Student) -> dict[str, Any]:
    return {**student.values, **ctx.extra_config.get(student.id, {})}


def _recover_stale_lock(ctx: RunContext, stack: Stack, student: Student, outcome: Outcome) -> bool:
    """Remove the stack's lock when every holder was a process of this machine that no longer
    runs (a `pulumi` that lost the backend mid-update could not delete its lock), and on Docker
    what that lost update made outside the state (the engine cannot destroy what it never
    recorded, and would make it twice); True if it did, and the stack wants a refresh. A lock
    of another machine is left alone: only its owner can tell."""
    holders = automation.lock_holders(ctx.env, stack.name)
    if not locks.all_stale_here(holders):
        return False
    outcome.detail = "removing a stale lock: " + ", ".join(h.describe() for h in holders)
    stack.cancel()
    if student.config.target == "docker":
        outcome.detail = "removing what the lost update left outside the state"
        orphans.remove_docker_orphans(stack, student.id, ctx.env)
    return True


def _up(ctx: RunContext, student: Student, outcome: Outcome) -> None:
    exists = student.stack in ctx.existing
    outcome.start("select" if exists else "create")
    stack = automation.stack(ctx.ws, student.stack, create=not exists)
    automation.write_stack_config(ctx.ws, student, ctx.extra_config.get(student.id))
    refresh = False
    if exists:
        last = _history(stack)
        if not ctx.force and is_done(last, _values(ctx, student), ctx.defaults):
            outcome.start("none (done)")
            _after_deploy(ctx, stack, outcome)
            outcome.finish("deployed")
            return
        refresh = last is not None and last.result != "succeeded"
    unlocked = exists and _recover_stale_lock(ctx, stack, student, outcome)
    if unlocked:
        refresh = True  # the update it belonged to never finished
    if refresh and student.config.target == "openstack":
        outcome.detail = "waiting for Nova's builds"
        if building := class_preflight.wait_for_builds(ctx.env, student.id):
            outcome.detail = f"still in BUILD after 180 s: {', '.join(building)}"
    action = "up --refresh" if refresh else "up"
    if unlocked:
        action = f"pulumi cancel (stale lock), {action}"
    ok = _run_engine(
        ctx,
        outcome,
        action,
        lambda p: stack.up(
            refresh=refresh, color="never", on_output=p.on_output, on_event=p.on_event
        ),
    )
    if ok:
        _after_deploy(ctx, stack, outcome)
        outcome.finish("deployed")


def _preview(ctx: RunContext, student: Student, outcome: Outcome) -> None:
    exists = student.stack in ctx.existing
    outcome.start("preview")
    # A preview leaves nothing behind: a stack made for it is removed again.
    stack = automation.stack(ctx.ws, student.stack, create=not exists)
    automation.write_stack_config(ctx.ws, student, ctx.extra_config.get(student.id))
    try:
        ok = _run_engine(
            ctx,
            outcome,
            "preview",
            lambda p: stack.preview(color="never", on_output=p.on_output, on_event=p.on_event),
        )
    finally:
        if not exists:
            ctx.ws.remove_stack(student.stack)
            automation.remove_stack_file(ctx.ws, student.stack)
    if ok:
        outcome.finish("previewed")


def _refresh(ctx: RunContext, student: Student, outcome: Outcome) -> None:
    if student.stack not in ctx.existing:
        outcome.start("none")
        outcome.finish("absent")
        return
    stack = automation.stack(ctx.ws, student.stack, create=False)
    automation.write_stack_config(ctx.ws, student, ctx.extra_config.get(student.id))
    ok = _run_engine(
        ctx,
        outcome,
        "refresh",
        lambda p: stack.refresh(color="never", on_output=p.on_output, on_event=p.on_event),
    )
    if ok:
        _after_deploy(ctx, stack, outcome)
        outcome.finish("refreshed")


def _destroy(ctx: RunContext, student: Student, outcome: Outcome) -> None:
    if student.stack not in ctx.existing:
        outcome.start("none")
        outcome.finish("absent")
        automation.remove_stack_file(ctx.ws, student.stack)
        return
    outcome.start("destroy")
    stack = automation.stack(ctx.ws, student.stack, create=False)
    automation.write_stack_config(ctx.ws, student, ctx.extra_config.get(student.id))
    last = _history(stack)
    refresh = last is not None and last.result != "succeeded"
    if _recover_stale_lock(ctx, stack, student, outcome):
        refresh = True
    ok = _run_engine(
        ctx,
        outcome,
        "destroy --refresh" if refresh else "destroy",
        lambda p: stack.destroy(
            refresh=refresh, color="never", on_output=p.on_output, on_event=p.on_event
        ),
    )
    if ok:
        ctx.ws.remove_stack(student.stack)
        automation.remove_stack_file(ctx.ws, student.stack)
        outcome.finish("destroyed")


def _reap(ctx: RunContext, student: Student, outcome: Outcome) -> None:
    """`destroy` for a class that has ended. A stack that is gone already is no error: never
    deployed, destroyed and removed before, or emptied by a `pulumi destroy` that kept it (that
    one is removed now, as `destroy` would have)."""
    summary = ctx.existing.get(student.stack)
    if summary is not None and not summary.resource_count and not summary.update_in_progress:
        outcome.start("stack rm")
        ctx.ws.remove_stack(student.stack)
        automation.remove_stack_file(ctx.ws, student.stack)
        outcome.finish(ALREADY_GONE)
        return
    _destroy(ctx, student, outcome)
    if outcome.state == "absent":
        outcome.state = ALREADY_GONE


def _status(ctx: RunContext, student: Student, outcome: Outcome) -> None:
    outcome.start("status")
    summary = ctx.existing.get(student.stack)
    if summary is None:
        outcome.finish("absent")
        return
    if summary.update_in_progress:
        outcome.finish("busy", "an update is running on this stack")
        return
    # A self-managed backend reports no update in progress: its lock says who is at work.
    if holders := automation.lock_holders(ctx.env, student.stack):
        who = ", ".join(h.describe() for h in holders)
        outcome.finish("busy", f"being updated by {who}")
        return
    stack = automation.stack(ctx.ws, student.stack, create=False)
    last = _history(stack)
    if last is None:
        outcome.finish("absent")
    elif last.result == "in-progress":
        outcome.finish("interrupted", f"last {last.kind} never finished: run lab class up")
    elif last.result != "succeeded":
        outcome.finish("failed", f"last {last.kind} {last.result}: {last.message or ''}".strip())
    elif last.kind == "destroy" or not summary.resource_count:
        outcome.finish("absent")
    else:
        _after_deploy(ctx, stack, outcome)
        if last.kind == "update" and not is_done(last, _values(ctx, student), ctx.defaults):
            outcome.action = "status (roster changed since: run up)"
        outcome.finish("deployed")


_OPERATIONS: dict[Operation, Callable[[RunContext, Student, Outcome], None]] = {
    "up": _up,
    "preview": _preview,
    "refresh": _refresh,
    "destroy": _destroy,
    "status": _status,
    "reap": _reap,
}


# --- the class -------------------------------------------------------------------------------


def outcomes_for(roster: Roster) -> list[Outcome]:
    return [Outcome(s.id, s.stack, s.config.topology, s.config.target) for s in roster.students]


def run_class(
    ctx: RunContext,
    operation: Operation,
    roster: Roster,
    report: ClassReport,
    *,
    workers: int,
    tick: Callable[[], None] = lambda: None,
    interval: float = 0.25,
) -> ClassReport:
    """Run `operation` for every student with at most `workers` at a time.

    `tick` is called from this (the main) thread while waiting, to redraw the live table.
    A KeyboardInterrupt while waiting stops the queue and waits for the running students.
    """
    by_id = {o.student: o for o in report.outcomes}
    # Started in the background by a non-interactive shell, Python inherits SIGINT ignored and
    # would never see a Ctrl-C, while `pulumi` (Go) re-enables it and cancels: listen as well.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="student")
    futures: list[Future[None]] = [
        pool.submit(run_student, ctx, operation, s, by_id[s.id]) for s in roster.students
    ]
    running_at_stop: Sequence[str] = ()
    try:
        while not all(f.done() for f in futures):
            try:
                tick()
                time.sleep(interval)
            except KeyboardInterrupt:
                if not ctx.stop.is_set():
                    ctx.stop.set()
                    report.interrupted = True
                    running_at_stop = [o.student for o in report.outcomes if o.state == "running"]
    finally:
        pool.shutdown(wait=True)
        signal.signal(signal.SIGINT, previous)
        report.finished = time.monotonic()
        tick()
    if report.interrupted:
        report.notes.extend(_interruption_notes(report, running_at_stop))
    return report


def _interruption_notes(report: ClassReport, running: Sequence[str]) -> list[str]:
    states = {o.student: o.state for o in report.outcomes}
    finished = [s for s in running if states[s] not in ("cancelled", "failed")]
    cancelled = [s for s in running if states[s] == "cancelled"]
    skipped = [s for s, st in states.items() if st == "not started"]
    notes = ["interrupted (Ctrl-C): no student was started after it"]
    if cancelled:
        notes.append(
            "cancelled by Pulumi (operations in flight finished, state saved): "
            + ", ".join(cancelled)
        )
    if finished:
        notes.append("running at Ctrl-C and finished anyway: " + ", ".join(finished))
    if skipped:
        notes.append("not started: " + ", ".join(skipped))
    notes.append("run the same command again to converge")
    return notes


__all__ = ["ClassReport", "Outcome", "RunContext", "one_line", "run_class"]

"""`lab class ...`: the instructor's console for a whole class (typer sub-app `class_app`).

The roster's model, the Automation API and the cloud checks are imported by the functions
that use them, so that `lab --help` lists these commands without loading them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live

from labctl.classroom.health import health_check
from labctl.classroom.report import ClassReport, Outcome, failed, summary, table, write_report

if TYPE_CHECKING:
    from labctl.backend import Backend
    from labctl.classroom.roster import Roster
    from labctl.classroom.runner import Operation, RunContext

class_app = typer.Typer(
    name="class",
    help="The instructor's console: every student's stack of a class roster at once.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

# Exit codes: grading scripts tell a refused class from failed students.
EXIT_FAILED = 1  # some students did not end in a good state
EXIT_INVALID = 2  # the roster is invalid
EXIT_REFUSED = 3  # the preflight refused the class: nothing was created
EXIT_INTERRUPTED = 130

# Measured on the project's 2-core machine against the test cloud (docs/class.md): a class of
# three took 113 s with one worker, 102 s with two and 91 s with three on an idle machine, and
# 368 s against 197 s (one, three) on a busy one. One worker more than the cores, and at most
# MAX_DEFAULT_WORKERS, so a real cloud's API is not flooded by 40 students at once (each `up`
# makes about 40 create calls); `--workers` overrides it.
MAX_DEFAULT_WORKERS = 8
DEFAULT_WORKERS = min(MAX_DEFAULT_WORKERS, (os.cpu_count() or 1) + 1)


def default_workers(students: int) -> int:
    return max(1, min(DEFAULT_WORKERS, students))


RosterArg = Annotated[Path, typer.Argument(help="The class roster (YAML).", show_default=False)]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-j",
        min=1,
        help=f"Students run at once (default {DEFAULT_WORKERS}, measured: docs/class.md).",
    ),
]
OnlyOpt = Annotated[
    str | None, typer.Option("--only", help="Comma-separated student ids: run these only.")
]
ReportOpt = Annotated[
    Path | None,
    typer.Option("--report", help="Also write the report as JSON (.json) or CSV (.csv)."),
]


def _load(path: Path, only: str | None) -> Roster:
    from labctl.classroom.roster import RosterError, load_roster, read_ids

    try:
        roster = load_roster(path)
        return roster.select(read_ids(only, None)) if only else roster
    except RosterError as err:
        console.print(f"[red]lab class:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None


@class_app.command()
def init(
    roster: RosterArg,
    ids: Annotated[str | None, typer.Option("--ids", help="Student ids: alice,bob,...")] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option("--ids-file", help="A plain text file of ids, one per line.", exists=True),
    ] = None,
    topology: Annotated[str, typer.Option(help="Every student's topology.")] = "single",
    name: Annotated[str | None, typer.Option("--class", help="The class's name.")] = None,
) -> None:
    """Write a roster from a list of ids (validated; edit it afterwards)."""
    from labctl.classroom.roster import RosterError, read_ids, write_roster

    students = read_ids(ids, ids_file)
    if not students:
        console.print("[red]lab class:[/red] give the ids with --ids a,b,c or --ids-file FILE")
        raise typer.Exit(EXIT_INVALID)
    try:
        written = write_roster(roster, students, topology=topology, class_name=name)
    except RosterError as err:
        console.print(f"[red]lab class:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None
    count = len(written.students)
    typer.echo(f"wrote {roster}: {count} students; next: lab class preview {roster}")


@class_app.command()
def up(
    roster: RosterArg,
    workers: WorkersOpt = None,
    only: OnlyOpt = None,
    report: ReportOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run `up` even for students already deployed.")
    ] = False,
) -> None:
    """Preflight, then deploy every student not yet deployed; check each calculator."""
    _operate("up", _load(roster, only), workers, report, force=force)


@class_app.command()
def preview(
    roster: RosterArg, workers: WorkersOpt = None, only: OnlyOpt = None, report: ReportOpt = None
) -> None:
    """Preflight (quota table included), then `pulumi preview` of every student's stack."""
    _operate("preview", _load(roster, only), workers, report)


@class_app.command()
def refresh(
    roster: RosterArg, workers: WorkersOpt = None, only: OnlyOpt = None, report: ReportOpt = None
) -> None:
    """Refresh every student's stack from the cloud."""
    _operate("refresh", _load(roster, only), workers, report)


@class_app.command()
def destroy(
    roster: RosterArg,
    workers: WorkersOpt = None,
    only: OnlyOpt = None,
    report: ReportOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Destroy every student's stack and remove it from the backend."""
    loaded = _load(roster, only)
    if not yes:
        ids = ", ".join(s.id for s in loaded.students)
        typer.confirm(f"Destroy the stacks of {ids}?", abort=True)
    _operate("destroy", loaded, workers, report)


@class_app.command()
def status(
    roster: RosterArg, workers: WorkersOpt = None, only: OnlyOpt = None, report: ReportOpt = None
) -> None:
    """Each student's state from the backend (no engine run) and their calculator's health."""
    _operate("status", _load(roster, only), workers, report)


@class_app.command()
def reap(
    rosters: Annotated[
        list[Path],
        typer.Argument(help="Class rosters (YAML); those past their `ends:` are destroyed."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be destroyed; change nothing.")
    ] = False,
    workers: WorkersOpt = None,
) -> None:
    """Destroy the stacks of every class that has ended (the roster's `ends:`), for cron.

    Exit status: 0 when every ended class is gone (a stack gone already counts), 1 when a
    destroy failed, 2 when a roster is invalid (the others are reaped all the same)."""
    from labctl import backend, toolchain
    from labctl.classroom.roster import RosterError, load_roster
    from labctl.classroom.schedule import reap_verdict

    now = datetime.now(UTC)
    try:
        state = toolchain.announce(os.environ)  # the first line: where the stacks are
    except backend.BackendError as err:
        console.print(f"[red]lab class reap:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    code = 0
    ended: list[Roster] = []
    for path in rosters:
        try:
            roster = load_roster(path)
        except RosterError as err:
            console.print(f"[red]lab class reap:[/red] {err}", highlight=False, soft_wrap=True)
            code = EXIT_INVALID
            continue
        go, line = reap_verdict(roster.name, roster.ends, now)
        console.print(line, highlight=False, soft_wrap=True)
        if go:
            ended.append(roster)
    if not ended:
        raise typer.Exit(code)
    failures = _reap(ended, state, workers, dry_run=dry_run)
    raise typer.Exit(EXIT_FAILED if failures else code)


def _reap(rosters: list[Roster], state: Backend, workers: int | None, *, dry_run: bool) -> int:
    """Destroy (or, dry, list) the stacks of these ended classes; the number of failures."""
    from labctl import backend, toolchain
    from labctl.classroom import automation, runner
    from labctl.classroom.report import ALREADY_GONE, freed

    targets: set[str] = {s.config.target for roster in rosters for s in roster.students}
    try:
        env = automation.pulumi_environment(targets, state=state)
    except (toolchain.ToolchainError, backend.BackendError) as err:
        console.print(f"[red]lab class reap:[/red] {err}", highlight=False, soft_wrap=True)
        return 1
    failures = 0
    for roster in rosters:
        ws = automation.open_workspace(roster, env)
        existing = automation.existing_stacks(ws)
        if dry_run:
            for s in roster.students:
                found = existing.get(s.stack)
                count = (found.resource_count or 0) if found is not None else 0
                console.print(
                    f"  {s.id}: would destroy {count} resources"
                    if count
                    else f"  {s.id}: {ALREADY_GONE}",
                    highlight=False,
                )
            continue
        ctx = runner.RunContext(ws, existing, env=env, defaults=automation.project_defaults())
        count = workers or default_workers(len(roster.students))
        report = ClassReport(roster.name, "reap", runner.outcomes_for(roster), count)
        _run(ctx, "reap", roster, report, render=freed)
        if console.is_terminal:  # the live table is gone; a log has had these lines already
            for outcome in report.outcomes:
                console.print(freed(outcome), highlight=False, soft_wrap=True)
        for line in summary(report):
            console.print(line, highlight=False, soft_wrap=True)
        failures += len(failed(report))
        if report.interrupted:
            raise typer.Exit(EXIT_INTERRUPTED)
    return failures


def _operate(
    operation: Operation,
    roster: Roster,
    workers: int | None,
    report_path: Path | None,
    *,
    force: bool = False,
) -> None:
    from labctl import backend, toolchain
    from labctl.classroom import automation, runner
    from preflight.token import SKIPPED

    targets: set[str] = {s.config.target for s in roster.students}
    try:
        env = automation.pulumi_environment(targets)
    except (toolchain.ToolchainError, backend.BackendError) as err:
        console.print(f"[red]lab class:[/red] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    ws = automation.open_workspace(roster, env)
    ctx = runner.RunContext(
        ws,
        automation.existing_stacks(ws),
        env=env,
        health=health_check() if operation in ("up", "status", "refresh") else None,
        extra_config=_docker_overrides(roster, env) if operation != "status" else {},
        force=force,
        defaults=automation.project_defaults(),
    )
    count = workers or default_workers(len(roster.students))
    report = ClassReport(roster.name, operation, runner.outcomes_for(roster), count)
    console.print(
        f"class {roster.name}: {len(roster.students)} students{_ending(roster)}, "
        f"stack files in {ws.work_dir}",
        highlight=False,
    )
    todo = roster
    if operation in ("up", "preview"):
        todo = _preflight(roster, ctx, report, env, operation)
    _run(ctx, operation, todo, report)
    if skipped := [o.student for o in report.outcomes if (o.preflight or "").startswith(SKIPPED)]:
        report.notes.append(
            f"preflight: {len(skipped)} student(s)' programs took the class's check instead of "
            f"reading the cloud again: {', '.join(skipped)}"
        )
    _finish(report, report_path)


def _ending(roster: Roster, now: datetime | None = None) -> str:
    """', ends in 3 days (...)' or ', ended 2 hours ago (...)': nothing when the roster has
    no `ends`."""
    from labctl.classroom.schedule import time_left

    if roster.ends is None:
        return ""
    return ", " + time_left(roster.ends, now or datetime.now(UTC))


def _run(
    ctx: RunContext,
    operation: Operation,
    roster: Roster,
    report: ClassReport,
    render: Callable[[Outcome], str] | None = None,
) -> None:
    """The students' operation, shown live on a terminal, one line per student in a log
    (`render`ed, when given)."""
    from labctl.classroom import runner

    if console.is_terminal:
        with Live(table(report, live=True), console=console, transient=True) as live:
            runner.run_class(
                ctx,
                operation,
                roster,
                report,
                workers=report.workers,
                tick=lambda: live.update(table(report, live=True)),
            )
    else:  # a log: one line per student as they finish
        tick = _Lines(report, render)
        runner.run_class(ctx, operation, roster, report, workers=report.workers, tick=tick)


class _Lines:
    """Progress for a log instead of a terminal: a line when a student's state is final."""

    def __init__(self, report: ClassReport, render: Callable[[Outcome], str] | None = None) -> None:
        self.report = report
        self.render = render or _line
        self.shown: set[str] = set()

    def __call__(self) -> None:
        for o in self.report.outcomes:
            if o.student not in self.shown and o.state not in ("queued", "running"):
                self.shown.add(o.student)
                console.print(self.render(o), highlight=False, soft_wrap=True)


def _line(o: Outcome) -> str:
    seconds = f" after {o.seconds:.0f}s" if o.seconds is not None else ""
    return f"{o.student}: {o.state}{seconds} {o.error or o.url or ''}"


def _docker_overrides(roster: Roster, env: dict[str, str]) -> dict[str, dict[str, str]]:
    from labctl.classroom import automation

    images = automation.docker_base_images(roster.students, env)
    return {student: {"dockerBaseImage": image} for student, image in images.items()}


def _preflight(
    roster: Roster,
    ctx: RunContext,
    report: ClassReport,
    env: dict[str, str],
    operation: str,
) -> Roster:
    """The roster of students that may go ahead; refuses (exits) for class-wide problems."""
    from labctl.classroom import preflight
    from preflight.token import VARIABLE

    # A student whose `up` is done holds what they need already; `check` takes that off too.
    with console.status("preflight: reading the cloud's images, flavors, networks and quota"):
        result = preflight.run(roster, roster.students, env)
    if result.report is not None:
        for note in result.report.notes:
            report.notes.append(f"preflight note: {note}")
    if result.refused is not None:
        console.print(
            f"[red]lab class {operation}: refused before anything was created[/red]"
            f"{' on ' + result.cloud if result.cloud else ''}\n{result.refused}",
            highlight=False,
            soft_wrap=True,
        )
        if result.shortfalls:
            console.print(preflight.quota_table(result))
        for student, problems in result.per_student.items():
            console.print(f"  {student}: " + "; ".join(problems), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED)
    # The students' programs take this check instead of reading the cloud again (while fresh);
    # never a token inherited from the shell. Set before any worker reads the workspace.
    env_vars = {key: value for key, value in ctx.ws.env_vars.items() if key != VARIABLE}
    if (token := result.token()) is not None:
        env_vars[VARIABLE] = token
    ctx.ws.env_vars = env_vars
    if operation == "preview" and result.report is not None:
        console.print(preflight.quota_table(result, all_rows=True))
    by_id = {o.student: o for o in report.outcomes}
    for student, problems in result.per_student.items():
        outcome = by_id[student]
        outcome.start("preflight")
        outcome.finish("failed", "preflight: " + "; ".join(problems))
    return roster.select(s.id for s in roster.students if s.id not in result.per_student)


def _finish(report: ClassReport, report_path: Path | None) -> None:
    if not console.is_terminal:  # a log: room for the table instead of rich's 80 columns
        console.width = max(console.width, 160)
    console.print(table(report, live=False))
    for line in summary(report):
        console.print(line, highlight=False, soft_wrap=True)
    if report_path is not None:
        write_report(report, report_path)
        console.print(f"report: {report_path}", highlight=False)
    if report.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if failed(report):
        raise typer.Exit(EXIT_FAILED)


def main() -> None:
    """`python -m labctl.classroom`: the sub-app alone (tests; before cli.py registers it)."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    class_app(prog_name="lab class")
    sys.exit(0)

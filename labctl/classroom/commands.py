"""`lab class ...`: the instructor's console for a whole class (typer sub-app `class_app`).

The roster's model, the Automation API and the cloud checks are imported by the functions
that use them, so that `lab --help` lists these commands without loading them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.live import Live

from labctl.classroom.health import health_check
from labctl.classroom.report import ClassReport, failed, summary, table, write_report

if TYPE_CHECKING:
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
        f"class {roster.name}: {len(roster.students)} students, stack files in {ws.work_dir}",
        highlight=False,
    )
    todo = roster
    if operation in ("up", "preview"):
        todo = _preflight(roster, ctx, report, env, operation)
    if console.is_terminal:
        with Live(table(report, live=True), console=console, transient=True) as live:
            runner.run_class(
                ctx,
                operation,
                todo,
                report,
                workers=count,
                tick=lambda: live.update(table(report, live=True)),
            )
    else:  # a log: one line per student as they finish
        runner.run_class(ctx, operation, todo, report, workers=count, tick=_Lines(report))
    _finish(report, report_path)


class _Lines:
    """Progress for a log instead of a terminal: a line when a student's state is final."""

    def __init__(self, report: ClassReport) -> None:
        self.report = report
        self.shown: set[str] = set()

    def __call__(self) -> None:
        for o in self.report.outcomes:
            if o.student not in self.shown and o.state not in ("queued", "running"):
                self.shown.add(o.student)
                seconds = f" after {o.seconds:.0f}s" if o.seconds is not None else ""
                detail = o.error or o.url or ""
                console.print(f"{o.student}: {o.state}{seconds} {detail}", highlight=False)


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

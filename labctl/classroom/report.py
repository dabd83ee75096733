"""One row per student: what was done, how it ended, the calculator's URL and health, and the
error in one line. Rendered as a rich table (live while running, then final), JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

# `lab class reap`'s word for a student whose stack was gone before it came.
ALREADY_GONE = "already gone"
# Final states that count as success for the command's exit code.
GOOD_STATES = frozenset({"deployed", "destroyed", "absent", ALREADY_GONE, "previewed", "refreshed"})
_STYLE = {
    "deployed": "green",
    "destroyed": "green",
    "previewed": "green",
    "refreshed": "green",
    "absent": "dim",
    ALREADY_GONE: "dim",
    "running": "cyan",
    "queued": "dim",
    "failed": "red",
    "cancelled": "yellow",
    "not started": "yellow",
    "interrupted": "yellow",
    "busy": "yellow",
}
ERROR_WIDTH = 240
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(text: str, width: int = ERROR_WIDTH) -> str:
    """An error message as one line: no colour codes, whitespace collapsed, cut to `width`."""
    flat = " ".join(_ANSI.sub("", text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass
class Outcome:
    """One student's row. Mutated by the worker that runs the student, read by the display."""

    student: str
    stack: str
    topology: str
    target: str
    action: str = ""  # what was run: "up", "up --refresh", "none (done)", "destroy", ...
    state: str = "queued"
    detail: str = ""  # live progress: the step in flight
    started: float | None = None
    finished: float | None = None
    url: str | None = None
    health: str | None = None
    error: str | None = None
    changes: dict[str, int] = field(default_factory=dict)
    preflight: str | None = None  # the program's line on its preflight, when it logged one

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return round((self.finished or time.monotonic()) - self.started, 1)

    def start(self, action: str) -> None:
        self.action, self.state = action, "running"
        if self.started is None:  # the clock runs from the student's first step
            self.started = time.monotonic()

    def finish(self, state: str, error: str | None = None) -> None:
        self.state, self.finished, self.detail = state, time.monotonic(), ""
        if error:
            self.error = one_line(error)

    def record(self) -> dict[str, Any]:
        row = asdict(self)
        for key in ("detail", "started", "finished"):
            row.pop(key)
        row["seconds"] = self.seconds
        return row


@dataclass
class ClassReport:
    class_name: str
    operation: str
    outcomes: list[Outcome]
    workers: int
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return round((self.finished or time.monotonic()) - self.started, 1)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(o.state in GOOD_STATES for o in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "class": self.class_name,
            "operation": self.operation,
            "workers": self.workers,
            "seconds": self.seconds,
            "interrupted": self.interrupted,
            "ok": self.ok,
            "notes": self.notes,
            "students": [o.record() for o in self.outcomes],
        }


CSV_COLUMNS = (
    "student",
    "stack",
    "topology",
    "target",
    "action",
    "state",
    "seconds",
    "url",
    "health",
    "error",
)


def write_report(report: ClassReport, path: Path) -> None:
    """`--report out.json` or `out.csv`, for grading scripts."""
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for outcome in report.outcomes:
            writer.writerow({k: ("" if v is None else v) for k, v in outcome.record().items()})
        path.write_text(buffer.getvalue())
    else:
        path.write_text(json.dumps(report.as_dict(), indent=2) + "\n")


def table(report: ClassReport, *, live: bool) -> Table:
    """The progress table while running (`live`), the report once done."""
    done = sum(1 for o in report.outcomes if o.state not in ("queued", "running"))
    title = (
        f"{report.class_name}: {report.operation}, {done}/{len(report.outcomes)} done, "
        f"{report.workers} worker(s), {report.seconds:.0f}s"
    )
    grid = Table(title=title, title_justify="left", expand=False)
    for column in ("student", "topology", "action", "state", "time"):
        grid.add_column(column, no_wrap=True)
    grid.add_column("step" if live else "calculator / error", overflow="fold")
    if not live:
        grid.add_column("health", no_wrap=True)
    for o in report.outcomes:
        seconds = f"{o.seconds:.0f}s" if o.seconds is not None else ""
        state = Text(o.state, style=_STYLE.get(o.state, ""))
        if live:
            last = o.detail if o.state == "running" else (o.error or o.url or "")
            grid.add_row(o.student, o.topology, o.action, state, seconds, last)
        else:
            shown = Text(o.error, style="red") if o.error else Text(o.url or "")
            health = (o.health or "").split(":", 1)[0]  # the verdict; its detail is in --report
            grid.add_row(o.student, o.topology, o.action, state, seconds, shown, health)
    return grid


def summary(report: ClassReport) -> list[str]:
    """Counts per state, then the notes (interruption, preflight, hints)."""
    counts: dict[str, int] = {}
    for outcome in report.outcomes:
        counts[outcome.state] = counts.get(outcome.state, 0) + 1
    line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return [f"{report.operation}: {line} in {report.seconds:.0f}s", *report.notes]


def freed(outcome: Outcome) -> str:
    """What a reap did for one student, from the engine's summary of the destroy."""
    if outcome.state == "destroyed":
        count = outcome.changes.get("delete", 0)
        return f"{outcome.student}: destroyed, {count} resource{'' if count == 1 else 's'} freed"
    if outcome.error:
        return f"{outcome.student}: {outcome.state}: {outcome.error}"
    return f"{outcome.student}: {outcome.state}"


def failed(report: ClassReport) -> Sequence[Outcome]:
    return [o for o in report.outcomes if o.state not in GOOD_STATES]

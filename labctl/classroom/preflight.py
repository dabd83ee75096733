"""The class's preflight: the cloud checks (preflight/) (the ones every stack's own `up` runs)
over the whole class at once, read once from the cloud.

What is wrong for some students only (a missing image, flavor or key pair they name, a
student id held by another stack) keeps those students out of the run and names them; the
others go ahead. What concerns the class as a whole (the quota, an unreachable cloud) refuses
the whole run before anything is created.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich.table import Table

from lab.names import bare_key
from labctl.classroom.roster import Roster, Student
from preflight.checks import QuotaRow, Report, check
from preflight.connection import CloudUnreachable, connect
from preflight.facts import UNLIMITED
from preflight.reading import read_cloud
from preflight.token import digest, issue

# Problems with these keys concern every student: the run is refused.
CLASS_WIDE_KEYS = frozenset({"quota"})


@dataclass(frozen=True)
class ClassPreflight:
    cloud: str
    report: Report | None  # None: no OpenStack student, nothing to check
    refused: str | None = None  # why the whole class is refused, if it is
    per_student: Mapping[str, list[str]] = field(default_factory=dict)  # id -> problems
    checked_at: float = 0.0  # when the read of the cloud began (time.time())
    digests: Mapping[str, str] = field(default_factory=dict)  # stack -> what was checked

    def token(self) -> str | None:
        """For the programs of the students that passed: skip their own read of the cloud
        (preflight/token.py); None when nothing was checked or the class was refused."""
        if self.report is None or self.refused is not None:
            return None
        passed = {s: d for s, d in self.digests.items() if s not in self.per_student}
        return issue(self.checked_at, self.cloud, passed)

    @property
    def shortfalls(self) -> list[QuotaRow]:
        return [row for row in self.report.quota if row.short] if self.report else []


def run(roster: Roster, students: Sequence[Student], env: Mapping[str, str]) -> ClassPreflight:
    """Check `students` (the ones this run will create things for) against the cloud."""
    stacks = [(s.stack, s.config) for s in students if s.config.target == "openstack"]
    if not stacks:
        return ClassPreflight("", None)
    try:
        conn, cloud = connect(env, {})
    except CloudUnreachable as err:
        return ClassPreflight("", None, refused=str(err))
    checked_at = time.time()  # the facts are at least as old as the read's start
    # What each program will digest on its side: the students' stacks carry no openstack:*
    # settings (a roster's keys are the project's), so the provider's settings are empty.
    digests = {stack: digest(stack, config, {}, env) for stack, config in stacks}
    try:
        report = check(read_cloud(conn, cloud), stacks)
    finally:
        conn.close()
    by_stack = {s.stack: s for s in roster.students}
    per_student: dict[str, list[str]] = {}
    class_wide: list[str] = []
    for problem in report.problems:
        if problem.key in CLASS_WIDE_KEYS:
            class_wide.append(problem.render())
            continue
        for stack in problem.stacks:
            text = f"{problem.key}: {problem.message}"
            if problem.available:
                text += "; available: " + ", ".join(problem.available)
            student = by_stack.get(stack)
            where = student.line_of(bare_key(problem.key) or problem.key) if student else "?"
            per_student.setdefault(stack, []).append(f"line {where}: {text}")
    refused = "\n".join(class_wide) if class_wide else None
    return ClassPreflight(cloud, report, refused, per_student, checked_at, digests)


def quota_table(result: ClassPreflight, *, all_rows: bool = False) -> Table:
    """Resource, need, free (and limit, used): the shortfalls, or every row."""
    grid = Table(title="the project's quota", title_justify="left")
    for column in ("resource", "need", "free", "limit", "used"):
        grid.add_column(column, justify="left" if column == "resource" else "right")
    rows = result.report.quota if result.report and all_rows else result.shortfalls
    for row in rows:
        free = "unlimited" if row.free is None else str(row.free)
        limit = "unlimited" if row.limit == UNLIMITED else str(row.limit)
        style = "red" if row.short else ""
        grid.add_row(row.resource, str(row.need), free, limit, str(row.used), style=style)
    return grid


def wait_for_builds(env: Mapping[str, str], student: str, within: float = 180.0) -> list[str]:
    """Wait until none of the student's servers is in BUILD (README: after an interrupted
    `up`, refresh only once Nova has finished the builds it accepted); the names still
    building when `within` seconds have passed."""
    conn, _ = connect(env, {})
    try:
        deadline = time.monotonic() + within
        while True:
            building = [
                s.name
                for s in conn.compute.servers(name=f"^{student}-")
                if s.status == "BUILD" and (s.name or "").startswith(f"{student}-")
            ]
            if not building or time.monotonic() >= deadline:
                return building
            time.sleep(3)
    finally:
        conn.close()

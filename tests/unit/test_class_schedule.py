"""Classes that end: the roster's `ends` key (zone-aware, validated on its line), the time-left
text (with an injected "now"), what `lab class reap` does with a class, and its per-student
lines: a stack gone already is no error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from labctl.classroom import runner
from labctl.classroom.report import ALREADY_GONE, ClassReport, Outcome, freed
from labctl.classroom.roster import load_roster
from labctl.classroom.schedule import EndError, parse_end, reap_verdict, span, time_left
from tests.unit.test_classroom import GOOD, problems_of, write

PARIS = ZoneInfo("Europe/Paris")


def roster_with(tmp_path: Path, ends: str) -> Path:
    return write(tmp_path, GOOD.replace("class: demo\n", f"class: demo\nends: {ends}\n"))


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2027-01-15T18:00+01:00", datetime(2027, 1, 15, 17, 0, tzinfo=UTC)),
        ("2027-01-15T17:00Z", datetime(2027, 1, 15, 17, 0, tzinfo=UTC)),
        ("2027-01-15T18:00 Europe/Paris", datetime(2027, 1, 15, 17, 0, tzinfo=UTC)),
        # The zone name follows daylight saving time: +02:00 in July.
        ("2027-07-15T18:00 Europe/Paris", datetime(2027, 7, 15, 16, 0, tzinfo=UTC)),
        ("2027-01-15 18:00:30 UTC", datetime(2027, 1, 15, 18, 0, 30, tzinfo=UTC)),
    ],
)
def test_an_end_is_a_date_and_time_with_its_zone(text: str, moment: datetime) -> None:
    assert parse_end(text) == moment


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2027-01-15T18:00", "has no time zone"),
        ("2027-01-15", "has no time zone"),
        ("2027-01-15T18:00 Europe/Pariss", "unknown time zone 'Europe/Pariss'"),
        ("2027-01-15T18:00+01:00 Europe/Paris", "both an offset and a zone name"),
        ("next friday", "expected a date and time with its zone"),
    ],
)
def test_an_end_without_a_zone_or_unreadable_is_refused(text: str, message: str) -> None:
    with pytest.raises(EndError, match=message):
        parse_end(text)


def test_the_roster_key_is_read_as_written(tmp_path: Path) -> None:
    # Unquoted with seconds, YAML itself would read a timestamp; the text is what counts.
    roster = load_roster(roster_with(tmp_path, "2027-01-15T18:00:00+01:00"))
    assert roster.ends == datetime(2027, 1, 15, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    roster = load_roster(roster_with(tmp_path, "2027-01-15T18:00 Europe/Paris"))
    assert roster.ends == datetime(2027, 1, 15, 18, 0, tzinfo=PARIS)
    assert roster.select(["cls-a"]).ends == roster.ends  # --only keeps the class's end
    assert load_roster(write(tmp_path, GOOD)).ends is None  # optional


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2027-01-15T18:00", "class.yaml:2: ends: '2027-01-15T18:00' has no time zone"),
        # YAML would read this one as a naive timestamp: refused all the same.
        ("2027-01-15 18:00:00", "class.yaml:2: ends: '2027-01-15 18:00:00' has no time zone"),
        ("[2027]", "class.yaml:2: ends: expected a date and time with its zone"),
        ("2027-01-15T18:00 Mars/Olympus", "class.yaml:2: ends: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_a_bad_end_names_the_key_and_its_line(tmp_path: Path, value: str, problem: str) -> None:
    [found] = problems_of(roster_with(tmp_path, value))
    assert found.startswith(problem), found


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "less than a minute"),
        (60, "1 minute"),
        (2 * 3600 + 5 * 60, "2 hours 5 minutes"),
        (26 * 3600 + 59, "1 day 2 hours"),
        (3 * 86400 + 7 * 3600, "3 days"),
    ],
)
def test_a_span_in_words(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_time_left_before_and_after_the_end() -> None:
    ends = datetime(2027, 1, 15, 18, 0, tzinfo=PARIS)
    before = datetime(2027, 1, 12, 17, 0, tzinfo=PARIS)
    assert time_left(ends, before) == "ends in 3 days (2027-01-15 18:00 Europe/Paris)"
    after = datetime(2027, 1, 18, 18, 30, tzinfo=UTC)  # any zone compares
    assert time_left(ends, after) == "ended 3 days ago (2027-01-15 18:00 Europe/Paris)"
    offset = datetime(2027, 1, 15, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    assert time_left(offset, offset - timedelta(minutes=90)) == (
        "ends in 1 hour 30 minutes (2027-01-15 18:00 +01:00)"
    )


def test_reap_destroys_only_a_class_that_has_ended() -> None:
    ends = datetime(2027, 1, 15, 18, 0, tzinfo=PARIS)
    assert reap_verdict("demo", None, ends) == (
        False,
        "class demo: its roster says no end (no `ends:`): left alone",
    )
    assert reap_verdict("demo", ends, ends - timedelta(hours=2)) == (
        False,
        "class demo: ends in 2 hours (2027-01-15 18:00 Europe/Paris): left alone",
    )
    go, line = reap_verdict("demo", ends, ends)  # at the very minute: ended
    assert go
    assert line == "class demo: ended less than a minute ago (2027-01-15 18:00 Europe/Paris)"


class _Workspace:
    def __init__(self) -> None:
        self.removed: list[str] = []
        self.work_dir = "/nonexistent"

    def remove_stack(self, name: str) -> None:
        self.removed.append(name)


def test_reap_of_a_stack_gone_already_is_no_error(tmp_path: Path) -> None:
    roster = load_roster(roster_with(tmp_path, "2020-01-01T00:00Z"))
    ws = _Workspace()
    # cls-a: never deployed or removed before; cls-b: emptied by a destroy that kept the stack.
    existing: dict[str, Any] = {
        "cls-b": SimpleNamespace(resource_count=0, update_in_progress=False),
    }
    ctx = runner.RunContext(ws, existing)  # type: ignore[arg-type]
    report = ClassReport("demo", "reap", runner.outcomes_for(roster.select(["cls-a", "cls-b"])), 1)
    for student, outcome in zip(roster.students, report.outcomes, strict=False):
        runner.run_student(ctx, "reap", student, outcome)
    assert [(o.student, o.state) for o in report.outcomes] == [
        ("cls-a", ALREADY_GONE),
        ("cls-b", ALREADY_GONE),
    ]
    assert ws.removed == ["cls-b"]
    assert report.ok
    assert [freed(o) for o in report.outcomes] == ["cls-a: already gone", "cls-b: already gone"]


def test_reap_reports_what_the_engine_destroyed() -> None:
    done = Outcome("cls-a", "cls-a", "single", "docker", state="destroyed", changes={"delete": 12})
    assert freed(done) == "cls-a: destroyed, 12 resources freed"
    broken = Outcome("cls-b", "cls-b", "single", "docker", state="failed", error="locked")
    assert freed(broken) == "cls-b: failed: locked"

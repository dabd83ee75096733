"""When a class ends: the roster's `ends` key, and the time left in words.

One format, a date and time with its zone, written either way:

    ends: 2027-01-15T18:00+01:00          # ISO 8601 with a UTC offset (or Z)
    ends: 2027-01-15T18:00 Europe/Paris   # or with an IANA zone name, which follows DST

A time without a zone is refused: a roster is read on machines in other zones (a CI runner in
UTC, an instructor's laptop abroad), and `lab class reap` destroying stacks an hour early or
late is the cost of guessing.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EXAMPLES = "2027-01-15T18:00+01:00 or 2027-01-15T18:00 Europe/Paris"


class EndError(ValueError):
    """An `ends` value that is not a date and time with its zone; the message says why."""


def parse_end(text: str) -> datetime:
    """The moment `text` names, zone-aware; EndError when it has no zone or cannot be read."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = _with_zone_name(text)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise EndError(f"'{text}' has no time zone: write it with its zone, e.g. {EXAMPLES}")
    return moment


def _with_zone_name(text: str) -> datetime:
    head, _, zone = text.rpartition(" ")
    try:
        moment = datetime.fromisoformat(head.strip())
    except ValueError:
        raise EndError(
            f"expected a date and time with its zone, e.g. {EXAMPLES}; got '{text}'"
        ) from None
    if moment.tzinfo is not None:
        raise EndError(f"'{text}' has both an offset and a zone name: give one of them")
    try:
        return moment.replace(tzinfo=ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise EndError(f"unknown time zone '{zone}' (an IANA name, e.g. Europe/Paris)") from None


def span(seconds: float) -> str:
    """A duration in words, to the two largest units below two days, in days beyond."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days >= 2:
        return _plural(days, "day")
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    shown = [_plural(n, unit) for n, unit in parts if n][:2]
    return " ".join(shown) or "less than a minute"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def time_left(ends: datetime, now: datetime) -> str:
    """'ends in 3 days (2027-01-15 18:00 +01:00)' or 'ended 3 days ago (...)'."""
    when = f"{ends:%Y-%m-%d %H:%M} {_zone(ends)}"
    seconds = (ends - now).total_seconds()
    if seconds > 0:
        return f"ends in {span(seconds)} ({when})"
    return f"ended {span(-seconds)} ago ({when})"


def has_ended(ends: datetime | None, now: datetime) -> bool:
    return ends is not None and ends <= now


def _zone(moment: datetime) -> str:
    if isinstance(moment.tzinfo, ZoneInfo):
        return moment.tzinfo.key
    return moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]


def reap_verdict(name: str, ends: datetime | None, now: datetime) -> tuple[bool, str]:
    """Whether `lab class reap` destroys this class now, and the line that says so."""
    if ends is None:
        return False, f"class {name}: its roster says no end (no `ends:`): left alone"
    if not has_ended(ends, now):
        return False, f"class {name}: {time_left(ends, now)}: left alone"
    return True, f"class {name}: {time_left(ends, now)}"

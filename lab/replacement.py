"""When a plain `up` replaces a server: the replacement trigger each VM is declared with.

The engine replaces a resource whose replacement trigger differs from the one its state
recorded (a null on either side never triggers). The program keeps no state of its own, so
each server carries the trigger it was created under (its metadata `TRIGGER_METADATA`; a
Docker container its label `TRIGGER_LABEL`), and the program, having read the stack's
servers, declares

- a healthy server with the trigger it records: no change, run after run;
- a healthy server that records none (created before servers recorded one) with its own id:
  the state had no trigger, so nothing is replaced; the server is given the value to record
  (in place on Nova; a Docker container, whose labels are fixed, is replaced that once), and
  the state holds a trigger for the next time;
- a server in ERROR (a container stopped) with `replaces <its id>`: it differs from whatever
  it was created under, so the engine replaces it, and the new server records that value and
  is stable in turn; a preview and the update after it declare the same;
- a server that is gone (or was never created) with a fresh value: the engine replaces what
  its state still holds, or creates it.

This stands in for a refresh of the whole stack before every preview and update: one listing
of the project's servers finds the same failures. Pure: the reading is the preflight's
(preflight/reading.py, preflight/containers.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Seen:
    """One server of the stack's, as the cloud shows it."""

    id: str
    failed: bool  # Nova left it in ERROR
    trigger: str | None = None  # the trigger it was created under, if it records one


def replacement_trigger(seen: Sequence[Seen], fresh: str) -> str:
    """The trigger a server is declared with, from the servers bearing its name (`seen`) and a
    value no server recorded before (`fresh`, used when there is none)."""
    failed = sorted(s.id for s in seen if s.failed)
    if failed:
        return f"replaces {failed[0]}"
    healthy = sorted(seen, key=lambda s: s.id)
    if not healthy:
        return fresh
    recorded = sorted(s.trigger for s in healthy if s.trigger)
    return recorded[0] if recorded else healthy[0].id


def replacement_triggers(
    names: Iterable[str], seen: Mapping[str, Sequence[Seen]], fresh: Callable[[], str]
) -> dict[str, str]:
    """Physical name -> trigger, for each server the stack declares."""
    return {name: replacement_trigger(seen.get(name, ()), fresh()) for name in names}

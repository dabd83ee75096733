"""Which servers a plain `up` replaces (lab/replacement.py): the trigger each is declared with.

The engine replaces a resource when its trigger differs from the one its state recorded, and
never when either is null; these follow one server through its life, run after run, with the
trigger the previous run left in the state.
"""

from __future__ import annotations

import itertools

from lab.replacement import Seen, replacement_trigger, replacement_triggers


def replaced(recorded: str | None, declared: str) -> bool:
    """What the engine does with the two (pulumi's shouldTriggerReplace, for strings)."""
    return recorded is not None and declared != recorded


def test_a_server_never_created_gets_the_fresh_value() -> None:
    assert replacement_trigger((), fresh="f1") == "f1"


def test_a_healthy_server_keeps_the_trigger_it_records_run_after_run() -> None:
    created_under = replacement_trigger((), fresh="f1")
    server = Seen("id-1", failed=False, trigger=created_under)
    for fresh in ("f2", "f3", "f4"):
        declared = replacement_trigger((server,), fresh=fresh)
        assert declared == created_under
        assert not replaced(created_under, declared)


def test_a_server_in_error_is_replaced_once_and_its_successor_is_stable() -> None:
    failed = Seen("id-1", failed=True, trigger="f1")
    declared = replacement_trigger((failed,), fresh="f2")
    assert declared == "replaces id-1"
    assert replaced("f1", declared)
    # A preview and the update that follows it declare the same value: both see the same id.
    assert replacement_trigger((failed,), fresh="f3") == declared
    successor = Seen("id-2", failed=False, trigger=declared)  # created under that value
    assert not replaced(declared, replacement_trigger((successor,), fresh="f4"))


def test_a_successor_that_fails_too_is_replaced_again() -> None:
    successor = Seen("id-2", failed=True, trigger="replaces id-1")
    declared = replacement_trigger((successor,), fresh="f5")
    assert declared == "replaces id-2"
    assert replaced("replaces id-1", declared)


def test_a_server_gone_out_of_band_is_replaced_with_the_fresh_value() -> None:
    declared = replacement_trigger((), fresh="f2")
    assert replaced("f1", declared)


def test_a_server_created_before_triggers_were_recorded_is_stable_and_then_protected() -> None:
    old = Seen("id-1", failed=False, trigger=None)
    first = replacement_trigger((old,), fresh="f1")
    assert first == "id-1"
    assert not replaced(None, first)  # the state had no trigger: nothing is replaced
    assert replacement_trigger((old,), fresh="f2") == first  # and the next run agrees
    # Once the state holds it, an ERROR is found like any other.
    assert replaced(first, replacement_trigger((Seen("id-1", True, None),), fresh="f3"))


def test_two_servers_of_one_name_decide_the_same_whatever_the_order() -> None:
    servers = [Seen("b", False, "t-b"), Seen("a", False, "t-a"), Seen("c", True, "t-c")]
    decided = {replacement_trigger(order, "f") for order in itertools.permutations(servers)}
    assert decided == {"replaces c"}
    healthy = servers[:2]
    assert {replacement_trigger(order, "f") for order in itertools.permutations(healthy)} == {"t-a"}


def test_each_declared_server_gets_its_own_trigger() -> None:
    fresh = (f"f{n}" for n in itertools.count())
    triggers = replacement_triggers(
        ["s-front", "s-sum", "s-sub"],
        {"s-front": (Seen("id-1", False, "t1"),), "other-front": (Seen("id-9", True),)},
        fresh=lambda: next(fresh),
    )
    assert triggers["s-front"] == "t1"
    assert triggers["s-sum"] != triggers["s-sub"]  # two fresh values

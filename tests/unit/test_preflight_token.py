"""The class's preflight token (preflight/token.py): a student's program skips its own read of
the cloud only for a fresh token that names its stack with the digest of its own values and
cloud; anything else reads the cloud as before, and says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lab.config import LabConfig, load_config
from labctl.classroom.preflight import ClassPreflight
from labctl.classroom.roster import load_roster
from preflight.checks import Report
from preflight.token import FRESH_SECONDS, SKIPPED, digest, issue, judge
from tests.unit.test_classroom import GOOD, write

NOW = 1_900_000_000.0
CLOUD = "cloud 'testcloud' (user student, auth URL http://127.0.0.1:5000/v3)"
ENV = {"OS_CLOUD": "testcloud", "OS_PASSWORD": "hunter2", "HOME": "/root"}


def config(openstack_config: dict[str, Any], **changes: Any) -> LabConfig:
    return load_config({**openstack_config, **changes}, "alice")


def token_for(cfg: LabConfig, at: float = NOW, env: dict[str, str] = ENV) -> str:
    return issue(at, CLOUD, {"alice": digest("alice", cfg, {}, env)})


def test_a_fresh_token_for_the_same_values_skips_the_read(
    openstack_config: dict[str, Any],
) -> None:
    cfg = config(openstack_config)
    verdict = judge(token_for(cfg), "alice", digest("alice", cfg, {}, ENV), now=NOW + 20)
    assert verdict.skip
    assert verdict.line.startswith(SKIPPED)
    assert verdict.line.endswith(f"({CLOUD}), not read again")


@pytest.mark.parametrize("age", [FRESH_SECONDS + 1, 3600, -60])
def test_an_old_token_or_one_from_the_future_reads_again(
    openstack_config: dict[str, Any], age: float
) -> None:
    cfg = config(openstack_config)
    verdict = judge(token_for(cfg), "alice", digest("alice", cfg, {}, ENV), now=NOW + age)
    assert not verdict.skip
    assert "reading the cloud again" in verdict.line


def test_other_values_another_cloud_or_another_stack_read_again(
    openstack_config: dict[str, Any],
) -> None:
    checked = token_for(config(openstack_config))
    changed = config(openstack_config, flavor="m1.small")
    verdict = judge(checked, "alice", digest("alice", changed, {}, ENV), now=NOW)
    assert not verdict.skip
    assert "checked other values" in verdict.line
    elsewhere = digest("alice", config(openstack_config), {}, {**ENV, "OS_CLOUD": "prod"})
    assert not judge(checked, "alice", elsewhere, now=NOW).skip
    # The openstack:* settings of the stack choose the cloud too.
    provider = digest("alice", config(openstack_config), {"cloud": "prod"}, ENV)
    assert not judge(checked, "alice", provider, now=NOW).skip
    bob = judge(checked, "bob", digest("bob", config(openstack_config), {}, ENV), now=NOW)
    assert not bob.skip
    assert "checked other stacks" in bob.line


def test_a_password_is_not_part_of_what_was_checked(openstack_config: dict[str, Any]) -> None:
    cfg = config(openstack_config)
    rotated = {**ENV, "OS_PASSWORD": "another"}
    assert digest("alice", cfg, {}, rotated) == digest("alice", cfg, {}, ENV)


@pytest.mark.parametrize("token", ["", "yes", "{}", json.dumps({"at": "x", "stacks": []})])
def test_anything_else_in_the_variable_reads_the_cloud(
    openstack_config: dict[str, Any], token: str
) -> None:
    cfg = config(openstack_config)
    verdict = judge(token, "alice", digest("alice", cfg, {}, ENV), now=NOW)
    assert not verdict.skip
    assert "not a lab class token" in verdict.line


def _as_pulumi_gives_it(value: Any) -> str:
    """A stack file's value as the program reads it from the engine: a string, maps as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def test_the_class_and_the_program_digest_a_student_alike(tmp_path: Path) -> None:
    """The roster's values (YAML types) and the program's (the engine's strings) validate to
    the same model, so a class's token matches what each program computes."""
    roster = load_roster(write(tmp_path, GOOD))
    for student in roster.students:
        program = load_config(
            {k: _as_pulumi_gives_it(v) for k, v in student.values.items()}, student.stack
        )
        assert digest(student.stack, program, {}, ENV) == digest(
            student.stack, student.config, {}, ENV
        ), student.id


def test_only_the_students_that_passed_get_the_token() -> None:
    result = ClassPreflight(
        CLOUD,
        Report(problems=(), quota=(), notes=()),
        per_student={"bob": ["line 9: image: no image named 'x'"]},
        checked_at=NOW,
        digests={"alice": "a" * 32, "bob": "b" * 32},
    )
    token = result.token()
    assert token is not None
    assert json.loads(token) == {"at": NOW, "cloud": CLOUD, "stacks": {"alice": "a" * 32}}
    refused = ClassPreflight(CLOUD, result.report, refused="quota", digests=result.digests)
    assert refused.token() is None
    assert ClassPreflight("", None).token() is None  # no OpenStack student: nothing checked

"""labctl/locks.py: the one line a locked stack's failure becomes, and the lock files of a
file backend read as the CLI writes them (the s3:// and postgres:// readers run against real
servers in tests/engine/test_shared_backends.py)."""

from __future__ import annotations

import json
from pathlib import Path

from labctl import locks

# The CLI's error, as the built CLI 3.260 prints it for an s3:// backend.
PULUMI_ERROR = """error: the stack is currently locked by 1 lock(s). Either wait for the other \
process(es) to end or delete the lock file with `pulumi cancel`.
  s3://calculator-lab-state/.pulumi/locks/organization/calculator-lab/alice/5b1e.json?\
endpoint=http://127.0.0.1:9000: created by teacher@lab-7 (pid 4242) at 2026-12-04T21:30:02Z"""


def test_a_locked_stack_is_one_line_naming_the_holder_and_the_way_out() -> None:
    message = locks.locked_message("alice", PULUMI_ERROR)
    assert message == (
        "stack alice is locked: teacher@lab-7 (pid 4242, since 2026-12-04T21:30:02Z) is "
        "updating it. Wait for that to finish; if that process is gone (it crashed, or lost "
        "the backend), remove the lock with `pulumi cancel --stack alice` and run the command "
        "again"
    )


def test_other_failures_are_not_called_locks() -> None:
    assert locks.locked_message("alice", "error: update failed") is None


def test_holders_of_a_file_backend(tmp_path: Path) -> None:
    folder = tmp_path / ".pulumi" / "locks" / "organization" / "calculator-lab" / "alice"
    folder.mkdir(parents=True)
    lock = {"pid": 7, "username": "bob", "hostname": "pc", "timestamp": "2026-12-04T21:00:00Z"}
    (folder / "a.json").write_text(json.dumps(lock))
    url = tmp_path.as_uri()
    assert locks.read_holders(url, "calculator-lab", "alice", {}) == [
        locks.Holder("bob", "pc", 7, "2026-12-04T21:00:00Z")
    ]
    assert locks.read_holders(url, "calculator-lab", "carol", {}) == []


def test_what_cannot_be_read_is_unknown_not_unlocked() -> None:
    s3 = "s3://bucket?endpoint=http://127.0.0.1:1&s3ForcePathStyle=true"
    assert locks.read_holders(s3, "calculator-lab", "alice", {}) is None  # no keys
    keys = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    assert locks.read_holders(s3, "calculator-lab", "alice", keys) is None  # nothing answers
    assert locks.read_holders("https://api.pulumi.com", "calculator-lab", "alice", {}) is None

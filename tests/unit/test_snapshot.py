"""`lab snapshot`: names, marks and ownership, and the exact docker commands, without a daemon.

The real round trips (Glance on the test cloud, `docker commit` on a real engine) are in
tests/engine/test_snapshot_testcloud.py and tests/engine/test_snapshot_docker.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from lab.config import load_config
from lab.names import ROLE_LABEL, SNAPSHOT_LABEL, STUDENT_LABEL
from labctl.snapshot import (
    DockerSnapshots,
    Snapshot,
    SnapshotError,
    create,
    default_name,
    find,
    is_students_snapshot,
    restore_hint,
    snapshot_marks,
    snapshot_name,
)

STACK = "lab-carol"  # a stack whose name is not its student id
CONFIG = load_config({"target": "docker", "student": "carol"}, STACK)
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


class FakeSnapshots:
    def __init__(self, existing: Sequence[Snapshot] = ()) -> None:
        self.existing = list(existing)
        self.created: list[tuple[str, str, dict[str, str]]] = []

    def create(self, server: str, full_name: str, marks: Mapping[str, str]) -> Snapshot:
        self.created.append((server, full_name, dict(marks)))
        return Snapshot(full_name, "id-1", marks[ROLE_LABEL], "active", "now")

    def owned_by(self, student: str) -> list[Snapshot]:
        assert student == CONFIG.student
        return self.existing

    def delete(self, snapshot: Snapshot) -> None:
        self.existing.remove(snapshot)


def test_names_carry_the_student_and_the_role() -> None:
    assert snapshot_name("carol", "front", "before-nano") == "carol-front-before-nano"
    # Another time zone gives the same UTC name.
    paris = NOW.astimezone(timezone(timedelta(hours=1)))
    assert default_name(paris) == "20260304-050607"


@pytest.mark.parametrize(
    ("role", "name", "problem"),
    [
        ("web", "s1", "no role 'web'"),
        ("front", "Before", "lowercase"),
        ("front", "a b", "lowercase"),
        ("front", "-x", "lowercase"),
        ("front", "x" * 33, "32 at most"),
    ],
)
def test_bad_role_or_name_is_refused(role: str, name: str, problem: str) -> None:
    with pytest.raises(SnapshotError, match=problem) as raised:
        snapshot_name("carol", role, name)
    assert raised.value.exit_code == 2


def test_create_snapshots_the_role_s_server_with_the_marks() -> None:
    snapshots = FakeSnapshots()
    made = create(STACK, CONFIG, "sum", "s1", snapshots, NOW)
    assert snapshots.created == [
        (
            "carol-sum",
            "carol-sum-s1",
            {STUDENT_LABEL: "carol", ROLE_LABEL: "sum", SNAPSHOT_LABEL: "carol-sum-s1"},
        )
    ]
    assert made.name == "carol-sum-s1"
    assert (
        create(STACK, CONFIG, "front", None, snapshots, NOW).name == "carol-front-20260304-050607"
    )


def test_create_refuses_a_name_the_student_already_has() -> None:
    existing = Snapshot("carol-front-s1", "id-0", "front", "active", "")
    snapshots = FakeSnapshots([existing])
    # The hint's command takes the stack, which need not be the student id.
    with pytest.raises(SnapshotError, match=r"exists already.* lab snapshot delete lab-carol "):
        create(STACK, CONFIG, "front", "s1", snapshots, NOW)
    assert snapshots.created == []


def test_find_by_full_or_short_name_and_only_the_student_s() -> None:
    mine = Snapshot("carol-front-s1", "id-0", "front", "active", "")
    snapshots = FakeSnapshots([mine])
    assert find(CONFIG, "carol-front-s1", snapshots) is mine
    assert find(CONFIG, "front-s1", snapshots) is mine
    with pytest.raises(SnapshotError, match="no snapshot"):
        find(CONFIG, "front-s2", snapshots)


@pytest.mark.parametrize(
    ("name", "marks", "mine"),
    [
        ("carol-front-s1", snapshot_marks("carol", "front", "carol-front-s1"), True),
        # Another student's snapshot, even one whose name starts like ours.
        ("carolyn-front-s1", snapshot_marks("carolyn", "front", "carolyn-front-s1"), False),
        ("carol-front-s1", snapshot_marks("carolyn", "front", "carol-front-s1"), False),
        # The student's own image that is not a snapshot (the built calculator image).
        ("carol-front-s1", {STUDENT_LABEL: "carol"}, False),
        # Marks copied from a snapshot onto another name (a re-tag): not the snapshot.
        ("carol-front-copy", snapshot_marks("carol", "front", "carol-front-s1"), False),
    ],
)
def test_ownership_needs_name_and_marks(name: str, marks: Mapping[str, Any], mine: bool) -> None:
    assert is_students_snapshot(name, marks, "carol") is mine


def test_restore_hint_is_the_config_key_the_program_reads() -> None:
    hint = restore_hint("carol", "front", "carol-front-s1")
    assert "pulumi config set --path 'imageByRole.front' carol-front-s1 --stack carol" in hint
    # The key the hint sets is the one LabConfig reads.
    config = load_config({"imageByRole": {"front": "carol-front-s1"}}, "carol")
    assert config.image_by_role == {"front": "carol-front-s1"}


class FakeDocker:
    """Answers docker CLI calls from a table of images; records every call."""

    def __init__(self, images: list[dict[str, Any]]) -> None:
        self.images = images
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str]) -> str:
        self.calls.append(list(args))
        if args[:2] == ["image", "ls"]:
            return "\n".join(image["Id"] for image in self.images)
        if args[:2] == ["image", "inspect"]:
            wanted = set(args[2:])
            found = [
                i
                for i in self.images
                if i["Id"] in wanted or wanted & {t.removesuffix(":latest") for t in i["RepoTags"]}
            ]
            return json.dumps(found)
        return ""


def _image(ident: str, tags: list[str], labels: dict[str, str]) -> dict[str, Any]:
    return {"Id": ident, "RepoTags": tags, "Created": "2026", "Config": {"Labels": labels}}


def test_docker_commit_labels_the_image_and_names_it() -> None:
    marks = snapshot_marks("carol", "front", "carol-front-s1")
    docker = FakeDocker([_image("sha256:1", ["carol-front-s1:latest"], marks)])
    made = DockerSnapshots(docker).create("carol-front", "carol-front-s1", marks)
    assert docker.calls[1] == [
        "commit",
        f"--change=LABEL {ROLE_LABEL}=front",
        f"--change=LABEL {SNAPSHOT_LABEL}=carol-front-s1",
        f"--change=LABEL {STUDENT_LABEL}=carol",
        "carol-front",
        "carol-front-s1",
    ]
    assert made == Snapshot("carol-front-s1", "sha256:1", "front", "available", "2026")


def test_docker_list_asks_for_the_student_s_snapshot_labels_and_skips_untagged() -> None:
    marks = snapshot_marks("carol", "sum", "carol-sum-s1")
    docker = FakeDocker(
        [
            _image("sha256:1", ["carol-sum-s1:latest"], marks),
            # Its tag was removed (image rm of a snapshot still used by a container).
            _image("sha256:2", [], snapshot_marks("carol", "sum", "carol-sum-old")),
        ]
    )
    listed = DockerSnapshots(docker).owned_by("carol")
    assert [s.name for s in listed] == ["carol-sum-s1"]
    ls = docker.calls[0]
    assert ls[:2] == ["image", "ls"]
    assert f"label={STUDENT_LABEL}=carol" in ls
    assert f"label={SNAPSHOT_LABEL}" in ls


def test_docker_delete_removes_the_tag_by_name() -> None:
    docker = FakeDocker([])
    DockerSnapshots(docker).delete(Snapshot("carol-sum-s1", "sha256:1", "sum", "", ""))
    assert docker.calls == [["image", "rm", "carol-sum-s1"]]

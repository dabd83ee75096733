"""`lab snapshot`: the handout's objective 7 (snapshot, restore) on a student's stack.

A snapshot is an image made from one of the stack's VMs: on OpenStack a Glance image of the
server (Nova's createImage, waited for until active), on Docker an image committed from the
container. It is named `<student>-<role>-<name>` and marked with the student, the role and
the snapshot name, so `list` and `delete` see a student's own snapshots only. Restoring is not
a command: `pulumi config set --path imageByRole.<role> <snapshot>` and `pulumi up` rebuild
that one VM from it (docs/objective-7.md). Snapshots are not resources of the stack, so
`pulumi destroy` leaves them; `lab snapshot delete` removes them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from lab.names import ROLE_LABEL, ROLES, SNAPSHOT_LABEL, STUDENT_LABEL, physical_name
from labctl.arguments import StackArg
from labctl.errors import LabError

# The model, the stack files and the Docker engine are imported when a command runs: `lab
# --help` lists these commands without them.
if TYPE_CHECKING:
    from lab.config import LabConfig

# Docker repository names allow lowercase letters, digits and separators; Glance accepts more.
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
# Glance converts the server's disk after Nova's createImage: minutes for a real VM.
OPENSTACK_WAIT_SECONDS = 900


class SnapshotError(LabError):
    """A snapshot request that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Snapshot:
    name: str  # <student>-<role>-<name>: what imageByRole.<role> takes
    id: str
    role: str
    status: str
    created: str


def default_name(now: datetime) -> str:
    """A snapshot name when none is given: the UTC time, sortable."""
    return now.astimezone(UTC).strftime("%Y%m%d-%H%M%S")


def snapshot_name(student: str, role: str, name: str) -> str:
    if role not in ROLES:
        raise SnapshotError(f"no role {role!r}: one of {', '.join(ROLES)}", exit_code=2)
    if not _NAME.fullmatch(name):
        raise SnapshotError(
            f"snapshot name {name!r}: use lowercase letters, digits and '-' (32 at most)",
            exit_code=2,
        )
    return physical_name(student, f"{role}-{name}")


def snapshot_marks(student: str, role: str, full_name: str) -> dict[str, str]:
    """Glance properties or Docker labels that make an image this student's snapshot."""
    return {STUDENT_LABEL: student, ROLE_LABEL: role, SNAPSHOT_LABEL: full_name}


def is_students_snapshot(name: str, marks: Mapping[str, Any], student: str) -> bool:
    """Name prefix and marks both: another student's image, or an image that only looks
    like a snapshot by name, is never listed or deleted."""
    return (
        name.startswith(physical_name(student, ""))
        and marks.get(STUDENT_LABEL) == student
        and marks.get(SNAPSHOT_LABEL) == name
    )


def restore_hint(stack: str, role: str, full_name: str) -> str:
    return (
        f"restore: pulumi config set --path 'imageByRole.{role}' {full_name} --stack {stack}"
        f" && pulumi up --stack {stack}"
    )


class Snapshots(Protocol):
    """Where a target keeps its snapshots."""

    def create(self, server: str, full_name: str, marks: Mapping[str, str]) -> Snapshot: ...

    def owned_by(self, student: str) -> list[Snapshot]: ...

    def delete(self, snapshot: Snapshot) -> None: ...


# --- OpenStack: Glance images through openstacksdk -----------------------------------------------


class OpenStackSnapshots:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def create(self, server: str, full_name: str, marks: Mapping[str, str]) -> Snapshot:
        found = self._conn.compute.find_server(server)
        if found is None:
            raise SnapshotError(f"no server {server} in this project: is the stack up?")
        image = self._conn.compute.create_server_image(
            found, full_name, metadata=dict(marks), wait=True, timeout=OPENSTACK_WAIT_SECONDS
        )
        # createImage answers before Glance has the image: wait until it is usable.
        image = self._conn.image.wait_for_status(
            self._conn.image.get_image(image.id),
            status="active",
            failures=["killed", "deleted"],
            wait=OPENSTACK_WAIT_SECONDS,
        )
        return _glance_snapshot(image)

    def owned_by(self, student: str) -> list[Snapshot]:
        images = self._conn.image.images(owner=self._conn.current_project_id)
        return sorted(
            (
                _glance_snapshot(image)
                for image in images
                if is_students_snapshot(image.name or "", image.properties or {}, student)
            ),
            key=lambda snapshot: snapshot.name,
        )

    def delete(self, snapshot: Snapshot) -> None:
        self._conn.image.delete_image(snapshot.id)


def _glance_snapshot(image: Any) -> Snapshot:
    properties = image.properties or {}
    return Snapshot(
        name=image.name,
        id=image.id,
        role=str(properties.get(ROLE_LABEL, "")),
        status=image.status,
        created=image.created_at or "",
    )


# --- Docker: images committed from containers ----------------------------------------------------

Runner = Callable[[Sequence[str]], str]


class DockerSnapshots:
    def __init__(self, docker: Runner) -> None:
        self._docker = docker

    def create(self, server: str, full_name: str, marks: Mapping[str, str]) -> Snapshot:
        try:
            self._docker(["container", "inspect", "--format", "{{.Id}}", server])
        except SnapshotError:
            raise SnapshotError(f"no container {server}: is the stack up?") from None
        changes = [f"--change=LABEL {key}={value}" for key, value in sorted(marks.items())]
        self._docker(["commit", *changes, server, full_name])
        return self._inspect([full_name])[0]

    def owned_by(self, student: str) -> list[Snapshot]:
        ids = self._docker(
            [
                "image",
                "ls",
                "--quiet",
                "--no-trunc",
                "--filter",
                f"label={STUDENT_LABEL}={student}",
                "--filter",
                f"label={SNAPSHOT_LABEL}",
            ]
        ).split()
        if not ids:
            return []
        return sorted(
            (s for s in self._inspect(sorted(set(ids))) if s.name),
            key=lambda snapshot: snapshot.name,
        )

    def delete(self, snapshot: Snapshot) -> None:
        # By name, not id: removes the snapshot's tag (and the image with it, unless a
        # container still runs it, in which case Docker refuses and says which).
        self._docker(["image", "rm", snapshot.name])

    def _inspect(self, references: Sequence[str]) -> list[Snapshot]:
        snapshots = []
        for image in json.loads(self._docker(["image", "inspect", *references])):
            labels = (image.get("Config") or {}).get("Labels") or {}
            full_name = str(labels.get(SNAPSHOT_LABEL, ""))
            tagged = full_name in {tag.removesuffix(":latest") for tag in image["RepoTags"] or []}
            snapshots.append(
                Snapshot(
                    name=full_name if tagged else "",
                    id=image["Id"],
                    role=str(labels.get(ROLE_LABEL, "")),
                    status="available",
                    created=image.get("Created", ""),
                )
            )
        return snapshots


def docker_runner(env: Mapping[str, str]) -> Runner:
    def run(args: Sequence[str]) -> str:
        result = subprocess.run(
            ["docker", *args], env=dict(env), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SnapshotError(f"docker {args[0]}: {result.stderr.strip()}")
        return result.stdout

    return run


# --- the commands --------------------------------------------------------------------------------


def snapshots_for(config: LabConfig) -> Snapshots:
    if config.target == "openstack":
        import openstack  # the OS_CLOUD / OS_* credentials the provider uses too

        return OpenStackSnapshots(openstack.connect())
    from labctl import stack_env

    # The engine `lab up` deployed on: the user's, or ours (tools/docker-engine).
    env = stack_env.ensure_docker(dict(os.environ))
    return DockerSnapshots(docker_runner(env))


def create(
    stack: str,
    config: LabConfig,
    role: str,
    name: str | None,
    snapshots: Snapshots,
    now: datetime,
) -> Snapshot:
    full_name = snapshot_name(config.student, role, name or default_name(now))
    if any(s.name == full_name for s in snapshots.owned_by(config.student)):
        raise SnapshotError(
            f"a snapshot {full_name} exists already: choose another name, or"
            f" lab snapshot delete {stack} {full_name}",
            exit_code=2,
        )
    server = physical_name(config.student, role)
    return snapshots.create(server, full_name, snapshot_marks(config.student, role, full_name))


def find(config: LabConfig, name: str, snapshots: Snapshots) -> Snapshot:
    """A student's snapshot by its full name (or by the part after `<student>-`)."""
    wanted = {name, physical_name(config.student, name)}
    for snapshot in snapshots.owned_by(config.student):
        if snapshot.name in wanted:
            return snapshot
    raise SnapshotError(
        f"no snapshot {name} of student {config.student} (see: lab snapshot list)", exit_code=2
    )


snapshot_app = typer.Typer(
    help="Snapshots of a stack's VMs (Glance images) or containers (committed images).",
    no_args_is_help=True,
)


def _load(stack: str) -> LabConfig:
    from labctl.stacks import load

    return load(stack)


@snapshot_app.command("create")
def create_command(
    stack: StackArg,
    role: Annotated[str, typer.Argument(help=f"Which VM: {', '.join(ROLES)}.")],
    name: Annotated[
        str | None, typer.Argument(help="Snapshot name (default: the UTC time).")
    ] = None,
) -> None:
    """Snapshot one VM (or container) of the stack; prints the image's id."""
    config = _load(stack)
    snapshot = create(stack, config, role, name, snapshots_for(config), datetime.now(UTC))
    typer.echo(f"{snapshot.name} {snapshot.id} ({snapshot.status})")
    typer.echo(restore_hint(stack, role, snapshot.name), err=True)


@snapshot_app.command("list")
def list_command(stack: StackArg) -> None:
    """The student's own snapshots: name (what imageByRole takes), role, id, status, time."""
    config = _load(stack)
    for s in snapshots_for(config).owned_by(config.student):
        typer.echo(f"{s.name}\t{s.role}\t{s.id}\t{s.status}\t{s.created}")


@snapshot_app.command("delete")
def delete_command(
    stack: StackArg,
    name: Annotated[str, typer.Argument(help="The snapshot's name, as `list` shows it.")],
) -> None:
    """Delete one of the student's snapshots (a stack still running from it keeps its VM)."""
    config = _load(stack)
    snapshots = snapshots_for(config)
    snapshot = find(config, name, snapshots)
    snapshots.delete(snapshot)
    typer.echo(f"deleted {snapshot.name} ({snapshot.id})")

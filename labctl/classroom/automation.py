"""Where a class's stacks run: an Automation API workspace outside the checkout.

The Automation API's LocalWorkspace keeps `Pulumi.<stack>.yaml` files in its `work_dir`. A class's
stack files are derived from the roster, so they belong under the cache, never in the checkout:
the work_dir is `<cache>/classes/<class>-<hash>/`, holding a copy of the project file whose
`main` is the checkout (absolute, which the engine accepts) and whose virtualenv is the
checkout's. The program that runs is the checkout's own; only the settings live outside.

Stack selection is always explicit: every operation passes `--stack`, and the workspace never
runs `pulumi stack select` (its `select_stack` only checks that the stack exists and
`create_stack` passes `--no-select`), so nothing changes which stack plain `pulumi` commands use.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pulumi.automation import LocalWorkspace, PulumiCommand, Stack

from lab.names import config_key
from labctl import locks, stack_env, toolchain
from labctl.backend import Backend
from labctl.classroom.roster import Roster, Student
from labctl.paths import ROOT, cache_dir, stack_file_name

# `pulumi stack rm` rewrites (here: deletes) the workspace settings file of the project's
# directory, `<PULUMI_HOME>/workspaces/<project>-<sha1 of the project file's path>-workspace.json`,
# whatever stack it removes: one file for every stack of a class (pkg/cmd/pulumi/stack/
# stack_remove.go, backend/state/stacks.go). The CLI reads it, changes it and writes it back, so
# two removals at once could lose each other's change: they run one at a time.
_WORKSPACE_SETTINGS = threading.Lock()


class ExplicitWorkspace(LocalWorkspace):
    """A LocalWorkspace that never changes the selected stack, and removes one stack at a time.

    The upstream `create_stack` and `select_stack` would each write the workspace settings file
    shared by all the class's stacks (the selected stack); these only read it.
    """

    def select_stack(self, stack_name: str) -> None:
        # `pulumi stack --stack NAME` fails when the stack does not exist, as select would.
        self._run_pulumi_cmd_sync(["stack", "--stack", stack_name])

    def create_stack(self, stack_name: str) -> None:
        args = ["stack", "init", stack_name, "--no-select"]
        if self.secrets_provider:
            args += ["--secrets-provider", self.secrets_provider]
        self._run_pulumi_cmd_sync(args)

    def remove_stack(
        self, stack_name: str, force: bool | None = None, preserve_config: bool | None = None
    ) -> None:
        with _WORKSPACE_SETTINGS:
            super().remove_stack(stack_name, force=force, preserve_config=preserve_config)


def class_dir(roster: Roster) -> Path:
    """The class's work_dir under the cache: one per roster file (by its absolute path)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", roster.name.lower()).strip("-") or "class"
    digest = hashlib.sha256(str(roster.path.resolve()).encode()).hexdigest()[:8]
    return cache_dir() / "classes" / f"{slug}-{digest}"


def pulumi_environment(targets: set[str], state: Backend | None = None) -> dict[str, str]:
    """The toolchain's environment (built when missing; its first line names the state
    backend, labctl/backend.py, unless the caller did: `state`), with a Docker engine if a
    student deploys on Docker."""
    env = toolchain.ensure(targets, state=state)
    if "docker" in targets:
        env = stack_env.ensure_docker(env)
    return env


def _pulumi_root(env: Mapping[str, str]) -> str:
    found = shutil.which("pulumi", path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError("no `pulumi` on the toolchain's PATH (tools/pulumi-toolchain)")
    return str(Path(found).resolve().parent.parent)  # PulumiCommand wants ROOT with bin/pulumi


def project_file() -> dict[str, Any]:
    """The checkout's project file, made to run from a class's directory."""
    project: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    project["main"] = str(ROOT)
    options = project.setdefault("runtime", {}).setdefault("options", {})
    venv = options.get("virtualenv")
    if venv and not Path(venv).is_absolute():
        options["virtualenv"] = str(ROOT / venv)
    return project


def project_defaults() -> dict[str, Any]:
    """The defaults Pulumi.yaml declares for the project's keys; the engine records them with
    the stack's own values in each update's config."""
    declared = project_file().get("config") or {}
    return {
        key: spec["default"]
        for key, spec in declared.items()
        if isinstance(spec, dict) and "default" in spec
    }


def open_workspace(roster: Roster, env: Mapping[str, str]) -> ExplicitWorkspace:
    """The class's workspace: its directory made, the project file written (from the
    checkout's, every time, so a changed project file is picked up)."""
    work_dir = class_dir(roster)
    ws = workspace_at(work_dir, project_file(), env)
    (work_dir / "roster-path").write_text(f"{roster.path.resolve()}\n")
    return ws


def workspace_at(
    work_dir: Path, project: Mapping[str, Any], env: Mapping[str, str]
) -> ExplicitWorkspace:
    """A workspace in `work_dir` running `project` (a project file's document)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "Pulumi.yaml").write_text(
        f"# Written by `lab class` from {ROOT / 'Pulumi.yaml'}; rewritten on every run.\n"
        + yaml.safe_dump(dict(project), sort_keys=False)
    )
    return ExplicitWorkspace(
        work_dir=str(work_dir),
        env_vars=dict(env),
        pulumi_command=PulumiCommand(root=_pulumi_root(env), skip_version_check=True),
    )


def stack_file(ws: LocalWorkspace, stack: str) -> Path:
    return Path(ws.work_dir) / stack_file_name(stack)


def write_stack_config(
    ws: LocalWorkspace, student: Student, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write the student's values into their stack file in the class directory.

    What `pulumi stack init` put there (the passphrase's salt, a secrets provider) is kept;
    `config` is replaced whole, so a key removed from the roster is removed from the stack.
    """
    path = stack_file(ws, student.stack)
    document: dict[str, Any] = {}
    if path.is_file():
        document = yaml.safe_load(path.read_text()) or {}
    values = {**student.values, **(extra or {})}
    document["config"] = {config_key(key): value for key, value in values.items()}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def remove_stack_file(ws: LocalWorkspace, stack: str) -> None:
    stack_file(ws, stack).unlink(missing_ok=True)


def existing_stacks(ws: LocalWorkspace) -> dict[str, Any]:
    """The project's stacks in the backend, by name (one `pulumi stack ls`)."""
    return {summary.name: summary for summary in ws.list_stacks()}


def lock_holders(env: Mapping[str, str], stack_name: str) -> list[locks.Holder]:
    """Who holds the stack's lock in the backend of `env` (labctl/locks.py); empty when nobody
    does or when it cannot be told."""
    return locks.stack_holders(env, stack_name) or []


def stack(ws: LocalWorkspace, name: str, *, create: bool) -> Stack:
    """The stack, selected explicitly; created first when asked."""
    if create:
        return Stack.create_or_select(name, ws)
    return Stack.select(name, ws)


def docker_base_images(students: Iterable[Student], env: Mapping[str, str]) -> dict[str, str]:
    """Per Docker student, the local base image to use when theirs cannot be had."""
    overrides: dict[str, str] = {}
    decided: dict[str, str | None] = {}
    for student in students:
        if student.config.target != "docker":
            continue
        base = student.config.docker_base_image
        if base not in decided:
            decided[base] = stack_env.base_image_override(student.config, dict(env))
        if (local := decided[base]) is not None:
            overrides[student.id] = local
    return overrides

"""One student's stack: up, preview, down, and a new student's stack file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab.config import ConfigError, LabConfig
from labctl import locks, stack_env, toolchain
from labctl.backend import store_failure
from labctl.errors import LabError
from labctl.paths import ROOT, stack_dir, stack_file
from labctl.stackfiles import StackFileError, new_student_file, read_config


def load(stack: str) -> LabConfig:
    try:
        return read_config(stack_file(stack), stack)
    except (StackFileError, ConfigError) as err:
        raise LabError(str(err)) from None


def prepare(stack: str, *, for_destroy: bool = False) -> stack_env.PulumiRun:
    """Everything `pulumi` needs for this stack, installed or started when missing.

    For a Docker stack the engine and base image are made ready in the background while the
    toolchain is checked (or built, on a first run), so the two waits overlap.
    """
    config = load(stack)
    # The first line names the state backend, before the Docker thread may say anything.
    state = toolchain.announce(os.environ)  # a BackendError is a LabError: one line
    docker = None
    if config.target == "docker" and not for_destroy:
        docker = stack_env.DockerPreparation(config, say=toolchain.console.print)
    try:
        env = toolchain.ensure({config.target}, state=state)
    except toolchain.ToolchainError as err:
        if docker is not None:
            docker.join()  # let the engine's own steps finish cleanly; their log says how
        raise LabError(str(err)) from None
    run = stack_env.PulumiRun(stack, env)
    if docker is None:
        return run  # destroy needs no base image; with no engine it reports what it cannot delete
    try:
        base = docker.wait()
    except RuntimeError as err:
        raise LabError(str(err)) from None
    if docker.worked:
        seconds = toolchain.clock(docker.seconds)
        toolchain.console.print(f"lab: Docker engine and base image ready in {seconds}")
    # The engine's DOCKER_HOST (when it is ours) on top of the toolchain's PATH and PULUMI_HOME.
    run.env = stack_env.engine_env(env)
    if base is not None:
        path = stack_env.override_file(stack, {"dockerBaseImage": base})
        run.config_args = ["--config-file", str(path)]
    return run


def pulumi(run: stack_env.PulumiRun, *args: str, capture: bool = False) -> str:
    """Run `pulumi ARGS --stack STACK` in the project: the stack is always explicit.

    Its error output reaches the terminal as it comes and is kept, so that a failure can be
    said in one line: for a stack locked by another process, who holds it and what to do."""
    command = ["pulumi", *args, "--stack", run.stack]
    if capture:
        result = subprocess.run(
            command, cwd=ROOT, env=run.env, check=False, text=True, capture_output=True
        )
        code, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        code, stderr = _streamed(command, run.env)
        stdout = ""
    if code != 0:
        if locked := locks.locked_message(run.stack, stderr):
            raise LabError(locked)
        if lost := store_failure(stderr, run.env.get("PULUMI_BACKEND_URL")):
            raise LabError(lost)
        detail = f": {stderr.strip()}" if capture and stderr else ""
        raise LabError(f"`{' '.join(command[:2])}` failed (exit {code}){detail}")
    return stdout


def _streamed(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run `command` with its output on the terminal; its exit code and its error output."""
    kept: list[str] = []
    with subprocess.Popen(command, cwd=ROOT, env=env, text=True, stderr=subprocess.PIPE) as process:
        assert process.stderr is not None
        for line in process.stderr:
            sys.stderr.write(line)
            kept.append(line)
            del kept[:-200]
    return process.returncode, "".join(kept)


def select(run: stack_env.PulumiRun) -> None:
    subprocess.run(
        ["pulumi", "stack", "select", "--create", run.stack],
        cwd=ROOT,
        env=run.env,
        check=True,
        capture_output=True,
    )


def up(stack: str) -> str:
    run = prepare(stack)
    select(run)
    refresh = ["--refresh"] if _cancel_stale_lock(run) else []
    pulumi(run, "up", "--yes", "--skip-preview", *refresh, *run.config_args)
    return pulumi(run, "stack", "output", "calculatorUrl", capture=True).strip()


def _cancel_stale_lock(run: stack_env.PulumiRun) -> bool:
    """Remove the stack's lock when a `pulumi` of this machine left it and is gone (it lost the
    backend mid-update and could not delete it); True if it did, and the stack is then
    refreshed before the update. A lock of another machine is left for its owner."""
    holders = locks.stack_holders(run.env, run.stack)
    if not holders or not locks.all_stale_here(holders):
        return False
    who = ", ".join(h.describe() for h in holders)
    toolchain.console.print(f"lab: removing a stale lock of {run.stack} ({who}: gone)")
    pulumi(run, "cancel", "--yes", capture=True)
    return True


def preview(stack: str) -> None:
    run = prepare(stack)
    select(run)
    pulumi(run, "preview", *run.config_args)


def down(stack: str) -> None:
    run = prepare(stack, for_destroy=True)
    select(run)
    pulumi(run, "destroy", "--yes", "--skip-preview", *run.config_args)
    pulumi(run, "stack", "rm", "--yes", "--preserve-config")


def new(student: str, topology: str, template: Path) -> Path:
    try:
        return new_student_file(stack_dir(), student, topology, template)
    except (StackFileError, ConfigError) as err:
        raise LabError(str(err), exit_code=2) from None

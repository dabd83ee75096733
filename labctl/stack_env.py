"""What a stack needs around `pulumi` itself: a Docker engine and an image base for the Docker
target, and the stack file the engine reads.

The committed stack file is never edited: where this machine needs another value (a locally
built base image when no registry is reachable), the value goes into a copy of the file under
the cache, which every `pulumi` command then reads through `--config-file`.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from lab.config import LabConfig
from lab.names import config_key
from labctl.paths import ROOT, cache_dir, stack_file

DOCKER_ENGINE = ROOT / "tools/docker-engine/docker-engine"
LOCAL_BASE_IMAGE = "calculator-lab/base:bookworm"

# A pull that failed is not retried for a day when the local base image stands in for it: on a
# machine without a registry every `make up` would otherwise wait for `docker pull` to give up.
PULL_TIMEOUT = 60
PULL_RETRY_AFTER = 24 * 3600


@dataclass
class PulumiRun:
    """How to run `pulumi` for one stack: its environment and extra arguments."""

    stack: str
    env: dict[str, str]
    config_args: list[str] = field(default_factory=list)


def docker_answers(env: dict[str, str]) -> bool:
    return _quiet(["docker", "info"], env)


def engine_env(env: dict[str, str]) -> dict[str, str]:
    """`env` plus DOCKER_HOST of our engine (tools/docker-engine) when it runs and the user set
    no DOCKER_HOST of their own."""
    if env.get("DOCKER_HOST") or not _quiet([str(DOCKER_ENGINE), "status"], env):
        return env
    return _with_engine_env(env)


def ensure_docker(
    env: dict[str, str], log: IO[str] | None = None, say: Callable[[str], object] = print
) -> dict[str, str]:
    """A Docker engine that answers: the user's, ours if it runs, or ours started now.
    ``say`` tells what is done; the engine script's own output goes to ``log`` when given."""
    if docker_answers(env):
        return env
    env = engine_env(env)
    if docker_answers(env):
        return env
    say("lab: no Docker engine answers; starting tools/docker-engine")
    for step in ("install", "start"):
        subprocess.run([DOCKER_ENGINE, step], check=True, env=env, stdout=log, stderr=log)
    return _with_engine_env(env)


def _with_engine_env(env: dict[str, str]) -> dict[str, str]:
    # KEY=VALUE lines with PATH expanded by the script, from the PATH in `env`.
    lines = subprocess.run(
        [DOCKER_ENGINE, "env", "--plain"], check=True, env=env, capture_output=True, text=True
    ).stdout.splitlines()
    return env | {key: value for key, _, value in (line.partition("=") for line in lines)}


def base_image_override(
    config: LabConfig,
    env: dict[str, str],
    log: IO[str] | None = None,
    say: Callable[[str], object] = print,
    niceness: int = 0,
) -> str | None:
    """The local base image to use instead of the configured one, when that cannot be had.
    ``say`` tells what is done; the engine script's own output goes to ``log`` when given."""
    base = config.docker_base_image
    if _quiet(["docker", "image", "inspect", base], env):
        return None
    failed = cache_dir() / "workspace" / ("pull-failed-" + base.replace("/", "_").replace(":", "_"))
    recent = failed.exists() and time.time() - failed.stat().st_mtime < PULL_RETRY_AFTER
    have_local = _quiet(["docker", "image", "inspect", LOCAL_BASE_IMAGE], env)
    if recent and have_local:
        return LOCAL_BASE_IMAGE
    if _quiet(["timeout", str(PULL_TIMEOUT), "docker", "pull", base], env):
        failed.unlink(missing_ok=True)
        return None
    failed.parent.mkdir(parents=True, exist_ok=True)
    failed.touch()
    if not have_local:
        say(f"lab: cannot pull {base}; building the local base image instead")
        command = ["nice", "-n", str(niceness), str(DOCKER_ENGINE), "base-image"]
        subprocess.run(command, check=True, env=env, stdout=log, stderr=log)
    return LOCAL_BASE_IMAGE


class DockerPreparation:
    """A Docker engine that answers and the stack's base image, made ready in a thread.

    Started before the Pulumi toolchain is checked, so that on a first run the engine's start
    and the base image overlap the Go build: where a registry answers, the image is a `docker
    pull` waiting on the network; here it is built (mmdebstrap) at the lowest priority, taking
    what the build leaves idle. On 2 cores that gains little (tools/pulumi-toolchain/README.md
    measures it); the user at least hears of it at once. What it runs goes to a log file; the
    terminal gets one line when it starts doing something and one when it is done.
    """

    def __init__(self, config: LabConfig, say: Callable[[str], object]) -> None:
        self.config = config
        self.say = say
        self.log_path = cache_dir() / "workspace" / "docker-preparation.log"
        self.base: str | None = None
        self.error: Exception | None = None
        self.seconds = 0.0
        #: Whether the engine had to be started or the base image built (else: nothing to say).
        self.worked = False
        self._thread = threading.Thread(target=self._run, name="docker-preparation", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.log_path.open("w") as log:
                env = ensure_docker(dict(os.environ), log, self._say)
                # The Go build is a first run's critical path: the base image gets the CPU it
                # leaves idle (its links, its downloads), not an equal share.
                self.base = base_image_override(self.config, env, log, self._say, niceness=19)
        except Exception as error:  # any failure is reported by wait(), not lost in the thread
            self.error = error
        self.seconds = time.monotonic() - started

    def _say(self, message: str) -> None:
        self.worked = True
        self.say(f"{message} (meanwhile; log: {self.log_path})")

    def join(self) -> None:
        self._thread.join()

    def wait(self) -> str | None:
        """The local base image to use (None: the configured one is there); raises
        RuntimeError, with the log's last lines, if starting the engine or the image failed."""
        self.join()
        if self.error is not None:
            tail = "".join(self.log_path.read_text().splitlines(keepends=True)[-15:])
            raise RuntimeError(
                f"preparing Docker failed ({self.error}); last lines of {self.log_path}:\n{tail}"
            )
        return self.base


def override_file(stack: str, values: dict[str, str]) -> Path:
    """A copy of the stack's file, outside the checkout, with `values` set in it."""
    source = stack_file(stack)
    document = yaml.safe_load(source.read_text()) or {}
    config = document.setdefault("config", {})
    config.update({config_key(key): value for key, value in values.items()})
    target = cache_dir() / "stack-files" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


def _quiet(command: list[str], env: dict[str, str]) -> bool:
    try:
        result = subprocess.run(command, env=env, capture_output=True, check=False)
    except FileNotFoundError:
        return False
    return result.returncode == 0

"""What a stack needs around `pulumi` itself: a Docker engine and an image base for the Docker
target, and the stack file the engine reads.

The committed stack file is never edited: where this machine needs another value (a locally
built base image when no registry is reachable), the value goes into a copy of the file under
the cache, which every `pulumi` command then reads through `--config-file`.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.config import LabConfig
from lab.names import PROJECT
from labctl.paths import ROOT, cache_dir, stack_file

DOCKER_ENGINE = ROOT / "tools/docker-engine/docker-engine"
LOCAL_BASE_IMAGE = "calculator-lab/base:bookworm"


@dataclass
class Workspace:
    """How to run `pulumi` for one stack: its environment and extra arguments."""

    stack: str
    env: dict[str, str]
    config_args: list[str] = field(default_factory=list)


def docker_answers(env: dict[str, str]) -> bool:
    return _quiet(["docker", "info"], env)


def ensure_docker(env: dict[str, str]) -> dict[str, str]:
    """A Docker engine that answers: the user's, or ours (tools/docker-engine) started now."""
    if docker_answers(env):
        return env
    print("lab: no Docker engine answers; starting tools/docker-engine")
    subprocess.run([DOCKER_ENGINE, "install"], check=True, env=env)
    subprocess.run([DOCKER_ENGINE, "start"], check=True, env=env)
    exports = subprocess.run(
        [DOCKER_ENGINE, "env"], check=True, env=env, capture_output=True, text=True
    ).stdout
    for line in exports.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            env = env | {key: value.strip("'\"")}
    return env


def base_image_override(config: LabConfig, env: dict[str, str]) -> str | None:
    """The local base image to use instead of the configured one, when that cannot be had."""
    base = config.docker_base_image
    if _quiet(["docker", "image", "inspect", base], env):
        return None
    if _quiet(["timeout", "60", "docker", "pull", base], env):
        return None
    print(f"lab: cannot pull {base}; building the local base image instead")
    subprocess.run([DOCKER_ENGINE, "base-image"], check=True, env=env)
    return LOCAL_BASE_IMAGE


def override_file(stack: str, values: dict[str, str]) -> Path:
    """A copy of the stack's file, outside the checkout, with `values` set in it."""
    source = stack_file(stack)
    document = yaml.safe_load(source.read_text()) or {}
    config = document.setdefault("config", {})
    config.update({f"{PROJECT}:{key}": value for key, value in values.items()})
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

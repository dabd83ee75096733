"""`lab up` on a Docker stack readies the engine and base image while the toolchain is checked.

The two slow steps of a first run (the Go build and the base image) must overlap, not add up;
a failure of either names what failed, and `down` prepares no image. The engine, the build
and the base image are stood in for here (their real runs are the engine tests'); what is
tested is labctl's own ordering and error handling.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from lab.config import LabConfig, load_config
from labctl import stack_env, stacks, toolchain
from labctl.errors import LabError


@pytest.fixture
def docker_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LabConfig:
    monkeypatch.setenv("CALCLAB_CACHE", str(tmp_path / "cache"))
    config = load_config({"target": "docker"}, "dev")
    monkeypatch.setattr(stacks, "load", lambda stack: config)
    monkeypatch.setattr(stack_env, "engine_env", lambda env: env | {"DOCKER_HOST": "unix://x"})
    return config


def test_base_image_is_built_while_the_toolchain_builds(
    docker_stack: LabConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_started, toolchain_done = threading.Event(), threading.Event()
    said: list[str] = []

    def ensure(targets: set[str], **_: object) -> dict[str, str]:
        assert targets == {"docker"}
        # Serial steps would leave this waiting for nothing: the docker side starts only later.
        assert docker_started.wait(10), "the Docker preparation did not start during the build"
        toolchain_done.set()
        return {"PATH": "/toolchain/bin"}

    def ensure_docker(env: dict[str, str], log: object, say: object) -> dict[str, str]:
        docker_started.set()
        return env

    def base_image(
        config: LabConfig, env: dict[str, str], log: object, say: object, niceness: int
    ) -> str:
        assert niceness == 19  # the build keeps its CPU; the image takes what is left
        assert callable(say)
        say("lab: building the local base image")
        return stack_env.LOCAL_BASE_IMAGE

    monkeypatch.setattr(toolchain, "ensure", ensure)
    monkeypatch.setattr(stack_env, "ensure_docker", ensure_docker)
    monkeypatch.setattr(stack_env, "base_image_override", base_image)
    monkeypatch.setattr(toolchain.console, "print", lambda text, **_: said.append(str(text)))

    run = stacks.prepare("dev")

    assert toolchain_done.is_set()
    assert run.env == {"PATH": "/toolchain/bin", "DOCKER_HOST": "unix://x"}
    assert run.config_args[0] == "--config-file"
    override = Path(run.config_args[1]).read_text()
    assert f"calculator-lab:dockerBaseImage: {stack_env.LOCAL_BASE_IMAGE}" in override
    assert said[0].startswith("lab: state backend ")  # before the Docker thread says anything
    assert said[1].startswith("lab: building the local base image (meanwhile; log: ")
    assert said[-1].startswith("lab: Docker engine and base image ready in ")


def test_a_failed_docker_step_names_its_log(
    docker_stack: LabConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ensure_docker(env: dict[str, str], log: object, say: object) -> dict[str, str]:
        print("docker-engine: start: dockerd did not answer", file=log)  # type: ignore[call-overload]
        raise subprocess.CalledProcessError(1, ["docker-engine", "start"])

    monkeypatch.setattr(toolchain, "ensure", lambda targets, **_: {})
    monkeypatch.setattr(stack_env, "ensure_docker", ensure_docker)
    with pytest.raises(LabError) as failed:
        stacks.prepare("dev")
    message = str(failed.value)
    assert "preparing Docker failed" in message
    assert "docker-preparation.log" in message
    assert "dockerd did not answer" in message


def test_a_failed_build_waits_for_the_docker_side_and_reports_the_build(
    docker_stack: LabConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = threading.Event()

    def ensure(targets: set[str], **_: object) -> dict[str, str]:
        raise toolchain.ToolchainError("tools/pulumi-toolchain/build failed")

    def ensure_docker(env: dict[str, str], log: object, say: object) -> dict[str, str]:
        finished.wait(0.2)
        finished.set()
        return env

    monkeypatch.setattr(toolchain, "ensure", ensure)
    monkeypatch.setattr(stack_env, "ensure_docker", ensure_docker)
    monkeypatch.setattr(stack_env, "base_image_override", lambda *args, **kwargs: None)
    with pytest.raises(LabError, match="build failed"):
        stacks.prepare("dev")
    assert finished.is_set(), "prepare returned while the engine was still being started"


def test_down_prepares_no_base_image(
    docker_stack: LabConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("destroy must not start the engine or build an image")

    monkeypatch.setattr(toolchain, "ensure", lambda targets, **_: {"PATH": "/toolchain/bin"})
    monkeypatch.setattr(stack_env, "ensure_docker", refuse)
    monkeypatch.setattr(stack_env, "base_image_override", refuse)
    run = stacks.prepare("dev", for_destroy=True)
    assert run.config_args == []


def test_the_engine_environment_is_read_as_the_engine_script_gives_it(tmp_path: Path) -> None:
    # The real script (it prints, it starts nothing); a space in the cache survives the reading.
    cache = tmp_path / "a cache"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CALCLAB_CACHE": str(cache)}
    got = stack_env._with_engine_env(env)
    assert got["PATH"] == f"{cache}/docker-engine/bin:/usr/bin:/bin"
    assert got["DOCKER_HOST"].startswith(f"unix://{cache}/docker-engine/")
    assert got["CALCLAB_DOCKER_BASE_IMAGE"] == stack_env.LOCAL_BASE_IMAGE
    assert got["HOME"] == str(tmp_path)

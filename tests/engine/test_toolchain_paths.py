"""Both of `scripts/lab`'s toolchain paths with the real engine (labctl.toolchain).

Installed: the binaries tools/pulumi-toolchain built are copied where Pulumi's installer and
`pulumi plugin install` put them (~/.pulumi/bin with its language host beside the CLI,
~/.pulumi/plugins/resource-docker-v<SDK version>/) in a fake HOME; `ensure` must then build
nothing, and the real CLI must find the plugin there and run a program through that host.
From source: with an empty HOME, `ensure` hands exactly the stack's targets to the build.
And the shipped stack files stay byte-identical when a student selects or creates their stack
(their committed salt is the empty passphrase's, the one `scripts/lab` uses).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from labctl import toolchain as lab_toolchain

from .conftest import REPO, VENV, Toolchain

pytestmark = pytest.mark.engine

PROGRAM = """
import pulumi


class Box(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("lab:index:Box", name, {})
        self.register_outputs({})


Box("box")
pulumi.export("answer", 42)
"""


def no_build(targets: list[str], env: Mapping[str, str]) -> None:
    raise AssertionError(f"nothing should be built, asked for {targets}")


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CALCLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_BACKEND_URL", (tmp_path / "state").as_uri())
    (tmp_path / "state").mkdir()
    for key in ("PULUMI_HOME", "DOCKER_HOST"):
        monkeypatch.delenv(key, raising=False)
    return home


def test_installed_cli_and_plugin_are_used_as_they_are(
    toolchain: Toolchain, fake_home: Path, tmp_path: Path
) -> None:
    toolchain.require("docker")
    bin_dir = fake_home / ".pulumi" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("pulumi", "pulumi-language-python", "pulumi-language-python-exec"):
        shutil.copy2(toolchain.bin_dir / name, bin_dir / name)
    version = lab_toolchain.plugin_versions(["docker"])["docker"]
    plugin = lab_toolchain.plugin_path(fake_home / ".pulumi", "docker", version)
    plugin.parent.mkdir(parents=True)
    shutil.copy2(toolchain.parts("docker")[-1], plugin)

    env = lab_toolchain.ensure({"docker"}, build=no_build)
    assert env["PATH"].split(":")[0] == str(bin_dir)
    assert env["PULUMI_HOME"] == str(fake_home / ".pulumi")
    assert not (tmp_path / "cache" / "pulumi-toolchain").exists()  # build never ran

    listed = run(env, tmp_path, "plugin", "ls", "--json")
    # `plugin ls` reads PULUMI_HOME, here the fake ~/.pulumi only: the copy is what it finds.
    plugins = {(p["name"], p["version"]): p["size"] for p in json.loads(listed)}
    assert plugins == {("docker", version): plugin.stat().st_size}

    project = tmp_path / "project"
    project.mkdir()
    (project / "__main__.py").write_text(PROGRAM)
    runtime = {"name": "python", "options": {"toolchain": "pip", "virtualenv": str(VENV)}}
    (project / "Pulumi.yaml").write_text(json.dumps({"name": "installed", "runtime": runtime}))
    run(env, project, "stack", "init", "test")
    run(env, project, "up", "--yes", "--skip-preview", "--stack", "test")
    outputs = json.loads(run(env, project, "stack", "output", "--json", "--stack", "test"))
    assert outputs == {"answer": 42}


def test_without_an_install_exactly_the_stack_targets_are_built(fake_home: Path) -> None:
    asked: list[list[str]] = []

    def record(targets: list[str], env: Mapping[str, str]) -> None:
        asked.append(targets)

    lab_toolchain.ensure({"docker"}, build=record)
    assert asked == [["pulumi", "language-python", "docker"]]


SHIPPED = ("dev", "dev-single", "alice", "bob")


def test_selecting_a_shipped_stack_leaves_its_file_as_committed(
    toolchain: Toolchain, tmp_path: Path
) -> None:
    toolchain.require()
    (tmp_path / "state").mkdir()
    env = {
        **toolchain.env,
        "PULUMI_BACKEND_URL": (tmp_path / "state").as_uri(),
        "PULUMI_CONFIG_PASSPHRASE": "",
        "PULUMI_HOME": str(tmp_path / "home"),
    }
    shutil.copy2(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for stack in SHIPPED:
        shutil.copy2(REPO / f"Pulumi.{stack}.yaml", tmp_path / f"Pulumi.{stack}.yaml")
        committed = (REPO / f"Pulumi.{stack}.yaml").read_bytes()
        assert b"\nencryptionsalt: v1:" in committed, f"Pulumi.{stack}.yaml has no salt"
        run(env, tmp_path, "stack", "select", "--create", stack)
        run(env, tmp_path, "stack", "rm", "--yes", "--preserve-config", stack)
        run(env, tmp_path, "stack", "init", stack)
        assert (tmp_path / f"Pulumi.{stack}.yaml").read_bytes() == committed, stack


def run(env: Mapping[str, str], cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["pulumi", *args, "--non-interactive"],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"pulumi {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout

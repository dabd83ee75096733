"""Every stack file shipped in the repository is valid and deploys whole under mocks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.config import load_config
from tests.unit.program import REPO, run

STACK_FILES = sorted(REPO.glob("Pulumi.*.yaml"))


def stack_config(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())["config"]
    return {key.removeprefix("calculator-lab:"): value for key, value in values.items()}


def stack_name(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def test_the_repository_ships_both_targets_and_both_topologies() -> None:
    shapes = {
        (config.get("target", "docker"), config.get("topology", "single"))
        for config in map(stack_config, STACK_FILES)
    }
    assert shapes == {
        ("docker", "client"),
        ("docker", "single"),
        ("openstack", "single"),
        ("openstack", "client"),
    }


@pytest.mark.parametrize("path", STACK_FILES, ids=stack_name)
def test_stack_file_runs_whole_under_mocks(path: Path) -> None:
    config = stack_config(path)
    load_config(config, stack_name(path))  # raises with the key at fault
    program = run(config, stack=stack_name(path))
    assert program.outputs["topology"] == config.get("topology", "single")
    assert program.outputs["calculatorUrl"].startswith("http://")
    assert len(program.outputs["privateIps"]) == 5
    # A file with an externalNetworkId previews with no cloud: no look-up may happen.
    if config.get("externalNetworkId"):
        assert program.invokes == []


def test_new_student_stack_script_writes_a_valid_file(tmp_path: Path) -> None:
    # Runs the real script in a copy of the repository's top level, to leave the checkout alone.
    for name in ("Pulumi.yaml", "Pulumi.alice.yaml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "new-student-stack"
    script.write_text((REPO / "scripts" / "new-student-stack").read_text())
    script.chmod(0o755)
    (tmp_path / "lab").symlink_to(REPO / "lab")
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    result = subprocess.run(
        [str(script), "carol", "client"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = stack_config(tmp_path / "Pulumi.carol.yaml")
    assert config["student"] == "carol"
    assert config["topology"] == "client"
    assert config["externalNetwork"] == "public"
    assert "sshPublicKey" not in config  # keys are the student's own
    refused = subprocess.run(
        [str(script), "Carol!"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "must be lowercase" in refused.stderr

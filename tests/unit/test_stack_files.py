"""Every stack file shipped in the repository is valid and deploys whole under mocks."""

from __future__ import annotations

import os
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


def test_lab_new_writes_a_valid_file(tmp_path: Path) -> None:
    # Runs the real command on a copy of the example stack, writing into a scratch directory.
    template = tmp_path / "Pulumi.alice.yaml"
    template.write_text((REPO / "Pulumi.alice.yaml").read_text())
    result = subprocess.run(
        [str(REPO / "scripts" / "lab"), "new", "carol", "client", "--from", str(template)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | {"CALCLAB_STACK_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    config = stack_config(tmp_path / "Pulumi.carol.yaml")
    assert config["student"] == "carol"
    assert config["topology"] == "client"
    assert config["externalNetwork"] == "public"
    assert "sshPublicKey" not in config  # keys are the student's own
    refused = subprocess.run(
        [str(REPO / "scripts" / "lab"), "new", "Carol!"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"CALCLAB_STACK_DIR": str(tmp_path)},
    )
    assert refused.returncode == 2
    assert "must start with a lowercase letter" in refused.stderr
    assert "calculator-lab:student" in refused.stderr
    assert not (tmp_path / "Pulumi.Carol!.yaml").exists()

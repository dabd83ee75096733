"""A copy of the repository's Pulumi program in a temporary directory, for engine tests.

Engine tests run the real program but must leave no stack file or state in the checkout, so
they work on a copy: the program's sources, the project file (with the virtualenv made
absolute) and one of the repository's stack files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from .conftest import REPO, VENV

PROGRAM_PATHS = (
    "__main__.py",
    "specs",
    "lab",
    "preflight",
    "targets",
    "components",
    "apps/calculator",
)


def copy_program(workdir: Path, stack_files: tuple[str, ...] = ()) -> Path:
    """Copy the program into `workdir`, with the named stack files (e.g. "alice")."""
    for relative in PROGRAM_PATHS:
        source, target = REPO / relative, workdir / relative
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    # The copy runs elsewhere, so the project's relative virtualenv must become absolute.
    project["runtime"]["options"]["virtualenv"] = str(VENV)
    (workdir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    for stack in stack_files:
        text = (REPO / f"Pulumi.{stack}.yaml").read_text()
        # The shipped salt belongs to the empty passphrase; these tests use their own.
        kept = [ln for ln in text.splitlines(keepends=True) if not ln.startswith("encryptionsalt:")]
        (workdir / f"Pulumi.{stack}.yaml").write_text("".join(kept))
    return workdir


def stack_config(stack: str) -> dict[str, object]:
    values = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {key.removeprefix("calculator-lab:"): value for key, value in values.items()}


def openstack_stacks() -> list[str]:
    return sorted(
        path.name.removeprefix("Pulumi.").removesuffix(".yaml")
        for path in REPO.glob("Pulumi.*.yaml")
        if "calculator-lab:target: openstack" in path.read_text()
    )

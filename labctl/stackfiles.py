"""Stack files read and written with the program's own model, so a typo surfaces before any
`pulumi` command runs and the rules (a student id's shape, required keys) have one home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.config import LabConfig, load_config
from lab.names import config_key, namespace_values
from labctl.paths import stack_file_name

# Cloud settings a new student's file copies from the example it starts from.
_COPIED_KEYS = ("target", "externalNetwork", "externalNetworkId", "image", "flavor", "pythonPath")


class StackFileError(ValueError):
    """A stack file that is missing, unreadable or invalid; the message names the file."""


def read_values(path: Path) -> dict[str, Any]:
    """The `calculator-lab:*` values of a stack file, keyed without the project prefix."""
    if not path.is_file():
        raise StackFileError(f"no {path.name} (create one with: scripts/lab new STUDENT)")
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise StackFileError(f"{path.name}: not valid YAML ({err})") from None
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise StackFileError(f"{path.name}: 'config' must be a map")
    return namespace_values(config)


def read_config(path: Path, stack: str) -> LabConfig:
    """Validate a stack file as `pulumi up` would, without Pulumi."""
    return load_config(read_values(path), stack)


def new_student_file(
    root: Path, student: str, topology: str, template: Path, *, target_path: Path | None = None
) -> Path:
    """Write Pulumi.<student>.yaml from an example stack's cloud settings, validated first.

    Keys and SSH access are the student's own and are not copied.
    """
    path = target_path or root / stack_file_name(student)
    if path.exists():
        raise StackFileError(f"{path.name} exists already")
    copied = read_values(template)
    values: dict[str, Any] = {"student": student, "topology": topology}
    values |= {key: copied[key] for key in _COPIED_KEYS if key in copied}
    load_config(values, student)  # raises ConfigError naming every bad key
    header = (
        f"# Stack of student {student} (written by `scripts/lab new` from {template.name}).\n"
        "# Not tracked by git unless you add it: it is yours.\n"
    )
    body = yaml.safe_dump(
        {"config": {config_key(key): value for key, value in values.items()}},
        sort_keys=False,
    )
    path.write_text(header + body)
    return path


__all__ = ["LabConfig", "StackFileError", "new_student_file", "read_config", "read_values"]

"""The image's properties: what the cloud and the program's preflight read (os_distro,
os_version, min_disk, min_ram, and whatever else the image's `properties.json` lists), merged
from the file, properties.json and the options, as the values Glance stores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labctl.image.errors import ImageError

# Every image must carry these: the scheduler reads min_*, the program's preflight os_distro.
REQUIRED = ("os_distro", "os_version", "min_disk", "min_ram")
# Glance's own integer attributes; every other property is a string.
INTEGER_ATTRIBUTES = frozenset({"min_disk", "min_ram"})


def glance_value(key: str, value: Any, source: str) -> int | str:
    """A property as Glance stores it: min_* as integers, everything else as a string."""
    if key in INTEGER_ATTRIBUTES:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ImageError(f"{key} in {source}: {value!r} is not a whole number", exit_code=2)
        try:
            number = int(value)
        except ValueError:
            raise ImageError(
                f"{key} in {source}: {value!r} is not a whole number", exit_code=2
            ) from None
        if number < 0:
            raise ImageError(f"{key} in {source}: {number} is negative", exit_code=2)
        return number
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ImageError(
        f"{key} in {source}: Glance properties are strings, not {type(value).__name__}",
        exit_code=2,
    )


def image_properties(
    inferred: Mapping[str, Any],
    from_file: Mapping[str, Any] | None,
    options: Mapping[str, Any | None],
    *,
    file_label: str,
) -> dict[str, int | str]:
    """What the image is tagged with: options over properties.json over what the file tells.

    A required property nobody gave is an error naming the options that would give it.
    """
    merged: dict[str, int | str] = {}
    for source, values in (
        ("the image file", inferred),
        (file_label, from_file or {}),
        ("the options", {k: v for k, v in options.items() if v is not None}),
    ):
        for key, value in values.items():
            merged[key] = glance_value(key, value, source)
    missing = [key for key in REQUIRED if key not in merged]
    if missing:
        flags = " ".join(f"--{key.replace('_', '-')} ..." for key in missing)
        raise ImageError(
            f"no {', '.join(missing)} for the image ({file_label} does not say): give {flags}",
            exit_code=2,
        )
    return merged


def read_properties_json(path: Path) -> dict[str, Any] | None:
    """The image directory's properties.json, or None when the build made none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ImageError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise ImageError(f"{path}: expected a JSON object of properties")
    return data

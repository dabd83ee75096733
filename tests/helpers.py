"""Small helpers shared by test layers."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def skip_or_fail(message: str) -> NoReturn:
    """Skip on a developer machine, but fail in CI (CI=true): there `make test` installs and
    starts what tests need, so a missing piece is a broken step that must not pass silently."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str, install_hint: str) -> str:
    """Path of a command a test needs; missing, skip or fail as `skip_or_fail` decides."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed ({install_hint})")
    return path

"""Small helpers shared by test layers."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str, install_hint: str) -> str:
    """Path of a command a test needs. Missing: skip on a developer machine, but fail in CI
    (CI=true), where `make test` installs it, so a broken install step cannot pass silently."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install_hint})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path

"""Where things are: the checkout, the cache outside it, and a stack's file.

Standard library only: tools/testcloud imports it on Debian's Python, before any virtualenv.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Everything generated lives here, never in the checkout (CALCLAB_CACHE overrides it)."""
    return Path(os.environ.get("CALCLAB_CACHE") or Path.home() / ".cache" / "calculator-lab")


def cache_env() -> dict[str, str]:
    """The variable that hands this cache to our shell tools, which each read it in one line."""
    return {"CALCLAB_CACHE": str(cache_dir())}


def stack_dir() -> Path:
    """Where stack files are: the project (CALCLAB_STACK_DIR moves it, for tests)."""
    return Path(os.environ.get("CALCLAB_STACK_DIR") or ROOT)


def stack_file_name(stack: str) -> str:
    """Pulumi's name for a stack's settings file, wherever it lies (project, class directory)."""
    return f"Pulumi.{stack}.yaml"


def stack_file(stack: str) -> Path:
    return stack_dir() / stack_file_name(stack)

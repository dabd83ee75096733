"""The steps that talk to the OpenStack APIs, run with the virtualenv's Python.

The test cloud's own code runs on the system Python; ``catalog`` and ``seeding`` need
openstacksdk, which only the virtualenv has, so ``run`` starts this module there:
``python -m tools.testcloud.lib.api ROOT STEP``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .core import REPO, Layout, TestcloudError

STEPS = ("catalog", "seed", "reset")


def run(lay: Layout, step: str) -> None:
    """Run one API step in the virtualenv, as the admin or student of clouds.yaml."""
    env = dict(os.environ, OS_CLIENT_CONFIG_FILE=str(lay.clouds_yaml))
    env.pop("OS_CLOUD", None)
    result = subprocess.run(
        [str(lay.bin / "python"), "-m", __name__, str(lay.root), step],
        env=env,
        cwd=REPO,
        check=False,
    )
    if result.returncode != 0:
        raise TestcloudError(f"cloudops {step} failed (exit {result.returncode})")


def step_function(step: str) -> Callable[[Layout], None]:
    # Imported here: these modules need openstacksdk, which the system Python lacks.
    from . import catalog, seeding

    steps: dict[str, Callable[[Layout], None]] = {
        "catalog": catalog.catalog,
        "seed": seeding.seed,
        "reset": seeding.reset,
    }
    return steps[step]


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3 or argv[2] not in STEPS:
        print(f"usage: {argv[0]} ROOT {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    step_function(argv[2])(Layout(Path(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

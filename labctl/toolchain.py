"""The Pulumi toolchain a command needs, and the environment that makes `pulumi` use it.

Today it is built from Go modules by tools/pulumi-toolchain/build (cached outside the checkout)
and described by scripts/pulumi-env.
"""

from __future__ import annotations

import os
import subprocess

from labctl.paths import ROOT

# What each target's stacks need besides the CLI and the language host.
PROVIDERS = {"docker": "docker", "openstack": "openstack"}


def ensure(targets: set[str]) -> dict[str, str]:
    """Build what is missing for stacks of these targets; return the environment to run in."""
    wanted = ["pulumi", "language-python", *sorted(PROVIDERS[t] for t in targets)]
    subprocess.run([ROOT / "tools/pulumi-toolchain/build", *wanted], check=True)
    return pulumi_environment()


def pulumi_environment() -> dict[str, str]:
    """os.environ plus what scripts/pulumi-env exports (the user's own settings win)."""
    script = 'eval "$(scripts/pulumi-env)" && env -0'
    dump = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, check=True, capture_output=True, env=os.environ
    ).stdout
    pairs = (entry.split("=", 1) for entry in dump.decode().split("\0") if "=" in entry)
    return dict(pairs)

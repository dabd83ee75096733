"""The environment the benchmarks run `pulumi` and reach the shared services in.

Each comes from the tool that owns it, as a shell would `eval` it: the built toolchain
(tools/pulumi-toolchain/env), the Docker engine (tools/docker-engine) and the test cloud
(tools/testcloud), so a benchmark needs nothing exported beforehand.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def toolchain_env() -> dict[str, str]:
    shell = 'eval "$("$1")" && env -0'
    script = str(REPO / "tools" / "pulumi-toolchain" / "env")
    out = subprocess.run(
        ["bash", "-c", shell, "bash", script], capture_output=True, check=True, timeout=30
    ).stdout.decode()
    return dict(entry.split("=", 1) for entry in out.split("\0") if "=" in entry)


def docker_env() -> dict[str, str]:
    engine = str(REPO / "tools" / "docker-engine" / "docker-engine")
    lines = subprocess.run(
        [engine, "env", "--plain"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return {key: value for key, _, value in (line.partition("=") for line in lines)}


def testcloud_env() -> dict[str, str]:
    """OS_CLIENT_CONFIG_FILE, OS_CLOUD and CALCLAB_TESTCLOUD, as `testcloud env` exports them
    (its PATH line is left out: only the `openstack` CLI is there)."""
    tool = str(REPO / "tools" / "testcloud" / "testcloud")
    out = subprocess.run([tool, "env"], capture_output=True, text=True, check=True).stdout
    env = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            if key != "PATH":
                env[key] = value
    return env

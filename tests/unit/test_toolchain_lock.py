"""tools/pulumi-toolchain/build and its lock: a warm run never waits behind another's cold build.

The real script runs against a cache made here: the pulumi target's stamp and binary in place
(a warm run), or missing (a run that must build, and so wait for the lock).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tools/pulumi-toolchain/build"
LIB = ROOT / "tools/pulumi-toolchain/lib.sh"


def layout(cache: Path) -> dict[str, str]:
    """The cache layout and the pulumi stamp lib.sh and build derive for the pinned versions."""
    script = (
        'source "$1" && printf "%s\\n" "$TOOLCHAIN_CACHE" "$TOOLCHAIN_BIN" "$TOOLCHAIN_PREFIX" '
        '"github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION r$TOOLCHAIN_RECIPE" "$PULUMI_VERSION"'
    )
    out = subprocess.run(
        ["bash", "-c", script, "bash", str(LIB)],
        env={**os.environ, "CALCLAB_CACHE": str(cache)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return dict(zip(("cache", "bin", "prefix", "stamp", "version"), out, strict=True))


def go_is_usable() -> bool:
    needed = (ROOT / "tools/pulumi-toolchain/versions.env").read_text()
    wanted = next(line.split("=", 1)[1] for line in needed.splitlines() if line.startswith("GO_"))
    try:
        got = subprocess.run(
            ["go", "env", "GOVERSION"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return version(got) >= version(wanted)


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.removeprefix("go").split("."))


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A cache whose build lock another build holds, as during a cold `make test`."""
    paths = layout(tmp_path / "cache")
    Path(paths["cache"]).mkdir(parents=True)
    with open(Path(paths["cache"]) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield paths


def run_build(paths: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUILD), "pulumi"],
        env={**os.environ, "CALCLAB_CACHE": str(Path(paths["cache"]).parent)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.skipif(not go_is_usable(), reason="no Go of versions.env's GO_VERSION on PATH")
def test_a_warm_run_does_not_wait_for_the_lock(held_lock: dict[str, str]) -> None:
    binary = Path(held_lock["bin"]) / "pulumi"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho v{held_lock['version']}\n")
    binary.chmod(0o755)
    stamps = Path(held_lock["prefix"]) / "stamps"
    stamps.mkdir(parents=True)
    (stamps / "pulumi").write_text(held_lock["stamp"])

    result = run_build(held_lock, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "waiting for it" not in result.stderr
    assert result.stdout.splitlines()[2].split()[:2] == ["pulumi", "cached"], result.stdout


def test_a_run_that_must_build_waits_for_the_lock(held_lock: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [str(BUILD), "pulumi"],
        env={**os.environ, "CALCLAB_CACHE": str(Path(held_lock["cache"]).parent)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # still waiting: no stamp, so it needs the lock
    finally:
        os.killpg(proc.pid, 9)
        _, err = proc.communicate()
    assert "another build holds" in err, err
    assert "waiting for it" in err, err

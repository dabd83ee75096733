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
    """What lib.sh derives for the pinned versions: the cache layout, the pulumi target's stamp."""
    names = ["TOOLCHAIN_CACHE", "TOOLCHAIN_BIN", "TOOLCHAIN_PREFIX", "PULUMI_WANT"]
    names += ["PULUMI_VERSION", "GO_VERSION"]
    script = 'source "$1" && printf "%s\\n" ' + " ".join(f'"${name}"' for name in names)
    out = subprocess.run(
        ["bash", "-c", script, "bash", str(LIB)],
        env={**os.environ, "CALCLAB_CACHE": str(cache)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return dict(zip(names, out, strict=True))


def go_is_usable() -> bool:
    wanted = layout(Path("/nonexistent"))["GO_VERSION"]
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
    Path(paths["TOOLCHAIN_CACHE"]).mkdir(parents=True)
    with open(Path(paths["TOOLCHAIN_CACHE"]) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield paths


def build_env(paths: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "CALCLAB_CACHE": str(Path(paths["TOOLCHAIN_CACHE"]).parent)}


@pytest.mark.skipif(not go_is_usable(), reason="no Go of versions.env's GO_VERSION on PATH")
def test_a_warm_run_does_not_wait_for_the_lock(held_lock: dict[str, str]) -> None:
    binary = Path(held_lock["TOOLCHAIN_BIN"]) / "pulumi"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\necho v{held_lock['PULUMI_VERSION']}\n")
    binary.chmod(0o755)
    stamps = Path(held_lock["TOOLCHAIN_PREFIX"]) / "stamps"
    stamps.mkdir(parents=True)
    (stamps / "pulumi").write_text(held_lock["PULUMI_WANT"])

    result = subprocess.run(
        [str(BUILD), "pulumi"],
        env=build_env(held_lock),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "waiting for it" not in result.stderr
    assert result.stdout.splitlines()[2].split()[:2] == ["pulumi", "cached"], result.stdout


def test_a_run_that_must_build_waits_for_the_lock(held_lock: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [str(BUILD), "pulumi"],
        env=build_env(held_lock),
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

"""tools/guest-image/guest-image's command line, without building: one cache key per release,
the interface `lab image upload` relies on (`path [--release N]`, exit 3 when not built)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "guest-image" / "guest-image"


def run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CALCLAB_CACHE": str(cache)}
    return subprocess.run(
        [str(TOOL), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_each_release_has_its_own_key_and_directory(tmp_path: Path) -> None:
    keys = {}
    for release in ("11", "12", "13"):
        result = run("key", "--release", release, cache=tmp_path)
        assert result.returncode == 0, result.stderr
        keys[release] = result.stdout.strip()
    assert len(set(keys.values())) == 3
    assert run("key", cache=tmp_path).stdout.strip() == keys["12"], "12 is the default"
    missing = run("path", "--release", "13", cache=tmp_path)
    assert missing.returncode == 3
    assert missing.stdout == ""
    assert f"debian-13-{keys['13']}" in missing.stderr


def test_path_prints_a_built_directory(tmp_path: Path) -> None:
    key = run("key", "--release", "11", cache=tmp_path).stdout.strip()
    directory = tmp_path / "guest-image" / f"debian-11-{key}"
    directory.mkdir(parents=True)
    (directory / "debian-11.qcow2").write_bytes(b"QFI\xfb")
    result = run("path", "--release", "11", cache=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, str(directory))
    # the default release's image is another file in another directory
    assert run("path", cache=tmp_path).returncode == 3


@pytest.mark.parametrize("bad", [["--release", "10"], ["--release"], ["--bogus"]])
def test_bad_arguments_are_refused(tmp_path: Path, bad: list[str]) -> None:
    result = run("path", *bad, cache=tmp_path)
    assert result.returncode not in (0, 3)
    assert result.stderr

"""The web page in real headless Chromium (Debian's), driven by playwright-core from Node.

Needs ``tools/browser/install`` first; without it the test fails and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labctl.paths import cache_dir
from tests.apps.calc_cluster import Cluster

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

HERE = Path(__file__).resolve().parent
CACHE = cache_dir()
NODE_MODULES = CACHE / "browser" / "node_modules"
SCREENSHOT = Path("/tmp/calculator-page.png")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    yield running
    running.stop()


def test_page_computes_through_the_services(cluster: Cluster) -> None:
    missing = [
        what
        for what, present in [
            ("/usr/bin/chromium", Path("/usr/bin/chromium").exists()),
            ("node", shutil.which("node") is not None),
            (str(NODE_MODULES / "playwright-core"), (NODE_MODULES / "playwright-core").is_dir()),
        ]
        if not present
    ]
    if missing:
        pytest.fail(f"browser stack missing ({', '.join(missing)}): run tools/browser/install")
    SCREENSHOT.unlink(missing_ok=True)
    done = subprocess.run(
        ["node", str(HERE / "calc_page.cjs"), cluster.url + "/", str(SCREENSHOT)],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["health"] == ["up"] * 4
    assert seen["first"]["result"] == "22"
    assert seen["first"]["error"] is None
    assert seen["first"]["services"] == ["sum", "mul"]
    assert seen["second"]["result"] == "18.5"
    assert sorted(seen["second"]["services"]) == ["div", "mul", "sub", "sum", "sum"]
    assert "5 operation(s), depth 3" in seen["second"]["summary"]
    assert seen["bad"]["result"] == "error"
    assert "position 3" in seen["bad"]["error"]
    # The browser reports the 400 of "2 x" itself; anything else would be a page fault.
    assert [m for m in seen["consoleErrors"] if "status of 400" not in m] == []
    assert SCREENSHOT.stat().st_size > 10_000

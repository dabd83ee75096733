"""`make bench` as shipped: the benchmark runs end to end and prints every issue-12 ratio.

Numbers are not judged here (a timed test would fail on a busy machine); the script is, so the
command the README gives for the performance figures keeps working.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RATIOS = (
    "balanced latency / echo round trip",
    "balanced / chain latency (concurrent)",
    "(5+6)*2 throughput, 32 / 1 clients",
    "overload goodput / peak (worst run)",
)


def test_benchmark_runs_and_prints_every_ratio() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "calculator_bench.py"),
            "--repeat=5",
            "--seconds=0.3",
            "--overload-seconds=0.5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"stdlib echo round trip .*: +\d+\.\d+ ms", out), out
    for label in RATIOS:
        line = next((row for row in out.splitlines() if row.strip().startswith(label)), None)
        assert line is not None, f"no line for {label!r} in:\n{out}"
        assert re.search(r"\s\d+\.\d\d\s+\((<=|>=) [\d.]+\) (ok|MISSED)$", line), line
    # Both overload runs report their goodput and statuses.
    assert re.search(r"^ +64 clients: goodput", out, re.M), out
    assert re.search(r"^ +128 clients: goodput", out, re.M), out

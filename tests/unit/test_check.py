"""`lab check` against a real calculator on loopback ports (tests/apps/calc_cluster.py): healthy,
with a service stopped, not there at all, and coming up while the check retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from labctl.check import (
    EXPRESSION,
    CheckReport,
    HttpResult,
    OutputsError,
    calculator_url,
    check,
    check_calculator,
    urllib_client,
)
from tests.apps.calc_cluster import Cluster, free_port


class FakeClock:
    """Time that passes only when the check sleeps, so retries cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    try:
        yield running
    finally:
        running.stop()


def _rows(report: CheckReport) -> dict[str, bool]:
    return {row.name: row.ok for row in report.rows}


@pytest.mark.e2e
def test_healthy_calculator_passes_at_the_first_attempt(cluster: Cluster) -> None:
    clock = FakeClock()
    report = check_calculator(cluster.url, timeout=60, clock=clock, sleep=clock.sleep)
    assert report.verdict == "ok"
    assert report.attempts == 1
    assert clock.sleeps == []
    assert _rows(report) == {
        "front": True,
        "sum": True,
        "sub": True,
        "mul": True,
        "div": True,
        EXPRESSION: True,
    }


@pytest.mark.e2e
def test_a_stopped_service_is_named_and_the_verdict_is_degraded(cluster: Cluster) -> None:
    cluster.services["div"].stop()
    clock = FakeClock()
    report = check_calculator(cluster.url, timeout=20, interval=5, clock=clock, sleep=clock.sleep)
    assert report.verdict == "degraded"
    # (5+6)*2 needs no division, so it still answers 22; the verdict comes from /health.
    assert _rows(report) == {
        "front": True,
        "sum": True,
        "sub": True,
        "mul": True,
        "div": False,
        EXPRESSION: True,
    }
    div = next(row for row in report.rows if row.name == "div")
    assert div.detail.startswith("down at http://127.0.0.1:")
    # retried every 5 s while the deadline allowed, then gave up
    assert clock.sleeps == [5, 5, 5, 5]
    assert report.attempts == 5


@pytest.mark.e2e
def test_a_failing_calculation_is_reported_even_when_health_is_ok(cluster: Cluster) -> None:
    cluster.services["mul"].stop()
    report = check_calculator(cluster.url, timeout=0)
    rows = {row.name: row for row in report.rows}
    assert not rows[EXPRESSION].ok
    assert rows[EXPRESSION].detail.startswith("HTTP 502")


def test_nothing_listening_is_unreachable_after_bounded_retries() -> None:
    clock = FakeClock()
    url = f"http://127.0.0.1:{free_port()}"
    report = check_calculator(url, timeout=12, interval=4, clock=clock, sleep=clock.sleep)
    assert report.verdict == "unreachable"
    assert [row.name for row in report.rows] == ["front"]
    assert "refused" in report.rows[0].detail.lower()
    assert report.attempts == 4
    assert report.elapsed_s == 12


@pytest.mark.e2e
def test_the_check_waits_for_a_calculator_that_comes_up(cluster: Cluster) -> None:
    """As after `pulumi up`: the first attempts find nothing (the VMs are booting), then the
    calculator answers; the check retries until it does."""
    clock = FakeClock()

    def booting(method: str, url: str, body: bytes | None, timeout: float) -> HttpResult:
        if len(clock.sleeps) < 3:
            raise ConnectionRefusedError(111, "Connection refused")
        return urllib_client(method, url, body, timeout)

    report = check_calculator(
        cluster.url, timeout=300, interval=5, http=booting, clock=clock, sleep=clock.sleep
    )
    assert report.verdict == "ok"
    assert report.attempts == 4
    assert report.elapsed_s == 15


def test_outputs_without_url_say_what_to_do() -> None:
    assert (
        calculator_url({"calculatorUrl": "http://10.0.0.5:50000"}, "x") == "http://10.0.0.5:50000"
    )
    with pytest.raises(OutputsError, match="is the stack deployed"):
        calculator_url({"topology": "client"}, "stack dev")


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(check)
    app.command("noop")(lambda: None)  # two commands, so `check` is a subcommand as in `lab`
    return app


@pytest.mark.e2e
def test_command_prints_a_table_and_exits_by_verdict(cluster: Cluster, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"calculatorUrl": cluster.url, "topology": "client"}))
    runner = CliRunner()
    result = runner.invoke(_app(), ["check", "dev", "--outputs-file", str(outputs)])
    assert result.exit_code == 0, result.output
    for name in ("front", "sum", "sub", "mul", "div", EXPRESSION, "OK"):
        assert name in result.output
    cluster.services["sub"].stop()
    result = runner.invoke(_app(), ["check", "--url", cluster.url, "--timeout", "0", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["verdict"] == "degraded"
    assert [row["name"] for row in report["rows"] if not row["ok"]] == ["sub"]


def test_command_without_outputs_exits_2(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text("{}")
    result = CliRunner().invoke(_app(), ["check", "dev", "--outputs-file", str(outputs)])
    assert result.exit_code == 2
    assert "no calculatorUrl" in result.output

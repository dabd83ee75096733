"""The calculator behaves the same on every Python it supports (3.8 to 3.13).

scripts/test-all runs this file, with the HTTP, e2e and overload tests, once more for each of the
oldest and newest supported interpreters, named by CALCLAB_APP_PYTHON; pytest itself stays on the
project's Python. So that such a run cannot pass on the wrong interpreter, the first test asks a
started process which Python serves it. The others feed the pure core (parser, arithmetic, a
service's computation) the same inputs in a worker running on the interpreter under test and in
this process, and require identical answers, errors included.
"""

from __future__ import annotations

import inspect
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest
from calculator.arith import Limits, format_number
from calculator.errors import CalcError
from calculator.evaluate import calculate
from calculator.service import compute
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.apps.calc_cluster import APP_PYTHON, APPS, SERVICES, Process
from tests.apps.test_calc_properties import BIG_EXPRESSION, EXPRESSION

pytestmark = pytest.mark.e2e


def answer(kind: str, text: str) -> list[object]:
    """The core's answer to one input: a value, or the error's class, message, status and
    position. Run here and, in the worker, on the interpreter under test (so it must stay
    valid Python 3.8)."""
    try:
        if kind == "expr":
            return ["value", format_number(calculate(text))]
        return ["value", compute(kind, text, Limits())[1]]
    except CalcError as error:
        return [type(error).__name__, error.message, error.status, error.position]


# The worker runs answer() itself, its very source: one JSON request a line, ["expr", text] or
# [service, body], one JSON answer a line.
_WORKER = "\n".join(
    [
        "from __future__ import annotations",
        "import json, sys",
        "from calculator.arith import Limits, format_number",
        "from calculator.errors import CalcError",
        "from calculator.evaluate import calculate",
        "from calculator.service import compute",
        inspect.getsource(answer),
        "for line in sys.stdin:",
        "    print(json.dumps(answer(*json.loads(line))), flush=True)",
    ]
)


class Worker:
    def __init__(self) -> None:
        self.popen = subprocess.Popen(
            [APP_PYTHON, "-c", _WORKER],
            env={**os.environ, "PYTHONPATH": str(APPS)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, kind: str, text: str) -> list[object]:
        assert self.popen.stdin is not None
        assert self.popen.stdout is not None
        self.popen.stdin.write(json.dumps([kind, text]) + "\n")
        self.popen.stdin.flush()
        line = self.popen.stdout.readline()
        assert line, f"the worker on {APP_PYTHON} stopped (exit status {self.popen.poll()})"
        reply: list[object] = json.loads(line)
        return reply

    def stop(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()
        self.popen.wait(timeout=10)


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    running = Worker()
    yield running
    running.stop()


def _expected_python() -> str:
    """The version CALCLAB_APP_PYTHON reports, read from the variable itself and not through
    calc_cluster, whose use of it is what this checks."""
    named = os.environ.get("CALCLAB_APP_PYTHON")
    if not named:
        return platform.python_version()
    command = [named, "-c", "import platform; print(platform.python_version())"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_processes_run_on_the_interpreter_under_test() -> None:
    expected = _expected_python()
    proc = Process("sum")
    try:
        listening = proc.records()[0]
        assert listening["event"] == "listening"
        assert listening["python"] == expected
    finally:
        proc.stop()
    print(f"calculator served by Python {listening['python']} (tests on {sys.version.split()[0]})")


NOISE = st.text(alphabet=" \t0123456789.+-*/()x", max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.one_of(EXPRESSION, BIG_EXPRESSION, NOISE))
def test_expressions_evaluate_alike(worker: Worker, text: str) -> None:
    assert worker.ask("expr", text) == answer("expr", text)


OPERAND = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**30), max_value=10**30),
    st.integers(-(10**600), 10**600).map(Decimal),
).map(format_number)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SERVICES), st.one_of(st.tuples(OPERAND, OPERAND).map(" ".join), NOISE))
def test_services_compute_alike(worker: Worker, service: str, body: str) -> None:
    assert worker.ask(service, body) == answer(service, body)

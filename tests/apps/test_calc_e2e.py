"""End-to-end: the five real calculator processes on free loopback ports, driven over HTTP."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from fractions import Fraction

import pytest
from calculator.arith import format_number
from calculator.errors import CalcError
from calculator.evaluate import calculate
from hypothesis import HealthCheck, example, given, settings

from tests.apps.calc_cluster import SERVICES, Cluster, Process, request, wait_until
from tests.apps.calc_fakes import SlowSum, StalledService
from tests.apps.calc_reference import reference_value
from tests.apps.test_calc_properties import BIG_EXPRESSION

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    yield running
    running.stop()


def post(
    url: str, body: str | bytes, *, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    status, text, _ = request(url, body, path=path, headers=headers)
    return status, text


def balanced(leaves: list[str], ops: str) -> str:
    """A balanced expression over ``leaves`` with operators taken in turn from ``ops``."""
    level = leaves
    turn = 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            nxt.append(f"({level[i]}{ops[turn % len(ops)]}{level[i + 1]})")
            turn += 1
        level = nxt
    return level[0]


def test_lab_curl_examples(cluster: Cluster) -> None:
    services = cluster.services
    assert post(services["sum"].url, "2 3") == (200, "5\n")
    assert post(services["sub"].url, "5 3") == (200, "2\n")
    assert post(services["mul"].url, "12 3") == (200, "36\n")
    assert post(services["div"].url, "15 5") == (200, "3\n")
    assert post(cluster.url, "(5+6)*2") == (200, "22\n")
    assert post(cluster.url, "10/4") == (200, "2.5\n")
    # curl -d sends a form content type; the body is still taken as it is ('+' is not a space).
    assert (
        post(cluster.url, "1+2", headers={"Content-Type": "application/x-www-form-urlencoded"})[1]
        == "3\n"
    )


def test_every_operation_is_done_by_its_service(cluster: Cluster) -> None:
    before = {name: len(proc.records()) for name, proc in cluster.services.items()}
    status, text, _ = request(
        cluster.url, "(1+2)*(7-3)/-(4-2)", headers={"Accept": "application/json"}
    )
    assert status == 200
    answer = json.loads(text)
    assert answer["result"] == "-6"
    assert sorted(call["service"] for call in answer["calls"]) == [
        "div", "mul", "sub", "sub", "sub", "sum"
    ]  # fmt: skip
    assert answer["depth"] == 3
    # Each service logged one structured line per call it served.
    assert wait_until(
        lambda: (
            {n: len(p.records()) - before[n] for n, p in cluster.services.items()}
            == {"sum": 1, "sub": 3, "mul": 1, "div": 1}
        )
    )
    line = cluster.services["mul"].records()[-1]
    assert line["service"] == "mul"
    assert line["op"] == "*"
    assert line["operands"] == ["3", "4"]
    assert line["result"] == "12"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert cluster.front is not None
    front = cluster.front
    # The log line is written after the answer is sent, so it may lag behind it a little.
    assert wait_until(lambda: front.records()[-1].get("expression") == "(1+2)*(7-3)/-(4-2)")
    front_line = front.records()[-1]
    assert front_line["expression"] == "(1+2)*(7-3)/-(4-2)"
    assert front_line["calls"] == 6


def test_health(cluster: Cluster) -> None:
    for proc in cluster.services.values():
        status, text, _ = request(proc.url, path="/health")
        assert status == 200
        assert json.loads(text)["status"] == "ok"
    status, text, _ = request(cluster.url, path="/health")
    report = json.loads(text)
    assert status == 200
    assert report["status"] == "ok"
    assert set(report["dependencies"]) == set(SERVICES)
    assert all(dep["status"] == "ok" for dep in report["dependencies"].values())


def test_web_page_is_served(cluster: Cluster) -> None:
    status, page, headers = request(cluster.url)
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert 'id="expression"' in page
    assert "/app.js" in page
    assert request(cluster.url, path="/app.js")[0] == 200
    assert request(cluster.url, path="/style.css")[0] == 200
    assert request(cluster.url, path="/../../etc/passwd")[0] == 404


def test_bad_input_is_answered_with_a_clear_4xx(cluster: Cluster) -> None:
    status, text = post(cluster.url, "(5+6)*")
    assert status == 400
    assert "position 7" in text
    assert "expected a number" in text
    status, text = post(cluster.url, "7/(3-3)")
    assert 400 <= status < 500
    assert "division by zero" in text
    assert "div service" in text
    div = cluster.services["div"].url
    assert post(div, "2")[0] == 400
    assert post(div, "2 x") == (400, "error: second operand 'x' is not a number "
                                     "(expected digits like 12, -3 or 2.5)\n")  # fmt: skip
    status, text = post(div, "1 0")
    assert status == 400
    assert "division by zero" in text


def test_limits(cluster: Cluster) -> None:
    status, text = post(cluster.url, "1+" * 10_000 + "1")
    assert status == 413
    assert "longer than the limit" in text
    status, text = post(cluster.url, "(" * 200 + "1" + ")" * 200)
    assert status == 400
    assert "nested too deep" in text
    status, text = post(cluster.url, "+".join(["1"] * 200))
    assert status == 400
    assert "too deep" in text
    status, text = post(cluster.url, balanced(["1"] * 2048, "+"))
    assert status == 400
    assert "too many operations" in text
    status, text = post(cluster.url, "1" * 1001 + "+1")
    assert status == 400
    assert "1001 digits" in text
    status, text = post(cluster.services["mul"].url, "9" * 1001 + " 1")
    assert status == 400
    assert "1001 digits" in text
    status, text = post(cluster.url, "9" * 600 + "*" + "9" * 600)
    assert status == 400
    assert "result has 1200 digits" in text
    assert "mul service" in text


def test_protocol_abuse_never_crashes_a_process(cluster: Cluster) -> None:
    sum_url = cluster.services["sum"].url
    assert post(sum_url, b"\xff\xfe 1")[0] == 400
    status, _, headers = request(sum_url, "1 2", method="PUT")
    assert status == 405
    assert headers["allow"] == "GET, HEAD, POST"
    status, _text, _ = request(
        sum_url, None, method="POST", headers={"Transfer-Encoding": "chunked"}
    )
    assert status == 411
    with socket.create_connection(("127.0.0.1", cluster.services["sum"].port), timeout=5) as raw:
        raw.sendall(b"\x00\x01garbage that is not HTTP\r\n\r\n")
        assert raw.recv(200).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    with socket.create_connection(("127.0.0.1", cluster.services["sum"].port), timeout=5) as raw:
        raw.sendall(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n1 2")  # body cut short
    assert post(sum_url, "2 3") == (200, "5\n")
    for proc in cluster.services.values():
        assert proc.popen.poll() is None
        assert not any("traceback" in line for line in proc.records())


def test_keep_alive_connections_are_reused(cluster: Cluster) -> None:
    sums = cluster.services["sum"]

    # The chain's own calls: "1 1", "2 1", ... "20 1" (other tests share the cluster).
    chain = {(str(n), "1") for n in range(1, 21)}

    def calls() -> list[dict[str, object]]:
        return [
            record
            for record in sums.records()
            if record.get("method") == "POST" and tuple(record.get("operands") or ()) in chain
        ]

    before = len(calls())
    for _ in range(3):
        assert post(cluster.url, "+".join(["1"] * 21)) == (200, "21\n")
    # Log lines may reach the file a moment after the answer; a loaded machine needs room.
    assert wait_until(lambda: len(calls()) - before >= 60, timeout=30), len(calls()) - before
    assert len(calls()) - before == 60
    # Sixty calls, one at a time (a chain), all over one kept-alive connection.
    clients = {record["client"] for record in calls()[before:]}
    assert len(clients) == 1, clients


def test_concurrent_evaluation_follows_depth_not_size() -> None:
    slow = SlowSum(delay=0.3)
    running = Cluster(front_env={"CALC_SUM_URL": slow.url})
    try:
        expression = balanced([str(i) for i in range(1, 9)], "+")  # 7 sums, depth 3
        started = time.monotonic()
        assert post(running.url, expression) == (200, "36\n")
        concurrent = time.monotonic() - started
        assert slow.peak == 4  # the four leaf sums were in flight together
        started = time.monotonic()
        assert post(running.url, expression, path="/?mode=sequential") == (200, "36\n")
        sequential = time.monotonic() - started
        # The structure, not the speed: 3 levels x 0.3 s at the least, and 7 calls x 0.3 s
        # one at a time (a loaded machine may add to either, so no upper bound).
        assert concurrent >= 0.9, concurrent
        assert sequential >= 2.1, sequential
        assert concurrent < sequential
    finally:
        running.stop()
        slow.close()


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
def test_stalled_service_gives_504_naming_it(trickle: bool) -> None:
    stalled = StalledService()
    stalled.trickle = trickle
    running = Cluster(front_env={"CALC_DIV_URL": stalled.url, "CALC_TIMEOUT": "1"})
    try:
        started = time.monotonic()
        status, text = post(running.url, "(1+2)*(8/2)")
        elapsed = time.monotonic() - started
        assert status == 504
        assert "div service" in text
        assert "within 1 s" in text
        assert elapsed < 2.5, elapsed
        # The other services keep working while div is stuck.
        assert post(running.url, "(1+2)*(4-2)") == (200, "6\n")
        status, text, _ = request(running.url, path="/health")
        report = json.loads(text)
        assert status == 503
        assert report["dependencies"]["div"]["status"] == "down"
        assert report["dependencies"]["sum"]["status"] == "ok"
    finally:
        running.stop()
        stalled.close()


def test_service_whose_connection_never_opens_gives_504() -> None:
    # A listener whose accept queue is full drops further SYNs, so the front end's connect hangs
    # until its timeout. The first call's own deadline expires just before that; a call made
    # while the connect was pending is failed by the connect's timeout itself, and that must
    # read as a service too slow (504), not an unreachable one (502): before 3.11 the timeout is
    # asyncio's own class, which a bare TimeoutError does not catch.
    door = socket.socket()
    door.bind(("127.0.0.1", 0))
    door.listen(0)
    filler = socket.create_connection(door.getsockname(), timeout=1)  # the queue holds one
    url = f"http://127.0.0.1:{door.getsockname()[1]}"
    running = Cluster(front_env={"CALC_MUL_URL": url, "CALC_TIMEOUT": "1"})
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, running.url, "2*3")
            time.sleep(0.5)
            second = post(running.url, "4*5")
        for status, text in (first.result(), second):
            assert status == 504, text
            assert "mul service" in text
            assert "within 1 s" in text
    finally:
        running.stop()
        filler.close()
        door.close()


def test_killed_service_gives_502_then_recovers() -> None:
    running = Cluster()
    try:
        assert post(running.url, "2*3+1") == (200, "7\n")  # pools now hold live connections
        mul = running.services["mul"]
        port = mul.port
        mul.stop(signal.SIGKILL)
        started = time.monotonic()
        status, text = post(running.url, "2*3+1")
        assert status == 502, text
        assert "mul service" in text
        assert time.monotonic() - started < 2
        status, text, _ = request(running.url, path="/health")
        assert status == 503
        assert json.loads(text)["dependencies"]["mul"]["status"] == "down"
        assert post(running.url, "2+3") == (200, "5\n")
        running.services["mul"] = Process("mul", port=port)
        assert post(running.url, "2*3+1") == (200, "7\n")
    finally:
        running.stop()


def test_sigterm_stops_a_process_cleanly() -> None:
    proc = Process("sum")
    assert post(proc.url, "1 1") == (200, "2\n")
    started = time.monotonic()
    assert proc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 3


def test_all_role_runs_the_five_on_loopback() -> None:
    proc = Process("all")
    try:
        assert proc.records()[0]["host"] == "127.0.0.1"
        assert wait_until(lambda: len([r for r in proc.records() if "event" in r]) == 5)
        front = next(r for r in proc.records() if r.get("service") == "front")
        assert post(f"http://127.0.0.1:{front['port']}", "(5+6)*2") == (200, "22\n")
    finally:
        proc.stop()


def test_bad_configuration_fails_at_start_with_a_message() -> None:
    with pytest.raises(RuntimeError, match="CALC_TIMEOUT must be a number of seconds"):
        Process("front", {"CALC_TIMEOUT": "soon"})


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=BIG_EXPRESSION)
@example(text="-99999999999999999999999999999")
@example(text="-(" + "9" * 1000 + ")+-" + "9" * 1000)
def test_front_end_agrees_with_the_reference_on_big_numbers(cluster: Cluster, text: str) -> None:
    """Through the five processes, the same value the reference computes, or the same error."""
    status, answer = post(cluster.url, text)
    try:
        local: Decimal | CalcError = calculate(text)
    except CalcError as error:
        local = error
    if isinstance(local, CalcError):  # e.g. a result over the 1,000-digit limit
        assert status == local.status, (text, answer)
        return
    assert (status, answer) == (200, format_number(local) + "\n")
    assert Fraction(answer.strip()) == reference_value(text)

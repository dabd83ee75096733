"""Overload and faults under load: admission control, one bulkhead per service, deadlines.

Real processes on loopback; a stalled service is a socket that accepts and never answers, or a
real service stopped with SIGSTOP. Bounds on time are generous: they tell "answered at once"
from "waited for a timeout" (seconds apart), not fast from slow.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.apps.calc_cluster import Cluster, request
from tests.apps.calc_fakes import StalledService

pytestmark = pytest.mark.e2e


Answer = tuple[int, str, dict[str, str]]


@pytest.fixture
def stalled() -> Iterator[StalledService]:
    service = StalledService()
    yield service
    service.close()


@contextmanager
def div_stalled(stalled: StalledService, env: dict[str, str]) -> Iterator[Cluster]:
    """A cluster whose front end calls ``stalled`` as its div service."""
    running = Cluster(front_env={"CALC_DIV_URL": stalled.url, **env})
    try:
        yield running
    finally:
        running.stop()


def timed(action: Callable[[], Answer]) -> tuple[int, str, float]:
    started = time.monotonic()
    status, text, _ = action()
    return status, text, time.monotonic() - started


def in_background(
    url: str, body: str, count: int
) -> tuple[ThreadPoolExecutor, list[Future[Answer]]]:
    pool = ThreadPoolExecutor(count)
    return pool, [pool.submit(request, url, body) for _ in range(count)]


def test_a_stalled_service_does_not_starve_the_others(stalled: StalledService) -> None:
    """80 expressions stuck on div (more than the old 64 call threads): 1+2 still answers."""
    with div_stalled(stalled, {"CALC_TIMEOUT": "4", "CALC_MAX_EXPRESSIONS": "200"}) as running:
        pool, futures = in_background(running.url, "(1+2)*(8/2)", 80)
        assert wait_clients(stalled, 1)
        time.sleep(0.5)  # the div calls are in flight and stuck
        status, text, elapsed = timed(lambda: request(running.url, "1+2"))
        assert (status, text) == (200, "3\n")
        assert elapsed < 2.0, elapsed  # did not wait for div's 4 s timeout
        pool.shutdown(wait=True)
        answers = {f.result()[:2] for f in futures}
        assert {status for status, _ in answers} == {504}
        assert all("div service" in text for _, text in answers)


def test_queued_time_counts_toward_the_deadline(stalled: StalledService) -> None:
    """One call in flight at a time to div: the calls queued behind it time out with it."""
    with div_stalled(stalled, {"CALC_TIMEOUT": "2", "CALC_SERVICE_CALLS": "1"}) as running:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(timed, lambda: request(running.url, "8/2")) for _ in range(3)]
            results = [future.result() for future in futures]
        for status, text, elapsed in results:
            assert status == 504
            assert "div service" in text
            # Each within about one timeout of being sent, not one timeout after the one before.
            assert elapsed < 3.5, elapsed
        assert any("waited behind" in text for _, text, _ in results)


def test_admission_control_answers_503_at_once(stalled: StalledService) -> None:
    with div_stalled(stalled, {"CALC_TIMEOUT": "4", "CALC_MAX_EXPRESSIONS": "2"}) as running:
        pool, _ = in_background(running.url, "8/2", 2)
        assert wait_clients(stalled, 1)
        time.sleep(0.3)
        started = time.monotonic()
        status, text, headers = request(running.url, "1+2")
        elapsed = time.monotonic() - started
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "front end overloaded" in text
        assert elapsed < 2.0, elapsed
        pool.shutdown(wait=True)
        # Once the stuck ones are gone, the front end takes work again.
        assert request(running.url, "1+2")[:2] == (200, "3\n")


def test_a_full_service_queue_fails_at_once_naming_the_service(stalled: StalledService) -> None:
    with div_stalled(
        stalled, {"CALC_TIMEOUT": "4", "CALC_SERVICE_CALLS": "1", "CALC_SERVICE_QUEUE": "1"}
    ) as running:
        # Three divisions at once: one in flight, one queued, the third refused.
        status, text, elapsed = timed(lambda: request(running.url, "(1/1)+(2/2)+(3/3)"))
        assert status == 503
        assert "div service" in text
        assert "overloaded" in text
        assert elapsed < 2.0, elapsed


def test_request_deadline_names_the_service_waited_for(stalled: StalledService) -> None:
    with div_stalled(stalled, {"CALC_TIMEOUT": "5", "CALC_REQUEST_TIMEOUT": "1"}) as running:
        status, text, _ = request(running.url, "(1+2)*(8/2)")
        assert status == 504
        assert "evaluation took longer than 1 s (still waiting for the div service)" in text


def wait_clients(stalled: StalledService, count: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(stalled.held) >= count:
            return True
        time.sleep(0.02)
    return False


def test_faults_under_load_every_answer_is_right_or_names_its_cause() -> None:
    """16 clients in a loop while div is stopped (SIGSTOP) and then resumed."""
    running = Cluster(front_env={"CALC_TIMEOUT": "1.5"})
    expressions = {"(1+2)*(7-3)": "12\n", "(8/2)+1": "5\n", "2*3-1": "5\n", "-(9/3)": "-3\n"}
    seen: list[tuple[str, int, str, dict[str, str]]] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(offset: int) -> None:
        bodies = list(expressions)
        turn = offset
        while not stop.is_set():
            body = bodies[turn % len(bodies)]
            turn += 1
            status, text, headers = request(running.url, body, timeout=30)
            with lock:
                seen.append((body, status, text, headers))
            if status == 503:
                time.sleep(0.1)

    div = running.services["div"].popen
    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        div.send_signal(signal.SIGSTOP)
        time.sleep(3)
        div.send_signal(signal.SIGCONT)
        time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        div.send_signal(signal.SIGCONT)
    try:
        assert len(seen) > 50
        statuses = {status for _, status, _, _ in seen}
        assert statuses <= {200, 503, 504}, statuses
        assert 504 in statuses  # div was really stopped long enough
        for body, status, text, headers in seen:
            if status == 200:
                assert text == expressions[body], (body, text)
            elif status == 504:
                assert "/" in body, (body, text)  # only expressions that need div
                assert "div service" in text
            else:
                assert headers.get("retry-after") == "1"
        # Resumed: div answers again, through the same front end.
        assert request(running.url, "(8/2)+1")[:2] == (200, "5\n")
        health_status, health, _ = request(running.url, path="/health")
        assert health_status == 200
        assert json.loads(health)["status"] == "ok"
    finally:
        running.stop()


def test_admission_counts_the_calls_an_expression_needs(stalled: StalledService) -> None:
    """A budget of calls, not only of expressions: small ones still fit beside a stuck one."""
    with div_stalled(stalled, {"CALC_TIMEOUT": "4", "CALC_MAX_CALLS": "6"}) as running:
        # Alone, an expression larger than the whole budget is still let in.
        assert request(running.url, "+".join(["1"] * 10))[:2] == (200, "10\n")
        pool, _ = in_background(running.url, "(1/1)+(2/2)+(3/3)", 1)  # 5 calls, stuck on div
        assert wait_clients(stalled, 1)
        time.sleep(0.3)
        assert request(running.url, "1+2")[:2] == (200, "3\n")  # 5 + 1 <= 6
        status, text, headers = request(running.url, "1+2+3")  # 5 + 2 > 6
        assert status == 503
        assert headers["retry-after"] == "1"
        assert "service calls in flight" in text
        pool.shutdown(wait=True)

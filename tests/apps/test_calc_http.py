"""Slow and malformed clients against real calculator processes: framing, deadlines, methods.

Each test here failed on the thread-per-connection server this one replaced (issue 12).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.apps.calc_cluster import Cluster, Process, request, wait_until

pytestmark = pytest.mark.e2e

#: Short enough to keep the tests quick, long enough for a loaded machine.
READ_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def sums() -> Iterator[Process]:
    proc = Process("sum", {"CALC_READ_TIMEOUT": str(READ_TIMEOUT)})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    running = Cluster()
    yield running
    running.stop()


def raw(proc: Process, data: bytes, *, half_close: bool = False, timeout: float = 10) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", proc.port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def read_answer(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body), however it is split in segments."""
    answer = b""
    while True:
        head, _, body = answer.partition(b"\r\n\r\n")
        if _ and len(body) >= int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]):
            return answer
        chunk = sock.recv(4096)
        if not chunk:
            return answer
        answer += chunk


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def no_tracebacks(proc: Process) -> bool:
    """Every line the process wrote is one JSON record, none with a traceback."""
    return all(line.startswith("{") and "traceback" not in line for line in list(proc.lines))


def test_body_shorter_than_content_length_is_408_after_the_read_timeout(sums: Process) -> None:
    started = time.monotonic()
    answer = raw(sums, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n1 2")
    elapsed = time.monotonic() - started
    assert status_of(answer) == 408
    assert b"body not received within 1 s" in answer
    assert b"Connection: close" in answer
    assert elapsed < 10 * READ_TIMEOUT, elapsed  # not the 30 s idle timeout
    assert no_tracebacks(sums)


def test_body_cut_short_by_the_client_is_400_at_once(sums: Process) -> None:
    answer = raw(sums, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n1 2", half_close=True)
    assert status_of(answer) == 400
    assert b"ended before its body" in answer
    assert no_tracebacks(sums)


def test_trickled_headers_meet_an_overall_deadline(sums: Process) -> None:
    """One byte at a time, each well within any per-read timeout: the request still ends."""
    request_bytes = b"POST / HTTP/1.1\r\nX-Slow: " + b"a" * 1000
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", sums.port), timeout=10) as sock:
        answer = b""
        for byte in request_bytes:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            sock.settimeout(0.2)
            try:
                answer = sock.recv(4096)
            except TimeoutError:
                continue
            break
    elapsed = time.monotonic() - started
    assert status_of(answer) == 408
    assert b"headers not received within 1 s" in answer
    assert elapsed < 10 * READ_TIMEOUT, elapsed


def test_connection_reset_is_one_log_line(sums: Process) -> None:
    with socket.create_connection(("127.0.0.1", sums.port), timeout=5) as sock:
        client = f"127.0.0.1:{sock.getsockname()[1]}"
        sock.sendall(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n1")
        time.sleep(0.2)
        # SO_LINGER 0: close sends a reset instead of a FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def mine() -> list[dict[str, object]]:
        return [record for record in sums.records() if record.get("client") == client]

    assert wait_until(lambda: mine())
    time.sleep(0.3)
    new = mine()
    assert [record["event"] for record in new] == ["connection-lost"]
    assert new[0]["error"] == "ConnectionResetError"
    assert no_tracebacks(sums)
    assert request(sums.url, "2 3")[:2] == (200, "5\n")


@pytest.mark.parametrize(
    "length",
    ["+3", "0_3", "3 3", "-3", "0x3", "3.0", "", "٣", "3, 4"],
)
def test_content_length_must_be_plain_digits(sums: Process, length: str) -> None:
    head = f"POST / HTTP/1.1\r\nContent-Length: {length}\r\n\r\n".encode()
    answer = raw(sums, head + b"1 2")
    assert status_of(answer) == 400, answer
    assert b"Content-Length" in answer


def test_two_different_content_lengths_are_refused(sums: Process) -> None:
    answer = raw(sums, b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n1 2 ")
    assert status_of(answer) == 400
    assert b"conflicting Content-Length" in answer
    # The same length twice (or as a list) frames the body the same way: accepted.
    same = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
    assert raw(sums, same + b"1 2").endswith(b"\r\n\r\n3\n")
    assert status_of(raw(sums, same.replace(b"3\r\nContent-Length: 3", b"3, 3") + b"1 2")) == 200


def test_head_is_get_without_a_body(cluster: Cluster) -> None:
    div = cluster.services["div"].url
    for url, path in ((cluster.url, "/"), (cluster.url, "/health"), (div, "/health")):
        get_status, get_body, get_headers = request(url, path=path)
        status, body, headers = request(url, method="HEAD", path=path)
        assert (status, body) == (get_status, "")
        assert headers["content-type"] == get_headers["content-type"]
        assert get_headers["content-length"] == str(len(get_body.encode()))
        if path == "/":  # /health's latencies, and so its length, change from one call to the next
            assert headers["content-length"] == get_headers["content-length"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH", "BREW"])
def test_other_methods_are_405_with_allow(cluster: Cluster, method: str) -> None:
    for url in (cluster.url, cluster.services["sum"].url):
        status, text, headers = request(url, "1 2", method=method)
        assert status == 405
        assert headers["allow"] == "GET, HEAD, POST"
        assert method in text
    # The connection stays usable: the body was framed and read.
    assert request(cluster.url, "(5+6)*2")[:2] == (200, "22\n")


def test_expect_100_continue_as_curl_sends_for_long_bodies(cluster: Cluster) -> None:
    body = "+".join(["1"] * 700).encode()
    proc = cluster.front
    assert proc is not None
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        head = f"POST / HTTP/1.1\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        sock.sendall(head.encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = read_answer(sock)
    # 700 terms is a chain deeper than the depth limit: a clear 400, after the body was read.
    assert status_of(answer) == 400
    assert b"too deep" in answer


def test_pipelined_requests_are_answered_in_order(sums: Process) -> None:
    requests = b"".join(
        f"POST / HTTP/1.1\r\nContent-Length: {len(b)}\r\n\r\n{b}".encode()
        for b in ("1 1", "2 2", "3 3")
    )
    answer = raw(sums, requests + b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
    bodies = [part.split(b"\r\n\r\n", 1)[1][:2] for part in answer.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"2\n", b"4\n", b"6\n", b"{\n"]


HEADER_VALUE = st.text(alphabet="0123456789+-_ ,.xe\t", max_size=8)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lengths=st.lists(HEADER_VALUE, min_size=0, max_size=3),
    body=st.sampled_from(["1 2", "", "12 30"]),
)
@example(lengths=["+3"], body="1 2")
@example(lengths=["0_3"], body="1 2")
@example(lengths=["3", "4"], body="1 2")
@example(lengths=[], body="1 2")
def test_framing_is_strict_and_never_a_500(sums: Process, lengths: list[str], body: str) -> None:
    """Any Content-Length headers: 200 only for one plain length that frames the body."""
    head = "".join(f"Content-Length: {value}\r\n" for value in lengths)
    data = f"POST / HTTP/1.1\r\n{head}Connection: close\r\n\r\n{body}".encode()
    answer = raw(sums, data, half_close=True)
    status = status_of(answer)
    items = [item.strip(" \t") for value in lengths for item in value.strip(" \t").split(",")]
    plain = bool(items) and all(item.isascii() and item.isdigit() for item in items)
    if not lengths:
        assert status == 411
    elif not plain or len({int(item) for item in items}) > 1:
        assert status == 400
    elif int(items[0]) > 16384:
        assert status == 413
    elif int(items[0]) > len(body):
        assert status == 400  # the client closed before the body was complete
    elif len(body[: int(items[0])].split()) == 2:
        assert status == 200
    else:
        assert status == 400  # what the length frames is not two numbers
    assert sums.popen.poll() is None
    assert no_tracebacks(sums)


def test_a_head_seen_before_parses_the_same_and_a_refused_one_stays_refused() -> None:
    """parse_head answers repeated heads from a cache: the cache must never change an answer."""
    from calculator import httpbase

    httpbase._HEADS.clear()
    good = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3"
    first, again = httpbase.parse_head(good), httpbase.parse_head(good)
    assert again is first
    assert (first.method, first.body_length) == ("POST", 3)
    assert httpbase.parse_head(good.replace(b": 3", b": 12")).body_length == 12
    for bad in (good + b"\r\nContent-Length: 4", good.replace(b": 3", b": +3")):
        for _ in range(2):
            with pytest.raises(httpbase._BadRequest):
                httpbase.parse_head(bad)
    for n in range(3 * httpbase._HEAD_CACHE):
        assert httpbase.parse_head(good.replace(b": 3", b": %d" % n)).body_length == n
    assert len(httpbase._HEADS) <= httpbase._HEAD_CACHE

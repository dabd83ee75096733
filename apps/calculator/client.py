"""The front end's side of a service: a bulkhead of pipelined calls with deadlines.

Each service has its own :class:`ServicePool`: a few kept-alive connections carrying pipelined
calls, at most ``calls`` of them in flight and at most ``queue`` more waiting. Beyond that a call
fails at once with 503, so a stalled service fills its own bulkhead and nobody else's. A call's
deadline starts when it is submitted, so time spent queued counts; one timer per pool enforces
the deadlines in submission order (all calls of a pool share one timeout), even against a
service that trickles its answer byte by byte.

Everything runs on the event loop: the calls made in one turn of the loop leave in one write,
and each answer is delivered to a callback where it is read, with no thread hand-off. Failures
become :class:`ServiceError`: 502 when the service refused, failed or answered nonsense, 503
when its bulkhead is full, 504 when it was too slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from calculator.compat import TIMEOUT_ERRORS
from calculator.errors import ServiceError

_CONTENT_LENGTH: Final = b"\r\ncontent-length:"


class Call:
    """One operation sent to a service; ``on_done`` gets (call, status, body, error) once."""

    __slots__ = ("body", "connection", "deadline", "done", "on_done", "retried", "started", "tag")

    def __init__(
        self,
        body: bytes,
        timeout: float,
        on_done: Callable[[Call, int, bytes, ServiceError | None], None],
        tag: object = None,
    ) -> None:
        self.body = body
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.on_done = on_done
        self.tag = tag
        self.done = False
        self.retried = False
        self.connection: _ServiceConnection | None = None

    def finish(self, status: int, body: bytes, error: ServiceError | None) -> None:
        if self.done:
            return
        self.done = True
        self.connection = None
        self.on_done(self, status, body, error)


class ServicePool:
    """Connections to one service, the calls in flight and waiting, and their deadlines.

    Calls are pipelined: each connection carries a queue of calls answered in order, and the
    requests sent in one turn of the event loop leave in one write. A level of a wide tree thus
    costs the front end and the service one send and one receive each, not one per operation.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        connections: int,
        calls: int,
        queue: int,
        timeout: float,
        max_answer: int,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.hostname is None:
            raise ValueError(f"{name}: URL without host: {base_url}")
        self.name = name
        self.url = base_url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.max_connections = connections
        self.max_in_flight = calls
        self.max_queue = queue
        self.timeout = timeout
        self.max_answer = max_answer
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._request_head = (
            f"POST {self.prefix}/ HTTP/1.1\r\nHost: {netloc}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "
        ).encode()
        self.connections: list[_ServiceConnection] = []
        self.opening = 0
        self.in_flight = 0
        self.waiting: deque[Call] = deque()
        self._watch: deque[Call] = deque()
        self._timer: asyncio.TimerHandle | None = None

    # submitting and answering calls

    def submit(self, call: Call) -> None:
        """Send ``call`` now, or queue it behind the calls in flight, or refuse it (503)."""
        if self.in_flight >= self.max_in_flight or not self.connections:
            if len(self.waiting) >= self.max_queue:
                call.finish(0, b"", self.overloaded_error())
                return
            self._watch_call(call)
            self.waiting.append(call)
            if not self.connections and not self.opening:
                self._open()
            return
        self._watch_call(call)
        self._pick().send(call)

    def _pick(self) -> _ServiceConnection:
        best = self.connections[0]
        for connection in self.connections:
            if connection.out:
                return connection  # leaves in the same write as the calls already there
            if len(connection.calls) < len(best.calls):
                best = connection
        if best.calls and len(self.connections) + self.opening < self.max_connections:
            self._open()
        return best

    def request_bytes(self, body: bytes) -> bytes:
        return b"%s%d\r\n\r\n%s" % (self._request_head, len(body), body)

    def dispatch(self) -> None:
        """Send waiting calls while there is room in flight and a connection to carry them."""
        waiting = self.waiting
        while waiting and self.connections and self.in_flight < self.max_in_flight:
            call = waiting.popleft()
            if not call.done:
                self._pick().send(call)

    def lost(self, connection: _ServiceConnection, unanswered: list[Call]) -> None:
        with contextlib.suppress(ValueError):
            self.connections.remove(connection)
        self.in_flight -= len(unanswered)
        for call in reversed(unanswered):
            if call.done:
                continue
            call.connection = None
            if connection.closed_by_us:
                # Cut because a call ahead of it was overdue (or answered nonsense): not this
                # call's fault, so it goes first in line again, its deadline unchanged.
                self.waiting.appendleft(call)
            elif call.retried:
                message = (
                    f"{self.name} service at {self.url} closed the connection without answering"
                )
                call.finish(0, b"", ServiceError(self.name, message, status=502))
            else:
                # Usually a kept-alive connection the service closed while idle: send once more
                # on a fresh one (operations are pure, so a repeat is harmless).
                call.retried = True
                self.waiting.appendleft(call)
        if self.waiting and not self.connections and not self.opening:
            self._open()
        self.dispatch()

    # connections

    def _open(self) -> None:
        self.opening += 1
        loop = asyncio.get_running_loop()
        connect = loop.create_connection(lambda: _ServiceConnection(self), self.host, self.port)
        task = loop.create_task(asyncio.wait_for(connect, max(self.timeout, 0.1)))
        task.add_done_callback(self._opened)

    def _opened(
        self, done: asyncio.Task[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]
    ) -> None:
        self.opening -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is None:
            _, protocol = done.result()
            assert isinstance(protocol, _ServiceConnection)
            if protocol.usable():
                self.connections.append(protocol)
            self.dispatch()
            return
        if self.connections or self.opening:
            return  # the others carry the calls
        if isinstance(error, ConnectionRefusedError):
            message = f"{self.name} service at {self.url} refused the connection (is it running?)"
            failure = ServiceError(self.name, message, status=502)
        elif isinstance(error, TIMEOUT_ERRORS):
            failure = self.timeout_error()
        else:
            reason = getattr(error, "strerror", None) or type(error).__name__
            message = f"{self.name} service at {self.url} could not be reached: {reason}"
            failure = ServiceError(self.name, message, status=502)
        # Every waiting call would meet the same closed door.
        waiting, self.waiting = self.waiting, deque()
        for call in waiting:
            call.finish(0, b"", failure)

    # deadlines

    def _watch_call(self, call: Call) -> None:
        self._watch.append(call)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(call.deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        watch = self._watch
        while watch and (watch[0].done or watch[0].deadline <= now):
            call = watch.popleft()
            if call.done:
                continue
            connection = call.connection
            if connection is not None:
                call.finish(0, b"", self.timeout_error())
                connection.abort()
            else:
                call.finish(0, b"", self.queued_too_long_error())
        if watch:
            self._timer = asyncio.get_running_loop().call_at(watch[0].deadline, self._expire)

    # errors

    def timeout_error(self) -> ServiceError:
        return ServiceError(
            self.name,
            f"{self.name} service at {self.url} did not answer within {self.timeout:g} s",
            status=504,
        )

    def queued_too_long_error(self) -> ServiceError:
        return ServiceError(
            self.name,
            f"{self.name} service at {self.url} did not answer within {self.timeout:g} s: "
            f"the call waited behind {self.in_flight} others in flight to it (the service is "
            "slow or the front end is overloaded)",
            status=504,
        )

    def overloaded_error(self) -> ServiceError:
        return ServiceError(
            self.name,
            f"front end overloaded: {len(self.waiting)} calls already wait for the "
            f"{self.name} service; try again",
            status=503,
        )

    def close(self) -> None:
        for connection in list(self.connections):
            connection.abort()


class _ServiceConnection(asyncio.Protocol):
    """One kept-alive connection to a service, carrying pipelined calls answered in order."""

    def __init__(self, pool: ServicePool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.calls: deque[Call] = deque()
        self.out: list[bytes] = []
        self.buffer = b""
        self.closed = False
        self.closed_by_us = False

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(self, call: Call) -> None:
        self.calls.append(call)
        call.connection = self
        self.pool.in_flight += 1
        if not self.out:
            asyncio.get_running_loop().call_soon(self._flush)
        self.out.append(self.pool.request_bytes(call.body))

    def _flush(self) -> None:
        data, self.out = b"".join(self.out), []
        if self.usable() and self.transport is not None:
            self.transport.write(data)

    def abort(self) -> None:
        self.closed = self.closed_by_us = True
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        start = 0
        pool = self.pool
        while start < len(buffer):
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                if len(buffer) - start > 8192:
                    self._fail("sent a malformed answer")
                    return
                break
            head = buffer[start:end].lower()
            try:
                if not head.startswith(b"http/1."):
                    raise ValueError("not HTTP/1.x")
                status = int(head[9:12])
                at = head.find(_CONTENT_LENGTH)
                if at < 0:
                    raise ValueError("no Content-Length")
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + len(_CONTENT_LENGTH) : stop if stop > 0 else len(head)])
            except ValueError:
                self._fail("sent a malformed answer")
                return
            if length > pool.max_answer:
                self._fail("sent an answer longer than expected")
                return
            if len(buffer) < end + 4 + length:
                break
            body = buffer[end + 4 : end + 4 + length]
            start = end + 4 + length
            if not self.calls:
                self._fail("sent an answer nobody asked for")
                return
            call = self.calls.popleft()
            pool.in_flight -= 1
            call.connection = None
            if b"\r\nconnection: close" in head:
                self.closed = True
            call.finish(status, body, None)
            if self.closed:
                self.abort()
                return
        self.buffer = buffer[start:]
        pool.dispatch()

    def _fail(self, what: str) -> None:
        pool = self.pool
        if self.calls:
            call = self.calls.popleft()
            pool.in_flight -= 1
            message = f"{pool.name} service at {pool.url} {what}"
            call.finish(0, b"", ServiceError(pool.name, message, status=502))
        self.abort()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        unanswered, self.calls = list(self.calls), deque()
        self.pool.lost(self, unanswered)

"""The front end's side of a service: a keep-alive connection pool and abortable calls.

Every call has a timeout on connect and on each read, and a :class:`Call` handle lets the front
end abort a call that outlives its deadline (a service that trickles bytes would otherwise dodge
the per-read timeout). Failures become :class:`ServiceError`: 502 when the service refused,
failed or answered nonsense, 504 when it was too slow.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
import time
from urllib.parse import urlsplit

from calculator.errors import ServiceError

# Errors meaning a kept-alive connection was closed by the server while idle: the request can be
# sent again on a new connection (the operations are pure, so repeating one is harmless).
_STALE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)


class Call:
    """One in-flight call: its deadline and the connection to cut when it is overdue."""

    def __init__(self, service: str, timeout: float) -> None:
        self.service = service
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self.aborted = False
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def attach(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if self.aborted:
                raise TimeoutError
            self._connection = connection

    def abort(self) -> None:
        """Unblock the thread doing the call; it then reports a timeout."""
        with self._lock:
            self.aborted = True
            sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _readable(sock: socket.socket) -> bool:
    # poll, unlike select, has no limit on descriptor numbers.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class ServicePool:
    """Idle keep-alive connections to one service, reused last-in first-out."""

    def __init__(self, name: str, base_url: str, *, max_idle: int = 64, max_answer: int) -> None:
        parts = urlsplit(base_url)
        if parts.hostname is None:
            raise ValueError(f"{name}: URL without host: {base_url}")
        self.name = name
        self.url = base_url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.max_idle = max_idle
        self.max_answer = max_answer
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(self, method: str, path: str, body: bytes | None, call: Call) -> tuple[int, bytes]:
        """Send one request and return (status, body), or raise :class:`ServiceError`."""
        for attempt in range(2):
            connection = self._acquire(call.timeout, fresh=attempt > 0)
            try:
                call.attach(connection)
                return self._exchange(connection, method, path, body)
            except _STALE:
                connection.close()
                if call.aborted:
                    raise self.timeout_error(call) from None
                # Once more on a fresh connection: the usual cause is a kept-alive connection the
                # service closed while idle, or a reset under a burst of new connections.
                if attempt == 0:
                    continue
                raise ServiceError(
                    self.name,
                    f"{self.name} service at {self.url} closed the connection without answering",
                    status=502,
                ) from None
            except TimeoutError:
                connection.close()
                raise self.timeout_error(call) from None
            except ConnectionRefusedError:
                connection.close()
                raise ServiceError(
                    self.name,
                    f"{self.name} service at {self.url} refused the connection (is it running?)",
                    status=502,
                ) from None
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                if call.aborted:
                    raise self.timeout_error(call) from None
                reason = getattr(error, "strerror", None) or type(error).__name__
                raise ServiceError(
                    self.name, f"{self.name} service at {self.url} failed: {reason}", status=502
                ) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def timeout_error(self, call: Call) -> ServiceError:
        return ServiceError(
            self.name,
            f"{self.name} service at {self.url} did not answer within {call.timeout:g} s",
            status=504,
        )

    def _exchange(
        self, connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": "text/plain; charset=utf-8"} if body is not None else {}
        connection.request(method, self.prefix + path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read(self.max_answer + 1)
        if len(data) > self.max_answer:
            connection.close()
            raise ServiceError(
                self.name,
                f"{self.name} service at {self.url} sent an answer longer than expected",
                status=502,
            )
        if response.isclosed() and not response.will_close:
            self._release(connection)
        else:
            connection.close()
        return response.status, data

    def _acquire(self, timeout: float, *, fresh: bool) -> http.client.HTTPConnection:
        while True:
            connection = None
            if not fresh:
                with self._lock:
                    connection = self._idle.pop() if self._idle else None
            if connection is None:
                return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            sock = connection.sock
            # An idle connection that is readable has been closed by the server (or holds
            # junk); either way it cannot carry a request.
            if sock is None or _readable(sock):
                connection.close()
                continue
            sock.settimeout(timeout)
            return connection

    def _release(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

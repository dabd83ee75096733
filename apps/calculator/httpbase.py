"""HTTP/1.1 plumbing shared by every role: an asyncio server, strict framing, replies and logs.

One event loop serves every connection of a process: no thread per connection, no hand-off
between threads. Requests are framed strictly (one Content-Length of plain digits, no chunks,
no obs-fold), so a request means the same to us as to any proxy in front of us. Each phase of a
connection has a deadline that one sweep enforces: the whole request (headers and body) must
arrive within ``read_timeout`` of its first byte, and an idle kept-alive connection is closed after
``idle_timeout``. Each request yields one JSON line on stderr; no exception ever reaches a client
as a stack trace, and a connection reset is one log line.
"""

from __future__ import annotations

import asyncio
import json
import platform
import re
import socket
import sys
import time
import traceback
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from calculator import __version__
from calculator.config import Settings
from calculator.errors import CalcError

#: Methods every role answers; any other is 405 with this list in ``Allow``.
ALLOWED: Final = "GET, HEAD, POST"
_MAX_HEAD: Final = 16 * 1024
_SWEEP_S: Final = 0.2
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)
_LENGTH: Final = re.compile(r"[0-9]{1,15}", re.ASCII)
# RFC 9110's name for 413, which Python's table says only from 3.13 on: every interpreter
# writes the same status lines.
_PHRASES: Final = {
    **{status.value: status.phrase for status in HTTPStatus},
    413: "Content Too Large",
}
_ENCODE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


class _LogWriter:
    """Log lines written once per turn of the event loop: one write for a burst of requests."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.scheduled = False

    def add(self, line: str) -> None:
        self.lines.append(line)
        if self.scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self.scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        text, self.lines = "".join(self.lines), []
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed: nothing left to tell
            pass


_LOG = _LogWriter()
_STAMP: list[Any] = [-1, ""]


def _timestamp() -> str:
    """ISO 8601 UTC to the millisecond, formatted once per millisecond (bursts share it)."""
    now = time.time()
    millis = int(now * 1000)
    if millis != _STAMP[0]:
        moment = datetime.fromtimestamp(millis / 1000, timezone.utc)
        _STAMP[:] = [millis, moment.isoformat(timespec="milliseconds")]
    return str(_STAMP[1])


def log_event(fields: Mapping[str, Any]) -> None:
    """One JSON line on stderr, written at the end of the current turn of the event loop."""
    _LOG.add(_ENCODE({"time": _timestamp(), **fields}) + "\n")


def clip(text: str, keep: int = 40) -> str:
    """Shorten long operands and expressions for logs and traces, saying how long they were."""
    if len(text) <= keep:
        return text
    return f"{text[: keep - 10]}...{text[-6:]} ({len(text)} chars)"


class Reply:
    """What a handler answers: status, body, content type, and fields for the log line."""

    __slots__ = ("body", "content_type", "headers", "log", "status")

    def __init__(
        self,
        status: int,
        body: bytes | str,
        content_type: str = "text/plain; charset=utf-8",
        log: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.log = dict(log or {})
        self.headers = dict(headers or {})

    @classmethod
    def text(cls, status: int, text: str, **log: Any) -> Reply:
        return cls(status, text + "\n", log=log)

    @classmethod
    def json(cls, status: int, payload: Mapping[str, Any], **log: Any) -> Reply:
        body = json.dumps(payload, ensure_ascii=False, indent=1) + "\n"
        return cls(status, body, "application/json; charset=utf-8", log)

    @classmethod
    def error(cls, error: CalcError, **log: Any) -> Reply:
        return cls.text(error.status, f"error: {error.message}", error=error.message, **log)

    @classmethod
    def overloaded(cls, message: str, **log: Any) -> Reply:
        """503 at once, with the wait a client should take before trying again."""
        reply = cls.text(503, f"error: {message}", error=message, **log)
        reply.headers["Retry-After"] = "1"
        return reply


class Request:
    """The parts of an HTTP request an application looks at. HEAD arrives as GET."""

    __slots__ = ("body", "headers", "method", "path", "query")

    def __init__(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: str
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def wants_json(self) -> bool:
        return "application/json" in self.headers.get("accept", "")


class Application(Protocol):
    """A role's behaviour: answer one request, at once or later through a future."""

    name: str

    def handle(self, request: Request) -> Reply | asyncio.Future[Reply]: ...


class _Head:
    """A parsed request head; read-only once parsed, since :func:`parse_head` shares it."""

    __slots__ = ("body_length", "close", "expect_continue", "headers", "method", "target")

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.headers: dict[str, str] = {}
        self.body_length = 0
        self.close = False
        self.expect_continue = False


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_head(raw: bytes) -> _Head:
    """Parse a request line and headers (without the blank line); raises :class:`_BadRequest`.

    A client sends the same head again and again (a front end's calls differ only in their
    Content-Length), so a head seen before is answered from a small cache of exact byte strings:
    the same bytes always parse to the same result, and a parsed head is never modified. Heads
    that are refused are not cached; the cache is emptied when full.
    """
    head = _HEADS.get(raw)
    if head is None:
        head = _parse_head(raw)
        if len(_HEADS) >= _HEAD_CACHE:
            _HEADS.clear()
        _HEADS[raw] = head
    return head


def _parse_head(raw: bytes) -> _Head:
    lines = raw.decode("latin-1").split("\r\n")
    head = _Head()
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise _BadRequest(400, "malformed request line")
    head.method, head.target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if version.startswith("HTTP/") and version[5:6].isdigit():
            raise _BadRequest(505, f"{version} is not supported; use HTTP/1.1")
        raise _BadRequest(400, "malformed request line")
    lengths: list[str] = []
    names = _HEADER_NAMES
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = names.get(name)
        if key is None:
            # Whitespace before the colon or a folded line is how smuggled headers hide (RFC
            # 9112), so a name must be a token; names seen before need no second look.
            if not colon or not _TOKEN.fullmatch(name):
                raise _BadRequest(400, "malformed header line")
            key = name.lower()
            if len(names) < 512:
                names[name] = key
        if "\r" in value or "\n" in value:
            raise _BadRequest(400, "malformed header line")
        value = value.strip(" \t")
        if key == "content-length":
            lengths.extend(item.strip(" \t") for item in value.split(","))
        elif key in head.headers:
            head.headers[key] += ", " + value
        else:
            head.headers[key] = value
    connection = head.headers.get("connection", "").lower()
    head.close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    head.expect_continue = head.headers.get("expect", "").lower() == "100-continue"
    if "transfer-encoding" in head.headers:
        raise _BadRequest(411, "send the body with a Content-Length (no chunks)")
    if lengths:
        if not all(_LENGTH.fullmatch(item) for item in lengths):
            raise _BadRequest(400, "invalid Content-Length: plain digits only")
        if len(set(map(int, lengths))) > 1:
            raise _BadRequest(400, "conflicting Content-Length headers")
        head.body_length = int(lengths[0])
        head.headers["content-length"] = lengths[0]
    elif head.method == "POST":
        raise _BadRequest(411, "a POST needs a Content-Length")
    return head


_HEADER_NAMES: dict[str, str] = {}
_HEADS: dict[bytes, _Head] = {}
_HEAD_CACHE: Final = 256
_IDLE, _READING, _BUSY = "idle", "reading", "busy"


class _Connection(asyncio.Protocol):
    """One client connection: reads requests in order, answers each with one write."""

    def __init__(self, server: CalcServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.client = "-"
        self.buffer = bytearray()
        self.head: _Head | None = None
        self.phase = _IDLE
        self.deadline = 0.0
        self.continued = False
        self.closing = False
        self.eof = False
        self.started = 0.0
        # Replies to the requests read in one go leave in one write (see data_received).
        self.out: list[bytes] = []
        self.batching = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if peer else "-"
        server = self.server
        server.connections.add(self)
        self.deadline = time.monotonic() + server.settings.idle_timeout
        if len(server.connections) > server.settings.max_connections:
            self._write_reply(Reply.overloaded("too many connections, try again"), close=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        if exc is not None:
            log_event(
                {
                    "service": self.server.app.name,
                    "event": "connection-lost",
                    "client": self.client,
                    "phase": self.phase,
                    "error": type(exc).__name__,
                }
            )

    def eof_received(self) -> bool:
        self.eof = True
        if self.phase == _READING and not self.closing:
            what = "body" if self.head is not None else "headers"
            self._refuse(400, f"request ended before its {what} were complete")
        # Keep the transport open while an answer is being computed; it closes after it.
        return self.phase == _BUSY

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer += data
        if self.phase == _BUSY:
            if len(self.buffer) > self.server.settings.max_body + _MAX_HEAD and self.transport:
                self.transport.pause_reading()  # a pipelining client must wait for its answers
            return
        self.batching = True
        try:
            self._advance()
        finally:
            self.batching = False
            self._flush()

    # the request cycle

    def _advance(self) -> None:
        """Frame and dispatch every complete request in the buffer, one at a time."""
        settings = self.server.settings
        buffer = self.buffer
        pos = 0  # consumed so far; cut once at the end, so a long pipeline costs no copying
        try:
            while not self.closing and self.phase != _BUSY:
                if self.head is None:
                    if self.phase == _IDLE:
                        while buffer.startswith(b"\r\n", pos):  # RFC 9112 2.2: skip a CRLF
                            pos += 2
                        if pos == len(buffer):
                            return
                        self.phase = _READING
                        self.started = time.perf_counter()
                        self.deadline = time.monotonic() + settings.read_timeout
                    end = buffer.find(b"\r\n\r\n", pos)
                    if end < 0:
                        if len(buffer) - pos > _MAX_HEAD:
                            self._refuse(431, "request headers too large")
                        return
                    try:
                        head = parse_head(bytes(buffer[pos:end]))
                    except _BadRequest as bad:
                        self._refuse(bad.status, bad.message)
                        return
                    pos = end + 4
                    if head.body_length > settings.max_body:
                        # The body stays unread, so this connection cannot carry another request.
                        self._refuse(
                            413,
                            f"body of {head.body_length} bytes is longer than the limit of "
                            f"{settings.max_body} bytes",
                        )
                        return
                    self.head = head
                    self.continued = False
                head = self.head
                if len(buffer) - pos < head.body_length:
                    if head.expect_continue and not self.continued and self.transport:
                        self.continued = True
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    return
                body = bytes(buffer[pos : pos + head.body_length])
                pos += head.body_length
                self.head = None
                self._dispatch(head, body)
        finally:
            del buffer[:pos]

    def _dispatch(self, head: _Head, raw_body: bytes) -> None:
        target = head.target
        if target.startswith("/"):
            path, _, query = target.partition("?")
        else:
            parts = urlsplit(target)
            path, query = parts.path or "/", parts.query
        fields: dict[str, Any] = {
            "service": self.server.app.name,
            "method": head.method,
            "path": path,
            # With the port, a reader sees kept-alive connections being reused.
            "client": self.client,
        }
        head_only = head.method == "HEAD"
        if head.method not in ("GET", "HEAD", "POST"):
            reply = Reply.text(405, f"error: method {head.method} not allowed; use {ALLOWED}")
            reply.headers["Allow"] = ALLOWED
            self._finish(reply, fields, head, head_only)
            return
        try:
            body = raw_body.decode("utf-8")
        except UnicodeDecodeError as error:
            reply = Reply.text(400, f"error: body is not UTF-8 text (byte {error.start + 1})")
            self._finish(reply, fields, head, head_only)
            return
        method = "GET" if head_only else head.method
        request = Request(method, path, query, head.headers, body)
        try:
            answer = self.server.app.handle(request)
        except Exception:
            self._finish(_internal_error(fields), fields, head, head_only)
            return
        if isinstance(answer, Reply):
            self._finish(answer, fields, head, head_only)
            return
        self.phase = _BUSY
        answer.add_done_callback(lambda done: self._finished(done, fields, head, head_only))

    def _finished(
        self, done: asyncio.Future[Reply], fields: dict[str, Any], head: _Head, head_only: bool
    ) -> None:
        try:
            reply = done.result()
        except Exception:
            reply = _internal_error(fields)
        self._finish(reply, fields, head, head_only)
        if not self.closing:
            if self.transport and not self.transport.is_reading():
                self.transport.resume_reading()
            self._advance()

    def _finish(self, reply: Reply, fields: dict[str, Any], head: _Head, head_only: bool) -> None:
        fields.update(reply.log)
        fields["status"] = reply.status
        fields["duration_ms"] = round((time.perf_counter() - self.started) * 1000, 3)
        log_event(fields)
        close = head.close or self.eof
        self._write_reply(reply, close=close, head_only=head_only)
        if not close:
            self.phase = _IDLE
            self.deadline = time.monotonic() + self.server.settings.idle_timeout

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request that cannot be framed, then close: what follows it is unknown."""
        log_event(
            {
                "service": self.server.app.name,
                "event": "http-error",
                "client": self.client,
                "status": status,
                "detail": message,
            }
        )
        self._write_reply(Reply.text(status, f"error: {message}"), close=True)

    def timed_out(self, now: float) -> None:
        """Called by the sweep once this connection's deadline has passed."""
        if self.phase == _READING:
            what = "body" if self.head is not None else "headers"
            limit = self.server.settings.read_timeout
            self._refuse(408, f"request {what} not received within {limit:g} s")
        elif self.phase == _IDLE and self.transport is not None:
            self.closing = True
            self.transport.close()

    def _write_reply(self, reply: Reply, *, close: bool, head_only: bool = False) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.closing = True
            return
        head = (
            f"HTTP/1.1 {reply.status} {_PHRASES.get(reply.status, '')}\r\n"
            f"{self.server.fixed_headers()}"
            f"Content-Type: {reply.content_type}\r\nContent-Length: {len(reply.body)}\r\n"
        )
        if reply.headers:
            head += "".join(f"{key}: {value}\r\n" for key, value in reply.headers.items())
        if close:
            head += "Connection: close\r\n"
        data = (head + "\r\n").encode("latin-1")
        self.out.append(data if head_only else data + reply.body)
        if close:
            self.closing = True
        if not self.batching:
            self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if self.out and transport is not None and not transport.is_closing():
            transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
        self.out.clear()
        if self.closing and transport is not None:
            transport.close()


def _internal_error(fields: dict[str, Any]) -> Reply:
    # Never a stack trace to the client; the operator gets it in the log, on one line.
    fields["traceback"] = traceback.format_exc()
    return Reply.text(500, "error: internal error", error="internal error")


class CalcServer:
    """One role's listening socket and its connections, on the running event loop."""

    def __init__(self, settings: Settings, app: Application) -> None:
        self.settings = settings
        self.app = app
        self.connections: set[_Connection] = set()
        self.server: asyncio.Server | None = None
        self._date = ("", 0)
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _Connection(self),
            self.settings.host,
            self.settings.port,
            family=socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET,
            backlog=1024,
            reuse_address=True,
        )
        self._sweeper = loop.call_later(_SWEEP_S, self._sweep)
        host, port = self.server.sockets[0].getsockname()[:2]
        log_event(
            {
                "service": self.app.name,
                "event": "listening",
                "host": host,
                "port": port,
                "version": __version__,
                # The VM image's own python3 runs us: say which, for the operator and the tests.
                "python": platform.python_version(),
            }
        )
        return host, port

    def fixed_headers(self) -> str:
        """Server and Date lines, formatted once a second."""
        now = int(time.time())
        if self._date[1] != now:
            date = formatdate(now, usegmt=True)
            self._date = (f"Server: calculator/{__version__}\r\nDate: {date}\r\n", now)
        return self._date[0]

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self.connections if c.deadline <= now]:
            if connection.phase != _BUSY:
                connection.timed_out(now)
        self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_S, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()


def report_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's own errors as one JSON line each, never a multi-line traceback."""
    error = context.get("exception")
    fields: dict[str, Any] = {"event": "loop-error", "detail": context.get("message", "")}
    if isinstance(error, BaseException):
        fields["error"] = type(error).__name__
        if not isinstance(error, OSError):
            fields["traceback"] = "".join(
                traceback.format_exception(type(error), error, error.__traceback__)
            )
    log_event(fields)

"""HTTP plumbing shared by every role: the threaded server, body reading, replies and logs.

Each request yields one JSON line on stderr. Connections are kept alive (HTTP/1.1) so the front
end can reuse them; the number of connections served at once is capped, idle ones time out, and
no exception ever reaches a client as a stack trace.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from calculator import __version__
from calculator.config import Settings
from calculator.errors import CalcError

_LOG_LOCK = threading.Lock()


def log_event(fields: Mapping[str, Any]) -> None:
    """Write one JSON line to stderr, flushed at once so journald and docker logs show it live."""
    record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **fields}
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
    with _LOG_LOCK:
        sys.stderr.write(line)
        sys.stderr.flush()


def clip(text: str, keep: int = 40) -> str:
    """Shorten long operands and expressions for logs and traces, saying how long they were."""
    if len(text) <= keep:
        return text
    return f"{text[: keep - 10]}...{text[-6:]} ({len(text)} chars)"


class Reply:
    """What a handler answers: status, body, content type, and fields for the log line."""

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


class Request:
    """The parts of an HTTP request an application looks at."""

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
    """A role's behaviour: answer one request. The server handles everything around it."""

    name: str

    def handle(self, request: Request) -> Reply: ...


class CalcServer(ThreadingHTTPServer):
    """Threaded HTTP server with a cap on connections served at once."""

    daemon_threads = True
    # The default backlog of 5 overflows when the front end opens dozens of connections at once
    # (one level of a wide tree); overflowing connections then fail or stall for a second.
    request_queue_size = 128
    # Threads are not joined on close: a stalled client must not hold up shutdown.
    block_on_close = False

    def __init__(self, settings: Settings, app: Application) -> None:
        self.settings = settings
        self.app = app
        self._slots = threading.BoundedSemaphore(settings.max_connections)
        if ":" in settings.host:
            self.address_family = socket.AF_INET6
        super().__init__((settings.host, settings.port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _refuse_busy(sock: socket.socket) -> None:
    body = b"error: too many connections, try again\n"
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    try:
        sock.settimeout(1.0)
        sock.sendall(head.encode() + body)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"calculator/{__version__}"
    sys_version = ""
    # Small replies written as headers then body must not wait for a delayed ACK.
    disable_nagle_algorithm = True
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "error: %(code)d %(message)s\n"

    server: CalcServer

    def setup(self) -> None:
        super().setup()
        # StreamRequestHandler.setup applies the class-wide timeout; this one is per server.
        self.connection.settimeout(self.server.settings.idle_timeout)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Requests are logged once, with their meaning, by _serve.
        pass

    def log_message(self, format: str, *args: Any) -> None:
        # Protocol-level errors (bad request line, oversized headers) arrive here; keep them
        # in the same structured stream instead of the default free-text lines.
        log_event(
            {
                "service": self.server.app.name,
                "event": "http-error",
                "client": self.client_address[0],
                "detail": format % args,
            }
        )

    def _serve(self) -> None:
        started = time.perf_counter()
        parts = urlsplit(self.path)
        fields: dict[str, Any] = {
            "service": self.server.app.name,
            "method": self.command,
            "path": parts.path,
            # With the port, a reader sees kept-alive connections being reused.
            "client": f"{self.client_address[0]}:{self.client_address[1]}",
        }
        try:
            reply = self._reply(parts.path, parts.query)
        except Exception:
            # Never a stack trace to the client; the operator gets it in the log.
            reply = Reply.text(500, "error: internal error", error="internal error")
            fields["traceback"] = traceback.format_exc()
        fields.update(reply.log)
        self._send(reply)
        fields["status"] = reply.status
        fields["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
        log_event(fields)

    def _reply(self, path: str, query: str) -> Reply:
        body = ""
        if self.command == "POST":
            read = self._read_body()
            if isinstance(read, Reply):
                return read
            body = read
        headers = {key.lower(): value for key, value in self.headers.items()}
        return self.server.app.handle(Request(self.command, path, query, headers, body))

    def _read_body(self) -> str | Reply:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return Reply.text(411, "error: send the body with a Content-Length (no chunks)")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            return Reply.text(411, "error: a POST needs a Content-Length")
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            return Reply.text(400, "error: invalid Content-Length")
        limit = self.server.settings.max_body
        if length > limit:
            # The body is left unread, so this connection cannot carry another request.
            self.close_connection = True
            return Reply.text(
                413, f"error: body of {length} bytes is longer than the limit of {limit} bytes"
            )
        raw = self.rfile.read(length)
        if len(raw) < length:
            self.close_connection = True
            return Reply.text(400, "error: body ended before its Content-Length")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return Reply.text(400, f"error: body is not UTF-8 text (byte {error.start + 1})")

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status, HTTPStatus(reply.status).phrase)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:
            # The client went away; nothing to answer and nothing to crash about.
            self.close_connection = True


def serve(server: CalcServer) -> None:
    """Log where the server listens (tests read the real port from it), then serve."""
    host, port = server.server_address[:2]
    log_event(
        {
            "service": server.app.name,
            "event": "listening",
            "host": host,
            "port": port,
            "version": __version__,
        }
    )
    server.serve_forever(poll_interval=0.5)

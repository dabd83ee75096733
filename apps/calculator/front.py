"""The front end: parses an expression, has each operation done by the service that owns it.

Evaluation is dataflow-driven: an operation is sent as soon as both of its operands are known,
so independent subtrees are in flight at the same time and latency follows the tree's depth.
Everything runs on one event loop, driven by callbacks: a service's answer is handled where it
is read, and the operation it unblocks is sent from there, with no thread hand-off. Admission
control bounds the expressions in flight (more are answered 503 at once, with Retry-After), each
service has its own bulkhead (see ``calculator.client``), and an evaluation stops at its first
failure or at the request deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from calculator import arith
from calculator.client import Call, ServicePool
from calculator.compat import TIMEOUT_ERRORS, slotted
from calculator.config import SERVICES, Settings
from calculator.errors import CalcError, ServiceError
from calculator.evaluate import operations
from calculator.httpbase import Reply, Request, clip
from calculator.parser import Expr, Number, Operation, parse

_WEB: Final = Path(__file__).resolve().parent / "web"
_STATIC: Final[dict[str, tuple[str, str]]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


@slotted
@dataclass
class CallRecord:
    """One service call as the web page and the JSON answer show it."""

    service: str
    op: str
    a: str
    b: str
    position: int
    start_ms: float
    duration_ms: float | None = None
    status: int | None = None
    result: str | None = None
    error: str | None = None


@slotted
@dataclass(frozen=True)
class Outcome:
    """An evaluation's value (as the services wrote it), or the error that stopped it."""

    value: str | None
    error: CalcError | None
    calls: list[CallRecord]
    #: Operations in the tree, and calls made before the evaluation ended.
    operations: int
    calls_made: int


class _Run:
    """One evaluation in progress: which operations wait for which, and the values known.

    Driven entirely by callbacks on the event loop: an answer from a service stores its value and
    sends the parent operation as soon as its other operand is known (concurrent mode), or the
    next operation in post-order (sequential mode).
    """

    def __init__(
        self,
        evaluator: RemoteEvaluator,
        tree: Operation,
        concurrent: bool,
        record: bool,
        future: asyncio.Future[Outcome],
    ) -> None:
        self.evaluator = evaluator
        self.tree = tree
        self.future = future
        self.started = time.monotonic()
        self.records: list[CallRecord] | None = [] if record else None
        self.values: dict[int, str] = {}
        self.parent: dict[int, Operation] = {}
        self.waiting: dict[int, int] = {}
        self.order = operations(tree)
        self.next_in_order = 0
        self.concurrent = concurrent
        self.pending: dict[str, int] = {}
        self.calls = 0
        self.finished = False
        self.reserved = len(self.order)
        for node in self.order:
            count = 0
            for child in (node.left, node.right):
                if isinstance(child, Operation):
                    self.parent[id(child)] = node
                    count += 1
            self.waiting[id(node)] = count
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(self.started + evaluator.settings.request_timeout, self._too_slow)

    def start(self) -> None:
        if self.concurrent:
            for node in self.order:
                if self.waiting[id(node)] == 0:
                    self._send(node)
                    if self.finished:
                        return
        else:
            self._send_next()

    def _operand(self, node: Expr) -> str:
        if isinstance(node, Number):
            return arith.format_number(node.value)
        return self.values[id(node)]

    def _send_next(self) -> None:
        node = self.order[self.next_in_order]
        self.next_in_order += 1
        self._send(node)

    def _send(self, node: Operation) -> None:
        service = arith.SERVICE_OF[node.op]
        a, b = self._operand(node.left), self._operand(node.right)
        pool = self.evaluator.pools[service]
        call = Call(f"{a} {b}".encode(), pool.timeout, self._answered, node)
        self.calls += 1
        self.pending[service] = self.pending.get(service, 0) + 1
        if self.records is not None:
            call.tag = (node, len(self.records))
            self.records.append(
                CallRecord(
                    service=service,
                    op=node.op,
                    a=clip(a),
                    b=clip(b),
                    position=node.position,
                    start_ms=round((call.started - self.started) * 1000, 3),
                )
            )
        pool.submit(call)

    def _answered(self, call: Call, status: int, body: bytes, error: ServiceError | None) -> None:
        tag = call.tag
        node, index = tag if isinstance(tag, tuple) else (tag, -1)
        assert isinstance(node, Operation)
        service = arith.SERVICE_OF[node.op]
        self.pending[service] -= 1
        if self.finished:
            return
        failure: CalcError | None = error
        value = ""
        if failure is None:
            value, failure = self.evaluator.interpret(node, status, body)
        if self.records is not None and index >= 0:
            record = self.records[index]
            record.duration_ms = round((time.monotonic() - call.started) * 1000, 3)
            record.status = failure.status if failure is not None else 200
            record.error = failure.message if failure is not None else None
            record.result = clip(value) if failure is None else None
        if failure is not None:
            self._finish(None, failure)
            return
        self.values[id(node)] = value
        if node is self.tree:
            self._finish(value, None)
            return
        if not self.concurrent:
            self._send_next()
            return
        parent = self.parent[id(node)]
        left = self.waiting[id(parent)] - 1
        self.waiting[id(parent)] = left
        if left == 0:
            self._send(parent)

    def _too_slow(self) -> None:
        limit = self.evaluator.settings.request_timeout
        waiting_for = [name for name, count in self.pending.items() if count > 0]
        if not waiting_for:
            error = CalcError(
                f"evaluation took longer than {limit:g} s (the front end is overloaded)",
                status=504,
            )
        else:
            error = ServiceError(
                waiting_for[0],
                f"evaluation took longer than {limit:g} s (still waiting for the "
                f"{waiting_for[0]} service)",
                status=504,
            )
        self._finish(None, error)

    def _finish(self, value: str | None, error: CalcError | None) -> None:
        if self.finished:
            return
        self.finished = True
        self.timer.cancel()
        self.evaluator.active -= 1
        self.evaluator.reserved -= self.reserved
        if not self.future.done():
            records = self.records if self.records is not None else []
            self.future.set_result(Outcome(value, error, records, len(self.order), self.calls))


class RemoteEvaluator:
    """Evaluates trees through the four services, one bulkhead (connection pool) per service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # An answer is one number, bounded by the digit limit, plus sign, point and newline.
        self.max_answer = settings.limits.max_digits + 64
        self.pools = {
            name: ServicePool(
                name,
                settings.service_urls[name],
                connections=settings.service_connections,
                calls=settings.service_calls,
                queue=settings.service_queue,
                timeout=settings.timeout,
                max_answer=self.max_answer,
            )
            for name in SERVICES
        }
        #: Expressions being evaluated now, and the calls reserved for them (admission control
        #: bounds both).
        self.active = 0
        self.reserved = 0

    def admit(self, calls: int) -> str | None:
        """Reserve room for an expression of up to ``calls`` calls, or say why there is none."""
        if self.active >= self.settings.max_expressions:
            return f"{self.active} expressions in flight"
        # One expression is always let in when nothing else runs, however large it is.
        if self.reserved and self.reserved + calls > self.settings.max_calls:
            return f"{self.reserved} service calls in flight or waiting"
        return None

    def evaluate(
        self, tree: Operation, *, concurrent: bool, record: bool
    ) -> asyncio.Future[Outcome]:
        """Start evaluating ``tree``; the future gets its value or first failure."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        run = _Run(self, tree, concurrent, record, future)
        self.active += 1
        self.reserved += run.reserved
        run.start()
        return future

    def interpret(self, node: Operation, status: int, body: bytes) -> tuple[str, CalcError | None]:
        """A service's answer to ``node``: its value's text, or the error it means."""
        service = arith.SERVICE_OF[node.op]
        text = body.decode("utf-8", "replace").strip()
        if status == 200:
            try:
                arith.parse_wire_number(text, "answer", self.settings.limits)
            except CalcError:
                message = f"{service} service answered {clip(text)!r}, which is not a number"
                return "", ServiceError(service, message, status=502)
            return text, None
        if status == 400:
            # The service judged the operands: pass its verdict on, saying where it applies.
            message = (text[len("error:") :] if text.startswith("error:") else text).strip()
            where = f"{service} service, '{node.op}' at position {node.position}"
            return "", CalcError(f"{message} ({where})", status=400, position=node.position)
        url = self.pools[service].url
        message = f"{service} service at {url} failed with HTTP {status}: {clip(text, 80)}"
        return "", ServiceError(service, message, status=502)

    async def health(self) -> dict[str, dict[str, Any]]:
        """Ask every service's /health at once, each on a fresh connection, outside its bulkhead:
        a dependency that fails is reported, not raised."""
        timeout = min(self.settings.timeout, 2.0)
        names = list(self.pools)
        entries = await asyncio.gather(*(self._probe(name, timeout) for name in names))
        return dict(zip(names, entries))

    async def _probe(self, name: str, timeout: float) -> dict[str, Any]:
        pool = self.pools[name]
        entry: dict[str, Any] = {"url": pool.url}
        started = time.monotonic()
        try:
            status = await asyncio.wait_for(self._get_health(pool), timeout)
            entry["status"] = "ok" if status == 200 else f"HTTP {status}"
        except TIMEOUT_ERRORS:
            entry["status"] = "down"
            entry["error"] = f"no answer within {timeout:g} s"
        except ConnectionRefusedError:
            entry["status"] = "down"
            entry["error"] = "connection refused (is it running?)"
        except (OSError, ValueError, asyncio.IncompleteReadError) as error:
            entry["status"] = "down"
            entry["error"] = getattr(error, "strerror", None) or type(error).__name__
        entry["latency_ms"] = round((time.monotonic() - started) * 1000, 3)
        return entry

    @staticmethod
    async def _get_health(pool: ServicePool) -> int:
        reader, writer = await asyncio.open_connection(pool.host, pool.port)
        try:
            host = f"{pool.host}:{pool.port}"
            writer.write(
                f"GET {pool.prefix}/health HTTP/1.1\r\nHost: {host}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
            parts = status_line.split()
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise ValueError("not an HTTP answer")
            return int(parts[1])
        finally:
            writer.close()


class FrontEnd:
    """The HTTP face of the calculator: the page, /health, and POST / with an expression."""

    name = "front"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.evaluator = RemoteEvaluator(settings)
        self.static: dict[str, tuple[bytes, str]] = {}
        for path, (filename, content_type) in _STATIC.items():
            self.static[path] = ((_WEB / filename).read_bytes(), content_type)

    def handle(self, request: Request) -> Reply | asyncio.Future[Reply]:
        if request.method == "GET":
            if request.path == "/health":
                return asyncio.ensure_future(self._health())
            if request.path == "/favicon.ico":
                # Browsers ask for it on their own; an empty answer keeps their console clean.
                return Reply(204, b"")
            if request.path in self.static:
                body, content_type = self.static[request.path]
                return Reply(
                    200,
                    body,
                    content_type,
                    headers={
                        "Cache-Control": "no-cache",
                        "X-Content-Type-Options": "nosniff",
                        "Content-Security-Policy": "default-src 'self'",
                    },
                )
            return Reply.text(404, "error: no such page; try / or /health")
        if request.path != "/":
            return Reply.text(404, "error: POST the expression to /")
        return self._calculate(request)

    async def _health(self) -> Reply:
        dependencies = await self.evaluator.health()
        healthy = all(entry["status"] == "ok" for entry in dependencies.values())
        return Reply.json(
            200 if healthy else 503,
            {
                "service": "front",
                "status": "ok" if healthy else "degraded",
                "dependencies": dependencies,
            },
        )

    def _calculate(self, request: Request) -> Reply | asyncio.Future[Reply]:
        started = time.monotonic()
        mode = "concurrent"
        if request.query:
            mode = parse_qs(request.query).get("mode", ["concurrent"])[-1]
        log: dict[str, Any] = {"expression": clip(request.body.strip(), 80), "mode": mode}
        if mode not in ("concurrent", "sequential"):
            return self._failure(
                request, CalcError("mode must be concurrent or sequential"), log, []
            )
        # Shed load at the door, at once, before parsing: a client told to retry costs little,
        # while one more expression queued behind the others would make every one of them late.
        # Its operators bound the calls it can need (negated literals need none).
        body = request.body
        estimate = body.count("+") + body.count("-") + body.count("*") + body.count("/")
        refused = self.evaluator.admit(estimate)
        if refused is not None:
            log["calls"] = 0
            return Reply.overloaded(f"front end overloaded: {refused}; try again", **log)
        try:
            tree = parse(request.body, self.settings.limits)
        except CalcError as error:
            return self._failure(request, error, log, [])
        log["depth"] = tree.depth
        if isinstance(tree, Number):
            log["operations"] = 0
            return self._success(request, arith.format_number(tree.value), log, [], started, mode)
        wants_json = request.wants_json()
        pending = self.evaluator.evaluate(tree, concurrent=mode == "concurrent", record=wants_json)
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def done(outcome_future: asyncio.Future[Outcome]) -> None:
            outcome = outcome_future.result()
            log["operations"] = outcome.operations
            log["calls"] = outcome.calls_made
            if outcome.error is not None:
                answer = self._failure(request, outcome.error, log, outcome.calls)
            else:
                assert outcome.value is not None
                answer = self._success(request, outcome.value, log, outcome.calls, started, mode)
            if not reply.done():
                reply.set_result(answer)

        pending.add_done_callback(done)
        return reply

    def _success(
        self,
        request: Request,
        value: str,
        log: dict[str, Any],
        calls: list[CallRecord],
        started: float,
        mode: str,
    ) -> Reply:
        try:
            result = arith.check_result(Decimal(value), self.settings.limits)
        except CalcError as error:
            return self._failure(request, error, log, calls)
        log["result"] = clip(result)
        log.setdefault("calls", 0)
        if not request.wants_json():
            return Reply.text(200, result, **log)
        payload = {
            "result": result,
            "mode": mode,
            "operations": log["operations"],
            "depth": log["depth"],
            "duration_ms": round((time.monotonic() - started) * 1000, 3),
            "calls": [asdict(record) for record in calls],
        }
        return Reply.json(200, payload, **log)

    @staticmethod
    def _failure(
        request: Request, error: CalcError, log: dict[str, Any], calls: list[CallRecord]
    ) -> Reply:
        log.setdefault("calls", len(calls))
        if isinstance(error, ServiceError):
            log["failed_service"] = error.service
        headers = {"Retry-After": "1"} if error.status == 503 else {}
        if not request.wants_json():
            reply = Reply.error(error, **log)
            reply.headers.update(headers)
            return reply
        payload: dict[str, Any] = {
            "error": error.message,
            "status": error.status,
            "position": error.position,
            "service": error.service if isinstance(error, ServiceError) else None,
            "calls": [asdict(record) for record in calls],
        }
        reply = Reply.json(error.status, payload, error=error.message, **log)
        reply.headers.update(headers)
        return reply

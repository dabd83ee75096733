"""The front end: parses an expression, has each operation done by the service that owns it.

Evaluation is dataflow-driven: an operation is sent as soon as both of its operands are known,
so independent subtrees are in flight at the same time and latency follows the tree's depth.
The scheduling thread never blocks a pool thread on another (pool threads only do HTTP calls),
watches each call's deadline, and stops at the first failure.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from calculator import arith
from calculator.client import Call, ServicePool
from calculator.config import SERVICES, Settings
from calculator.errors import CalcError, ServiceError
from calculator.evaluate import operations
from calculator.httpbase import Reply, Request, clip, log_event
from calculator.parser import Expr, Number, Operation, parse

_WEB: Final = Path(__file__).resolve().parent / "web"
_STATIC: Final[dict[str, tuple[str, str]]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


@dataclass(slots=True)
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """An evaluation's value, or the error that stopped it, and the calls made."""

    value: Decimal | None
    error: CalcError | None
    calls: list[CallRecord]


class _Run:
    """The state of one evaluation, shared between the scheduling thread and pool threads."""

    def __init__(self, tree: Operation, concurrent: bool) -> None:
        self.tree = tree
        self.concurrent = concurrent
        self.started = time.monotonic()
        self.cond = threading.Condition()
        self.parent: dict[int, Operation] = {}
        self.waiting: dict[int, int] = {}
        order = operations(tree)
        for node in order:
            count = 0
            for child in (node.left, node.right):
                if isinstance(child, Operation):
                    self.parent[id(child)] = node
                    count += 1
            self.waiting[id(node)] = count
        self.ready: deque[Operation] = deque(n for n in order if self.waiting[id(n)] == 0)
        self.values: dict[int, Decimal] = {}
        # Operations handed to the pool; the Call appears once a pool thread starts on it.
        self.in_flight: dict[int, Call | None] = {}
        self.records: list[CallRecord] = []
        self.failure: CalcError | None = None

    def operand(self, node: Expr) -> Decimal:
        return node.value if isinstance(node, Number) else self.values[id(node)]

    def done(self) -> bool:
        return id(self.tree) in self.values


class RemoteEvaluator:
    """Evaluates trees through the four services, one connection pool per service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # An answer is one number, bounded by the digit limit, plus sign, point and newline.
        max_answer = settings.limits.max_digits + 64
        self.pools = {
            name: ServicePool(
                name, settings.service_urls[name], max_idle=settings.workers, max_answer=max_answer
            )
            for name in SERVICES
        }
        self.executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="calc-call")

    def evaluate(self, tree: Expr, *, concurrent: bool) -> Outcome:
        """Value of ``tree`` or the first failure, with the calls made either way."""
        if isinstance(tree, Number):
            return Outcome(tree.value, None, [])
        run = _Run(tree, concurrent)
        request_deadline = run.started + self.settings.request_timeout
        with run.cond:
            while run.failure is None and not run.done():
                while run.ready and (concurrent or not run.in_flight):
                    node = run.ready.popleft()
                    run.in_flight[id(node)] = None
                    self.executor.submit(self._work, run, node)
                now = time.monotonic()
                calls = [call for call in run.in_flight.values() if call is not None]
                overdue = [call for call in calls if call.deadline <= now]
                if overdue:
                    run.failure = self.pools[overdue[0].service].timeout_error(overdue[0])
                    for call in overdue:
                        call.abort()
                    break
                if now >= request_deadline:
                    run.failure = self._request_too_slow(calls)
                    for call in calls:
                        call.abort()
                    break
                wake = min([call.deadline for call in calls] + [request_deadline])
                run.cond.wait(max(wake - now, 0.001))
            records = list(run.records)
            if run.failure is not None:
                return Outcome(None, run.failure, records)
            return Outcome(run.values[id(tree)], None, records)

    def _request_too_slow(self, calls: list[Call]) -> CalcError:
        limit = self.settings.request_timeout
        if not calls:
            return CalcError(f"evaluation took longer than {limit:g} s", status=504)
        service = calls[0].service
        return ServiceError(
            service,
            f"evaluation took longer than {limit:g} s (still waiting for the {service} service)",
            status=504,
        )

    def _work(self, run: _Run, node: Operation) -> None:
        service = arith.SERVICE_OF[node.op]
        with run.cond:
            if run.failure is not None:
                run.in_flight.pop(id(node), None)
                run.cond.notify()
                return
            a, b = (
                arith.format_number(run.operand(node.left)),
                arith.format_number(run.operand(node.right)),
            )
            call = Call(service, self.settings.timeout)
            run.in_flight[id(node)] = call
            record = CallRecord(
                service=service,
                op=node.op,
                a=clip(a),
                b=clip(b),
                position=node.position,
                start_ms=round((call.started - run.started) * 1000, 3),
            )
            run.records.append(record)
        result: Decimal | None = None
        error: CalcError | None = None
        try:
            result = self._call(node, a, b, call)
        except CalcError as failure:
            error = failure
        except Exception:
            log_event({"service": "front", "event": "bug", "traceback": traceback.format_exc()})
            error = CalcError("internal error", status=500)
        with run.cond:
            record.duration_ms = round((time.monotonic() - call.started) * 1000, 3)
            run.in_flight.pop(id(node), None)
            if error is not None:
                record.status = error.status
                record.error = error.message
                if run.failure is None:
                    run.failure = error
            else:
                assert result is not None
                record.status = 200
                record.result = clip(arith.format_number(result))
                run.values[id(node)] = result
                parent = run.parent.get(id(node))
                if parent is not None:
                    run.waiting[id(parent)] -= 1
                    if run.waiting[id(parent)] == 0:
                        run.ready.append(parent)
            run.cond.notify()

    def _call(self, node: Operation, a: str, b: str, call: Call) -> Decimal:
        pool = self.pools[call.service]
        status, data = pool.request("POST", "/", f"{a} {b}".encode(), call)
        text = data.decode("utf-8", "replace").strip()
        where = f"{call.service} service, '{node.op}' at position {node.position}"
        if status == 200:
            try:
                return arith.parse_wire_number(text, "answer", self.settings.limits)
            except CalcError:
                raise ServiceError(
                    call.service,
                    f"{call.service} service answered {clip(text)!r}, which is not a number",
                    status=502,
                ) from None
        if status == 400:
            # The service judged the operands: pass its verdict on, saying where it applies.
            message = text.removeprefix("error:").strip()
            raise CalcError(f"{message} ({where})", status=400, position=node.position)
        raise ServiceError(
            call.service,
            f"{call.service} service at {pool.url} failed with HTTP {status}: {clip(text, 80)}",
            status=502,
        )

    def health(self) -> dict[str, dict[str, Any]]:
        """Ask every service's /health at once; a dependency that fails is reported, not raised."""
        timeout = min(self.settings.timeout, 2.0)
        report: dict[str, dict[str, Any]] = {}
        calls = {name: Call(name, timeout) for name in SERVICES}

        def probe(name: str) -> None:
            pool = self.pools[name]
            entry: dict[str, Any] = {"url": pool.url}
            try:
                status, _ = pool.request("GET", "/health", None, calls[name])
                entry["status"] = "ok" if status == 200 else f"HTTP {status}"
            except CalcError as error:
                entry["status"] = "down"
                entry["error"] = error.message
            entry["latency_ms"] = round((time.monotonic() - calls[name].started) * 1000, 3)
            report[name] = entry

        threads = [threading.Thread(target=probe, args=(name,), daemon=True) for name in SERVICES]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout + 0.5)
        for name in SERVICES:
            if name not in report:
                calls[name].abort()
                report[name] = {
                    "url": self.pools[name].url,
                    "status": "down",
                    "error": f"no answer within {timeout:g} s",
                }
        return {name: report[name] for name in SERVICES}


class FrontEnd:
    """The HTTP face of the calculator: the page, /health, and POST / with an expression."""

    name = "front"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.evaluator = RemoteEvaluator(settings)
        self.static: dict[str, tuple[bytes, str]] = {}
        for path, (filename, content_type) in _STATIC.items():
            self.static[path] = ((_WEB / filename).read_bytes(), content_type)

    def handle(self, request: Request) -> Reply:
        if request.method == "GET":
            if request.path == "/health":
                return self._health()
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

    def _health(self) -> Reply:
        dependencies = self.evaluator.health()
        healthy = all(entry["status"] == "ok" for entry in dependencies.values())
        return Reply.json(
            200 if healthy else 503,
            {
                "service": "front",
                "status": "ok" if healthy else "degraded",
                "dependencies": dependencies,
            },
        )

    def _calculate(self, request: Request) -> Reply:
        started = time.monotonic()
        mode = parse_qs(request.query).get("mode", ["concurrent"])[-1]
        log: dict[str, Any] = {"expression": clip(request.body.strip(), 80), "mode": mode}
        if mode not in ("concurrent", "sequential"):
            return self._failure(
                request, CalcError("mode must be concurrent or sequential"), log, []
            )
        try:
            tree = parse(request.body, self.settings.limits)
        except CalcError as error:
            return self._failure(request, error, log, [])
        log["operations"] = len(operations(tree))
        log["depth"] = tree.depth
        outcome = self.evaluator.evaluate(tree, concurrent=mode == "concurrent")
        calls = outcome.calls
        if outcome.error is not None:
            return self._failure(request, outcome.error, log, calls)
        assert outcome.value is not None
        try:
            result = arith.check_result(outcome.value, self.settings.limits)
        except CalcError as error:
            return self._failure(request, error, log, calls)
        log["result"] = clip(result)
        log["calls"] = len(calls)
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
        log["calls"] = len(calls)
        if isinstance(error, ServiceError):
            log["failed_service"] = error.service
        if not request.wants_json():
            return Reply.error(error, **log)
        payload: dict[str, Any] = {
            "error": error.message,
            "status": error.status,
            "position": error.position,
            "service": error.service if isinstance(error, ServiceError) else None,
            "calls": [asdict(record) for record in calls],
        }
        return Reply.json(error.status, payload, error=error.message, **log)

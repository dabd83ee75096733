"""One arithmetic microservice (sum, sub, mul or div): POST two numbers, get one number back."""

from __future__ import annotations

import time

from calculator import arith
from calculator.arith import Limits
from calculator.errors import CalcError
from calculator.httpbase import Reply, Request, clip

_STARTED = time.monotonic()


def compute(service: str, body: str, limits: Limits) -> tuple[list[str], str]:
    """The pure part of a request: operands as received and the result's text."""
    op = arith.OPERATOR_OF[service]
    parts = body.split()
    a, b = arith.parse_operands(parts, limits)
    return parts, arith.apply_text(op, a, b, limits)


class OperationService:
    """The HTTP face of one operation."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.op = arith.OPERATOR_OF[name]
        self.limits = limits

    def handle(self, request: Request) -> Reply:
        if request.path == "/health" and request.method == "GET":  # HEAD arrives as GET
            return Reply.json(
                200,
                {
                    "service": self.name,
                    "operation": self.op,
                    "status": "ok",
                    "uptime_s": round(time.monotonic() - _STARTED, 1),
                },
            )
        if request.path != "/":
            return Reply.text(404, f"error: no such path; POST two numbers to / of {self.name}")
        if request.method == "GET":
            return Reply.text(
                200,
                f"{self.name} service: POST two numbers to compute a {self.op} b, "
                f"e.g. curl -d '15 5' -X POST http://HOST:PORT/",
            )
        fields: dict[str, object] = {"op": self.op}
        try:
            operands, result = compute(self.name, request.body, self.limits)
        except CalcError as error:
            fields["operands"] = clip(request.body.strip(), 60)
            return Reply.error(error, **fields)
        fields["operands"] = [clip(text) for text in operands]
        fields["result"] = clip(result)
        return Reply(200, result + "\n", log=fields)

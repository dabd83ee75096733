"""Errors the calculator reports to its clients, each carrying the HTTP status it maps to."""

from __future__ import annotations


class CalcError(Exception):
    """A problem with a request, safe to show to the client as it is."""

    def __init__(self, message: str, *, status: int = 400, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # 1-based column in the expression, when the problem has a place in it.
        self.position = position


class ParseError(CalcError):
    """The expression is not well formed."""


class LimitError(CalcError):
    """The input is well formed but exceeds a configured limit."""


class ArithmeticFault(CalcError):
    """The operation has no result (division by zero, a result too large to carry on)."""


class ServiceError(CalcError):
    """A downstream service could not be used: refused, failed, too slow, or answered nonsense."""

    def __init__(self, service: str, message: str, *, status: int) -> None:
        super().__init__(message, status=status)
        self.service = service

"""Exact decimal arithmetic shared by the front end and the four operation services.

Numbers are :class:`decimal.Decimal`, never floats. Sums, differences and products are exact.
A quotient is exact when it terminates within the division precision and is otherwise rounded
half-even; see :func:`divide`. Every number that goes in or comes out is bounded by
:attr:`Limits.max_digits` so a request cannot make a process compute or send unbounded data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Final, Literal

from calculator.compat import slotted
from calculator.errors import ArithmeticFault, CalcError, LimitError

Operator = Literal["+", "-", "*", "/"]

#: Which service owns which operator, as in the lab.
SERVICE_OF: Final[dict[Operator, str]] = {"+": "sum", "-": "sub", "*": "mul", "/": "div"}
OPERATOR_OF: Final[dict[str, Operator]] = {name: op for op, name in SERVICE_OF.items()}

# A number on the wire: optional minus, digits, optional fraction. No exponent, no plus sign,
# ASCII digits only (str.isdigit would accept superscripts and other scripts' digits).
_WIRE_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)

# With unbounded precision, + - * are exact; Inexact is trapped so a bug could not round silently.
_EXACT: Final = Context(
    prec=MAX_PREC,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, Overflow, Inexact],
)


def exact_context() -> Context:
    """A copy of the exact context, to install as a thread's default (see ``__main__``)."""
    return _EXACT.copy()


@slotted
@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for; all positive."""

    #: Digits in any number: a literal, a service operand or a result.
    max_digits: int = 1000
    #: Service calls (binary operations plus negations of non-literals) in one expression.
    max_operations: int = 1024
    #: Levels of operations in the tree, and levels of nested parentheses.
    max_depth: int = 128
    #: Significant digits a quotient keeps beyond the length of its integer part.
    division_digits: int = 50

    def __post_init__(self) -> None:
        for name in ("max_digits", "max_operations", "max_depth", "division_digits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def format_number(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing fractional zeros: 3, 2.5, -0.001."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    # "f" writes every digit the number holds in positional notation (1E+3 is 1000), rounding
    # nothing; what is left is to drop a fraction's trailing zeros and the sign of a zero.
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def digit_count(text: str) -> int:
    """How many digits a number's text holds (sign and point do not count)."""
    return len(text) - text.count("-") - text.count(".")


def parse_wire_number(text: str, label: str, limits: Limits) -> Decimal:
    """Parse one operand as a service receives it (``-12.5``); ``label`` names it in errors."""
    if not _WIRE_NUMBER.fullmatch(text):
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise CalcError(f"{label} {shown!r} is not a number (expected digits like 12, -3 or 2.5)")
    # The text's length bounds its digits, so counting them is needed only for long texts.
    if len(text) > limits.max_digits and digit_count(text) > limits.max_digits:
        raise LimitError(
            f"{label} has {digit_count(text)} digits, more than the limit of {limits.max_digits}"
        )
    return Decimal(text)


def parse_operands(body: str | list[str], limits: Limits) -> tuple[Decimal, Decimal]:
    """Parse a service request body: two numbers separated by whitespace, as in ``2 3``."""
    parts = body.split() if isinstance(body, str) else body
    if len(parts) != 2:
        found = "nothing" if not parts else f"{len(parts)} item{'s' if len(parts) > 1 else ''}"
        raise CalcError(f"expected two numbers separated by a space, like '2 3', found {found}")
    return (
        parse_wire_number(parts[0], "first operand", limits),
        parse_wire_number(parts[1], "second operand", limits),
    )


def divide(a: Decimal, b: Decimal, limits: Limits) -> Decimal:
    """Quotient a / b.

    The precision is ``division_digits`` plus an upper bound on the number of digits of the
    quotient's integer part, so integer quotients (of any size) are always exact and a
    fractional tail keeps at least ``division_digits`` significant digits.
    """
    if b == 0:
        raise ArithmeticFault("division by zero")
    if a == 0:
        return Decimal(0)
    whole_digits = max(0, a.adjusted() - b.adjusted() + 1)
    context = Context(
        prec=limits.division_digits + whole_digits,
        Emax=MAX_EMAX,
        Emin=MIN_EMIN,
        rounding=ROUND_HALF_EVEN,
        traps=[InvalidOperation, Overflow],
    )
    return context.divide(a, b)


def _operate(op: Operator, a: Decimal, b: Decimal, limits: Limits) -> Decimal:
    if op == "+":
        return _EXACT.add(a, b)
    if op == "-":
        return _EXACT.subtract(a, b)
    if op == "*":
        return _EXACT.multiply(a, b)
    return divide(a, b, limits)


def apply(op: Operator, a: Decimal, b: Decimal, limits: Limits) -> Decimal:
    """One arithmetic operation; the result is checked against ``limits.max_digits``."""
    result = _operate(op, a, b, limits)
    check_result(result, limits)
    return result


def apply_text(op: Operator, a: Decimal, b: Decimal, limits: Limits) -> str:
    """:func:`apply`, answering the result's text (formatted once, as the check needs it)."""
    return check_result(_operate(op, a, b, limits), limits)


def check_result(result: Decimal, limits: Limits) -> str:
    """Format a result, refusing one longer than the limit; returns its text."""
    text = format_number(result)
    if len(text) > limits.max_digits and digit_count(text) > limits.max_digits:
        raise ArithmeticFault(
            f"result has {digit_count(text)} digits, more than the limit of {limits.max_digits}"
        )
    return text

"""Walking an expression tree: its operations in dependency order, and a local evaluation.

The front end evaluates through the services (``calculator.front``); this module stays pure so the
same ordering drives both that evaluation and the tests' local one.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from calculator import arith
from calculator.arith import Limits
from calculator.errors import CalcError
from calculator.parser import Expr, Number, Operation, parse


def operations(tree: Expr) -> list[Operation]:
    """Every operation of the tree in post-order (children before parents, left before right)."""
    order: list[Operation] = []
    stack: list[tuple[Expr, bool]] = [(tree, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, Number):
            continue
        if children_done:
            order.append(node)
        else:
            stack.append((node, True))
            stack.append((node.right, False))
            stack.append((node.left, False))
    return order


def evaluate(tree: Expr, apply: Callable[[Operation, Decimal, Decimal], Decimal]) -> Decimal:
    """Evaluate one operation at a time in post-order, ``apply`` computing each."""
    values: dict[int, Decimal] = {}

    def value(node: Expr) -> Decimal:
        return node.value if isinstance(node, Number) else values[id(node)]

    for node in operations(tree):
        values[id(node)] = apply(node, value(node.left), value(node.right))
    return value(tree)


def calculate(text: str, limits: Limits | None = None) -> Decimal:
    """Parse and evaluate locally, with the same arithmetic the services use."""
    bounds = limits or Limits()

    def apply(node: Operation, a: Decimal, b: Decimal) -> Decimal:
        try:
            return arith.apply(node.op, a, b, bounds)
        except CalcError as error:
            # Same place the front end names: the operator whose service failed.
            error.position = node.position
            raise

    return evaluate(parse(text, bounds), apply)

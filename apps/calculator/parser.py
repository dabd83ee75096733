"""Tokenizer and parser turning an arithmetic expression into a tree, without eval or recursion.

Grammar (whitespace is space, tab, CR or LF and may appear between tokens)::

    expression := term (("+" | "-") term)*
    term       := factor (("*" | "/") factor)*
    factor     := "-" factor | number | "(" expression ")"
    number     := digit+ ("." digit+)?

Binary operators are left associative; unary minus binds tighter than ``*`` and ``/``. The parser
is an operator-precedence (shunting-yard) loop with an explicit stack, so deep inputs cannot
exhaust Python's recursion limit; every limit is checked while parsing.

Negation of a literal is folded into the literal (``-3`` is the number -3). Negation of anything
else becomes ``0 - x`` so that, like every other operation, it is done by the sub service.
Positions are 1-based columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar, Final, Literal, Union

from calculator.arith import Limits, Operator
from calculator.compat import slotted
from calculator.errors import LimitError, ParseError


@slotted
@dataclass(frozen=True)
class Number:
    """A literal (possibly negated) operand."""

    value: Decimal
    position: int
    #: A literal is a leaf: every Number has depth 0.
    depth: ClassVar[int] = 0


@slotted
@dataclass(frozen=True)
class Operation:
    """A binary operation; ``position`` is the operator's column (or the unary minus's)."""

    op: Operator
    left: Expr
    right: Expr
    position: int
    depth: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depth", 1 + max(self.left.depth, self.right.depth))


Expr = Union[Number, Operation]

TokenKind = Literal["number", "op", "(", ")", "end", "bad"]

_WHITESPACE: Final = frozenset(" \t\r\n")
_DIGITS: Final = frozenset("0123456789")
_OPERATORS: Final[tuple[Operator, ...]] = ("+", "-", "*", "/")
_PRECEDENCE: Final[dict[str, int]] = {"+": 1, "-": 1, "*": 2, "/": 2}

EXPECT_OPERAND: Final = "a number, '(' or '-'"
EXPECT_OPERATOR_OR_END: Final = "an operator or end of input"
EXPECT_OPERATOR_OR_CLOSE: Final = "an operator or ')'"


@slotted
@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    position: int


def tokenize(text: str) -> Iterator[Token]:
    """Yield tokens lazily, so a parse error stops scanning where it happens; ends with "end"."""
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i == n:
            yield Token("end", "", n + 1)
            return
        start, char = i, text[i]
        if char in _DIGITS:
            while i < n and text[i] in _DIGITS:
                i += 1
            # A point belongs to the number only when a digit follows it; "2." leaves the point
            # as a token of its own, which the parser then reports where it stands.
            if i + 1 < n and text[i] == "." and text[i + 1] in _DIGITS:
                i += 1
                while i < n and text[i] in _DIGITS:
                    i += 1
            yield Token("number", text[start:i], start + 1)
            continue
        i += 1
        if char in _PRECEDENCE:
            yield Token("op", char, start + 1)
        elif char in "()":
            yield Token("(" if char == "(" else ")", char, start + 1)
        else:
            yield Token("bad", char, start + 1)


def describe(token: Token) -> str:
    """How an error message names the token it found."""
    if token.kind == "end":
        return "end of input"
    if token.kind == "number":
        shown = token.text if len(token.text) <= 20 else token.text[:20] + "..."
        return f"number {shown}"
    return repr(token.text)


def parse(text: str, limits: Limits | None = None) -> Expr:
    """Parse ``text`` into a tree; raises :class:`ParseError` or :class:`LimitError`."""
    return _Parser(limits or Limits()).run(text)


class _Parser:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.operands: list[Expr] = []
        # Pending operators: binary ("+", pos), unary minus ("neg", pos), open paren ("(", pos).
        self.pending: list[tuple[str, int]] = []
        self.operations = 0

    def run(self, text: str) -> Expr:
        nesting = 0
        want_operand = True
        for token in tokenize(text):
            if want_operand:
                if token.kind == "number":
                    self.operands.append(self._number(token))
                    want_operand = False
                elif token.kind == "op" and token.text == "-":
                    self.pending.append(("neg", token.position))
                elif token.kind == "(":
                    nesting += 1
                    if nesting > self.limits.max_depth:
                        raise LimitError(
                            f"parentheses nested too deep at position {token.position}: "
                            f"more than {self.limits.max_depth} levels",
                            position=token.position,
                        )
                    self.pending.append(("(", token.position))
                else:
                    raise self._syntax(token, EXPECT_OPERAND)
                continue
            if token.kind == "op":
                self._reduce(_PRECEDENCE[token.text])
                self.pending.append((token.text, token.position))
                want_operand = True
            elif token.kind == ")" and nesting > 0:
                self._reduce(0)
                self.pending.pop()
                nesting -= 1
            elif token.kind == "end" and nesting == 0:
                self._reduce(0)
                (tree,) = self.operands
                return tree
            else:
                expected = EXPECT_OPERATOR_OR_CLOSE if nesting else EXPECT_OPERATOR_OR_END
                raise self._syntax(token, expected)
        raise AssertionError("tokenize always ends with an end token")  # pragma: no cover

    def _number(self, token: Token) -> Number:
        digits = len(token.text) - token.text.count(".")
        if digits > self.limits.max_digits:
            raise LimitError(
                f"number at position {token.position} has {digits} digits, "
                f"more than the limit of {self.limits.max_digits}",
                position=token.position,
            )
        return Number(Decimal(token.text), token.position)

    def _reduce(self, min_precedence: int) -> None:
        """Pop pending operators into tree nodes: unary minus always (it binds tightest),
        binary ones of at least ``min_precedence`` (left associativity); stop at a paren."""
        while self.pending:
            top, position = self.pending[-1]
            if top == "(":
                return
            if top != "neg" and _PRECEDENCE[top] < min_precedence:
                return
            self.pending.pop()
            right = self.operands.pop()
            if top == "neg":
                if isinstance(right, Number):
                    # copy_negate, not unary minus: unary minus rounds to the context's precision
                    # (28 digits by default), and negation must be exact at any length.
                    self.operands.append(Number(right.value.copy_negate(), position))
                    continue
                node = Operation("-", Number(Decimal(0), position), right, position)
            else:
                left = self.operands.pop()
                node = Operation(_as_operator(top), left, right, position)
            self._count(node)
            self.operands.append(node)

    def _count(self, node: Operation) -> None:
        self.operations += 1
        if self.operations > self.limits.max_operations:
            raise LimitError(
                f"too many operations: more than {self.limits.max_operations}",
                position=node.position,
            )
        if node.depth > self.limits.max_depth:
            raise LimitError(
                f"expression too deep at position {node.position}: more than "
                f"{self.limits.max_depth} levels of operations (each level is one more round "
                "trip; parentheses can balance a long chain)",
                position=node.position,
            )

    @staticmethod
    def _syntax(token: Token, expected: str) -> ParseError:
        return ParseError(
            f"syntax error at position {token.position}: expected {expected}, "
            f"found {describe(token)}",
            position=token.position,
        )


def _as_operator(text: str) -> Operator:
    for op in _OPERATORS:
        if op == text:
            return op
    raise AssertionError(f"not an operator: {text!r}")  # pragma: no cover

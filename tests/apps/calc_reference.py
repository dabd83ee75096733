"""An independent reference for the calculator: recursive descent straight over the characters,
values as exact fractions, division rounded by integer arithmetic to the documented precision.

It shares no code with the ``calculator`` package, so the property tests compare two separate
readings of the grammar and of the precision rule.
"""

from __future__ import annotations

from fractions import Fraction

OPERAND = "a number, '(' or '-'"
AFTER_TOP = "an operator or end of input"
AFTER_NESTED = "an operator or ')'"


class RefSyntaxError(Exception):
    def __init__(self, position: int, expected: str, found: str) -> None:
        super().__init__(f"syntax error at position {position}: expected {expected}, found {found}")
        self.position = position


class RefDivisionByZero(Exception):
    def __init__(self, position: int) -> None:
        super().__init__(f"division by zero at position {position}")
        self.position = position


def magnitude(x: Fraction) -> int:
    """floor(log10(|x|)) for x != 0, by integer comparisons only."""
    x = abs(x)
    e = len(str(x.numerator)) - len(str(x.denominator))
    while Fraction(10) ** e > x:
        e -= 1
    while Fraction(10) ** (e + 1) <= x:
        e += 1
    return e


def rounded_quotient(a: Fraction, b: Fraction, extra_digits: int = 50) -> Fraction:
    """a / b kept to extra_digits + max(0, m(a) - m(b) + 1) significant digits, half-even."""
    q = a / b
    if q == 0:
        return q
    digits = extra_digits + max(0, magnitude(a) - magnitude(b) + 1)
    unit = Fraction(10) ** (magnitude(q) - digits + 1)
    return round(q / unit) * unit


class _Reader:
    def __init__(self, text: str, extra_digits: int) -> None:
        self.text = text
        self.i = 0
        self.extra_digits = extra_digits
        self.first_zero_division: int | None = None

    def peek(self) -> str:
        while self.i < len(self.text) and self.text[self.i] in " \t\r\n":
            self.i += 1
        return self.text[self.i] if self.i < len(self.text) else ""

    def number_end(self, start: int) -> int:
        j = start
        while j < len(self.text) and "0" <= self.text[j] <= "9":
            j += 1
        if j + 1 < len(self.text) and self.text[j] == "." and "0" <= self.text[j + 1] <= "9":
            j += 2
            while j < len(self.text) and "0" <= self.text[j] <= "9":
                j += 1
        return j

    def fail(self, expected: str) -> RefSyntaxError:
        c = self.peek()
        if c == "":
            found = "end of input"
        elif "0" <= c <= "9":
            digits = self.text[self.i : self.number_end(self.i)]
            found = "number " + (digits if len(digits) <= 20 else digits[:20] + "...")
        else:
            found = repr(c)
        return RefSyntaxError(self.i + 1, expected, found)

    def expression(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-") and self.peek() != "":
            op = self.text[self.i]
            self.i += 1
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> Fraction:
        value = self.factor()
        while self.peek() in ("*", "/") and self.peek() != "":
            op, where = self.text[self.i], self.i + 1
            self.i += 1
            right = self.factor()
            if op == "*":
                value = value * right
            elif right == 0:
                # Recorded, not raised: a syntax error further on must still win.
                if self.first_zero_division is None:
                    self.first_zero_division = where
                value = Fraction(0)
            else:
                value = rounded_quotient(value, right, self.extra_digits)
        return value

    def factor(self) -> Fraction:
        c = self.peek()
        if c == "-":
            self.i += 1
            return -self.factor()
        if c == "(":
            self.i += 1
            value = self.expression()
            if self.peek() != ")":
                raise self.fail(AFTER_NESTED)
            self.i += 1
            return value
        if c != "" and "0" <= c <= "9":
            end = self.number_end(self.i)
            value = Fraction(self.text[self.i : end])
            self.i = end
            return value
        raise self.fail(OPERAND)


def reference_value(text: str, extra_digits: int = 50) -> Fraction:
    """Value of ``text``; raises RefSyntaxError or RefDivisionByZero."""
    reader = _Reader(text, extra_digits)
    value = reader.expression()
    if reader.peek() != "":
        raise reader.fail(AFTER_TOP)
    if reader.first_zero_division is not None:
        raise RefDivisionByZero(reader.first_zero_division)
    return value

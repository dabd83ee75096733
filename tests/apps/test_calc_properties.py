"""Property tests: the calculator's parser and arithmetic against the independent reference."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from calculator import arith
from calculator.errors import ArithmeticFault, ParseError
from calculator.evaluate import calculate
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.apps.calc_reference import RefDivisionByZero, RefSyntaxError, reference_value

SPACE = st.sampled_from(["", "", "", " ", "  ", "\t", "\n"])
INTEGER = st.integers(min_value=0, max_value=10**6).map(str)
DECIMAL = st.tuples(st.integers(0, 9999), st.integers(0, 9999)).map(lambda t: f"{t[0]}.{t[1]}")
SMALL = st.sampled_from(["0", "1", "2", "3", "7", "10"])
LEAF = st.one_of(SMALL, INTEGER, DECIMAL)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, SPACE, st.sampled_from("+-*/"), SPACE, children).map("".join),
        st.tuples(SPACE, children, SPACE).map(lambda t: f"({''.join(t)})"),
        children.map(lambda c: f"-{c}"),
    )


EXPRESSION = st.recursive(LEAF, _combine, max_leaves=12)


def ours(text: str) -> tuple[str, object]:
    try:
        return "value", Fraction(calculate(text))
    except ParseError as error:
        return "syntax", error.message
    except ArithmeticFault as error:
        return "zero", (error.message, error.position)


def reference(text: str) -> tuple[str, object]:
    try:
        return "value", reference_value(text)
    except RefSyntaxError as error:
        return "syntax", str(error)
    except RefDivisionByZero as error:
        return "zero", ("division by zero", error.position)


@settings(max_examples=400, deadline=None)
@given(EXPRESSION)
@example("(5+6)*2")
@example("2/3*3")
@example("1-2-3")
@example("8/4/2")
@example("-(1/0)")
def test_valid_expressions_agree_with_reference(text: str) -> None:
    assert ours(text) == reference(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789.+-*/() x\t", max_size=40))
@example("")
@example("2.")
@example(".5")
@example("1 0")
@example("((1)")
@example("1))")
def test_arbitrary_text_agrees_with_reference_including_error_positions(text: str) -> None:
    assert ours(text) == reference(text)


@settings(max_examples=300, deadline=None)
@given(EXPRESSION, st.data())
def test_corrupted_expressions_report_the_reference_position(
    text: str, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, len(text)))
    bad = data.draw(st.sampled_from(["x", "#", "é", ")", "(", "*", ".", "  "]))
    corrupted = text[:index] + bad + text[index:]
    assert ours(corrupted) == reference(corrupted)


FINITE = st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**40), max_value=10**40)


@settings(deadline=None)  # no test asserts speed; a loaded machine must not fail one
@given(FINITE)
def test_format_number_is_plain_and_exact(value: Decimal) -> None:
    text = arith.format_number(value)
    assert "E" not in text
    assert "e" not in text
    assert Decimal(text) == value
    if "." in text:
        assert not text.endswith("0")
    assert text != "-0"


@settings(deadline=None)
@given(FINITE, FINITE.filter(lambda d: d != 0))
def test_division_keeps_the_documented_precision(a: Decimal, b: Decimal) -> None:
    limits = arith.Limits(max_digits=10_000)
    assert Fraction(arith.apply("/", a, b, limits)) == reference_value(
        f"({arith.format_number(a)})/({arith.format_number(b)})"
    )


# Literals of 1 to 1,000 digits (the default limit), with unary minus and parentheses: the
# shapes that once rounded a negated 29-digit literal to 28 digits without a word.
BIG = (
    st.integers(1, 1000)
    .flatmap(
        lambda n: st.tuples(
            st.integers(1, 9), st.text("0123456789", min_size=n - 1, max_size=n - 1)
        )
    )
    .map(lambda t: f"{t[0]}{t[1]}")
)
BIG_LEAF = st.one_of(BIG, BIG.map(lambda d: f"{d[:-1]}.{d[-1]}" if len(d) > 1 else d), SMALL)


def _signed(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        children.map(lambda c: f"-{c}"),
        children.map(lambda c: f"-({c})"),
        children.map(lambda c: f"(-{c})"),
        st.tuples(children, st.sampled_from("+-*/"), children).map("".join),
    )


BIG_EXPRESSION = st.recursive(BIG_LEAF, _signed, max_leaves=4)
WIDE = arith.Limits(max_digits=10_000)


@settings(max_examples=300, deadline=None)
@given(BIG_EXPRESSION)
@example("-99999999999999999999999999999")
@example("-(12345678901234567890123456789012345)")
@example("--" + "9" * 1000)
@example("-(" + "9" * 1000 + ")-1")
def test_big_literals_with_unary_minus_are_exact(text: str) -> None:
    try:
        got: tuple[str, object] = ("value", Fraction(calculate(text, WIDE)))
    except ArithmeticFault as error:
        got = ("zero", (error.message, error.position))
    assert got == reference(text)


@settings(deadline=None)
@given(BIG)
def test_negated_literal_is_the_literal_negated(digits: str) -> None:
    # Both through the tree (a folded literal) and through the sub service's arithmetic.
    assert arith.format_number(calculate(f"-{digits}")) == f"-{digits.lstrip('0') or '0'}"
    assert arith.format_number(calculate(f"-({digits})")) == f"-{digits.lstrip('0') or '0'}"

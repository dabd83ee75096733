"""Unit tests of the calculator's pure core: parser, tree, arithmetic, service input, settings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from calculator import arith, config
from calculator.arith import Limits
from calculator.errors import ArithmeticFault, CalcError, LimitError, ParseError
from calculator.evaluate import calculate, operations
from calculator.parser import Number, Operation, parse
from calculator.service import compute


def value(text: str, limits: Limits | None = None) -> str:
    return arith.format_number(calculate(text, limits))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(5+6)*2", "22"),
        ("15/5", "3"),
        ("10/4", "2.5"),
        ("2+3*4", "14"),
        ("8-3-2", "3"),
        ("8/4/2", "1"),
        ("2*3-4*5", "-14"),
        ("-2*3", "-6"),
        ("2*-3", "-6"),
        ("--3", "3"),
        ("-(1+2)*2", "-6"),
        ("1-(-2)", "3"),
        ("0.1+0.2", "0.3"),
        ("1.50*2", "3"),
        ("  ( 5 +\t6 )\n* 2 ", "22"),
        ("007", "7"),
        ("3-3", "0"),
        ("-0", "0"),
        ("0*-5", "0"),
        ("1/3", "0." + "3" * 51),
        ("2/3", "0." + "6" * 50 + "7"),
        ("1/8", "0.125"),
        ("99999999999999999999*99999999999999999999", "9" * 19 + "8" + "0" * 19 + "1"),
    ],
)
def test_values(expression: str, expected: str) -> None:
    assert value(expression) == expected


def test_big_integers_stay_exact_through_every_operation() -> None:
    big = 3**300
    assert value(f"{big}*{big}/{big}") == str(big)
    assert value(f"{big}+1-{big}") == "1"
    assert value(f"{10**200 + 1}/1") == str(10**200 + 1)
    # The integer part of an inexact quotient is never rounded away.
    assert value(f"{10**100}/3").startswith("3" * 100 + ".")


def test_division_precision_is_fifty_digits_beyond_the_integer_part() -> None:
    fraction = value("1/7").split(".")[1]
    assert len(fraction) == 51  # 50 + one digit for the estimated integer part
    assert value("1/7", Limits(division_digits=10)) == "0.14285714286"


@pytest.mark.parametrize(
    ("expression", "position", "message"),
    [
        ("", 1, "expected a number, '(' or '-', found end of input"),
        ("2 +", 4, "expected a number, '(' or '-', found end of input"),
        ("2 x", 3, "expected an operator or end of input, found 'x'"),
        ("1 0", 3, "expected an operator or end of input, found number 0"),
        ("(1", 3, "expected an operator or ')', found end of input"),
        ("(1 2)", 4, "expected an operator or ')', found number 2"),
        ("1)", 2, "expected an operator or end of input, found ')'"),
        ("2.", 2, "expected an operator or end of input, found '.'"),
        (".5", 1, "expected a number, '(' or '-', found '.'"),
        ("2**3", 3, "expected a number, '(' or '-', found '*'"),
        ("+1", 1, "expected a number, '(' or '-', found '+'"),
        ("()", 2, "expected a number, '(' or '-', found ')'"),
        ("1 + é", 5, "expected a number, '(' or '-', found 'é'"),
        ("٣", 1, "expected a number, '(' or '-', found '٣'"),
    ],
)
def test_syntax_errors_name_position_and_expectation(
    expression: str, position: int, message: str
) -> None:
    with pytest.raises(ParseError) as caught:
        parse(expression)
    assert caught.value.position == position
    assert caught.value.message == f"syntax error at position {position}: {message}"
    assert caught.value.status == 400


def test_tree_shape_and_post_order() -> None:
    tree = parse("1-2-3*4")
    assert isinstance(tree, Operation)
    assert tree.op == "-"
    assert tree.position == 4
    assert isinstance(tree.left, Operation)
    assert tree.left.position == 2
    assert [node.op for node in operations(tree)] == ["-", "*", "-"]
    assert tree.depth == 2


def test_negation_folds_into_literals_and_becomes_zero_minus_otherwise() -> None:
    assert parse("-3") == Number(Decimal(-3), 1)
    tree = parse("-(1+2)")
    assert isinstance(tree, Operation)
    assert tree.op == "-"
    assert tree.left == Number(Decimal(0), 1)
    assert isinstance(tree.right, Operation)
    assert tree.right.op == "+"


def test_division_by_zero_names_the_operator() -> None:
    with pytest.raises(ArithmeticFault) as caught:
        calculate("1 + 4/(2-2)")
    assert caught.value.message == "division by zero"
    assert caught.value.position == 6


def test_nesting_limit() -> None:
    limits = Limits(max_depth=5)
    assert value("(((((1)))))", limits) == "1"
    with pytest.raises(LimitError, match="parentheses nested too deep at position 6"):
        parse("((((((1))))))", limits)


def test_depth_limit_counts_levels_of_operations() -> None:
    limits = Limits(max_depth=3)
    assert value("1+1+1+1", Limits(max_depth=3)) == "4"
    with pytest.raises(LimitError, match="expression too deep"):
        parse("1+1+1+1+1", limits)
    # The same operations balanced stay within the limit.
    assert value("(1+1)+(1+1)+1", limits) == "5"


def test_operation_limit() -> None:
    limits = Limits(max_operations=3)
    assert value("-(1+1)+1", limits) == "-1"  # the negation of a group is a call too
    with pytest.raises(LimitError, match="too many operations: more than 3"):
        parse("1+1+1+1+1", limits)


def test_digit_limits_on_literals_and_results() -> None:
    limits = Limits(max_digits=10)
    assert value("1234567890", limits) == "1234567890"
    with pytest.raises(LimitError, match="number at position 3 has 11 digits"):
        parse("1+12345678901", limits)
    with pytest.raises(ArithmeticFault, match="result has 11 digits"):
        calculate("99999*1000000", limits)


@pytest.mark.parametrize(
    ("service", "body", "expected"),
    [
        ("sum", "2 3", "5"),
        ("sub", "5 3", "2"),
        ("mul", "12 3", "36"),
        ("div", "15 5", "3"),
        ("div", "10 4", "2.5"),
        ("sum", "  -2.5\t  7\n", "4.5"),
        ("mul", "-4 -2", "8"),
        ("sub", "0 0.000", "0"),
    ],
)
def test_service_computation(service: str, body: str, expected: str) -> None:
    assert compute(service, body, Limits())[1] == expected


@pytest.mark.parametrize(
    ("service", "body", "fragment"),
    [
        ("sum", "2", "expected two numbers separated by a space, like '2 3', found 1 item"),
        ("sum", "", "found nothing"),
        ("sum", "1 2 3", "found 3 items"),
        ("sum", "2 x", "second operand 'x' is not a number"),
        ("mul", "2e3 1", "first operand '2e3' is not a number"),
        ("sub", "+2 1", "first operand '+2' is not a number"),
        ("div", "1 0", "division by zero"),
        ("div", "1 -0.00", "division by zero"),
    ],
)
def test_service_rejects_bad_input(service: str, body: str, fragment: str) -> None:
    with pytest.raises(CalcError) as caught:
        compute(service, body, Limits())
    assert fragment in caught.value.message
    assert caught.value.status == 400


def test_service_rejects_huge_operands() -> None:
    with pytest.raises(LimitError, match="first operand has 11 digits"):
        compute("sum", "12345678901 1", Limits(max_digits=10))


def test_settings_defaults_follow_the_lab() -> None:
    front = config.load("front", {})
    assert (front.host, front.port, front.timeout) == ("0.0.0.0", 50000, 3.0)
    assert front.service_urls["div"] == "http://127.0.0.1:50004"
    assert config.load("div", {}).port == 50004
    assert config.load("all", {}).host == "127.0.0.1"
    custom = config.load(
        "front",
        {"CALC_PORT": "8080", "CALC_SUM_URL": "http://192.168.2.10:50001/", "CALC_TIMEOUT": "1.5"},
    )
    assert (custom.port, custom.timeout) == (8080, 1.5)
    assert custom.service_urls["sum"] == "http://192.168.2.10:50001"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"CALC_PORT": "http"}, "CALC_PORT must be an integer"),
        ({"CALC_PORT": "70000"}, "CALC_PORT must be between 0 and 65535"),
        ({"CALC_TIMEOUT": "0"}, "CALC_TIMEOUT must be more than 0"),
        ({"CALC_TIMEOUT": "nan"}, "CALC_TIMEOUT must be more than 0"),
        ({"CALC_SUM_URL": "192.168.2.10:50001"}, "CALC_SUM_URL must be an http:// URL"),
        ({"CALC_DIV_URL": "http://host:port"}, "CALC_DIV_URL has an invalid port"),
    ],
)
def test_settings_errors_say_which_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(config.ConfigError, match=fragment):
        config.load("front", env)


def test_unknown_role_and_too_small_service_body() -> None:
    with pytest.raises(config.ConfigError, match="unknown role 'pow'"):
        config.load("pow", {})
    with pytest.raises(config.ConfigError, match=r"CALC_MAX_BODY \(100\) is too small"):
        config.load("sum", {"CALC_MAX_BODY": "100"})

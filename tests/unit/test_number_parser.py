"""The one number/duration parser: what it takes, what it refuses, and that it never fails in
any other way than InvalidNumber naming the field."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.validation import (
    MAX_DURATION,
    InvalidInput,
    InvalidNumber,
    parse_duration,
    parse_index,
    parse_number,
    parse_wait,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("250us", 250e-6),
        ("10", 10.0),
        ("0", 0.0),
        (5, 5.0),
        (2.5, 2.5),
    ],
)
def test_durations_in_go_syntax_or_seconds(value, seconds) -> None:
    assert parse_duration(value, "x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("NaN", "not a duration"),
        ("nan", "not a duration"),
        ("inf", "not a duration"),
        ("Infinity", "not a duration"),
        ("1e999", "not a finite duration"),
        (math.nan, "not a finite duration"),
        (math.inf, "not a finite duration"),
        (-1, "negative"),
        ("-1s", "negative"),
        ("99999999999999h", "longer than the maximum"),
        (10**400, "longer than the maximum"),
        (True, "got a boolean"),
        ({"seconds": 5}, "got an object"),
        (["5s"], "got a list"),
        (None, "got null"),
        ("10 s", "not a duration"),
        ("10s\n", "not a duration"),
        ("1d", "not a duration"),
        ("", "not a duration"),
        ("\u0665s", "not a duration"),  # Arabic-Indic five: str.isdigit() would say yes
    ],
)
def test_bad_durations_are_refused_naming_the_field(value, words) -> None:
    with pytest.raises(InvalidNumber) as caught:
        parse_duration(value, "Check.Timeout")
    assert caught.value.field == "Check.Timeout"
    assert caught.value.message.startswith("Check.Timeout: ")
    assert words in caught.value.message
    # Both families: a 400 for the API, a ValueError for settings loaders.
    assert isinstance(caught.value, InvalidInput) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("value", "kwargs", "words"),
    [
        (True, {}, "got a boolean"),
        (math.nan, {}, "not a finite number"),
        (1e308 * 10, {}, "not a finite number"),
        ("nan", {}, "not a number"),
        ("1e999", {}, "not a finite number"),
        (-3, {}, "negative"),
        (2.5, {"integer": True}, "whole number"),
        ("+5", {"integer": True}, "not a whole number"),
        (" 5", {"integer": True}, "not a whole number"),
        ("1_000", {"integer": True}, "not a whole number"),
        ("١٢", {"integer": True}, "not a whole number"),
        (2**64, {"integer": True}, "64 bits"),
        ({"a": 1}, {}, "got an object"),
        ("5", {"text": False}, "got a string"),
        (70000, {"maximum": 65535}, "maximum of 65535"),
    ],
)
def test_bad_numbers_are_refused_naming_the_field(value, kwargs, words) -> None:
    with pytest.raises(InvalidNumber) as caught:
        parse_number(value, "Port", **kwargs)
    assert caught.value.field == "Port"
    assert words in caught.value.message


def test_numbers_taken() -> None:
    assert parse_number("8080", "p", integer=True) == 8080
    assert parse_number(8080.0, "p", integer=True) == 8080
    assert parse_number("2.5e1", "p") == 25.0
    assert parse_number(-2, "p", minimum=None) == -2


@pytest.mark.parametrize("raw", ["-1", "abc", "1.5", "", "+1", "1e3", "9" * 20, "٣"])
def test_bad_blocking_index_is_refused(raw) -> None:
    with pytest.raises(InvalidNumber, match="index"):
        parse_index(raw)


@pytest.mark.parametrize("raw", ["nan", "inf", "1e999", "-1s", "soon"])
def test_bad_wait_is_refused(raw) -> None:
    with pytest.raises(InvalidNumber, match="wait"):
        parse_wait(raw, default=60, maximum=600)


def test_long_wait_is_cut_to_the_maximum_and_empty_is_the_default() -> None:
    assert parse_wait("99999h", default=60, maximum=600) == 600
    assert parse_wait(None, default=60, maximum=600) == 60
    assert parse_wait("", default=60, maximum=600) == 60


@given(st.floats(min_value=0, max_value=MAX_DURATION))
def test_any_finite_non_negative_number_of_seconds_is_itself(seconds) -> None:
    assert parse_duration(seconds, "x") == seconds


@given(st.one_of(st.text(max_size=80), st.floats(), st.integers(), st.booleans(), st.none()))
def test_duration_parser_returns_a_bounded_finite_value_or_names_the_field(value) -> None:
    try:
        result = parse_duration(value, "f")
    except InvalidNumber as exc:
        assert exc.field == "f" and exc.message.startswith("f: ")
    else:
        assert math.isfinite(result) and 0 <= result <= MAX_DURATION


@given(st.one_of(st.text(max_size=80), st.floats(), st.integers(), st.booleans()))
def test_integer_parser_returns_an_int64_or_names_the_field(value) -> None:
    try:
        result = parse_number(value, "n", integer=True)
    except InvalidNumber as exc:
        assert exc.field == "n"
    else:
        assert type(result) is int and 0 <= result < 2**63

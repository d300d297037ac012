"""auth/numbers.py: client numbers are ASCII digits, bounded, never a ValueError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.auth.numbers import MAX_DECIMAL_DIGITS, parse_hex, parse_int, parse_uint


@pytest.mark.parametrize("text", ["0", "7", "007", "9" * MAX_DECIMAL_DIGITS])
def test_plain_digits_are_numbers(text: str) -> None:
    assert parse_uint(text) == int(text)
    assert parse_uint(text.encode()) == int(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 7",
        "7 ",
        "+7",
        "-7",
        "1_000",
        "²",
        "\u0663",
        "\uff17",
        "1e3",
        "0x10",
        "9" * 5000,
        "1.0",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    assert parse_uint(text) is None


def test_signed_and_hex() -> None:
    assert parse_int("-5") == -5
    assert parse_int("--5") is None
    assert parse_hex("1f") == 31
    assert parse_hex(b"FFFF") == 65535
    for bad in ("-5", "0x10", "+1", " 1", "1_0", "", "f" * 17, "\u0663"):
        assert parse_hex(bad) is None


@given(st.text())
def test_never_raises(text: str) -> None:
    for parse in (parse_uint, parse_int, parse_hex):
        value = parse(text)
        assert value is None or value >= 0 or parse is parse_int


@given(st.integers(min_value=0, max_value=10**MAX_DECIMAL_DIGITS - 1))
def test_round_trips(value: int) -> None:
    assert parse_uint(str(value)) == value
    assert parse_hex(format(value, "x")) == (value if value < 16**16 else None)

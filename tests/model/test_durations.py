"""rolechain.model.durations: human durations in and out."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolechain.model.durations import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (900, 900),
        (0, 0),
        ("3600", 3600),
        ("45m", 2700),
        ("1h", 3600),
        ("1h30m", 5400),
        ("90s", 90),
        ("1d", 86400),
        ("12h", 43200),
        (" 1H 30M ", 5400),
    ],
)
def test_parse(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad",
    [
        *("", "1 hour", "h", "1.5h", "-5", "1y", True, None, 1.5, [60]),
        "1h1h",  # each unit once: not 2h
        "30m1h",  # units in order d, h, m, s
        "\u0661h",  # Arabic-Indic one: AWS reads ASCII digits only
        "\uff13\uff16\uff10\uff10",  # full-width 3600
        "9" * 300,  # far too long, and no int conversion of thousands of digits
        10**12,
    ],
)
def test_parse_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_negative_int() -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(-1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (900, "15m"), (3600, "1h"), (5400, "1h30m"), (90061, "1d1h1m1s")],
)
def test_format(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**7))
def test_format_then_parse_round_trips(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert re.match(DURATION_PATTERN, text)

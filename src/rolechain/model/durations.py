"""Human durations: ``45m``, ``1h``, ``1h30m``, ``90s``, ``3600`` (seconds)."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+)([smhd])")
_WHOLE = re.compile(r"^(?:\d+[smhd])+$")
DURATION_PATTERN = r"^(\d+|(\d+[smhd])+)$"


def parse_duration(value: object) -> int:
    """Seconds in ``value``: an int, a digit string, or units like ``1h30m``.

    >>> parse_duration("1h30m"), parse_duration(900), parse_duration("45m")
    (5400, 900, 2700)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '45m' or '1h'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.isdigit():
            return int(text)
        if text and _WHOLE.match(text):
            return sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))
    raise ValueError(
        f"{value!r} is not a duration: use seconds (3600) or units s, m, h, d ('45m', '1h30m')"
    )


def format_duration(seconds: int) -> str:
    """The shortest human form: ``3600`` -> ``1h``, ``5400`` -> ``1h30m``."""
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)

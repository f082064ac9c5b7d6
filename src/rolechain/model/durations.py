"""Human durations: ``45m``, ``1h``, ``1h30m``, ``90s``, ``3600`` (seconds).

Digits are ASCII only (AWS reads no other), each unit appears at most once and in the
order ``d``, ``h``, ``m``, ``s`` (so ``1h1h`` is a mistake, not two hours), and a number has
at most :data:`MAX_DIGITS` digits: a duration longer than about 30 years is a typo.
"""

from __future__ import annotations

import re

MAX_DIGITS = 9
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_WHOLE = re.compile(
    r"(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?", re.ASCII
)
_SECONDS = re.compile(r"[0-9]+", re.ASCII)
DURATION_PATTERN = r"^(?=[0-9])([0-9]+|([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?)$"

_HOW = "use seconds (3600) or units d, h, m, s, each once and in that order ('45m', '1h30m')"


def parse_duration(value: object) -> int:
    """Seconds in ``value``: an int, a digit string, or units like ``1h30m``.

    >>> parse_duration("1h30m"), parse_duration(900), parse_duration("45m")
    (5400, 900, 2700)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '45m' or '1h'")
    if isinstance(value, int):
        spelling = getattr(value, "spelling", None)  # YAML's 0x.., 0o.., +..: see SpelledInt
        if spelling is not None:
            raise ValueError(
                f"{_shown(spelling)} is not a duration: write the seconds in decimal "
                f"({int(value)}) or use units d, h, m, s"
            )
        if value < 0:
            raise ValueError("a duration cannot be negative")
        if value >= 10**MAX_DIGITS:
            raise ValueError(f"{value} seconds is too long for a duration")
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if any(len(n) > MAX_DIGITS for n in re.findall(r"[0-9]+", text)):
            raise ValueError(
                f"a duration has numbers of at most {MAX_DIGITS} digits; {_shown(value)} "
                "is too long"
            )
        if _SECONDS.fullmatch(text):
            return int(text)
        found = _WHOLE.fullmatch(text) if text else None
        if found is not None and any(found.groups()):
            return sum(int(n) * _UNITS[u] for u, n in found.groupdict().items() if n)
    raise ValueError(f"{_shown(value)} is not a duration: {_HOW}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "...'"


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

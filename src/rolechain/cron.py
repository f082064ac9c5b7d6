"""Cron expressions and time zones: when a schedule fires. Pure (no AWS, no I/O).

Fire times come from `cronsim <https://github.com/cuu508/cronsim>`_, which follows
Debian's (Vixie) cron, the reference most people's crontabs were written against:

- five fields, minute hour day-of-month month day-of-week; names (``JAN``, ``MON``) allowed;
  ``0`` and ``7`` are both Sunday;
- when day-of-month and day-of-week are both restricted, a day matches if EITHER does; a
  field that starts with ``*`` (``*``, ``*/2``) counts as unrestricted, so
  ``0 0 */2 * MON`` is "every other day that is a Monday" as in Vixie cron;
- the macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``) and ``@hourly``. ``@reboot`` means nothing to a scheduler that runs for
  weeks and is refused, as are the non-standard ``L``, ``W``, ``#`` and ``?`` (other
  schedulers, where the same schedule is exported to, do not read them).

Time zones are IANA names read by :mod:`zoneinfo` (the ``tzdata`` package supplies the
database where the system has none). Daylight-saving changes are handled as Debian cron
does:

- spring forward: a time that does not exist that day (02:30 in Europe/Berlin on the last
  Sunday of March) fires once, at the first instant after the gap (03:00 CEST) -- no lost
  run -- for a schedule with a fixed minute and hour; a schedule whose minute or hour field
  starts with ``*`` (every N minutes, every hour) goes on at the times that exist, since no
  real time was skipped;
- fall back: a time that happens twice (02:30 on the last Sunday of October) fires once,
  at its first occurrence -- no double run -- for a fixed minute and hour; an hourly or
  every-N-minutes schedule fires in both hours, since both really happen.

Two fire times are never equal: a run is started at most once per instant.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_NAMES = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT",
}  # fmt: skip
# ASCII digits only: re's \d and str.isdigit() also take Arabic-Indic and other Unicode digits.
_ATOM = re.compile(r"^(\*|[0-9]{1,2}|[A-Za-z]{3})$")
_FIELDS = (("minute", 60), ("hour", 24), ("day of month", 31), ("month", 12), ("day of week", 7))

CRON_HELP = (
    "five fields, minute hour day month weekday, e.g. '0 3 * * *', or a macro: " + ", ".join(MACROS)
)


class CronError(ValueError):
    """A schedule that is not a standard cron expression, or an unknown time zone."""


def _check_field(field: str, name: str, size: int) -> None:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if "/" in part and not (re.fullmatch(r"[0-9]{1,2}", step) and 1 <= int(step) <= size):
            raise CronError(f"the step '/{step[:20]}' of the {name} field must be 1..{size}")
        for atom in base.split("-") if base != "" else [""]:
            if not _ATOM.match(atom) or (atom.isalpha() and atom.upper() not in _NAMES):
                raise CronError(
                    f"{part!r} is not standard cron (numbers, names such as MON or JAN, "
                    "'*', ',', '-' and '/'; not L, W, # or ?)"
                )


def expand(expression: str) -> str:
    """The five-field form of ``expression`` (a macro expanded), checked.

    >>> expand("@daily")
    '0 0 * * *'
    """
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() == "@reboot":
            raise CronError("'@reboot' is not a schedule: the scheduler runs for weeks")
        found = MACROS.get(text.lower())
        if found is None:
            raise CronError(f"unknown macro {text!r}; {CRON_HELP}")
        return found
    fields = text.split(" ")
    if len(fields) != 5:
        raise CronError(f"{len(fields)} fields; {CRON_HELP}")
    for field, (name, size) in zip(fields, _FIELDS, strict=True):
        _check_field(field, name, size)
    from cronsim import CronSim, CronSimError

    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise CronError(f"{str(exc).rstrip('.').lower()}; {CRON_HELP}") from None
    return text


@lru_cache(maxsize=256)
def zone(name: str) -> tzinfo:
    """The time zone ``name`` (IANA, e.g. ``Europe/Berlin``; ``UTC``)."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', 'Europe/Berlin' "
            "or 'America/New_York'"
        ) from None


def is_wildcard_time(expression: str) -> bool:
    """True when the minute or hour field starts with ``*``: such a schedule runs at every
    matching wall-clock time through a daylight-saving change (see the module docs)."""
    minute, hour = expand(expression).split(" ")[:2]
    return minute.startswith("*") or hour.startswith("*")


@dataclass(frozen=True)
class CronSchedule:
    """A checked cron expression in a time zone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        expand(self.expression)
        zone(self.timezone)

    @property
    def five_fields(self) -> str:
        return expand(self.expression)

    @property
    def tz(self) -> tzinfo:
        return zone(self.timezone)

    def fires(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``after`` (aware), in UTC, strictly increasing."""
        from cronsim import CronSim

        if after.tzinfo is None:
            raise ValueError("'after' must be an aware datetime")
        # cronsim works at whole seconds; start from the second containing ``after``.
        start = after.astimezone(self.tz).replace(microsecond=0)
        last = after.astimezone(UTC)
        for moment in CronSim(self.five_fields, start):
            fire = moment.astimezone(UTC)
            if fire <= last:
                continue  # two gap times mapped to the same instant: run once
            last = fire
            yield fire

    def next_fire(self, after: datetime) -> datetime:
        return next(self.fires(after))

    def next_fires(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        for fire in self.fires(after):
            out.append(fire)
            if len(out) == count:
                break
        return out

    def describe(self) -> str:
        """Plain words (``At 03:00``), from cronsim's explainer."""
        from cronsim.explain import explain

        return str(explain(self.five_fields))

"""Fire times against a hand-checked table: Vixie cron semantics, macros, zones and DST.

Every expected time below was worked out by hand from a calendar (1 January 2026 is a
Thursday; Europe/Berlin changes on 29 March and 25 October 2026, America/New_York on
8 March), not produced by the code under test. croniter 7 fails two rows of this table (it
ORs ``*/10`` day-of-month with a weekday, and fires 02:30 twice on the fall-back night),
which is why fire times come from cronsim.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rolechain.cron import CronError, CronSchedule, expand, is_wildcard_time


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


START = utc("2026-01-01T00:00:00Z")  # a Thursday

TABLE = [
    ("0 3 * * *", ["2026-01-01T03:00Z", "2026-01-02T03:00Z"]),
    ("0 0 * * 0", ["2026-01-04T00:00Z", "2026-01-11T00:00Z"]),  # Sunday
    ("0 0 * * 7", ["2026-01-04T00:00Z", "2026-01-11T00:00Z"]),  # 7 is Sunday too
    ("0 0 * * SUN", ["2026-01-04T00:00Z", "2026-01-11T00:00Z"]),
    # both restricted: the 13th OR a Friday
    (
        "0 0 13 * 5",
        ["2026-01-02T00:00Z", "2026-01-09T00:00Z", "2026-01-13T00:00Z", "2026-01-16T00:00Z"],
    ),
    # '*/10' starts with '*': Vixie ANDs it with Monday -> the first 1st/11th/21st/31st
    # that is a Monday is 11 May 2026
    ("0 0 */10 * 1", ["2026-05-11T00:00Z"]),
    ("*/15 * * * *", ["2026-01-01T00:15Z", "2026-01-01T00:30Z"]),
    (
        "0 9-17/4 * * MON-FRI",
        ["2026-01-01T09:00Z", "2026-01-01T13:00Z", "2026-01-01T17:00Z", "2026-01-02T09:00Z"],
    ),
    ("30 4 1,15 * *", ["2026-01-01T04:30Z", "2026-01-15T04:30Z"]),
    ("0 0 29 2 *", ["2028-02-29T00:00Z"]),
    ("0 12 * JAN,JUL *", ["2026-01-01T12:00Z", "2026-01-02T12:00Z"]),
    ("@hourly", ["2026-01-01T01:00Z", "2026-01-01T02:00Z"]),
    ("@daily", ["2026-01-02T00:00Z", "2026-01-03T00:00Z"]),
    ("@midnight", ["2026-01-02T00:00Z"]),
    ("@weekly", ["2026-01-04T00:00Z", "2026-01-11T00:00Z"]),
    ("@monthly", ["2026-02-01T00:00Z", "2026-03-01T00:00Z"]),
    ("@yearly", ["2027-01-01T00:00Z"]),
    ("@annually", ["2027-01-01T00:00Z"]),
]


@pytest.mark.parametrize(("expression", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_hand_checked_fire_times(expression: str, expected: list[str]) -> None:
    fires = CronSchedule(expression).next_fires(START, len(expected))
    assert fires == [utc(e) for e in expected]


DST = [
    # spring forward, Berlin: 02:30 does not exist on 29 March -> once, at 03:00 CEST
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27T00:00Z",
        ["2026-03-27T01:30Z", "2026-03-28T01:30Z", "2026-03-29T01:00Z", "2026-03-30T00:30Z"],
    ),
    # fall back, Berlin: 02:30 happens twice on 25 October -> once, the first
    (
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T00:00Z",
        ["2026-10-24T00:30Z", "2026-10-25T00:30Z", "2026-10-26T01:30Z"],
    ),
    # an hourly schedule runs in both 02:00 hours of the fall-back night...
    (
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24T23:30Z",
        ["2026-10-25T00:00Z", "2026-10-25T01:00Z", "2026-10-25T02:00Z"],
    ),
    # ...and every 30 minutes goes straight on across the spring gap (nothing to make up)
    (
        "*/30 * * * *",
        "Europe/Berlin",
        "2026-03-29T00:15Z",
        ["2026-03-29T00:30Z", "2026-03-29T01:00Z", "2026-03-29T01:30Z"],
    ),
    (
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T00:00Z",
        ["2026-03-07T07:30Z", "2026-03-08T07:00Z", "2026-03-09T06:30Z"],
    ),
    (
        "0 9 * * MON-FRI",
        "Asia/Tokyo",
        "2026-01-01T00:00Z",
        ["2026-01-01T00:00Z", "2026-01-02T00:00Z", "2026-01-05T00:00Z"],
    ),
]


@pytest.mark.parametrize(("expression", "zone", "start", "expected"), DST)
def test_time_zones_and_dst(expression: str, zone: str, start: str, expected: list[str]) -> None:
    # one second before ``start``, so a fire at ``start`` itself is included
    after = utc(start) - timedelta(seconds=1)
    fires = CronSchedule(expression, zone).next_fires(after, len(expected))
    assert fires == [utc(e) for e in expected]


def test_a_dst_week_has_one_run_a_day() -> None:
    """A daily 02:30 job over both change weeks: 7 runs a week, strictly increasing."""
    for start in ("2026-03-25T00:00Z", "2026-10-21T00:00Z"):
        schedule = CronSchedule("30 2 * * *", "Europe/Berlin")
        fires = schedule.next_fires(utc(start), 7)
        days = [f.astimezone(schedule.tz).date() for f in fires]
        assert len(set(days)) == 7
        assert fires == sorted(set(fires))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("@reboot", "not a schedule"),
        ("@fortnightly", "unknown macro"),
        ("0 0 L * *", "not standard cron"),
        ("0 0 * * 5#3", "not standard cron"),
        ("0 0 15W * *", "not standard cron"),
        ("0 0 ? * *", "not standard cron"),
        ("* * * * * *", "6 fields"),
        ("60 * * * *", "bad minute"),
        ("0 0 31 2 *", "bad day-of-month"),
        ("*/61 * * * *", r"step '/61' of the minute field must be 1\.\.60"),
        ("0 */99999999999999999999 * * *", r"step '/99999999999999999999' of the hour field"),
        ("\u0661 * * * *", "not standard cron"),  # an Arabic-Indic digit one
        ("0 0 * * 1/\u0662", "step"),
    ],
)
def test_non_standard_or_invalid_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        expand(expression)


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(CronError, match="unknown time zone 'Europe/Berlni'"):
        CronSchedule("0 3 * * *", "Europe/Berlni")


def test_wildcard_time_and_description() -> None:
    assert is_wildcard_time("*/5 * * * *")
    assert is_wildcard_time("0 * * * *")
    assert not is_wildcard_time("30 2 * * *")
    assert CronSchedule("0 3 * * MON-FRI").describe() == "At 03:00 on Monday through Friday"

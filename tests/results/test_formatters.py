from __future__ import annotations

import csv
import io
import json

import pytest

from rolechain.executor.records import Summary
from rolechain.results.formatters import FORMATS, brief, summary_lines, writer_for

from .test_records import BAD, OK


def render(fmt: str, records: list) -> str:  # type: ignore[type-arg]
    stream = io.StringIO()
    writer = writer_for(fmt, stream, color=False)
    for record in records:
        writer.write(record)
    writer.close(Summary(job="inv", run_id="r1"))
    return stream.getvalue()


def test_jsonl_streams_a_line_per_record() -> None:
    stream = io.StringIO()
    writer = writer_for("jsonl", stream)
    writer.write(OK)
    assert json.loads(stream.getvalue()) == OK.to_dict()  # written before the run ends
    writer.write(BAD)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["ok", "error"]
    assert json.loads(lines[1])["error"] == {
        "code": "AccessDenied",
        "message": "no",
        "hop": "hub -> audit@333333333333",
    }


def test_json_is_one_array() -> None:
    assert json.loads(render("json", [])) == []
    data = json.loads(render("json", [OK, BAD]))
    assert [d["target"] for d in data] == [OK.target, BAD.target]


def test_csv_has_a_header_and_flat_rows() -> None:
    rows = list(csv.DictReader(io.StringIO(render("csv", [OK, BAD]))))
    assert rows[0]["status"] == "ok"
    assert json.loads(rows[0]["data"])["count"] == 1
    assert rows[1]["error_code"] == "AccessDenied"
    assert rows[1]["region"] == ""


def test_table_shows_results_and_errors() -> None:
    text = render("table", [OK, BAD])
    assert "audit@222222222222" in text
    assert "1 bucket: b" in text
    assert "AccessDenied: no [hop hub -> audit@333333333333]" in text


def test_unknown_format() -> None:
    assert FORMATS == ("table", "json", "jsonl", "csv")
    with pytest.raises(ValueError, match="unknown format"):
        writer_for("xml", io.StringIO())


def test_brief() -> None:
    assert brief({"exit_code": 0, "stdout": "hi\n", "stderr": ""}) == "exit 0: hi"
    assert brief({"a": "x" * 100}).endswith("…")
    assert brief(None) == ""


def test_summary_lines() -> None:
    summary = Summary(
        job="inv",
        run_id="r1",
        targets=3,
        targets_ok=2,
        targets_failed=1,
        records=3,
        records_failed=1,
        assume_calls=4,
        planned_assume_calls=4,
        retries=2,
        elapsed_seconds=1.5,
        finished_at="2026-01-01T00:00:02Z",
        failed_targets=["audit@333333333333"],
    )
    text = "\n".join(summary_lines(summary))
    assert "failed" in text.splitlines()[0]
    assert "2 ok, 1 failed of 3" in text
    assert "AssumeRole calls: 4 (planned 4)\n" in text
    assert "retries: 2, throttled: 0\n" in text
    assert "audit@333333333333" in text
    assert "given up" not in text
    assert "pacing" not in text  # nothing was paced or throttled
    assert "ExpiredToken" not in text


def test_summary_lines_say_what_throttling_cost() -> None:
    summary = Summary(
        job="inv",
        run_id="r1",
        targets=100,
        targets_ok=100,
        assume_calls=131,
        planned_assume_calls=101,
        throttled=31,
        assume_throttled=28,
        assume_retries=2,
        retries=3,
        expired_token_refreshes=1,
        pacing=[
            {"key": "123456789012", "calls": 1, "throttled": 0, "rate": None, "cuts": 0},
            {
                "key": "111111111111",
                "calls": 130,
                "throttled": 28,
                "rate": 48.5,
                "lowest_rate": 30.1,
                "cuts": 3,
            },
        ],
        finished_at="2026-01-01T00:00:02Z",
    )
    lines = summary_lines(summary)
    assert "  AssumeRole calls: 131 (planned 101, 28 throttled, 2 retried)" in lines
    assert "  retries: 3, throttled: 31, ExpiredToken refreshes: 1" in lines
    pacing = [line for line in lines if "pacing" in line]
    assert pacing == [
        "  pacing for account 111111111111: 48.5/s at the end (lowest 30.1/s), "
        "28 of 130 attempts throttled, 3 cuts"
    ]


def test_summary_lines_of_a_stopped_run() -> None:
    summary = Summary(
        job="inv",
        run_id="r1",
        targets=4,
        targets_ok=1,
        targets_failed=1,
        targets_unfinished=2,
        finished_at="2026-01-01T00:00:02Z",
        stop="interrupted",
        stop_reason="SIGTERM",
        abandoned=2,
        late_results=1,
        still_running=1,
    )
    assert summary.status == "interrupted"
    lines = summary_lines(summary)
    assert lines[0] == "run r1 (inv): interrupted (SIGTERM)"
    assert "1 ok, 1 failed, 2 unfinished of 4" in lines[1]
    assert any("tasks given up: 2 (1 finished later" in line for line in lines)
    running = Summary(job="inv", run_id="r1")
    assert running.status == "running"
    assert not running.ok


def test_table_rows_are_sorted_by_target_whatever_the_finishing_order() -> None:
    text = render("table", [BAD, OK])
    assert text.index("audit@222222222222") < text.index("audit@333333333333")

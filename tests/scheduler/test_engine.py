"""The scheduler in compressed time: a virtual clock and a fake launcher whose runs take
simulated minutes, the real SQLite store as history. A simulated week takes milliseconds."""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from rolechain.errors import ChainFileError
from rolechain.model.loader import loads
from rolechain.results.store import Store
from rolechain.scheduler.alerts import AlertSender
from rolechain.scheduler.policy import catch_up, jitter_offset, schedule_specs
from rolechain.scheduler.types import DEADLINE_EXCEEDED, INTERRUPTED, OK, LaunchRequest
from scheduler.fakes import TARGETS, Outcome, at, chain_with, rig


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "runs.db") as db:
        yield db


def statuses(store: Store, job: str = "j") -> list[str]:
    return [r["status"] for r in reversed(store.runs(job=job, limit=None))]


def test_a_simulated_day_fires_on_time(store: Store) -> None:
    chain = chain_with("schedule: '*/30 * * * *', jitter: 0, keep: {runs: 1000}")
    r = rig(chain, store, "2026-06-01T00:00:00Z")
    r.scheduler.run(until=at("2026-06-02T00:00:00Z"), grace=3600)
    fires = r.events("fire")
    assert len(fires) == 48
    assert [f["scheduled_for"] for f in fires] == [
        at("2026-06-01T00:30:00Z") + timedelta(minutes=30 * i) for i in range(48)
    ]
    assert all(f["late_ms"] == 0 for f in fires)
    assert statuses(store).count(OK) == 48
    rows = store.runs(job="j", limit=None)
    assert {r["trigger"] for r in rows} == {"schedule"}


def test_dst_weeks_in_a_zone(store: Store) -> None:
    """Europe/Berlin, daily at 02:30, over the spring and the autumn change weeks: one run
    a day, the spring one at 03:00 CEST, none twice."""
    chain = chain_with("schedule: '30 2 * * *', timezone: Europe/Berlin, jitter: 0")
    r = rig(chain, store, "2026-03-25T00:00:00Z")
    r.scheduler.run(until=at("2026-04-01T00:00:00Z"))
    fires = [f["scheduled_for"] for f in r.events("fire")]
    assert at("2026-03-29T01:00:00Z") in fires  # 03:00 CEST: the gap's end
    assert len(fires) == 7
    r = rig(chain, store, "2026-10-21T00:00:00Z")
    r.scheduler.run(until=at("2026-10-28T00:00:00Z"))
    fires = [f["scheduled_for"] for f in r.events("fire")]
    assert len(fires) == 7
    assert fires.count(at("2026-10-25T00:30:00Z")) == 1  # first 02:30 only


def test_overlap_skip_records_skipped_fires(store: Store) -> None:
    chain = chain_with("schedule: '0 * * * *', jitter: 0, overlap: skip")
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(seconds=90 * 60))
    r.scheduler.run(until=at("2026-06-01T06:30:00Z"))
    # runs at 01, 03, 05; the fires at 02, 04, 06 find the previous run going
    assert [f["scheduled_for"].hour for f in r.events("fire")] == [1, 3, 5]
    assert [s["scheduled_for"].hour for s in r.events("skipped")] == [2, 4, 6]
    assert statuses(store).count("skipped") == 3


def test_overlap_queue_runs_after_and_drops_what_waited_too_long(store: Store) -> None:
    chain = chain_with("schedule: '0 * * * *', jitter: 0, overlap: queue, starting_deadline: 2h")
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(seconds=100 * 60))
    r.scheduler.run(until=at("2026-06-01T12:00:00Z"))
    fires = r.events("fire")
    # back to back, each starting when the previous one ends
    starts = [f["ts"] for f in fires]
    assert all(b - a == timedelta(minutes=100) for a, b in itertools.pairwise(starts))
    # the queue grows by 1 every 5 hours: fires more than 2 h late are missed
    assert r.events("missed")
    assert all(f["late_ms"] <= 2 * 3600 * 1000 for f in fires)


def test_overlap_replace_cancels_the_running_run(store: Store) -> None:
    chain = chain_with(
        "schedule: '0 * * * *', jitter: 0, overlap: replace, retry_failed: {times: 1}"
    )
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(seconds=90 * 60))
    r.scheduler.run(until=at("2026-06-01T03:30:00Z"))
    handles = r.launcher.handles
    assert len(handles) == 3
    assert handles[0].cancel_reason == "replaced by the run scheduled for 2026-06-01T02:00:00Z"
    assert handles[0].cancel_grace is None  # tasks in flight get the run's grace
    assert handles[0].result is not None
    assert handles[0].result.status == INTERRUPTED
    assert not r.events("retry_scheduled")  # a replaced run is not retried


def test_catch_up_after_downtime(store: Store) -> None:
    """The store says the last hourly fire was at 00:00; the scheduler starts at 05:10."""
    for policy, runs in (("none", 0), ("latest", 1), ("all", 3)):
        db = store
        db.query("DELETE FROM runs")
        db.begin_scheduled(
            "r0", "j", trigger="schedule", scheduled_for=at("2026-06-01T00:00:00Z"), status="ok"
        )
        chain = chain_with(
            f"schedule: '0 * * * *', jitter: 0, catch_up: {policy}, starting_deadline: 3h"
        )
        r = rig(chain, db, "2026-06-01T05:10:00Z", lambda req: Outcome(seconds=60))
        r.scheduler.run(until=at("2026-06-01T05:30:00Z"))
        caught = [f for f in r.events("fire") if f["trigger"] == "catch-up"]
        assert len(caught) == runs, policy
        if policy == "latest":
            assert caught[0]["scheduled_for"] == at("2026-06-01T05:00:00Z")
        if policy == "all":  # 03, 04, 05 (within 3 h), one after the other
            assert [c["scheduled_for"].hour for c in caught] == [3, 4, 5]
        (missed,) = r.events("missed")
        assert missed["count"] == 5 - runs


def test_catch_up_decision_is_pure_and_bounded() -> None:
    chain = chain_with("schedule: '* * * * *', jitter: 0, catch_up: all, starting_deadline: 10m")
    spec = schedule_specs(chain)["j"]
    decision = catch_up(spec, at("2025-06-01T00:00:00Z"), at("2026-06-01T00:00:30Z"))
    assert len(decision.run) == 10
    assert decision.more  # counting stopped instead of walking a year of minutes
    assert catch_up(spec, None, at("2026-06-01T00:00:00Z")).run == ()


def test_jitter_is_deterministic_bounded_and_spread(store: Store) -> None:
    offsets = [jitter_offset(f"job-{i}", 300) for i in range(1000)]
    assert all(0 <= o < 300 for o in offsets)
    assert offsets == [jitter_offset(f"job-{i}", 300) for i in range(1000)]
    assert len(set(offsets)) > 200
    assert jitter_offset("anything", 0) == 0
    chain = chain_with("schedule: '0 * * * *', jitter: 5m")
    offset = schedule_specs(chain)["j"].offset
    r = rig(chain, store, "2026-06-01T00:00:00Z")
    r.scheduler.run(until=at("2026-06-01T05:00:00Z"))
    for fire in r.events("fire"):
        assert fire["ts"] - fire["scheduled_for"] == timedelta(seconds=offset)


def test_runtime_is_the_run_deadline(store: Store) -> None:
    chain = chain_with("schedule: '0 * * * *', jitter: 0, runtime: 20m, retry_failed: {times: 0}")
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(seconds=3600))
    r.scheduler.run(until=at("2026-06-01T02:30:00Z"))
    assert {req.deadline for req in r.launcher.launched} == {1200.0}
    assert statuses(store) == [DEADLINE_EXCEEDED, DEADLINE_EXCEEDED]


def test_retry_failed_reruns_only_failed_targets(store: Store) -> None:
    chain = chain_with("schedule: '0 3 * * *', jitter: 0, retry_failed: {after: 10m, times: 2}")
    failing = {0: TARGETS[:2], 1: TARGETS[:1], 2: ()}

    def outcome(request: LaunchRequest) -> Outcome:
        return Outcome(seconds=60, failed=failing[request.trigger.attempt])

    r = rig(chain, store, "2026-06-01T00:00:00Z", outcome)
    r.scheduler.run(until=at("2026-06-01T04:00:00Z"))
    launched = r.launcher.launched
    assert [req.targets for req in launched] == [None, TARGETS[:2], TARGETS[:1]]
    assert [req.trigger.attempt for req in launched] == [0, 1, 2]
    assert launched[1].trigger.retry_of == launched[0].run_id
    assert launched[1].trigger.kind == "retry"
    assert r.events("fire")[1]["ts"] == at("2026-06-01T03:11:00Z")  # 10 m after the end
    assert statuses(store) == ["failed", "failed", OK]


def test_retention_keeps_the_newest_runs(store: Store) -> None:
    chain = chain_with("schedule: '*/10 * * * *', jitter: 0, keep: {runs: 5, days: 1}")
    r = rig(chain, store, "2026-06-01T00:00:00Z")
    r.scheduler.run(until=at("2026-06-01T12:00:00Z"))
    assert len(r.events("fire")) == 72
    rows = store.runs(job="j", limit=None)
    assert len(rows) == 5
    assert rows[0]["scheduled_for"] == "2026-06-01T12:00:00Z"
    (count,) = store.query("SELECT count(*) AS n FROM runs")[0].values()
    assert count == 5


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first > 0:
            _Hook.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Hook.received.append({"body": json.loads(body), "auth": self.headers.get("Authorization")})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_alerts_to_a_webhook_and_a_command(store: Store, tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received.clear()
    _Hook.fail_first = 1  # the first POST is answered 503 and retried
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    out = tmp_path / "alert.json"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())"
    chain = chain_with(
        "schedule: '0 * * * *', jitter: 0, retry_failed: {times: 0}, "
        f"on_failure: {{command: [{sys.executable!r}, '-c', {script!r}]}}, "
        f"on_recovery: {{webhook: '{url}', headers: {{Authorization: 'Bearer t0k'}}}}, "
        f"on_success: {{shell: 'cat >> {tmp_path / 'ok.json'}'}}"
    )
    fails = iter([TARGETS[:1], (), ()])
    r = rig(
        chain,
        store,
        "2026-06-01T00:00:00Z",
        lambda req: Outcome(seconds=60, failed=next(fails)),
        alerts=None,
    )
    r.scheduler.alerts = AlertSender(r.log, synchronous=True, backoff=0.0)
    try:
        r.scheduler.run(until=at("2026-06-01T03:30:00Z"))
    finally:
        server.shutdown()
    failure = [json.loads(line) for line in out.read_text().splitlines()]
    assert [f["event"] for f in failure] == ["failure"]
    assert failure[0]["failed_targets"] == [TARGETS[0]]
    assert failure[0]["status"] == "failed"
    assert len((tmp_path / "ok.json").read_text().strip().splitlines()) == 2
    assert [h["body"]["event"] for h in _Hook.received] == ["recovery"]
    assert _Hook.received[0]["body"]["previous_status"] == "failed"
    assert _Hook.received[0]["auth"] == "Bearer t0k"
    sent = r.events("alert_sent")
    assert {(s["alert"], s["via"]) for s in sent} == {
        ("failure", "command"),
        ("success", "command"),
        ("recovery", "webhook"),
    }
    assert [s["attempts"] for s in sent if s["via"] == "webhook"] == [2]
    assert "t0k" not in json.dumps([str(line) for line in r.log.lines or []])


def test_a_failing_alert_is_logged_not_raised(store: Store) -> None:
    chain = chain_with(
        "schedule: '0 * * * *', jitter: 0, retry_failed: {times: 0}, "
        "on_failure: {command: [/bin/false]}, "
        "on_success: {webhook: 'http://127.0.0.1:9/nothing', retries: 1, timeout: 1}"
    )
    fails = iter([TARGETS[:1], ()])
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(failed=next(fails)))
    r.scheduler.alerts = AlertSender(r.log, synchronous=True, backoff=0.0)
    r.scheduler.run(until=at("2026-06-01T02:30:00Z"))
    failed = r.events("alert_failed")
    assert [(f["alert"], f["via"]) for f in failed] == [
        ("failure", "command"),
        ("success", "webhook"),
    ]
    assert failed[0]["reason"] == "exit 1"
    assert failed[1]["attempts"] == 2


def test_reload_of_a_bad_file_keeps_the_schedule(store: Store) -> None:
    chain = chain_with("schedule: '0 * * * *', jitter: 0")
    good = chain_with("schedule: '30 * * * *', jitter: 0")
    attempts = iter(["bad", "good"])

    def reloader() -> Any:
        if next(attempts) == "bad":
            loads(
                "version: 1\njobs:\n  j: {from: nobody, to: x, schedule: '0 25 * * *'}\n",
                file="chain.yaml",
            )
        return good, schedule_specs(good)

    r = rig(chain, store, "2026-06-01T00:00:00Z", reloader=reloader)
    r.scheduler.start()
    r.scheduler.step(r.clock.now())
    assert r.scheduler.reload() is False
    problems = [e["problem"] for e in r.events("reload_failed") if "problem" in e]
    assert any(p.startswith("chain.yaml:3:") and "cron" in p for p in problems), problems
    assert r.scheduler.jobs["j"].spec.cron.expression == "0 * * * *"
    assert r.scheduler.reload() is True
    r.scheduler.run(until=at("2026-06-01T02:00:00Z"))
    assert [f["scheduled_for"].minute for f in r.events("fire")] == [30, 30]


def test_reload_never_crashes_on_an_unexpected_error(store: Store) -> None:
    def boom() -> Any:
        raise RuntimeError("disk on fire")

    r = rig(chain_with("schedule: '0 * * * *'"), store, "2026-06-01T00:00:00Z", reloader=boom)
    r.scheduler.start()
    assert r.scheduler.reload() is False
    assert "disk on fire" in r.events("reload_failed")[0]["problem"]


def test_shutdown_waits_grace_then_interrupts(store: Store) -> None:
    chain = chain_with("schedule: '0 * * * *', jitter: 0")
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(seconds=3 * 3600))
    r.scheduler.run(until=at("2026-06-01T01:30:00Z"), grace=600)
    (handle,) = r.launcher.handles
    assert handle.cancel_reason == "the scheduler is stopping"
    assert handle.cancel_grace == 0  # the grace was the scheduler's: stop now
    assert statuses(store) == [INTERRUPTED]
    assert r.events("cancelling")
    # a run that ends within the grace is not interrupted
    r = rig(
        chain_with("schedule: '0 * * * *', jitter: 0", jobs=""),
        store,
        "2026-06-02T00:00:00Z",
        lambda req: Outcome(seconds=1800),
    )
    r.scheduler.run(until=at("2026-06-02T01:10:00Z"), grace=3600)
    assert r.launcher.handles[0].cancel_reason is None
    assert statuses(store)[-1] == OK


def test_dry_run_launches_nothing(store: Store) -> None:
    r = rig(
        chain_with("schedule: '0 * * * *', jitter: 0"), store, "2026-06-01T00:00:00Z", dry_run=True
    )
    r.scheduler.run(until=at("2026-06-01T05:30:00Z"))
    assert len(r.events("would_fire")) == 5
    assert r.launcher.launched == []
    assert store.runs(limit=None) == []


def test_a_week_of_many_jobs_is_fast_and_exact(store: Store) -> None:
    """30 jobs with different crons over a simulated week: every fire exactly once."""
    jobs = "\n".join(
        f"  j{i}: {{from: bot, to: audit, tasks: [s3.list_buckets], schedule: '{i % 60} * * * *', "
        "jitter: 2m, keep: {runs: 3}}"
        for i in range(30)
    )
    chain = chain_with("schedule: '@daily'", jobs=jobs)
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(seconds=120))
    r.scheduler.run(until=at("2026-06-08T00:00:00Z"))
    per_job: dict[str, int] = {}
    for fire in r.events("fire"):
        per_job[fire["job"]] = per_job.get(fire["job"], 0) + 1
    assert per_job.pop("j") == 7
    assert set(per_job.values()) == {168}
    assert len(store.runs(limit=None)) == 3 * 30 + 7  # j keeps the default 100


def test_unknown_or_unscheduled_job_is_a_usage_error() -> None:
    from rolechain.errors import UsageError

    chain = chain_with("schedule: '@daily'", jobs="  other: {from: bot, to: audit}")
    with pytest.raises(UsageError, match="no job 'nope'"):
        schedule_specs(chain, ["nope"])
    with pytest.raises(UsageError, match="has no 'schedule'"):
        schedule_specs(chain, ["other"])


def test_schedule_keys_need_a_schedule() -> None:
    with pytest.raises(ChainFileError, match="overlap only applies to a job with a 'schedule'"):
        chain_with("overlap: queue")


def test_a_launcher_that_raises_does_not_stop_the_scheduler(store: Store, tmp_path: Path) -> None:
    chain = chain_with(
        "schedule: '0 * * * *', jitter: 0, retry_failed: {times: 0}, "
        f"on_failure: {{shell: 'cat >> {tmp_path / 'failed.json'}'}}"
    )
    r = rig(chain, store, "2026-06-01T00:00:00Z")

    def broken(chain: Any, request: LaunchRequest, on_done: Any) -> Any:
        raise OSError("cannot start a thread")

    r.launcher.launch = broken  # type: ignore[method-assign]
    r.scheduler.run(until=at("2026-06-01T03:30:00Z"))
    assert len(r.events("launch_failed")) == 3
    assert len((tmp_path / "failed.json").read_text().splitlines()) == 3


def test_tasks_left_running_are_logged_and_counted(store: Store) -> None:
    """A run whose tasks never returned leaves threads behind: each such run logs it, and
    the metrics count the tasks and show the process's live threads."""
    from prometheus_client import generate_latest

    from rolechain.scheduler.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()
    chain = chain_with("schedule: '0 * * * *', jitter: 0")
    r = rig(
        chain,
        store,
        "2026-06-01T00:00:00Z",
        lambda req: Outcome(seconds=60, still_running=2),
        metrics=metrics,
    )
    r.scheduler.run(until=at("2026-06-01T03:30:00Z"))
    leaks = r.events("tasks_still_running")
    assert [(e["level"], e["tasks"]) for e in leaks] == [("warning", 2)] * 3
    assert all(e["threads"] >= 1 for e in leaks)
    text = generate_latest(metrics.registry).decode()
    assert 'rolechain_tasks_still_running_total{job="j"} 6.0' in text
    assert 'rolechain_tasks_abandoned_total{job="j"} 6.0' in text
    threads = re.search(r"^rolechain_scheduler_threads (\d+)", text, re.M)
    assert threads is not None
    assert int(threads.group(1)) >= 1


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_are_one_line_escaped_and_redacted(fmt: str) -> None:
    import io

    from rolechain.errors import forget_env_values, remember_env_value
    from rolechain.scheduler.logs import EventLog

    remember_env_value("HOOK_TOKEN", "s3cr3t-t0ken")
    try:
        out = io.StringIO()
        EventLog(out, fmt).error(
            "reload_failed", problem="c.yaml:3:5: 's3cr3t-t0ken' is not\nvalid \x1b[2J"
        )
    finally:
        forget_env_values()
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "s3cr3t" not in text
    assert "\x1b" not in text
    assert "the value from ${env:HOOK_TOKEN}" in (
        json.loads(text)["problem"] if fmt == "json" else text
    )


def test_on_change_alerts_when_a_run_changed_rows(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "changes.json"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + chr(10))"
    chain = chain_with(
        "schedule: '0 * * * *', jitter: 0, retry_failed: {times: 0}, "
        f"on_change: {{command: [{sys.executable!r}, '-c', {script!r}]}}"
    )
    diffs = iter(
        [
            None,  # the first run: nothing to compare with
            {"changed": False, "summary": {"added": 0}, "changes": []},
            {"changed": True, "summary": {"added": 1}, "text": "1 added", "changes": [{"k": 1}]},
        ]
    )
    r = rig(chain, store, "2026-06-01T00:00:00Z", lambda req: Outcome(changes=next(diffs)))
    r.scheduler.run(until=at("2026-06-01T03:30:00Z"))
    assert len(r.launcher.launched) == 3
    assert all(request.changes for request in r.launcher.launched)
    [sent] = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert sent["event"] == "change"
    assert sent["changes"]["summary"] == {"added": 1}
    assert sent["changes"]["changes"] == [{"k": 1}]
    assert [s["alert"] for s in r.events("alert_sent")] == ["change"]


def test_without_on_change_no_diff_is_asked_for(store: Store) -> None:
    chain = chain_with("schedule: '0 * * * *', jitter: 0")
    r = rig(chain, store, "2026-06-01T00:00:00Z")
    r.scheduler.run(until=at("2026-06-01T01:30:00Z"))
    assert r.launcher.launched
    assert not any(request.changes for request in r.launcher.launched)

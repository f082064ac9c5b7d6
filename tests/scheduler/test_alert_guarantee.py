"""Alerts are a guarantee: every fire whose final run failed sends ``on_failure`` once, a
later success ``on_recovery``; a dropped retry, a restart or a crash loses none.

The scheduler runs on a virtual clock with the fake launcher (runs take simulated time and
write the store as the real launcher does); alerts are real commands appending to a file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rolechain.results.store import Store
from rolechain.scheduler.alerts import AlertSender
from rolechain.scheduler.outbox import backoff
from scheduler.fakes import TARGETS, Outcome, at, chain_with, rig


@pytest.fixture
def store(store_url: Path | str) -> Iterator[Store]:
    with Store(store_url) as db:
        yield db


def _writer(out: Path, block: Path | None = None) -> str:
    """An alert command: appends the alert's JSON to ``out``; fails while ``block`` exists."""
    script = "import os, sys; "
    if block is not None:
        script += f"sys.exit(1) if os.path.exists({str(block)!r}) else None; "
    script += f"open({str(out)!r}, 'a').write(sys.stdin.read())"
    return f"{{command: [{sys.executable!r}, '-c', {json.dumps(script)}]}}"


def _alerts(out: Path) -> list[dict[str, Any]]:
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _steps(r: Any, *moments: str) -> None:
    """Drive the scheduler by hand (as if killed after the last step: no shutdown)."""
    r.scheduler.start()
    for moment in moments:
        r.clock.advance(at(moment))
        r.scheduler.step(r.clock.now())


def test_a_job_failing_every_minute_alerts_once_per_fire_and_recovers(
    store: Store, tmp_path: Path
) -> None:
    """The default retry_failed (after 10m) never runs for an every-minute job: each new
    fire drops it, and the run it was to retry is then final and alerts. Before, the alert
    waited for the retry and was never sent."""
    out = tmp_path / "alerts.jsonl"
    chain = chain_with(
        f"schedule: '* * * * *', jitter: 0, on_failure: {_writer(out)}, on_recovery: {_writer(out)}"
    )
    fixed = at("2026-06-01T00:06:30Z")
    r = rig(
        chain,
        store,
        "2026-06-01T00:00:30Z",
        lambda req: Outcome(seconds=10, failed=() if r.clock.now() > fixed else TARGETS[:1]),
    )
    r.scheduler.run(until=at("2026-06-01T00:10:30Z"))
    alerts = _alerts(out)
    failures = [a for a in alerts if a["event"] == "failure"]
    # Fires 00:01 .. 00:06 failed; each is alerted once, when the next fire drops its retry.
    assert [a["scheduled_for"] for a in failures] == [
        f"2026-06-01T00:0{m}:00Z" for m in range(1, 7)
    ]
    assert len({a["run_id"] for a in failures}) == len(failures)
    assert all("its retry was dropped" in a["final_because"] for a in failures)
    # The first failure's alert is out within two periods of its fire.
    sent = [e for e in r.events("alert_sent") if e["alert"] == "failure"]
    assert sent[0]["ts"] <= at("2026-06-01T00:03:00Z")
    recoveries = [a for a in alerts if a["event"] == "recovery"]
    assert [a["scheduled_for"] for a in recoveries] == ["2026-06-01T00:07:00Z"]
    assert [a["event"] for a in alerts][-1] == "recovery"
    states = store.alert_states([a["run_id"] for a in alerts])
    assert set(states.values()) == {"failure sent", "recovery sent"}


def test_a_retry_that_succeeds_covers_the_failure(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    chain = chain_with(
        f"schedule: '0 * * * *', jitter: 0, retry_failed: {{after: 5m, times: 1}}, "
        f"on_failure: {_writer(out)}, on_recovery: {_writer(out)}"
    )
    r = rig(
        chain,
        store,
        "2026-06-01T00:30:00Z",
        lambda req: Outcome(seconds=10, failed=() if req.trigger.kind == "retry" else TARGETS[:1]),
    )
    r.scheduler.run(until=at("2026-06-01T01:30:00Z"))
    assert _alerts(out) == []
    first = next(row for row in store.runs(job="j", limit=None) if row["trigger"] == "schedule")
    assert store.alert_states([first["run_id"]]) == {first["run_id"]: "covered"}


def test_the_last_retry_failing_alerts_once(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    chain = chain_with(
        f"schedule: '0 * * * *', jitter: 0, retry_failed: {{after: 5m, times: 2}}, "
        f"on_failure: {_writer(out)}"
    )
    r = rig(chain, store, "2026-06-01T00:30:00Z", lambda req: Outcome(10, failed=TARGETS[:1]))
    r.scheduler.run(until=at("2026-06-01T01:30:00Z"))
    [alert] = _alerts(out)
    assert (alert["attempt"], alert["trigger"]) == (2, "retry")


def test_a_pending_alert_survives_a_killed_scheduler(store: Store, tmp_path: Path) -> None:
    """The alert command fails (the receiver is down): the alert stays pending in the store;
    the scheduler is then lost without shutting down; a new one delivers it, once."""
    out, block = tmp_path / "alerts.jsonl", tmp_path / "down"
    block.touch()
    chain = chain_with(
        f"schedule: '0 * * * *', jitter: 0, retry_failed: {{times: 0}}, "
        f"on_failure: {_writer(out, block)}"
    )
    first = rig(chain, store, "2026-06-01T00:30:00Z", lambda req: Outcome(10, failed=TARGETS))
    _steps(first, "2026-06-01T01:00:05Z", "2026-06-01T01:00:30Z")
    [pending] = store.pending_alerts()
    assert pending["kind"] == "failure"
    assert _alerts(out) == []
    # ... killed here: no shutdown, nothing delivered. The receiver comes back.
    block.unlink()
    second = rig(chain, store, "2026-06-01T01:00:40Z", lambda req: Outcome(10, failed=TARGETS))
    second.scheduler.run(until=at("2026-06-01T01:00:50Z"))
    [alert] = _alerts(out)
    assert alert["run_id"] == pending["run_id"]
    assert store.pending_alerts() == []
    assert store.alert_states([pending["run_id"]])[pending["run_id"]].startswith("failure sent")


def test_a_run_that_ended_before_its_alert_was_decided_alerts_after_a_restart(
    store: Store, tmp_path: Path
) -> None:
    """Killed between a run's end (its row says failed) and the alert decision: the next
    scheduler decides it."""
    out = tmp_path / "alerts.jsonl"
    chain = chain_with(
        f"schedule: '0 3 * * *', jitter: 0, retry_failed: {{times: 0}}, on_failure: {_writer(out)}"
    )
    store.begin_scheduled(
        "r1", "j", trigger="schedule", scheduled_for=at("2026-06-01T03:00:00Z"),
        started_at=at("2026-06-01T03:00:00Z"),
    )  # fmt: skip
    store.end_scheduled("r1", status="failed", reason=None, targets=3, targets_failed=1)
    r = rig(chain, store, "2026-06-01T03:05:00Z")
    r.scheduler.run(until=at("2026-06-01T03:06:00Z"))
    [alert] = _alerts(out)
    assert (alert["run_id"], alert["status"]) == ("r1", "failed")
    # and only once: a third scheduler has nothing to decide
    rig(chain, store, "2026-06-01T03:07:00Z").scheduler.run(until=at("2026-06-01T03:08:00Z"))
    assert len(_alerts(out)) == 1


def test_a_run_that_crashed_with_its_scheduler_is_retried_then_alerted(
    tmp_path: Path, store_url: Path | str
) -> None:
    """The scheduler died with a run going (kill -9): the next one finds it crashed, retries
    its unfinished targets (retry_failed), and alerts when that fails too."""
    out = tmp_path / "alerts.jsonl"
    path = store_url
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store(path) as first:
        first.begin_scheduled(
            "r1", "j", trigger="schedule", scheduled_for=at("2026-06-01T03:00:00Z"),
            started_at=at("2026-06-01T03:00:00Z"),
        )  # fmt: skip
        first.query("UPDATE runs SET pid=?, status='running' WHERE run_id='r1'", dead.pid)
        first._db.commit()
    chain = chain_with(
        f"schedule: '0 3 * * *', jitter: 0, retry_failed: {{after: 5m, times: 1}}, "
        f"on_failure: {_writer(out)}"
    )
    with Store(path) as store:
        assert [run["run_id"] for run in store.crashed] == ["r1"]
        r = rig(chain, store, "2026-06-01T03:10:00Z", lambda req: Outcome(10, failed=TARGETS))
        r.scheduler.run(until=at("2026-06-01T03:30:00Z"))
        [retry] = r.launcher.launched
        assert (retry.trigger.kind, retry.trigger.retry_of) == ("retry", "r1")
        [alert] = _alerts(out)
        assert (alert["retry_of"], alert["attempt"]) == ("r1", 1)
        assert store.run("r1")["status"] == "crashed"  # type: ignore[index]


def test_failed_deliveries_are_retried_with_backoff_recorded_and_counted(
    store: Store, tmp_path: Path
) -> None:
    from prometheus_client import generate_latest

    from rolechain.scheduler.metrics import PrometheusMetrics

    out, block = tmp_path / "alerts.jsonl", tmp_path / "down"
    block.touch()
    chain = chain_with(
        f"schedule: '0 * * * *', jitter: 0, retry_failed: {{times: 0}}, "
        f"on_failure: {_writer(out, block)}"
    )
    metrics = PrometheusMetrics()
    r = rig(chain, store, "2026-06-01T00:30:00Z", lambda req: Outcome(10, failed=TARGETS),
            metrics=metrics)  # fmt: skip
    now = [0.0]
    r.scheduler.outbox._clock = lambda: now[0]
    _steps(r, "2026-06-01T01:00:05Z", "2026-06-01T01:00:30Z")
    [row] = store.query("SELECT state, attempts, last_error FROM alerts")
    assert (row["state"], row["attempts"], row["last_error"]) == ("pending", 1, "command: exit 1")
    r.scheduler.step(r.clock.now())  # not due yet: no second attempt
    assert store.query("SELECT attempts FROM alerts")[0]["attempts"] == 1
    now[0] += backoff(1)
    r.scheduler.step(r.clock.now())
    assert store.query("SELECT attempts FROM alerts")[0]["attempts"] == 2
    block.unlink()
    now[0] += backoff(2)
    r.scheduler.step(r.clock.now())
    assert store.query("SELECT state, attempts FROM alerts")[0] == {"state": "sent", "attempts": 3}
    assert len(_alerts(out)) == 1
    text = generate_latest(metrics.registry).decode()
    assert 'rolechain_alert_deliveries_total{job="j",kind="failure",result="failed"} 2.0' in text
    assert 'rolechain_alert_deliveries_total{job="j",kind="failure",result="sent"} 1.0' in text
    assert "rolechain_alerts_pending 0.0" in text
    assert backoff(1) < backoff(2) < backoff(3)


def test_an_alert_is_delivered_when_the_store_cannot_take_it(
    tmp_path: Path, store_url: Path | str
) -> None:
    """The outbox keeps in memory what the store refuses (a full disk)."""
    out = tmp_path / "alerts.jsonl"
    chain = chain_with(
        f"schedule: '0 * * * *', jitter: 0, retry_failed: {{times: 0}}, on_failure: {_writer(out)}"
    )
    with Store(store_url) as store:
        r = rig(chain, store, "2026-06-01T00:30:00Z", lambda req: Outcome(10, failed=TARGETS))

        def full(*args: Any, **kwargs: Any) -> Any:
            raise OSError(28, "No space left on device")

        store.add_alert = full  # type: ignore[method-assign]
        r.scheduler.run(until=at("2026-06-01T01:30:00Z"))
    assert [a["event"] for a in _alerts(out)] == ["failure"]


def test_alerts_are_sent_on_the_outbox_thread_when_not_synchronous(
    store: Store, tmp_path: Path
) -> None:
    out = tmp_path / "alerts.jsonl"
    chain = chain_with(
        f"schedule: '0 * * * *', jitter: 0, retry_failed: {{times: 0}}, on_failure: {_writer(out)}"
    )
    r = rig(chain, store, "2026-06-01T00:30:00Z", lambda req: Outcome(10, failed=TARGETS))
    r.scheduler.alerts = AlertSender(r.log)
    r.scheduler.run(until=at("2026-06-01T01:30:00Z"))  # shutdown waits for deliveries
    assert [a["event"] for a in _alerts(out)] == ["failure"]

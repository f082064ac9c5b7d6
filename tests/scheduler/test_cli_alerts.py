"""Alerts from a real ``rolechain schedule`` process: a job every minute that always fails,
with the default ``retry_failed``, under ``--sandbox --time-scale 60`` (a minute is a real
second); the scheduler killed (SIGKILL) between a failure and its alert; a store that fills
up. Alerts are commands that append their JSON to a file."""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scheduler.test_cli import Scheduler, environment

pytest.importorskip("moto")
pytestmark = pytest.mark.slow

WAIT = 120.0

CHAIN = """
version: 1
settings:
  schedule: {{jitter: 0}}
principals:
  bot: {{kind: user, account: "111111111111"}}
role_sets:
  audit:
    role_name: Audit
    trusts: [bot]
    accounts: ["333333333333", "444444444444"]
jobs:
  broken:
    from: bot
    to: audit
    regions: [us-east-1]
    schedule: "* * * * *"
    tasks:
      - task: python
        with: {{function: "scheduler.tasks:flaky", args: {{fixed: "{fixed}"}}}}
    on_failure: {alert}
    on_recovery: {alert}
"""


def _alert(out: Path, down: Path) -> str:
    """An alert command appending its JSON to ``out``; it fails while ``down`` exists."""
    script = (
        f"import os, sys; sys.exit(1) if os.path.exists({str(down)!r}) else None; "
        f"open({str(out)!r}, 'a').write(sys.stdin.read())"
    )
    return "{command: " + json.dumps([sys.executable, "-c", script]) + "}"


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.fixed = tmp_path / "fixed"
        self.down = tmp_path / "down"
        self.out = tmp_path / "alerts.jsonl"
        self.store = tmp_path / "runs.db"
        self.chain = tmp_path / "chain.yaml"
        self.chain.write_text(CHAIN.format(fixed=self.fixed, alert=_alert(self.out, self.down)))

    def start(self, *extra: str) -> Scheduler:
        return Scheduler(str(self.chain), "--sandbox", "--time-scale", "60", "--store",
                         str(self.store), "--log-format", "json", "--no-watch", *extra)  # fmt: skip

    def alerts(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.store.exists():
            return []
        db = sqlite3.connect(f"file:{self.store}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            db.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    started: list[Scheduler] = []
    w = World(tmp_path)
    original = w.start

    def start(*extra: str) -> Scheduler:
        s = original(*extra)
        started.append(s)
        return s

    w.start = start  # type: ignore[method-assign]
    yield w
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def _until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _events(s: Scheduler, name: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(x) for x in s.lines if x.startswith("{")) if e["event"] == name]


def test_a_job_failing_every_minute_alerts_each_fire_then_recovers(world: World) -> None:
    s = world.start()
    first = json.loads(s.wait_for(r'"event": ?"fire"'))
    sent = json.loads(s.wait_for(r'"event": ?"alert_sent".*"alert": ?"failure"'))
    # The first fire's failure is alerted (when the next fire drops its retry), within two
    # periods of it: before the fire three periods later has started.
    assert sent["run_id"] == first["run_id"]
    fires = [e["scheduled_for"] for e in _events(s, "fire")]
    assert len(fires) <= 3, fires
    world.fixed.touch()
    s.wait_for(r'"event": ?"alert_sent".*"alert": ?"recovery"')
    s.signal(signal.SIGTERM)
    assert s.finish() == 0
    alerts = world.alerts()
    failures = [a["run_id"] for a in alerts if a["event"] == "failure"]
    recoveries = [a for a in alerts if a["event"] == "recovery"]
    assert len(recoveries) == 1
    assert len(failures) == len(set(failures))  # once per failed fire
    failed = {r for (r,) in world.query(
        "SELECT run_id FROM runs WHERE status='failed' AND trigger='schedule'")}  # fmt: skip
    assert set(failures) == failed
    assert alerts[-1]["event"] == "recovery"
    # history shows each run's alert state
    states = dict(world.query("SELECT run_id, state FROM alerts WHERE kind='failure'"))
    assert set(states.values()) == {"sent"}


def test_a_scheduler_killed_between_a_failure_and_its_alert_still_alerts_once(
    world: World,
) -> None:
    world.down.touch()  # the alert receiver is down: the first failure's alert waits
    s = world.start()
    _until(
        lambda: bool(world.query("SELECT 1 FROM alerts WHERE attempts >= 1 AND state='pending'")),
        "a pending alert that failed once",
    )
    [(run_id,)] = world.query("SELECT run_id FROM alerts ORDER BY id LIMIT 1")
    s.proc.kill()  # SIGKILL: no shutdown, nothing delivered
    s.proc.wait(WAIT)
    assert world.alerts() == []
    world.down.unlink()
    again = world.start()
    _until(lambda: run_id in {a["run_id"] for a in world.alerts()}, "the alert after restart")
    again.signal(signal.SIGTERM)
    assert again.finish() == 0
    delivered = [a["run_id"] for a in world.alerts() if a["event"] == "failure"]
    assert delivered.count(run_id) == 1
    assert len(delivered) == len(set(delivered))
    assert world.query(f"SELECT state FROM alerts WHERE run_id='{run_id}'") == [("sent",)]


def test_a_store_that_fills_up_still_alerts(world: World) -> None:
    """RLIMIT_FSIZE on the scheduler (as a full disk): runs go on, the store failure is
    said, and the run is alerted as an error."""
    world.fixed.touch()  # the job itself is fine; only the store fails
    s = Scheduler.__new__(Scheduler)
    limit = 200_000

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen(
        [sys.executable, "-m", "rolechain", "schedule", str(world.chain), "--sandbox",
         "--time-scale", "60", "--store", str(world.store), "--log-format", "json",
         "--no-watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
        preexec_fn=cap,
    )  # fmt: skip
    try:
        _until(lambda: any(a["event"] == "failure" for a in world.alerts()), "a failure alert")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    alert = next(a for a in world.alerts() if a["event"] == "failure")
    assert alert["status"] == "error"
    assert "store" in alert["reason"]
    assert '"event": "store_failed"' in stderr or '"event":"store_failed"' in stderr
    del s

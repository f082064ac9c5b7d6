"""Several ``rolechain schedule`` replicas on one PostgreSQL store (issue 22), as users run
them: real processes, ``kill -9``, connections cut from the server, compressed time.

What must hold is counted in the store afterwards: each scheduled time run once (no
duplicate, none missed: with ``catch_up: all`` and a ``starting_deadline`` longer than any
failover, what the documented rules allow to be missed is nothing), and each fire whose
final outcome failed alerted exactly once. Nothing here asserts how fast anything was.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.cron import CronSchedule
from scheduler.test_cli import environment

SCALE = 60.0
LEASE = "3s"

CHAIN = """
version: 1
settings:
  schedule:
    jitter: 0
    catch_up: all
    starting_deadline: 1h
    overlap: queue
    retry_failed: {{times: 1, after: 1m}}
    on_failure: {{webhook: "{hook}"}}
principals:
  bot: {{kind: user, account: "111111111111"}}
role_sets:
  audit:
    role_name: Audit
    trusts: [bot]
    accounts: ["333333333333"]
jobs:
  minute:
    from: bot
    to: audit
    regions: [us-east-1]
    schedule: "* * * * *"
    tasks:
      - task: python
        with: {{function: "scheduler.tasks:nap", args: {{seconds: 0}}}}
  five:
    from: bot
    to: audit
    regions: [us-east-1]
    schedule: "*/5 * * * *"
    tasks:
      - task: python
        with: {{function: "scheduler.tasks:flaky", args: {{fixed: "{fixed}"}}}}
"""


class Sink:
    """A webhook that records every alert POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Replicas:
    """``rolechain schedule`` processes on one store, each logging JSON to its own file."""

    def __init__(self, tmp: Path, url: str, chain: Path, origin: datetime, *extra: str) -> None:
        self.tmp, self.url, self.chain, self.origin = tmp, url, chain, origin
        self.extra = extra
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = self.tmp / f"replica-{len(self.logs)}.log"
        argv = [sys.executable, "-m", "rolechain", "schedule", str(self.chain), "--store",
                self.url, "--sandbox", "--time-scale", str(SCALE), "--time-origin",
                self.origin.strftime("%Y-%m-%dT%H:%M:%SZ"), "--lease", LEASE, "--no-watch",
                "--log-format", "json", "--grace", "1s", *self.extra]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=out, env=environment())
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def live(self) -> dict[int, subprocess.Popen[bytes]]:
        return {p.pid: p for p in self.procs if p.poll() is None}

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for index, log in enumerate(self.logs):
            for line in log.read_text(errors="replace").splitlines():
                if f'"event": "{name}"' in line or f'"event":"{name}"' in line:
                    event = json.loads(line)
                    event["replica"] = index
                    found.append(event)
        return found

    def stop(self) -> None:
        for proc in self.live().values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def replicas(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Replicas, Sink]]:
    sink = Sink()
    chain = tmp_path / "ha.yaml"
    chain.write_text(CHAIN.format(hook=sink.url, fixed=tmp_path / "never"))
    # The rehearsal's time starts 10 s from now (real): every replica, whenever it starts,
    # reads the same time.
    origin = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)
    from rolechain.results.store import Store

    Store(postgres_url).close()  # the schema, so the test can watch the lease from the start
    group = Replicas(tmp_path, postgres_url, chain, origin)
    try:
        yield group, sink
    finally:
        for proc in group.live().values():
            proc.kill()
        for proc in group.procs:
            proc.wait(10)
        sink.close()


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql, args).fetchall())


def leader_pid(url: str) -> int | None:
    rows = query(url, "SELECT pid FROM scheduler_lease WHERE holder IS NOT NULL")
    return int(rows[0][0]) if rows else None


def scheduled_now(origin: datetime) -> datetime:
    """The rehearsal's time now (as every replica computes it)."""
    return origin + timedelta(seconds=(time.time() - origin.timestamp()) * SCALE)


def wait_for(check: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def fires_between(schedule: str, first: datetime, last: datetime) -> list[str]:
    """Cron times from ``first`` to ``last`` (inclusive), as the store writes them."""
    out = [first]
    for moment in CronSchedule(schedule, "UTC").fires(first):
        if moment > last:
            break
        out.append(moment)
    return [m.strftime("%Y-%m-%dT%H:%M:%SZ") for m in out]


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.slow
@pytest.mark.timeout(300)  # about 90 s; more on a loaded machine (each restart starts a sandbox)
def test_chaos_kill_the_leader_every_few_seconds(replicas: tuple[Replicas, Sink]) -> None:
    """Three replicas, a job every minute and one every five (which always fails, is retried
    once and then alerts), 60 scheduled minutes, the leader killed with SIGKILL every 3-7
    real seconds and started again."""
    group, sink = replicas
    url = group.url
    for _ in range(3):
        group.start()
    wait_for(lambda: leader_pid(url) in group.live(), 120, "a first leader")
    chaos_end = time.monotonic() + 60.0  # 60 scheduled minutes at --time-scale 60
    rng = random.Random(22)
    kills = 0
    killed_at: list[datetime] = []
    while time.monotonic() < chaos_end:
        time.sleep(rng.uniform(3.0, 7.0))
        if time.monotonic() >= chaos_end:
            break
        pid = leader_pid(url)
        live = group.live()
        if pid not in live:
            continue  # between leaders: the next one is killed next time
        killed_at.append(scheduled_now(group.origin))
        live[pid].send_signal(signal.SIGKILL)
        live[pid].wait(10)
        kills += 1
        group.start()
    end = scheduled_now(group.origin)
    jobs = {"minute": "* * * * *", "five": "*/5 * * * *"}

    def first_fires() -> dict[str, str] | None:
        rows = query(url, "SELECT job, min(scheduled_for) FROM runs GROUP BY job")
        found = {job: first for job, first in rows}
        return found if set(found) == set(jobs) else None

    first = wait_for(first_fires, 30, "both jobs' first fires")
    expected = {job: fires_between(cron, parse(first[job]), end) for job, cron in jobs.items()}

    def caught_up() -> bool:
        fired = {
            (job, at)
            for job, at in query(url, "SELECT job, scheduled_for FROM runs WHERE attempt=0")
        }
        return all((job, at) in fired for job, times in expected.items() for at in times)

    # After the chaos, the last leader catches up (catch_up: all, within the 1h deadline).
    wait_for(caught_up, 60, "every scheduled time to have run")
    time.sleep(3)  # the last retries (1 scheduled minute) start and end
    group.stop()

    rows = query(
        url,
        "SELECT job, scheduled_for, attempt, status, alert, run_id, retry_of FROM runs "
        "WHERE trigger IN ('schedule', 'catch-up', 'retry') ORDER BY job, scheduled_for, attempt",
    )
    in_window = [r for r in rows if r[1] in set(expected[r[0]])]
    attempts = Counter((r[0], r[1], r[2]) for r in in_window)
    duplicates = sum(n - 1 for n in attempts.values())
    fired = {(r[0], r[1]) for r in in_window if r[2] == 0}
    missed = [
        (job, at) for job, times in expected.items() for at in times if (job, at) not in fired
    ]
    statuses = Counter(r[3] for r in in_window)
    acquired = sorted(parse(e["ts"]) for e in group.events("lease_acquired"))
    changes = len(acquired)
    # Real seconds from each kill to the next leader (the log's times are scheduled time).
    failovers = sorted(
        (next(a for a in acquired if a >= k) - k).total_seconds() / SCALE
        for k in killed_at
        if any(a >= k for a in acquired)
    )

    # Each fire's outcome is its last attempt; each one that did not succeed (and whose
    # alert was decided before the replicas stopped) alerted once.
    final: dict[tuple[str, str], tuple[Any, ...]] = {}
    for r in in_window:
        final[(r[0], r[1])] = r
    run_fire = {r[5]: (r[0], r[1]) for r in in_window}
    alerts = query(url, "SELECT run_id, kind, state FROM alerts")
    per_fire = Counter(run_fire[run_id] for run_id, kind, _ in alerts if run_id in run_fire
                       and kind == "failure")  # fmt: skip
    failed = [key for key, r in final.items() if r[3] != "ok" and r[4] == "alerted"]
    undecided = [key for key, r in final.items() if r[4] in (None, "held")]
    delivered = Counter((a.get("run_id"), a.get("status")) for a in sink.received)
    report = (
        f"fires {len(fired)} (expected {sum(map(len, expected.values()))}), runs "
        f"{len(in_window)}, statuses {dict(statuses)}, duplicates {duplicates}, missed "
        f"{len(missed)}, kills {kills}, leader changes {changes}, failed fires alerted "
        f"{len(failed)}, alert rows {len(alerts)}, deliveries {sum(delivered.values())} "
        f"(distinct {len(delivered)}), undecided at stop {len(undecided)}; failover "
        f"seconds median {failovers[len(failovers) // 2] if failovers else None}, max "
        f"{failovers[-1] if failovers else None} (lease {LEASE})"
    )
    print(report)
    assert kills >= 6, report
    assert changes >= kills, report  # each kill of the leader made another one lead
    assert duplicates == 0, report
    assert missed == [], report
    assert statuses["skipped"] == 0, report  # overlap: queue
    assert failed, report  # the five-minute job fails every time: it alerted
    for key in failed:
        assert per_fire[key] == 1, (key, report)
    for key, r in final.items():
        if r[3] == "ok":
            assert per_fire[key] == 0, (key, report)
    for key in undecided:  # only fires the last leader had not finished when stopped
        assert parse(key[1]) >= end - timedelta(minutes=3), (key, report)
    sent = [run_id for run_id, kind, state in alerts if state == "sent"]
    assert len(sent) == len(alerts), report  # the sink answers: every alert delivered
    # At least once: a leader killed after a POST but before marking it sent posts again.
    assert {run_id for run_id, _ in delivered} == set(sent), report
    assert sum(delivered.values()) - len(delivered) <= changes, report


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_leader_cut_from_the_database_stops_firing_before_its_lease_runs_out(
    replicas: tuple[Replicas, Sink], postgres_server: Any
) -> None:
    """The server ends every connection of the leader (pg_terminate_backend, found by the
    replica's application_name): it stops firing at once, before its lease could run out,
    and another replica takes over; no scheduled time runs twice."""
    group, _ = replicas
    url = group.url
    first, second = group.start(), group.start()
    pid = wait_for(lambda: leader_pid(url) in group.live() and leader_pid(url), 120, "a leader")
    other = second if pid == first.pid else first
    wait_for(lambda: query(url, "SELECT count(*) FROM fires")[0][0] >= 3, 60, "fires")
    listed = CliRunner().invoke(cli, ["schedule", str(group.chain), "--list", "--store", url])
    assert listed.exit_code == 0, listed.output
    assert re.match(rf"leader: \S+ pid {pid}, since \S+Z; lease renewed \S+Z, runs out \S+Z "
                    r"unless renewed \(lease 3s\)", listed.output), listed.output  # fmt: skip
    assert group.url.split("@")[0].split(":")[-1] not in listed.output  # no password
    holder = query(url, "SELECT holder FROM scheduler_lease")[0][0]
    database = url.rsplit("/", 1)[1]
    cut = postgres_server.psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE application_name = 'rolechain-scheduler {holder}'",
        database,
    )
    assert int(cut.strip().splitlines()[-1]) >= 2  # its lease, claims, store connections
    cut_at = scheduled_now(group.origin)
    wait_for(lambda: leader_pid(url) == other.pid, 60, "the other replica to take over")
    time.sleep(3)  # a few more fires by the new leader
    group.stop()
    lost = [e for e in group.events("lease_lost") if e["holder"] == holder]
    assert lost, "the cut leader never said it lost the lease"
    assert lost[0]["lease_left_seconds"] > 0  # it stopped before its lease ran out
    acquired = [e for e in group.events("lease_acquired") if e["holder"] != holder]
    assert acquired
    print(
        f"cut: the leader stopped leading {lost[0]['lease_left_seconds']}s before its lease "
        f"ran out; {(parse(lost[0]['ts']) - cut_at).total_seconds() / SCALE:.2f}s after the "
        f"cut; the other led {(parse(acquired[0]['ts']) - cut_at).total_seconds() / SCALE:.2f}s"
        " after the cut"
    )
    claims = query(url, "SELECT holder, claimed_at, job, scheduled_for FROM fires")
    # Every fire the old leader claimed came before the first the new one claimed.
    old = [c[1] for c in claims if c[0] == holder]
    new = [c[1] for c in claims if c[0] != holder]
    assert old
    assert new
    assert max(old) < min(new)
    keys = query(url, "SELECT job, scheduled_for, attempt, count(*) FROM runs GROUP BY 1, 2, 3")
    assert all(n == 1 for *_, n in keys)
    assert os.environ.get("PGAPPNAME") is None  # the test's own connections are unnamed

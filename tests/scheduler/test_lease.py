"""The lease and the fire claims (issue 22), on SQLite and PostgreSQL, with an injected
monotonic clock: who leads when, and that a fire is claimed once whatever two replicas do."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rolechain.results.store import Store
from rolechain.scheduler.claims import Claims
from rolechain.scheduler.lease import Database, Lease, Timing, read_leader
from rolechain.scheduler.logs import EventLog
from rolechain.scheduler.types import Claim, Trigger
from scheduler.fakes import Outcome, at, chain_with, rig

TIMING = Timing.of(15.0)  # renew deadline 10 s, a try every 2 s


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated store (schema v6): a SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        location = str(tmp_path / "runs.db")
    else:
        location = request.getfixturevalue("postgres_url")
    Store(location).close()
    return location


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(store: str, clock: Clock, name: str, **kwargs: Any) -> Lease:
    log = EventLog(io.StringIO(), "json")
    log.lines = []
    return Lease(Database(store), timing=TIMING, holder=name, monotonic=clock, log=log, **kwargs)


def events(found: Lease, name: str) -> list[dict[str, Any]]:
    assert found.log is not None
    assert found.log.lines is not None
    return [e for e in found.log.lines if e["event"] == name]


def test_one_leader_renewing_keeps_the_lease(store: str) -> None:
    clock = Clock()
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    a.tick()
    b.tick()
    assert (a.leading(), b.leading()) == (True, False)
    for _ in range(100):  # 200 s, ten leases: renewed every 2 s, never taken
        clock.now += TIMING.retry
        a.tick()
        b.tick()
        assert (a.leading(), b.leading()) == (True, False)
    found = read_leader(a.db)
    assert found is not None
    assert found.holder == "a"
    assert found.version == 101
    assert found.lease_seconds == 15.0
    assert found.expires_at is not None


def test_a_leader_that_stops_renewing_stops_firing_before_anyone_takes_over(store: str) -> None:
    clock = Clock()
    lost: list[str] = []
    a = lease(store, clock, "a", on_lost=lost.append)
    b, c = lease(store, clock, "b"), lease(store, clock, "c")
    a.tick()
    b.tick()
    c.tick()
    renewed = clock.now
    # a hangs (no more ticks; its watchdog still checks); b and c watch.
    took = None
    a_stopped = None
    while took is None:
        clock.now += 0.5
        a.check()
        if a_stopped is None and not a.leading():
            a_stopped = clock.now
        b.tick()
        c.tick()
        if b.leading() or c.leading():
            took = clock.now
    assert a_stopped == renewed + TIMING.renew_deadline  # its renew deadline, 10 s
    assert took == renewed + TIMING.lease  # its lease, 15 s: 5 s after a stopped
    assert [b.leading(), c.leading()].count(True) == 1
    assert lost == ["no renewal succeeded within the renew deadline (10s)"]
    assert events(a, "lease_lost")[0]["lease_left_seconds"] == 5.0


def test_a_replaced_leader_learns_it_at_its_next_renewal(store: str) -> None:
    clock = Clock()
    lost: list[str] = []
    a, b = lease(store, clock, "a", on_lost=lost.append), lease(store, clock, "b")
    a.tick()
    b.tick()
    clock.now += TIMING.lease  # a's process was stopped (SIGSTOP) for a whole lease
    b.tick()
    assert b.leading()
    a.tick()
    assert not a.leading()
    assert lost == ["no renewal succeeded within the renew deadline (10s)"]
    clock.now += TIMING.retry
    a.tick()
    b.tick()
    assert (a.leading(), b.leading()) == (False, True)


def test_renewal_lost_to_another_holder_is_said(store: str) -> None:
    clock = Clock()
    lost: list[str] = []
    a, b = lease(store, clock, "a", on_lost=lost.append), lease(store, clock, "b")
    a.tick()
    b.tick()
    clock.now += TIMING.retry
    b.db.execute("UPDATE scheduler_lease SET holder='b', version=version+1")  # taken
    a.tick()
    assert not a.leading()
    assert lost == ["another replica holds the lease"]


def test_a_released_lease_is_taken_at_once_and_a_demoted_leader_sits_out(store: str) -> None:
    clock = Clock()
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    a.tick()
    b.tick()
    a.release()
    clock.now += TIMING.retry
    b.tick()
    assert b.leading()
    assert not a.leading()
    # b is demoted (no renewal for its deadline); a takes over after a lease of b's
    # silence; b, which lost it, does not compete again for one more lease.
    clock.now += TIMING.renew_deadline
    b.check()
    assert not b.leading()
    for _ in range(int(TIMING.lease / TIMING.retry) + 2):
        clock.now += TIMING.retry
        b.tick()
        a.tick()
    assert a.leading()
    assert not b.leading()


def test_a_leader_that_cannot_reach_the_store_is_demoted_at_its_deadline(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    a = lease(store, clock, "a")
    a.tick()
    start = clock.now

    def broken(sql: str, args: Any = ()) -> Any:
        raise ConnectionError("server closed the connection unexpectedly")

    monkeypatch.setattr(a.db, "execute", broken)
    while a.leading():
        clock.now += TIMING.retry
        a.tick()
    assert clock.now == start + TIMING.renew_deadline
    assert len(events(a, "lease_error")) == 1  # said once, not at every try
    assert events(a, "lease_lost")[0]["lease_left_seconds"] == 5.0


def fire(job: str, when: str, attempt: int = 0) -> Trigger:
    moment = at(when)
    return Trigger("retry" if attempt else "schedule", moment, moment, attempt,
                   "r0" if attempt else None)  # fmt: skip


def runs_of(store: str) -> list[tuple[Any, ...]]:
    db = Database(store)
    try:
        rows, _ = db.execute(
            "SELECT run_id, status, attempt FROM runs ORDER BY scheduled_for, attempt"
        )
        return rows
    finally:
        db.close()


def test_each_fire_and_each_retry_is_claimed_once(store: str) -> None:
    one, two = Claims(Database(store), holder="a"), Claims(Database(store), holder="b")
    assert one.claim(Claim("j", "r0", fire("j", "2026-12-01T03:00:00Z")))
    assert not two.claim(Claim("j", "r0b", fire("j", "2026-12-01T03:00:00Z")))
    assert two.claim(Claim("j", "r1", fire("j", "2026-12-01T03:05:00Z")))
    # the first retry of 03:00, by either: once
    assert two.claim(Claim("j", "r0-1", fire("j", "2026-12-01T03:00:00Z", attempt=1)))
    assert not one.claim(Claim("j", "r0-1b", fire("j", "2026-12-01T03:00:00Z", attempt=1)))
    assert one.claim(Claim("j", "r0-2", fire("j", "2026-12-01T03:00:00Z", attempt=2)))
    # a skipped fire is claimed too, and its row says so
    assert one.claim(Claim("j", "s", fire("j", "2026-12-01T03:10:00Z"), "skipped", "busy"))
    assert [(r[0], r[1]) for r in runs_of(store)] == [
        ("r0", "starting"), ("r0-1", "starting"), ("r0-2", "starting"), ("r1", "starting"),
        ("s", "skipped"),
    ]  # fmt: skip


def test_a_claim_and_its_run_row_are_one_transaction(store: str) -> None:
    claims = Claims(Database(store), holder="a")
    assert claims.claim(Claim("j", "same", fire("j", "2026-12-01T03:00:00Z")))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        claims.claim(Claim("j", "same", fire("j", "2026-12-01T03:05:00Z")))
    # the 03:05 claim went with its failed row: a new run may claim it
    assert claims.claim(Claim("j", "other", fire("j", "2026-12-01T03:05:00Z")))


def test_claims_are_fenced_by_the_lease(store: str) -> None:
    clock = Clock()
    a, b = lease(store, clock, "a"), lease(store, clock, "b")
    a.tick()
    b.tick()
    mine, theirs = (
        Claims(Database(store), holder="a", lease=a),
        Claims(Database(store), holder="b", lease=b),
    )
    assert not theirs.claim(Claim("j", "rb", fire("j", "2026-12-01T03:00:00Z")))  # standby
    assert mine.claim(Claim("j", "ra", fire("j", "2026-12-01T03:00:00Z")))
    # b believes it leads (say its clock jumped) while the row still names a: fenced
    b.db.execute("UPDATE scheduler_lease SET renewed_at=renewed_at")
    b._leader, b._valid_until = True, clock.now + 5
    assert b.leading()
    assert not theirs.claim(Claim("j", "rb2", fire("j", "2026-12-01T03:05:00Z")))
    assert [r[0] for r in runs_of(store)] == ["ra"]


def test_two_schedulers_on_one_store_start_each_fire_once(tmp_path: Path) -> None:
    """Two schedulers, no lease at all, stepping through a day of a job every 5 minutes
    with retries: the claims alone keep every fire and retry to one run."""
    location = tmp_path / "runs.db"
    chain = chain_with('schedule: "*/5 * * * *", retry_failed: {times: 1, after: 1m}')

    def flaky(request: Any) -> Outcome:
        return Outcome(
            seconds=30,
            status="failed" if request.trigger.attempt == 0 else "ok",
            failed=("audit@333333333333",) if request.trigger.attempt == 0 else (),
        )

    rigs = []
    for name in ("a", "b"):
        store = Store(location)
        claims = Claims(Database(str(location)), holder=name)
        rigs.append(rig(chain, store, "2026-12-01T00:00:30Z", flaky, claims=claims))
    end = at("2026-12-02T00:00:30Z")
    for r in rigs:
        r.scheduler.start()
    now = at("2026-12-01T00:00:30Z")
    turn = 0
    while now < end:
        now += timedelta(seconds=10)
        turn += 1
        for r in rigs if turn % 7 else rigs[::-1]:  # now one steps first, now the other
            r.clock.advance(now)
            r.scheduler.step(now)
    launched = [q for r in rigs for q in r.launcher.launched]
    keys = [(q.trigger.scheduled_for, q.trigger.attempt) for q in launched]
    assert len(keys) == len(set(keys))  # each fire and each retry once
    assert sum(1 for _, attempt in keys if attempt == 0) == 288  # 00:05 .. 24:00
    assert sum(1 for _, attempt in keys if attempt == 1) == 287  # 24:00's retry is later
    assert all(r.launcher.launched for r in rigs)  # both fired some: they raced
    refused = sum(len(r.events("not_fired")) for r in rigs)
    assert refused == 288  # every fire was tried by both, and refused to one of them
    # (a retry is tried only by the scheduler whose run failed)


def test_the_scaled_clock_with_an_origin_agrees_across_processes() -> None:
    from rolechain.scheduler.clock import RealClock

    origin = datetime.now().astimezone() - timedelta(seconds=10)
    one, two = RealClock(60, origin), RealClock(60, origin)
    gap = abs((one.now() - two.now()).total_seconds())
    assert gap < 60  # both about 10 minutes past the origin, not each from its own start
    assert (one.now() - origin).total_seconds() >= 600


def test_healthz_and_metrics_say_the_replica_role() -> None:
    import socket
    import urllib.request

    from rolechain.scheduler.metrics import PrometheusMetrics, serve

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = PrometheusMetrics()
    stop = serve(metrics, port)
    try:

        def get(path: str) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return str(r.read().decode())

        metrics.role("standby")
        assert get("/healthz") == "ok standby\n"
        assert "rolechain_scheduler_leader 0.0" in get("/metrics")
        assert 'rolechain_scheduler_role{role="standby"} 1.0' in get("/metrics")
        metrics.role("leader")
        metrics.started(["j"])
        assert get("/healthz") == "ok leader\n"
        text = get("/metrics")
        assert "rolechain_scheduler_leader 1.0" in text
        assert 'rolechain_scheduler_role{role="leader"} 1.0' in text
        assert 'rolechain_scheduler_role{role="standby"} 0.0' in text
    finally:
        stop()


class Standby:
    """Claims of a replica that has lost the lease: nothing may be claimed or pruned."""

    def __init__(self, claims: Claims) -> None:
        self.inner, self.leads = claims, True

    def claim(self, claim: Claim) -> bool:
        return self.leads and self.inner.claim(claim)

    def leading(self) -> bool:
        return self.leads

    def prune(self, job: str) -> int:
        return self.inner.prune(job)


def test_retention_runs_on_the_leader_only(tmp_path: Path) -> None:
    location = tmp_path / "runs.db"
    chain = chain_with('schedule: "*/5 * * * *", keep: {runs: 1}')
    claims = Standby(Claims(Database(str(location)), holder="a"))
    r = rig(chain, Store(location), "2026-12-01T00:00:30Z", claims=claims)
    r.scheduler.start()
    r.clock.advance(at("2026-12-01T00:20:30Z"))
    r.scheduler.step(r.clock.now())
    r.clock.advance(at("2026-12-01T00:21:30Z"))  # the last run ends
    r.scheduler.step(r.clock.now())
    kept = r.store.runs(limit=None)
    assert len(kept) == 1
    assert r.events("pruned")
    pruned = len(r.events("pruned"))
    r.clock.advance(at("2026-12-01T00:25:30Z"))  # fires at 00:25, ends at 00:26
    r.scheduler.step(r.clock.now())
    claims.leads = False  # the lease is lost while it runs
    for moment in ("00:26:30", "00:30:30", "00:35:30"):
        r.clock.advance(at(f"2026-12-01T{moment}Z"))
        r.scheduler.step(r.clock.now())
    assert r.events("run_finished")[-1]["ts"] == at("2026-12-01T00:26:30Z")
    assert len(r.store.runs(limit=None)) == 2  # the run that ended was not pruned after
    assert len(r.events("pruned")) == pruned
    assert len(r.events("not_fired")) == 2  # 00:30, 00:35: not the leader


class FakeLease:
    """A lease the test hands out and takes back."""

    def __init__(self) -> None:
        self.leads = False
        self.timing = Timing.of(1.5)
        self.holder = "h:1:abc"
        self.on_elected: Any = None
        self.on_lost: Any = None
        self.stopped = False

    def start(self) -> FakeLease:
        return self

    def stop(self) -> None:
        self.stopped = True

    def leading(self) -> bool:
        return self.leads

    def hand_out(self) -> None:
        self.leads = True
        self.on_elected()

    def take_back(self) -> None:
        self.leads = False
        self.on_lost("another replica holds the lease")


class StillClock:
    """Time stands still; a wait is a short real one (the replica's loop goes round)."""

    def __init__(self) -> None:
        self.moment = at("2026-12-01T00:00:30Z")

    def now(self) -> datetime:
        return self.moment

    def wait(self, until: datetime, wake: Any) -> None:
        wake.wait(0.02)

    def real_seconds(self, seconds: float) -> float:
        return seconds


def test_a_replica_leads_for_each_term_it_holds_the_lease(tmp_path: Path) -> None:
    import threading

    from rolechain.scheduler.replica import Replica
    from rolechain.scheduler.types import Metrics

    chain = chain_with('schedule: "0 3 * * *"')
    fake = FakeLease()
    log = EventLog(io.StringIO(), "json")
    log.lines = []
    metrics = Metrics()
    made: list[Any] = []

    def make() -> Any:
        r = rig(chain, Store(tmp_path / "runs.db"), "2026-12-01T00:00:30Z")
        r.scheduler.clock = StillClock()  # type: ignore[assignment]
        made.append(r.scheduler)
        return r.scheduler

    replica = Replica(fake, make, clock=StillClock(), log=log, metrics=metrics)  # type: ignore[arg-type]
    thread = threading.Thread(target=replica.run, kwargs={"grace": 0.0})
    thread.start()

    def until(check: Any) -> None:
        end = time.monotonic() + 30
        while not check():
            assert time.monotonic() < end
            time.sleep(0.01)

    until(lambda: metrics.replica_role == "standby")
    fake.hand_out()
    until(lambda: made and made[-1]._started)
    assert metrics.replica_role == "leader"
    fake.take_back()  # the scheduler of the term stops; the replica stands by again
    until(lambda: metrics.replica_role == "standby" and replica._current is None)
    assert made[0]._stopping
    fake.hand_out()
    until(lambda: len(made) == 2 and made[-1]._started)
    replica.request_stop("SIGTERM")
    thread.join(30)
    assert not thread.is_alive()
    assert fake.stopped  # the lease given up
    names = [e["event"] for e in log.lines if e["event"] in ("standby", "leader")]
    assert names == ["standby", "leader", "standby", "leader"]
    assert [e["term"] for e in log.lines if e["event"] == "leader"] == [1, 2]
    assert metrics.replica_role is None

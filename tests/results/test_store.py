from __future__ import annotations

import dataclasses
import sqlite3

from aws.fakes import hub_plan as _hub_plan
from rolechain.executor.records import Summary
from rolechain.results.store import SCHEMA_VERSION, Store

from .test_records import BAD, OK


def hub_plan(accounts: list[str]):  # type: ignore[no-untyped-def]
    return dataclasses.replace(_hub_plan(accounts), run_id="r1")


def summary(**values: object) -> Summary:
    base = Summary(
        job="inv",
        run_id="r1",
        targets=2,
        targets_ok=1,
        targets_failed=1,
        records=2,
        records_failed=1,
        assume_calls=3,
        retries=0,
        elapsed_seconds=0.5,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:00:01Z",
    )
    for key, value in values.items():
        setattr(base, key, value)
    return base


def test_runs_and_records_round_trip(store_url) -> None:  # type: ignore[no-untyped-def]
    path = store_url
    plan = hub_plan(["222222222222", "333333333333"])
    with Store(path, batch=1) as store:
        store.start(plan)
        assert store.runs()[0]["status"] == "running"
        store.add(OK)
        store.add(BAD)
        store.finish(summary(run_id=plan.run_id))
    with Store(path) as store:
        [run] = store.runs()
        assert run["run_id"] == plan.run_id
        assert run["status"] == "failed"
        assert (run["targets_ok"], run["targets_failed"], run["assume_calls"]) == (1, 1, 3)
        assert list(store.records(plan.run_id)) == [OK, BAD]


# A field of a row's JSON, in each backend's own SQL (as docs/inventory.md shows them).
NAME_FIELD = {"sqlite": "json_extract(row, '$.name')", "postgresql": "row::jsonb->>'name'"}


def test_queryable_with_sql_and_json(store_url, backend) -> None:  # type: ignore[no-untyped-def]
    plan = hub_plan(["222222222222"])
    with Store(store_url) as store:
        store.start(plan)
        store.add(OK)
        store.finish(summary(run_id=plan.run_id))
    db = connect(store_url)
    rows = db.execute(
        f"SELECT account_id, key, {NAME_FIELD[backend]} FROM rows WHERE task = 's3.list_buckets'"
    ).fetchall()
    assert rows == [("222222222222", "b", "b")]
    # what the rows hold is not stored twice: the record keeps the rest of the result
    [(data,)] = db.execute("SELECT data FROM records").fetchall()
    assert data == '{"count":1}'
    assert tuple(db.execute("SELECT count(*) FROM latest_rows").fetchone()) == (1,)
    if backend == "sqlite":
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def connect(where):  # type: ignore[no-untyped-def]
    """A plain connection of the backend's own driver, as a user's SQL client has."""
    if str(where).startswith("postgresql://"):
        import psycopg

        return psycopg.connect(str(where), autocommit=True)
    return sqlite3.connect(where)


def test_interrupted_run_keeps_finished_records(store_url) -> None:  # type: ignore[no-untyped-def]
    path = store_url
    plan = hub_plan(["222222222222"])
    store = Store(path, batch=1000)
    store.start(plan)
    store.add(OK)
    store.finish(summary(run_id=plan.run_id, stop="interrupted", stop_reason="SIGINT"))
    store.close()
    with Store(path) as again:
        assert again.runs()[0]["status"] == "interrupted"
        assert len(list(again.records("r1"))) == 1


def test_a_run_past_its_deadline_says_so(store_url) -> None:  # type: ignore[no-untyped-def]
    plan = hub_plan(["222222222222"])
    with Store(store_url) as store:
        store.start(plan)
        store.finish(summary(run_id=plan.run_id, stop="deadline-exceeded"))
        assert store.runs()[0]["status"] == "deadline-exceeded"


def test_runs_newest_first_and_by_job(store_url) -> None:  # type: ignore[no-untyped-def]
    with Store(store_url) as store:
        for n, job in enumerate(["a", "b", "a"]):
            plan = dataclasses.replace(hub_plan(["222222222222"]), run_id=f"r{n}", job=job)
            store.start(plan)
            store.finish(summary(run_id=f"r{n}", job=job, started_at=f"2026-01-0{n + 1}T00:00:00Z"))
        assert [r["run_id"] for r in store.runs()] == ["r2", "r1", "r0"]
        assert [r["run_id"] for r in store.runs(job="a")] == ["r2", "r0"]
        assert [r["run_id"] for r in store.runs(limit=1)] == ["r2"]


PACING = [{"key": "111111111111", "calls": 40, "throttled": 3, "rate": 48.2, "cuts": 1}]


RATE = {
    "sqlite": "json_extract(pacing, '$[0].rate')",
    "postgresql": "(pacing::jsonb->0->>'rate')::float",
}


def test_throttles_and_pacing_are_stored(store_url, backend) -> None:  # type: ignore[no-untyped-def]
    path = store_url
    plan = hub_plan(["222222222222"])
    with Store(path) as store:
        store.start(plan)
        store.finish(summary(throttled=3, expired_token_refreshes=1, pacing=PACING))
    with Store(path) as store:
        [run] = store.runs()
        assert (run["throttled"], run["expired_token_refreshes"]) == (3, 1)
        assert run["pacing"] == PACING
        [row] = store.query(f"SELECT {RATE[backend]} AS rate FROM runs")
        assert row["rate"] == 48.2


def test_a_store_from_before_pacing_gains_its_columns(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "old.db"
    old = sqlite3.connect(str(path))
    old.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, job TEXT NOT NULL, principal TEXT, "
        "status TEXT NOT NULL, started_at TEXT, finished_at TEXT, targets INTEGER, "
        "targets_ok INTEGER, targets_failed INTEGER, records INTEGER, records_failed INTEGER, "
        "assume_calls INTEGER, planned_assume_calls INTEGER, retries INTEGER, "
        "elapsed_seconds REAL, plan TEXT);"
        "INSERT INTO runs (run_id, job, status) VALUES ('old', 'inv', 'ok');"
        "PRAGMA user_version=1;"
    )
    old.close()
    with Store(path) as store:
        by_id = {run["run_id"]: run for run in store.runs()}
        assert by_id["old"]["throttled"] is None
        assert by_id["old"]["pacing"] == []
        store.start(hub_plan(["222222222222"]))
        store.finish(summary(throttled=2, pacing=PACING))
        assert {run["run_id"]: run for run in store.runs()}["r1"]["throttled"] == 2
        assert store.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 6
        # version 5: who runs a run and its heartbeat, its planned units, pending alerts
        columns = {row["name"] for row in store.query("PRAGMA table_info(runs)")}
        assert {"pid", "host", "version", "heartbeat_at", "plan_hash", "unfinished"} <= columns
        assert store.query("SELECT count(*) AS n FROM units")[0]["n"] == 1
        assert store.query("SELECT count(*) AS n FROM alerts")[0]["n"] == 0
        # version 6: several schedulers (the leader's lease, one claim per fire)
        assert store.query("SELECT count(*) AS n FROM scheduler_lease")[0]["n"] == 0
        assert store.query("SELECT count(*) AS n FROM fires")[0]["n"] == 0

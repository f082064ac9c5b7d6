"""Runs and their records in SQLite, for inventory queried with SQL across runs.

Two tables::

    runs(run_id PRIMARY KEY, job, principal, status, started_at, finished_at, targets,
         targets_ok, targets_failed, records, records_failed, assume_calls,
         planned_assume_calls, retries, throttled, expired_token_refreshes, pacing,
         elapsed_seconds, plan)
    records(id, run_id -> runs, job, target, account_id, role_arn, region, task, status,
            error_code, error_message, error_hop, started_at, duration_ms, data)

``data`` is JSON text, so SQLite's JSON functions query it, e.g. the buckets of the latest
run of each account::

    SELECT r.account_id, json_extract(b.value, '$.name')
    FROM records r, json_each(r.data, '$.buckets') b
    WHERE r.task = 's3.list_buckets' AND r.run_id = (SELECT max(run_id) FROM runs);

``runs.pacing`` is JSON text: the summary's pacing per calling account (attempts,
throttles, final and lowest rate, cuts).

``runs.status`` is ``running`` while a run goes on, then ``ok``, ``failed``,
``interrupted`` or ``deadline-exceeded``. A run that stopped early still has a record for
every unit: those that finished, and ``Interrupted`` or ``DeadlineExceeded`` records (with
``TaskTimeout`` for tasks cut off by the deadline) for the rest.

The database uses WAL, so readers are not blocked while a run writes. One process writes
at a time (SQLite's lock; the run's consuming thread is the only writer). Records are
committed in batches, and every finished record is committed when the run ends or is
interrupted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rolechain.errors import redact_data
from rolechain.executor.records import Record, Summary
from rolechain.planner.plan import Plan
from rolechain.results.records import COLUMNS, from_row, to_row

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    principal TEXT,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    targets INTEGER,
    targets_ok INTEGER,
    targets_failed INTEGER,
    records INTEGER,
    records_failed INTEGER,
    assume_calls INTEGER,
    planned_assume_calls INTEGER,
    retries INTEGER,
    throttled INTEGER,
    expired_token_refreshes INTEGER,
    pacing TEXT,
    elapsed_seconds REAL,
    plan TEXT
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    job TEXT NOT NULL,
    target TEXT NOT NULL,
    account_id TEXT,
    role_arn TEXT,
    region TEXT,
    task TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    error_hop TEXT,
    started_at TEXT,
    duration_ms INTEGER,
    data TEXT
);
CREATE INDEX IF NOT EXISTS records_run ON records(run_id);
CREATE INDEX IF NOT EXISTS records_account ON records(account_id, task);
"""

# Columns added to ``runs`` since version 1: added to older databases when opened.
_ADDED_RUN_COLUMNS = (
    ("throttled", "INTEGER"),
    ("expired_token_refreshes", "INTEGER"),
    ("pacing", "TEXT"),
)

# Column names are constants of this module; values are always bound parameters.
_COLUMN_LIST = ", ".join(COLUMNS)
_PLACEHOLDERS = ", ".join(":" + c for c in COLUMNS)
_INSERT = f"INSERT INTO records ({_COLUMN_LIST}) VALUES ({_PLACEHOLDERS})"  # noqa: S608
_SELECT = f"SELECT {_COLUMN_LIST} FROM records WHERE run_id = ? ORDER BY id"  # noqa: S608


class Store:
    """A SQLite database of runs. Implements the executor's RecordSink."""

    def __init__(self, path: str | Path, *, batch: int = 200) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._upgrade()
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._batch = batch
        self._pending = 0
        self._run_id: str | None = None

    def _upgrade(self) -> None:
        """Add the ``runs`` columns a store made by an older rolechain lacks."""
        have = {row["name"] for row in self._db.execute("PRAGMA table_info(runs)")}
        with self._db:
            for name, kind in _ADDED_RUN_COLUMNS:
                if name not in have:  # names and types are constants of this module
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    # -- RecordSink ----------------------------------------------------------------------

    def start(self, plan: Plan) -> None:
        self._run_id = plan.run_id
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO runs (run_id, job, principal, status, targets, "
                "planned_assume_calls, plan) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (
                    plan.run_id,
                    plan.job,
                    plan.principal,
                    len(plan.targets),
                    plan.assume_calls,
                    # no ${env:} value (an external id) is stored
                    json.dumps(redact_data(plan.to_dict()), default=str),
                ),
            )

    def add(self, record: Record) -> None:
        self._db.execute(_INSERT, to_row(record))
        self._pending += 1
        if self._pending >= self._batch:
            self._db.commit()
            self._pending = 0

    def finish(self, summary: Summary) -> None:
        status = summary.status
        with self._db:
            self._db.execute(
                "UPDATE runs SET status=?, started_at=?, finished_at=?, targets=?, "
                "targets_ok=?, targets_failed=?, records=?, records_failed=?, "
                "assume_calls=?, retries=?, throttled=?, expired_token_refreshes=?, pacing=?, "
                "elapsed_seconds=? WHERE run_id=?",
                (
                    status,
                    summary.started_at,
                    summary.finished_at,
                    summary.targets,
                    summary.targets_ok,
                    summary.targets_failed,
                    summary.records,
                    summary.records_failed,
                    summary.assume_calls,
                    summary.retries,
                    summary.throttled,
                    summary.expired_token_refreshes,
                    json.dumps(summary.pacing),
                    summary.elapsed_seconds,
                    summary.run_id,
                ),
            )
        self._pending = 0

    # -- reading -------------------------------------------------------------------------

    def runs(self, *, job: str | None = None, limit: int | None = 20) -> list[dict[str, Any]]:
        """Runs, newest first (without the stored plan)."""
        sql = (
            "SELECT run_id, job, principal, status, started_at, finished_at, targets, "
            "targets_ok, targets_failed, records, records_failed, assume_calls, retries, "
            "throttled, expired_token_refreshes, pacing, elapsed_seconds FROM runs"
        )
        args: list[Any] = []
        if job:
            sql += " WHERE job = ?"
            args.append(job)
        sql += " ORDER BY coalesce(started_at, run_id) DESC, run_id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        runs = [dict(row) for row in self._db.execute(sql, args)]
        for found in runs:
            found["pacing"] = json.loads(found["pacing"]) if found["pacing"] else []
        return runs

    def records(self, run_id: str) -> Iterator[Record]:
        cursor = self._db.execute(_SELECT, (run_id,))
        for row in cursor:
            yield from_row(dict(row))

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(row) for row in self._db.execute(sql, args)]

    def close(self) -> None:
        self._db.commit()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

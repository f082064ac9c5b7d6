"""Runs and their records in SQLite, for inventory queried with SQL across runs.

Two tables::

    runs(run_id PRIMARY KEY, job, principal, status, started_at, finished_at, targets,
         targets_ok, targets_failed, records, records_failed, assume_calls,
         planned_assume_calls, retries, elapsed_seconds, plan, trigger, scheduled_for,
         attempt, retry_of, reason, throttled, expired_token_refreshes, pacing)
    records(id, run_id -> runs, job, target, account_id, role_arn, region, task, status,
            error_code, error_message, error_hop, started_at, duration_ms, data)

``data`` is JSON text, so SQLite's JSON functions query it, e.g. the buckets of the latest
run of each account::

    SELECT r.account_id, json_extract(b.value, '$.name')
    FROM records r, json_each(r.data, '$.buckets') b
    WHERE r.task = 's3.list_buckets' AND r.run_id = (SELECT max(run_id) FROM runs);

``runs.throttled`` counts the attempts AWS answered with a throttling error,
``runs.expired_token_refreshes`` the ExpiredToken answers recovered from, and
``runs.pacing`` is JSON text: the summary's pacing per calling account (attempts,
throttles, final and lowest rate, cuts).

``runs.status`` is ``running`` while a run goes on, then ``ok``, ``failed``,
``interrupted`` or ``deadline-exceeded`` (the run's :attr:`Summary.status`). A run that
stopped early still has a record for every unit: those that finished, and ``Interrupted``
or ``DeadlineExceeded`` records (with ``TaskTimeout`` for tasks cut off by the deadline)
for the rest.

``trigger`` is ``manual`` for ``rolechain run`` and ``schedule``, ``catch-up`` or ``retry``
for runs the scheduler started, with the cron time in ``scheduled_for``. The scheduler adds
two statuses of its own: ``skipped`` (a fire that started no run: the previous one was
still going) and ``error`` (a run that could not start: plan, credentials, identity), and
``starting`` for a row written before its run begins.

The database uses WAL, so readers are not blocked while a run writes. Records are buffered
and written in batches (by count, and at least every second while records arrive) in short
transactions, so several runs (the scheduler's) can share one file; every finished record
is written when the run ends or is interrupted.

A file written by an older rolechain is migrated when it is opened (``PRAGMA
user_version`` is the schema version); a file from a newer one is refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechain.errors import RolechainError, redact, redact_data
from rolechain.executor.records import Record, Summary
from rolechain.planner.plan import Plan
from rolechain.results.records import COLUMNS, from_row, to_row

SCHEMA_VERSION = 3

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

# Steps from each version to the next: MIGRATIONS[n] takes a version-n file to n + 1.
# Version 1 (rolechain 0.1): no scheduler columns. Version 2: no throttling columns.
MIGRATIONS: dict[int, str] = {
    1: """
ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE runs ADD COLUMN scheduled_for TEXT;
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN retry_of TEXT;
ALTER TABLE runs ADD COLUMN reason TEXT;
CREATE INDEX IF NOT EXISTS runs_schedule ON runs(job, scheduled_for);
""",
    2: """
ALTER TABLE runs ADD COLUMN throttled INTEGER;
ALTER TABLE runs ADD COLUMN expired_token_refreshes INTEGER;
ALTER TABLE runs ADD COLUMN pacing TEXT;
""",
}

# Every runs.status: a run's own (Summary.status), and the scheduler's rows.
RUN_STATUSES = ("running", "ok", "failed", "interrupted", "deadline-exceeded")
STATUSES = (*RUN_STATUSES, "starting", "error", "skipped")

SCHEDULED = ("schedule", "catch-up", "retry")
_SCHEDULED_SQL = "('schedule', 'catch-up', 'retry')"
_RUN_COLUMNS = (
    "run_id, job, principal, status, trigger, scheduled_for, attempt, retry_of, reason, "
    "started_at, finished_at, targets, targets_ok, targets_failed, records, records_failed, "
    "assume_calls, retries, throttled, expired_token_refreshes, pacing, elapsed_seconds"
)
FLUSH_SECONDS = 1.0


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}; one of {', '.join(STATUSES)}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
        self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._batch = batch
        self._pending: list[dict[str, Any]] = []
        self._flushed = time.monotonic()
        self._run_id: str | None = None

    def _migrate(self) -> None:
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            fresh = not self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'"
            ).fetchone()
            if version > SCHEMA_VERSION:
                raise RolechainError(
                    f"{self.path} was written by a newer rolechain (store version {version}; "
                    f"this one reads up to {SCHEMA_VERSION})",
                    hint="upgrade rolechain, or use another --store file",
                )
            if fresh:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                version = 1
            for step in range(max(version, 1), SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- RecordSink ----------------------------------------------------------------------

    def start(self, plan: Plan) -> None:
        self._run_id = plan.run_id
        with self._db:
            # An upsert: the scheduler may have written the row (its trigger) already.
            self._db.execute(
                "INSERT INTO runs (run_id, job, principal, status, targets, "
                "planned_assume_calls, plan) VALUES (?, ?, ?, 'running', ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET job=excluded.job, "
                "principal=excluded.principal, status='running', targets=excluded.targets, "
                "planned_assume_calls=excluded.planned_assume_calls, plan=excluded.plan",
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
        # Rows wait in memory, not in an open transaction: another run writing to the same
        # file is never locked out while this one waits for its next record.
        self._pending.append(to_row(record))
        if len(self._pending) >= self._batch or time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            with self._db:
                self._db.executemany(_INSERT, self._pending)
            self._pending = []
        self._flushed = time.monotonic()

    def finish(self, summary: Summary) -> None:
        self.flush()
        with self._db:
            self._db.execute(
                "UPDATE runs SET status=?, reason=coalesce(?, reason), started_at=?, "
                "finished_at=?, targets=?, targets_ok=?, targets_failed=?, records=?, "
                "records_failed=?, assume_calls=?, retries=?, throttled=?, "
                "expired_token_refreshes=?, pacing=?, elapsed_seconds=? WHERE run_id=?",
                (
                    summary.status,
                    redact(summary.stop_reason) if summary.stop_reason else None,
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

    # -- reading -------------------------------------------------------------------------

    # -- the scheduler's history -------------------------------------------------------

    def begin_scheduled(
        self,
        run_id: str,
        job: str,
        *,
        trigger: str,
        scheduled_for: datetime,
        attempt: int = 0,
        retry_of: str | None = None,
        status: str = "starting",
        reason: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """The row of a run the scheduler starts (or of a fire it skipped)."""
        _check_status(status)
        started = _iso(started_at) if started_at else None
        with self._db:
            self._db.execute(
                "INSERT INTO runs (run_id, job, status, trigger, scheduled_for, attempt, "
                "retry_of, reason, started_at, finished_at, targets, targets_ok, "
                "targets_failed, records, records_failed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0)",
                (run_id, job, status, trigger, _iso(scheduled_for), attempt, retry_of, reason,
                 started, started if status == "skipped" else None),
            )  # fmt: skip

    def end_scheduled(self, run_id: str, *, status: str, reason: str | None, **counts: Any) -> None:
        """The final status of a scheduled run and why (and counts, when the run never
        reached :meth:`finish`). ``status`` is one of :data:`STATUSES`: a run that ended
        is given the status its summary wrote, in the same words."""
        _check_status(status)
        allowed = {"targets", "targets_ok", "targets_failed", "records", "records_failed",
                   "started_at", "finished_at"}  # fmt: skip
        sets = ["status=?", "reason=?"]
        args: list[Any] = [status, redact(reason) if reason else None]
        for key, value in counts.items():
            if key in allowed and value is not None:
                sets.append(f"{key}=coalesce({key}, ?)" if key == "started_at" else f"{key}=?")
                args.append(value)
        args.append(run_id)
        self.flush()
        with self._db:
            self._db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id=?", args)  # noqa: S608

    def last_fire(self, job: str) -> datetime | None:
        row = self._db.execute(
            f"SELECT max(scheduled_for) FROM runs WHERE job=? AND trigger IN {_SCHEDULED_SQL}",  # noqa: S608
            (job,),
        ).fetchone()
        return _utc(row[0]) if row else None

    def last_outcome(self, job: str) -> str | None:
        row = self._db.execute(
            "SELECT status FROM runs WHERE job=? AND trigger IN "  # noqa: S608
            f"{_SCHEDULED_SQL} AND status NOT IN ('skipped', 'running', 'starting') "
            "ORDER BY scheduled_for DESC, attempt DESC, rowid DESC LIMIT 1",
            (job,),
        ).fetchone()
        return str(row[0]) if row else None

    def record_skipped(self, job: str, run_id: str, trigger: Any, reason: str) -> None:
        self.begin_scheduled(
            run_id,
            job,
            trigger=trigger.kind,
            scheduled_for=trigger.scheduled_for,
            attempt=trigger.attempt,
            retry_of=trigger.retry_of,
            status="skipped",
            reason=reason,
            started_at=trigger.due,
        )

    def prune(self, job: str, keep_runs: int, older_than: datetime) -> int:
        """Delete the job's scheduled runs (and their records) beyond the newest
        ``keep_runs``, or scheduled before ``older_than``; the newest always stays."""
        keep = max(1, keep_runs)
        with self._db:
            cursor = self._db.execute(
                f"DELETE FROM runs WHERE job=? AND trigger IN {_SCHEDULED_SQL} "  # noqa: S608
                "AND status NOT IN ('running', 'starting') AND run_id NOT IN ("
                f"  SELECT run_id FROM runs WHERE job=? AND trigger IN {_SCHEDULED_SQL}"
                "   ORDER BY scheduled_for DESC, attempt DESC, rowid DESC LIMIT 1) "
                "AND (run_id NOT IN ("
                f"  SELECT run_id FROM runs WHERE job=? AND trigger IN {_SCHEDULED_SQL}"
                "   ORDER BY scheduled_for DESC, attempt DESC, rowid DESC LIMIT ?)"
                " OR scheduled_for < ?)",
                (job, job, job, keep, _iso(older_than)),
            )
        return int(cursor.rowcount or 0)

    # -- reading -------------------------------------------------------------------------

    def runs(self, *, job: str | None = None, limit: int | None = 20) -> list[dict[str, Any]]:
        """Runs, newest first (without the stored plan)."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"  # noqa: S608
        args: list[Any] = []
        if job:
            sql += " WHERE job = ?"
            args.append(job)
        sql += " ORDER BY coalesce(started_at, scheduled_for, run_id) DESC, run_id DESC"
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
        self.flush()
        self._db.commit()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

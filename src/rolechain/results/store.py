"""Runs and their records in SQLite, for inventory queried with SQL across runs.

Three tables::

    runs(run_id PRIMARY KEY, job, principal, status, started_at, finished_at, targets,
         targets_ok, targets_failed, records, records_failed, assume_calls,
         planned_assume_calls, retries, elapsed_seconds, plan, trigger, scheduled_for,
         attempt, retry_of, reason, throttled, expired_token_refreshes, pacing)
    records(id, run_id -> runs, job, target, account_id, role_arn, region, task, status,
            error_code, error_message, error_hop, started_at, duration_ms, data, rows)
    record_rows(record_id -> records, key, row)

and views over them::

    rows(run_id, job, task, target, account_id, region, key, row)
    latest_runs   -- each job's latest complete run (status ok or failed)
    latest_rows   -- the rows of those runs

A task that gives rows (:mod:`rolechain.results.rows`) has them in ``record_rows``, one
per row, and its record says how many (``records.rows``; NULL for a task that gave none);
the record's ``data`` keeps only what the rows do not hold (``{"count": 2}`` for
``s3.list_buckets``). ``data`` and ``row`` are JSON text, so SQLite's JSON functions query
them, e.g. the buckets of each job's latest run::

    SELECT account_id, json_extract(row, '$.name') FROM latest_rows
    WHERE task = 's3.list_buckets';

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

import dataclasses
import json
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolechain.errors import RolechainError, redact, redact_data
from rolechain.private import ensure_private

if TYPE_CHECKING:
    from rolechain.executor.records import Record, Summary
    from rolechain.planner.plan import Plan
from rolechain.results.records import COLUMNS, from_row, to_row
from rolechain.results.rows import RowSpec
from rolechain.results.rows import specs as row_specs

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

# The steps from each version to the next, in order: MIGRATIONS[n - 1] takes a version-n
# file to n + 1 (a fresh file is made at version 1 by SCHEMA, then migrated). Append a
# step to change the schema; never edit one that has shipped.
MIGRATIONS: list[str] = [
    # 1 -> 2: the scheduler's columns
    """
ALTER TABLE runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE runs ADD COLUMN scheduled_for TEXT;
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN retry_of TEXT;
ALTER TABLE runs ADD COLUMN reason TEXT;
CREATE INDEX IF NOT EXISTS runs_schedule ON runs(job, scheduled_for);
""",
    # 2 -> 3: throttling
    """
ALTER TABLE runs ADD COLUMN throttled INTEGER;
ALTER TABLE runs ADD COLUMN expired_token_refreshes INTEGER;
ALTER TABLE runs ADD COLUMN pacing TEXT;
""",
    # 3 -> 4: rows (issue 21), and the views over them
    """
ALTER TABLE records ADD COLUMN rows INTEGER;
ALTER TABLE records ADD COLUMN row_key TEXT;
CREATE TABLE IF NOT EXISTS record_rows (
    record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS record_rows_record ON record_rows(record_id);
CREATE INDEX IF NOT EXISTS records_job_task ON records(job, task);
CREATE VIEW IF NOT EXISTS rows AS
    SELECT r.run_id, r.job, r.task, r.target, r.account_id, r.region, k.key,
        CASE WHEN r.row_key IS NULL THEN k.row
             ELSE json_set(k.row, '$.' || r.row_key, k.key) END AS row
    FROM record_rows k JOIN records r ON r.id = k.record_id;
CREATE VIEW IF NOT EXISTS latest_runs AS
    SELECT * FROM runs AS o WHERE o.run_id = (
        SELECT i.run_id FROM runs AS i WHERE i.job = o.job AND i.status IN ('ok', 'failed')
        ORDER BY coalesce(i.started_at, i.scheduled_for, i.run_id) DESC, i.run_id DESC
        LIMIT 1);
CREATE VIEW IF NOT EXISTS latest_rows AS
    SELECT * FROM rows WHERE run_id IN (SELECT run_id FROM latest_runs);
""",
]
SCHEMA_VERSION = len(MIGRATIONS) + 1

# A row as it was, in SQL over ``record_rows k JOIN records r``: when every row of a record
# is keyed by one field holding a string (``name``), that field is kept once, as the key,
# and ``records.row_key`` names it.
ROW_SQL = (
    "CASE WHEN r.row_key IS NULL THEN k.row ELSE json_set(k.row, '$.' || r.row_key, k.key) END"
)

# A run that ran to its end (some targets may have failed): what results and diff read.
COMPLETE = ("ok", "failed")

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


def pack_plan(text: str) -> bytes:
    """A run's plan as stored: its JSON, zlib-compressed (a plan of 10,000 targets is
    about 7 MB of JSON, a twentieth of that compressed)."""
    return zlib.compress(text.encode("utf-8"), 6)


def unpack_plan(value: str | bytes) -> str:
    """The plan's JSON from ``runs.plan`` (text as stores before version 4 kept it)."""
    return zlib.decompress(value).decode("utf-8") if isinstance(value, bytes) else value


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
_INSERT = (
    f"INSERT INTO records (id, rows, row_key, {_COLUMN_LIST}) "  # noqa: S608
    f"VALUES (:id, :rows, :row_key, {_PLACEHOLDERS})"
)
_INSERT_ROWS = "INSERT INTO record_rows (record_id, key, row) VALUES (?, ?, ?)"
_SELECT = f"SELECT id, rows, row_key, {_COLUMN_LIST} FROM records WHERE run_id = ? ORDER BY id"  # noqa: S608


class Store:
    """A SQLite database of runs. Implements the executor's RecordSink."""

    def __init__(self, path: str | Path, *, batch: int = 200) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            # task output lives here: 0600 in a 0700 directory when rolechain creates it
            # (SQLite gives its -wal and -shm files the database's mode), never a symlink
            ensure_private(self.path)
        self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._batch = batch
        self._pending: list[dict[str, Any]] = []
        self._pending_rows: list[tuple[int, list[tuple[str, str]]]] = []
        self._specs: dict[str, RowSpec] = {}
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
            if fresh or version < SCHEMA_VERSION:
                # Version 1's tables (CREATE ... IF NOT EXISTS: a table of an older file
                # stays as it is), then every step from the file's version on.
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            if fresh:
                version = 1
            for step in range(max(version, 1), SCHEMA_VERSION):
                for statement in MIGRATIONS[step - 1].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- RecordSink ----------------------------------------------------------------------

    def start(self, plan: Plan) -> None:
        self._run_id = plan.run_id
        self._specs = {task: spec for task, spec in row_specs(plan).items() if spec.any}
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
                    pack_plan(json.dumps(redact_data(plan.to_dict()), default=str)),
                ),
            )

    def add(self, record: Record) -> None:
        # Rows wait in memory, not in an open transaction: another run writing to the same
        # file is never locked out while this one waits for its next record.
        spec = self._specs.get(record.task) if record.task is not None else None
        extracted = spec.extract(record.data) if spec is not None and record.ok else None
        if extracted is None or extracted.rows is None:
            self._pending.append(to_row(record) | {"id": None, "rows": None, "row_key": None})
        else:
            assert spec is not None
            rows, field = spec.stored(extracted.rows)
            self._pending_rows.append((len(self._pending), rows))
            extra = {"rows": len(rows), "row_key": field}
            self._pending.append(to_row(record, data=extracted.rest) | extra)
        if len(self._pending) >= self._batch or time.monotonic() - self._flushed >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            with self._db:
                if self._pending_rows:
                    # Records get their ids here, under the write lock, so that their rows
                    # can point at them (another run may be writing to the same file).
                    self._db.execute("BEGIN IMMEDIATE")
                    (last,) = self._db.execute(
                        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence "
                        "WHERE name = 'records'), 0), coalesce((SELECT max(id) FROM records), 0))"
                    ).fetchone()
                    for offset, pending in enumerate(self._pending, start=int(last) + 1):
                        pending["id"] = offset
                    self._db.executemany(_INSERT, self._pending)
                    self._db.executemany(
                        _INSERT_ROWS,
                        (
                            (self._pending[index]["id"], key, text)
                            for index, rows in self._pending_rows
                            for key, text in rows
                        ),
                    )
                else:
                    self._db.executemany(_INSERT, self._pending)
            self._pending = []
            self._pending_rows = []
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
        """The run's records, each task's result whole again (its rows put back where the
        ``rows`` expression took them from, when it can be undone)."""
        specs = self.row_specs(run_id)
        cursor = self._db.execute(_SELECT, (run_id,))
        for row in cursor:
            found = dict(row)
            record = from_row(found)
            if found["rows"] is not None and record.task in specs:
                rows = [
                    json.loads(text)
                    for (text,) in self._db.execute(
                        f"SELECT {ROW_SQL} FROM record_rows k JOIN records r "  # noqa: S608
                        "ON r.id = k.record_id WHERE k.record_id = ? ORDER BY k.rowid",
                        (found["id"],),
                    )
                ]
                data = specs[record.task].restore(record.data, rows)
                record = dataclasses.replace(record, data=data)
            yield record

    def plan(self, run_id: str) -> Plan | None:
        """The plan a run was made from, as stored (None: a run that never started)."""
        row = self._db.execute("SELECT plan FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or not row[0]:
            return None
        from rolechain.planner.plan import Plan

        return Plan.from_dict(json.loads(unpack_plan(row[0])))

    def row_specs(self, run_id: str) -> dict[str, RowSpec]:
        """How each task of the run gives rows, read from its stored plan (without
        building the plan)."""
        row = self._db.execute("SELECT plan FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None or not row[0]:
            return {}
        tasks = json.loads(unpack_plan(row[0])).get("tasks", [])
        return {t["id"]: RowSpec.named(t["task"], t.get("rows"), t.get("key")) for t in tasks}

    def tuples(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """A cursor giving the rows of a query as plain tuples (quicker than :meth:`query`
        for many rows)."""
        cursor = self._db.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, args)

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

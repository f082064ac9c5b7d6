"""Runs and their records in SQLite or PostgreSQL, for inventory queried with SQL across
runs.

The store is a SQLite file (the default) or a PostgreSQL database (a ``postgresql://``
URL, shared by several hosts); what differs between the two is in
:mod:`rolechain.results.backend`, and this module's SQL is the same for both.

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

The database uses WAL, so readers are not blocked while a run writes. Each record is
committed before the executor yields it (so before ``rolechain run`` prints it or writes it
to ``--output``): after ``kill -9`` at any moment, every record printed is in the store.
With WAL and ``synchronous=NORMAL`` a commit is a write to the WAL file without an fsync
(about 40 us), so the cost is small; a power cut (not a killed process) may lose the last
commits.

The run's row is written when it starts, with ``pid``, ``host``, ``version`` (of rolechain),
``plan_hash`` and ``heartbeat_at``, renewed every 10 seconds while it runs; its planned
units are in table ``units(run_id, target, region, task)``. A run whose process died
without finishing is marked ``crashed`` (with ``unfinished``, the count of its units
without a final record) by the next command that opens the store; see
:mod:`rolechain.results.lifecycle`. ``rolechain run --resume RUN_ID`` runs its missing
units.

A store that cannot be written mid-run (disk full, read-only, locked) does not stop the
run: the first failure is kept in :attr:`Store.failure` (and given to ``on_error``), and
nothing more is written.

Table ``alerts`` holds the scheduler's alerts until they are delivered (see
:mod:`rolechain.scheduler.outbox`).

A store written by an older rolechain is migrated when it is opened (the schema version is
SQLite's ``PRAGMA user_version``, PostgreSQL's table ``rolechain_schema``); one from a newer
rolechain is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolechain.errors import redact, redact_data
from rolechain.locations import is_url
from rolechain.results.backend import SQLITE_ROW_SQL, Connection, Rows, open_connection

if TYPE_CHECKING:
    from rolechain.executor.records import Record, Summary
    from rolechain.planner.plan import Plan
from rolechain.results.lifecycle import (
    FINAL_SQL,
    HEARTBEAT_SECONDS,
    STALE_SECONDS,
    Heartbeat,
    StoreFailure,
    Unit,
    pid_alive,
    plan_hash,
    planned_units,
    unfinished_units,
)
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
    # 4 -> 5: crash-safe runs (issue 19): who runs it, its heartbeat, its planned units,
    # and the scheduler's alerts until they are delivered
    """
ALTER TABLE runs ADD COLUMN pid INTEGER;
ALTER TABLE runs ADD COLUMN host TEXT;
ALTER TABLE runs ADD COLUMN version TEXT;
ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
ALTER TABLE runs ADD COLUMN plan_hash TEXT;
ALTER TABLE runs ADD COLUMN unfinished INTEGER;
ALTER TABLE runs ADD COLUMN alert TEXT;
CREATE TABLE IF NOT EXISTS units (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    region TEXT NOT NULL,
    task TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS units_run ON units(run_id);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    job TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at TEXT,
    last_error TEXT,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts(state, job);
""",
    # 5 -> 6: several schedulers on one store (issue 22): the leader's lease, and one
    # claim per fire (rolechain.scheduler.lease, rolechain.scheduler.claims)
    """
CREATE TABLE IF NOT EXISTS scheduler_lease (
    name TEXT PRIMARY KEY,
    holder TEXT,
    host TEXT,
    pid INTEGER,
    version INTEGER NOT NULL DEFAULT 0,
    lease_seconds REAL NOT NULL,
    acquired_at TEXT,
    renewed_at TEXT
);
CREATE TABLE IF NOT EXISTS fires (
    job TEXT NOT NULL,
    scheduled_for TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    holder TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (job, scheduled_for)
);
""",
]
SCHEMA_VERSION = len(MIGRATIONS) + 1

# A row as it was, in SQL over ``record_rows k JOIN records r``: when every row of a record
# is keyed by one field holding a string (``name``), that field is kept once, as the key,
# and ``records.row_key`` names it.
ROW_SQL = SQLITE_ROW_SQL  # SQLite's; on either backend, Store.row_sql

# A run that ran to its end (some targets may have failed): what results and diff read.
COMPLETE = ("ok", "failed")

# Every runs.status: a run's own (Summary.status), and the scheduler's rows.
RUN_STATUSES = ("running", "ok", "failed", "interrupted", "deadline-exceeded")
STATUSES = (*RUN_STATUSES, "starting", "error", "skipped", "crashed")
# Rows of runs that may still be going (a crashed one is found among them).
LIVE_STATUSES = ("running", "starting")

SCHEDULED = ("schedule", "catch-up", "retry")
_SCHEDULED_SQL = "('schedule', 'catch-up', 'retry')"
_RUN_COLUMNS = (
    "run_id, job, principal, status, trigger, scheduled_for, attempt, retry_of, reason, "
    "started_at, finished_at, targets, targets_ok, targets_failed, records, records_failed, "
    "assume_calls, retries, throttled, expired_token_refreshes, pacing, elapsed_seconds, "
    "pid, host, version, heartbeat_at, plan_hash, unfinished, alert"
)


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
    f"INSERT INTO records (rows, row_key, {_COLUMN_LIST}) "  # noqa: S608
    f"VALUES (:rows, :row_key, {_PLACEHOLDERS})"
)
_SELECT = f"SELECT id, rows, row_key, {_COLUMN_LIST} FROM records WHERE run_id = ? ORDER BY id"  # noqa: S608


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """A database of runs (a SQLite file or a ``postgresql://`` URL). Implements the
    executor's RecordSink.

    ``on_error`` is called once, with a :class:`StoreFailure`, when the store cannot be
    written mid-run (the run goes on; see the module docs). ``reap`` (default True) marks
    the runs whose process died ``crashed`` when the store is opened.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch: int = 200,
        on_error: Callable[[StoreFailure], None] | None = None,
        reap: bool = True,
    ) -> None:
        # a SQLite file, or a postgresql:// URL (see rolechain.results.backend)
        self._db: Connection = open_connection(path)
        self.url = str(path) if is_url(str(path)) else None  # as given: it may hold a password
        self.path = Path(path) if self.url is None else None
        self.name = self._db.shown  # how messages name the store: never with a password
        self.kind = self._db.kind
        self.row_sql = self._db.row_sql
        try:
            self._db.migrate(SCHEMA, MIGRATIONS)
        except BaseException:
            self._db.close()
            raise
        self._batch = batch  # kept for callers; every record is committed as it comes
        self._lock = threading.RLock()  # the heartbeat thread shares the connection
        self._specs: dict[str, RowSpec] = {}
        self._run_id: str | None = None
        self._heartbeat: Heartbeat | None = None
        self._lineage: tuple[str, str | None] = ("manual", None)
        self._skip: frozenset[Unit] = frozenset()
        self.on_error = on_error
        self.failure: StoreFailure | None = None
        self.crashed: list[dict[str, Any]] = self.reap() if reap else []

    # -- writing, failing softly ---------------------------------------------------------

    def _write(self, work: Callable[[Connection], object] | str, args: Any = ()) -> bool:
        """Run ``work`` in a transaction (or the one statement ``work``, with ``args``); False
        (and the failure kept) if it cannot be written. After the first failure nothing more
        is tried."""
        if isinstance(work, str):
            return self._attempt(lambda: self._db.write(work, args))

        def block() -> None:
            with self._db.transaction():
                work(self._db)

        return self._attempt(block)

    def _attempt(self, write: Callable[[], object]) -> bool:
        """``write`` (committed when it returns), failing softly (see :meth:`_write`)."""
        if self.failure is not None:
            return False
        try:
            with self._lock:
                write()
        except self._db.errors as exc:
            self._fail(exc)
            return False
        return True

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.failure is not None:
                return
            self.failure = self._db.failure(exc)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.on_error is not None:
            self.on_error(self.failure)

    def lineage(
        self, trigger: str, retry_of: str | None, skip: frozenset[Unit] = frozenset()
    ) -> None:
        """The trigger (``resume``, ``retry-failed``), the run it continues and the units
        it skips (done by that run), for the row of the next run :meth:`start` writes."""
        self._lineage = (trigger, retry_of)
        self._skip = skip

    # -- RecordSink ----------------------------------------------------------------------

    def start(self, plan: Plan) -> None:
        self._run_id = plan.run_id
        self._specs = {task: spec for task, spec in row_specs(plan).items() if spec.any}
        trigger, retry_of = self._lineage
        units = [u for u in planned_units(plan) if u not in self._skip]
        now = _now_iso()
        from rolechain import __version__

        def write(db: Connection) -> None:
            # An upsert: the scheduler may have written the row (its trigger) already.
            db.execute(
                "INSERT INTO runs (run_id, job, principal, status, started_at, targets, "
                "planned_assume_calls, plan, pid, host, version, heartbeat_at, plan_hash, "
                "trigger, retry_of) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET job=excluded.job, "
                "principal=excluded.principal, status='running', "
                "started_at=coalesce(runs.started_at, excluded.started_at), "
                "targets=excluded.targets, planned_assume_calls=excluded.planned_assume_calls, "
                "plan=excluded.plan, pid=excluded.pid, host=excluded.host, "
                "version=excluded.version, heartbeat_at=excluded.heartbeat_at, "
                "plan_hash=excluded.plan_hash",
                (
                    plan.run_id,
                    plan.job,
                    plan.principal,
                    now,
                    len(plan.targets),
                    plan.assume_calls,
                    # no ${env:} value (an external id) is stored
                    pack_plan(json.dumps(redact_data(plan.to_dict()), default=str)),
                    os.getpid(),
                    socket.gethostname(),
                    __version__,
                    now,
                    plan_hash(plan),
                    trigger,
                    retry_of,
                ),
            )
            db.execute("DELETE FROM units WHERE run_id=?", (plan.run_id,))
            db.executemany(
                "INSERT INTO units (run_id, target, region, task) VALUES (?, ?, ?, ?)",
                [(plan.run_id, *unit) for unit in units],
            )

        if self._write(write) and self._heartbeat is None:
            self._heartbeat = Heartbeat(self._beat, HEARTBEAT_SECONDS).start()

    def _beat(self) -> None:
        run_id = self._run_id
        if run_id is not None:
            self._write("UPDATE runs SET heartbeat_at=? WHERE run_id=?", (_now_iso(), run_id))

    def add(self, record: Record) -> None:
        # Committed before the executor yields the record: what is printed is stored.
        spec = self._specs.get(record.task) if record.task is not None else None
        extracted = spec.extract(record.data) if spec is not None and record.ok else None
        if extracted is None or extracted.rows is None:
            row = to_row(record) | {"rows": None, "row_key": None}
            self._write(_INSERT, row)
            return
        assert spec is not None
        rows, field = spec.stored(extracted.rows)
        row = to_row(record, data=extracted.rest) | {
            "rows": len(rows),
            "row_key": field,
        }

        self._attempt(lambda: self._db.insert_with_rows(_INSERT, row, rows))

    def flush(self) -> None:
        """Nothing waits: every record (and its rows) is committed by :meth:`add`."""

    def finish(self, summary: Summary) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self._write(
            "UPDATE runs SET status=?, reason=coalesce(?, reason), started_at=?, "
            "finished_at=?, targets=?, targets_ok=?, targets_failed=?, records=?, "
            "records_failed=?, assume_calls=?, retries=?, throttled=?, "
            "expired_token_refreshes=?, pacing=?, elapsed_seconds=?, heartbeat_at=? "
            "WHERE run_id=?",
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
                _now_iso(),
                summary.run_id,
            ),
        )

    # -- crashed runs --------------------------------------------------------------------

    def reap(self, *, now: datetime | None = None) -> list[dict[str, Any]]:
        """Mark ``crashed`` every run still ``running``/``starting`` whose process is gone
        (on this host: its pid does not exist; elsewhere: no heartbeat for
        :data:`STALE_SECONDS`), with ``unfinished``, its units without a final record.
        Returns the runs marked now (run_id, job, trigger, attempt, unfinished...)."""
        host = socket.gethostname()
        moment = now or datetime.now(UTC)
        found: list[dict[str, Any]] = []
        live = ", ".join(f"'{s}'" for s in LIVE_STATUSES)
        rows = self._db.execute(
            "SELECT run_id, job, status, trigger, scheduled_for, attempt, retry_of, pid, "  # noqa: S608
            f"host, heartbeat_at, started_at FROM runs WHERE status IN ({live})"
        ).fetchall()
        for row in rows:
            if row["pid"] is None and row["heartbeat_at"] is None:
                continue  # written by a rolechain before 0.2: nothing to judge it by
            if row["host"] == host:
                # A pid reused by another process hides a crash until that one ends.
                dead = not pid_alive(int(row["pid"] or 0))
            else:
                beat = _utc(row["heartbeat_at"] or row["started_at"])
                dead = beat is None or (moment - beat).total_seconds() > STALE_SECONDS
            if dead:
                found.append(dict(row))
        marked: list[dict[str, Any]] = []
        update = (
            "UPDATE runs SET status='crashed', unfinished=?, reason=?, "  # noqa: S608
            "records=(SELECT count(*) FROM records WHERE records.run_id=runs.run_id), "
            f"finished_at=coalesce(finished_at, heartbeat_at) WHERE run_id=? AND status IN ({live})"
        )
        for run in found:
            running = run["status"] == "running"
            unfinished = len(self.missing_units(run["run_id"])) if running else None
            reason = (
                f"the process running it ({run['host']} pid {run['pid']}) ended without "
                "finishing it (killed, out of memory, or its host lost)"
            )
            args = (unfinished, reason, run["run_id"])
            done = self._write(update, args)
            if done:
                marked.append({**run, "status": "crashed", "unfinished": unfinished})
        return marked

    def planned(self, run_id: str) -> list[Unit]:
        return [
            (r[0], r[1], r[2])
            for r in self._db.execute(
                "SELECT target, region, task FROM units WHERE run_id=? ORDER BY rowid", (run_id,)
            )
        ]

    def missing_units(self, run_id: str) -> list[Unit]:
        """The planned units of ``run_id`` without a final record, in plan order."""
        return unfinished_units(self.planned(run_id), self.finished([run_id]))

    def finished(
        self, run_ids: list[str], *, ok_only: bool = False
    ) -> set[tuple[str, str | None, str | None]]:
        """(target, region, task) of the final records of these runs (``ok_only``: of their
        ok ones); a target-level record (a hop failed) has no region or task."""
        done_sql = "status = 'ok'" if ok_only else FINAL_SQL
        marks = ", ".join("?" for _ in run_ids)
        return {
            (r[0], r[1], r[2])
            for r in self._db.execute(
                f"SELECT target, region, task FROM records WHERE run_id IN ({marks}) "  # noqa: S608
                f"AND {done_sql}",
                run_ids,
            )
        }

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            f"SELECT {_RUN_COLUMNS}, plan FROM runs WHERE run_id=?",  # noqa: S608
            (run_id,),
        ).fetchone()
        return dict(row) if row else None

    # -- the scheduler's alerts (see rolechain.scheduler.outbox) ---------------------------

    def add_alert(self, run_id: str, job: str, kind: str, payload: dict[str, Any]) -> int | None:
        """A pending alert; its id (None if the store cannot be written). The run's alert
        decision (``alerted``) is written with it: a scheduler killed at any moment leaves
        either both or neither."""
        ids: list[int] = []

        def write(db: Connection) -> None:
            db.execute("UPDATE runs SET alert='alerted' WHERE run_id=?", (run_id,))
            ids.append(
                db.insert(
                    "INSERT INTO alerts (run_id, job, kind, state, payload, created_at, next_at) "
                    "VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                    (run_id, job, kind, json.dumps(payload, default=str), _now_iso(), _now_iso()),
                )
            )

        return ids[0] if self._write(write) else None

    def pending_alerts(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, run_id, job, kind, attempts, payload FROM alerts "
            "WHERE state='pending' ORDER BY id"
        ).fetchall()
        return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]

    def alert_attempted(
        self, alert_id: int, *, state: str, error: str | None, next_at: datetime | None
    ) -> None:
        """One delivery attempt: ``sent``, still ``pending`` (with when to try again), or
        ``failed`` (given up)."""
        self._write(
            "UPDATE alerts SET state=?, attempts=attempts+1, last_error=?, next_at=?, "
            "sent_at=CASE WHEN ?='sent' THEN ? ELSE sent_at END WHERE id=?",
            (
                state,
                redact(error) if error else None,
                _iso(next_at) if next_at else None,
                state,
                _now_iso(),
                alert_id,
            ),
        )

    def set_alert(self, run_id: str, decision: str) -> None:
        """The scheduler's alert decision for a run (see the scheduler docs)."""
        self._write("UPDATE runs SET alert=? WHERE run_id=?", (decision, run_id))

    def undecided(self, job: str) -> list[dict[str, Any]]:
        """The job's scheduled runs that ended without an alert decision, or ``held`` for a
        retry the scheduler no longer has (it stopped, or was killed, between a run's end and
        its alert), oldest first."""
        rows = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE job=? AND trigger IN {_SCHEDULED_SQL} "  # noqa: S608
            "AND status NOT IN ('running', 'starting', 'skipped') "
            "AND (alert IS NULL OR alert = 'held') "
            "AND pid IS NOT NULL ORDER BY coalesce(scheduled_for, started_at), attempt, rowid",
            (job,),
        ).fetchall()
        return [dict(r) for r in rows]

    def retry_targets(self, run_id: str) -> tuple[str, ...] | None:
        """Targets of ``run_id`` with a unit that failed or has no final record, in plan
        order (None when the run recorded no units: it never started)."""
        planned = self.planned(run_id)
        if not planned:
            return None
        left = unfinished_units(planned, self.finished([run_id], ok_only=True))
        return tuple(dict.fromkeys(unit[0] for unit in left))

    def alert_states(self, run_ids: list[str]) -> dict[str, str]:
        """Each run's alert state, for ``history``: ``failure sent``, ``failure pending (2
        tries)``, ``recovery failed``, or the scheduler's decision (``held``: a retry may
        cover it; ``covered``: one did; ``none``)."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        out: dict[str, str] = {}
        for r in self._db.execute(
            f"SELECT run_id, alert FROM runs WHERE run_id IN ({marks})",  # noqa: S608
            run_ids,
        ):
            if r["alert"]:
                out[r["run_id"]] = r["alert"]
        for r in self._db.execute(
            f"SELECT run_id, kind, state, attempts FROM alerts WHERE run_id IN ({marks}) "  # noqa: S608
            "ORDER BY id",
            run_ids,
        ):
            text = f"{r['kind']} {r['state']}"
            if r["state"] != "sent" and r["attempts"]:
                text += f" ({r['attempts']} tries)"
            previous = out.get(r["run_id"])
            out[r["run_id"]] = text if previous in (None, "alerted") else f"{previous}, {text}"
        return out

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
        with self._lock, self._db.transaction():
            self._db.execute(
                "INSERT INTO runs (run_id, job, status, trigger, scheduled_for, attempt, "
                "retry_of, reason, started_at, finished_at, targets, targets_ok, "
                "targets_failed, records, records_failed, pid, host) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, ?, ?) "
                # The scheduler's claim of the fire may have written the row first.
                "ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, "
                "reason=excluded.reason, started_at=coalesce(excluded.started_at, "
                "runs.started_at), finished_at=excluded.finished_at, pid=excluded.pid, "
                "host=excluded.host",
                (run_id, job, status, trigger, _iso(scheduled_for), attempt, retry_of, reason,
                 started, started if status == "skipped" else None,
                 None if status == "skipped" else os.getpid(), socket.gethostname()),
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
        with self._lock, self._db.transaction():
            self._db.execute(f"UPDATE runs SET {', '.join(sets)} WHERE run_id=?", args)  # noqa: S608

    def last_fire(self, job: str) -> datetime | None:
        row = self._db.execute(
            f"SELECT max(scheduled_for) FROM runs WHERE job=? AND trigger IN {_SCHEDULED_SQL}",  # noqa: S608
            (job,),
        ).fetchone()
        return _utc(row[0]) if row else None

    def last_outcome(self, job: str, *, decided: bool = False) -> str | None:
        """The status of the job's newest finished fire (not a run a retry covered);
        ``decided``: only among runs whose alerts were decided."""
        row = self._db.execute(
            "SELECT status FROM runs WHERE job=? AND trigger IN "  # noqa: S608
            f"{_SCHEDULED_SQL} AND status NOT IN ('skipped', 'running', 'starting') "
            "AND coalesce(alert, '') NOT IN ('held', 'covered') "
            + ("AND (pid IS NULL OR alert IS NOT NULL) " if decided else "")
            + "ORDER BY scheduled_for DESC, attempt DESC, rowid DESC LIMIT 1",
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
        with self._lock, self._db.transaction():
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
                        f"SELECT {self.row_sql} FROM record_rows k JOIN records r "  # noqa: S608
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

    def tuples(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        """A cursor giving the rows of a query as plain tuples (quicker than :meth:`query`
        for many rows). SQL is SQLite's, with ``?`` placeholders; on PostgreSQL, a row as
        stored is :attr:`row_sql` and JSON text is made by :meth:`json_object`."""
        return self._db.tuples(sql, args)

    def json_object(self, pairs: str) -> str:
        """SQL giving a row's JSON text from ``'name', expression, ...``."""
        return self._db.json_object(pairs)

    def json_value(self, text: str) -> str:
        """SQL making the JSON text ``text`` a JSON value inside :meth:`json_object`."""
        return self._db.json_value(text)

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(row) for row in self._db.execute(sql, args)]

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        with self._lock, contextlib.suppress(*self._db.errors):
            self._db.commit()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

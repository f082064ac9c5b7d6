"""Inventory from the store: the rows of a run, and what changed between two runs.

A *unit* is one task in one region of one target. :func:`snapshot` reads what a run knows
about each unit: its rows (when the task ran and gave rows), or why it knows nothing (the
target failed, the task failed, the run never got to it). :func:`diff` compares two
snapshots by key, unit by unit, and only where both runs know the unit: a target that
failed or was not run in either run is **unknown**, never reported as removed or added.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rolechain.errors import RolechainError
from rolechain.results.rows import flatten
from rolechain.results.store import COMPLETE, Store

Unit = tuple[str, str, str]  # (task, target, region)


@dataclass
class UnitState:
    """What one run knows about one unit."""

    account_id: str
    rows: dict[str, str] | None  # key -> row JSON; None: the run does not know the unit
    reason: str | None = None  # why not
    key_field: str | None = None  # the field each row's JSON leaves out (its key)

    def row(self, key: str) -> Any:
        """The row of ``key`` whole again."""
        assert self.rows is not None
        found = json.loads(self.rows[key])
        if self.key_field is not None and isinstance(found, dict):
            found[self.key_field] = key
            found = dict(sorted(found.items()))  # fields in the order they were stored
        return found


@dataclass
class Snapshot:
    """What a run knows: each unit it ran, and the targets that failed before any task."""

    run_id: str
    units: dict[Unit, UnitState] = field(default_factory=dict)
    failed_targets: dict[str, tuple[str, str]] = field(default_factory=dict)  # (account, why)
    row_tasks: set[str] = field(default_factory=set)  # tasks whose rows: the plan declares

    def known(self, unit: Unit) -> bool:
        found = self.units.get(unit)
        return found is not None and found.rows is not None

    def why_unknown(self, unit: Unit) -> str:
        found = self.units.get(unit)
        if found is not None and found.reason:
            return found.reason
        failed = self.failed_targets.get(unit[1])
        if failed is not None:
            return failed[1]
        return "not run"


@dataclass(frozen=True)
class Change:
    """A row added, removed or changed in one unit."""

    kind: str  # added, removed, changed
    task: str
    target: str
    account_id: str
    region: str
    key: str
    row: Mapping[str, Any]  # the new row (the old one when removed)
    fields: tuple[tuple[str, Any, Any], ...] = ()  # changed: (field, old, new)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "change": self.kind,
            "task": self.task,
            "target": self.target,
            "account_id": self.account_id,
            "region": self.region,
            "key": self.key,
            "row": dict(self.row),
        }
        if self.kind == "changed":
            out["fields"] = [{"field": f, "old": old, "new": new} for f, old, new in self.fields]
        return out


@dataclass(frozen=True)
class Unknown:
    """A unit one of the runs does not know: nothing is said about its rows."""

    task: str
    target: str
    account_id: str
    region: str
    reason: str  # e.g. "run B: AccessDenied at hub -> audit@333333333333"
    rows: int  # rows the run that knows it has (not compared)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "target": self.target,
            "account_id": self.account_id,
            "region": self.region,
            "reason": self.reason,
            "rows_not_compared": self.rows,
        }


@dataclass
class Diff:
    job: str
    run_a: str
    run_b: str
    changes: list[Change] = field(default_factory=list)
    unknown: list[Unknown] = field(default_factory=list)
    compared: int = 0  # units both runs know

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def summary(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "run_a": self.run_a,
            "run_b": self.run_b,
            "added": self.count("added"),
            "removed": self.count("removed"),
            "changed": self.count("changed"),
            "unknown": len(self.unknown),
            "units_compared": self.compared,
        }

    def summary_line(self) -> str:
        s = self.summary()
        return (
            f"{s['added']} added, {s['removed']} removed, {s['changed']} changed, "
            f"{s['unknown']} unknown ({self.compared} target/region/task units compared; "
            f"{self.run_a} -> {self.run_b})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "changes": [c.to_dict() for c in self.changes],
            "unknown": [u.to_dict() for u in self.unknown],
        }


def snapshot(store: Store, run_id: str, *, task: str | None = None) -> Snapshot:
    """What run ``run_id`` knows about each unit (of ``task`` only, if given)."""
    out = Snapshot(run_id)
    out.row_tasks = {name for name, spec in store.row_specs(run_id).items() if spec.rows}
    where = "r.run_id = ?"
    args: list[Any] = [run_id]
    if task is not None:
        where += " AND (r.task = ? OR r.task IS NULL)"
        args.append(task)
    units = out.units
    by_record: dict[int, dict[str, str]] = {}
    # Column names and clauses are constants; values are bound parameters.
    columns = "r.id, r.task, r.target, r.account_id, r.region, r.status, r.error_code, r.error_hop"
    records = f"SELECT {columns}, r.rows, r.row_key FROM records r WHERE {where}"  # noqa: S608
    for record_id, name, target, account, region, status, code, hop, count, left in store.tuples(
        records, args
    ):
        if name is None:  # the target failed before any task (or the run stopped first)
            at = f" at {hop}" if hop else ""
            out.failed_targets[target] = (account, f"run {run_id}: {code}{at}")
            continue
        if status != "ok":
            state = UnitState(account, None, f"run {run_id}: {code}")
        elif count is None:
            state = UnitState(account, None, f"run {run_id}: the task gave no rows")
        else:
            state = UnitState(account, {}, key_field=left)
            by_record[record_id] = state.rows  # type: ignore[assignment]
        units[(name, target, region or "")] = state
    # The rows alone (three columns), by record: most of what a diff reads
    rows = f"SELECT k.record_id, k.key, k.row FROM record_rows k JOIN records r ON r.id = k.record_id WHERE {where}"  # noqa: E501, S608
    for record_id, key, row in store.tuples(rows, args):
        found = by_record.get(record_id)
        if found is not None:
            found[key] = row
    return out


def diff_snapshots(job: str, a: Snapshot, b: Snapshot) -> Diff:
    """Rows added, removed and changed from ``a`` to ``b``, in units both know."""
    out = Diff(job, a.run_id, b.run_id)
    tasks_with_rows = (
        a.row_tasks
        | b.row_tasks
        | {
            unit[0]
            for snap in (a, b)
            for unit, state in snap.units.items()
            if state.rows is not None
        }
    )
    every = sorted(set(a.units) | set(b.units))
    for unit in every:
        task, target, region = unit
        old, new = a.units.get(unit), b.units.get(unit)
        account = (new or old).account_id  # type: ignore[union-attr]
        if not (a.known(unit) and b.known(unit)):
            if task not in tasks_with_rows:
                continue  # a task that gives no rows in either run: nothing to compare
            reasons = [f"{snap.why_unknown(unit)}" for snap in (a, b) if not snap.known(unit)]
            known = new if b.known(unit) else old
            count = len(known.rows or {}) if known is not None and known.rows else 0
            out.unknown.append(Unknown(task, target, account, region, "; ".join(reasons), count))
            continue
        assert old is not None
        assert new is not None
        assert old.rows is not None
        assert new.rows is not None
        out.compared += 1
        for key in sorted(old.rows.keys() | new.rows.keys()):
            before, after = old.rows.get(key), new.rows.get(key)
            if before == after:
                continue
            if before is None:
                row = new.row(key)
                out.changes.append(Change("added", task, target, account, region, key, row))
            elif after is None:
                row = old.row(key)
                out.changes.append(Change("removed", task, target, account, region, key, row))
            else:
                was, now = old.row(key), new.row(key)
                out.changes.append(
                    Change("changed", task, target, account, region, key, now, fields(was, now))
                )
    # Targets that failed before any task in a run and ran none in the other (or failed
    # in both): unknown as a whole
    listed = {u.target for u in out.unknown}
    for target in sorted(a.failed_targets.keys() | b.failed_targets.keys()):
        if target in listed:
            continue
        account = (a.failed_targets.get(target) or b.failed_targets[target])[0]
        reasons = [
            snap.failed_targets[target][1] if target in snap.failed_targets else "not run"
            for snap in (a, b)
            if target in snap.failed_targets or not any(u[1] == target for u in snap.units)
        ]
        out.unknown.append(Unknown("*", target, account, "*", "; ".join(reasons), 0))
    return out


def fields(old: Any, new: Any) -> tuple[tuple[str, Any, Any], ...]:
    """The fields (dotted paths) whose values differ between two rows."""
    flat_old = flatten(old) if isinstance(old, Mapping) else {"": old}
    flat_new = flatten(new) if isinstance(new, Mapping) else {"": new}
    out = []
    for name in sorted(flat_old.keys() | flat_new.keys()):
        before = flat_old.get(name, None)
        after = flat_new.get(name, None)
        if before != after or (name in flat_old) != (name in flat_new):
            out.append((name, before, after))
    return tuple(out)


# -- choosing runs ---------------------------------------------------------------------


def complete_runs(store: Store, job: str, limit: int | None = None) -> list[str]:
    """The job's runs that ran to their end, newest first."""
    sql = (
        "SELECT run_id FROM runs WHERE job = ? AND status IN (?, ?) "
        "ORDER BY coalesce(started_at, scheduled_for, run_id) DESC, run_id DESC"
    )
    args: list[Any] = [job, *COMPLETE]
    if limit:
        sql += " LIMIT ?"
        args.append(limit)
    return [str(row[0]) for row in store.tuples(sql, args)]


def run_job(store: Store, run_id: str) -> str:
    row = next(store.tuples("SELECT job FROM runs WHERE run_id = ?", (run_id,)), None)
    if row is None:
        raise RolechainError(
            f"no run {run_id!r} in {store.name}", hint="'rolechain history' lists the runs"
        )
    return str(row[0])


def only_job(store: Store) -> str:
    jobs = [str(r[0]) for r in store.tuples("SELECT DISTINCT job FROM runs ORDER BY job")]
    if len(jobs) == 1:
        return jobs[0]
    if not jobs:
        raise RolechainError(f"no runs in {store.name}", hint="record runs with --store")
    raise RolechainError(
        f"{store.name} has runs of {len(jobs)} jobs ({', '.join(jobs[:10])})",
        hint="name one with --job",
    )


def latest_run(store: Store, job: str | None) -> str:
    """The latest complete run of ``job`` (or of the store's only job)."""
    job = job or only_job(store)
    found = complete_runs(store, job, 1)
    if not found:
        raise RolechainError(
            f"job {job!r} has no complete run in {store.name}",
            hint="a run that was interrupted or is still going is not read",
        )
    return found[0]


def runs_to_compare(
    store: Store, job: str | None, run_a: str | None, run_b: str | None
) -> tuple[str, str, str]:
    """(job, A, B): both given; A given (B: the job's latest complete run); or neither
    (the latest two complete runs)."""
    if run_a is not None:
        found = run_job(store, run_a)
        if job is not None and job != found:
            raise RolechainError(f"run {run_a!r} is a run of job {found!r}, not {job!r}")
        job = found
    job = job or only_job(store)
    if run_b is not None:
        other = run_job(store, run_b)
        if other != job:
            raise RolechainError(f"runs {run_a!r} and {run_b!r} are of different jobs")
    if run_a is None:
        latest = complete_runs(store, job, 2)
        if len(latest) < 2:
            raise RolechainError(
                f"job {job!r} has {len(latest)} complete run(s) in {store.name}; a diff needs two",
                hint="run the job again with --store, or name the runs",
            )
        return job, latest[1], latest[0]
    return job, run_a, run_b if run_b is not None else latest_run(store, job)


def diff(store: Store, job: str, run_a: str, run_b: str, *, task: str | None = None) -> Diff:
    return diff_snapshots(job, snapshot(store, run_a, task=task), snapshot(store, run_b, task=task))


def previous_complete(store: Store, run_id: str) -> str | None:
    """The job's complete run before ``run_id`` (None: there is none)."""
    job = run_job(store, run_id)
    runs = complete_runs(store, job)
    if run_id in runs:
        later = runs.index(run_id)
        return runs[later + 1] if later + 1 < len(runs) else None
    return runs[0] if runs else None


# -- the rows of a run -----------------------------------------------------------------

ROW_COLUMNS = ("run_id", "job", "task", "target", "account_id", "region", "key")


def run_filter(
    run_id: str, task: str | None, account: str | None, alias: str = "r"
) -> tuple[str, list[Any]]:
    """The WHERE clause (over ``records`` as ``alias``) and its arguments for the records
    of a run, of one task and one account if given."""
    where, args = f"{alias}.run_id = ?", [run_id]
    if task:
        where += f" AND {alias}.task = ?"
        args.append(task)
    if account:
        where += f" AND {alias}.account_id = ?"
        args.append(account)
    return where, args


def has_rows(store: Store, run_id: str, task: str | None, account: str | None) -> bool:
    where, args = run_filter(run_id, task, account)
    sql = f"SELECT 1 FROM records r WHERE {where} AND r.rows IS NOT NULL LIMIT 1"  # noqa: S608
    return next(store.tuples(sql, args), None) is not None


def iter_rows(
    store: Store, run_id: str, *, task: str | None = None, account: str | None = None
) -> Iterator[dict[str, Any]]:
    """The run's rows, each flattened (``tags.team``), after the columns of ROW_COLUMNS."""
    where, args = run_filter(run_id, task, account)
    head = "r.run_id, r.job, r.task, r.target, r.account_id, r.region, k.key"
    sql = f"SELECT {head}, {store.row_sql} FROM records r JOIN record_rows k ON k.record_id = r.id WHERE {where} ORDER BY r.id, k.rowid"  # noqa: E501, S608
    for *head, text in store.tuples(sql, args):
        out = dict(zip(ROW_COLUMNS, head, strict=True))
        row = json.loads(text)
        if isinstance(row, Mapping):
            # fields sorted, as rows are stored (the key field was put back last)
            for name, value in flatten(dict(sorted(row.items()))).items():
                out.setdefault(name, value)
        yield out


def iter_records(
    store: Store, run_id: str, *, task: str | None = None, account: str | None = None
) -> Iterator[dict[str, Any]]:
    """The run's records as flat rows (``data`` as JSON text)."""
    from rolechain.results.records import COLUMNS

    where, args = run_filter(run_id, task, account)
    sql = f"SELECT {', '.join(COLUMNS)} FROM records r WHERE {where} ORDER BY r.id"  # noqa: S608
    for found in store.tuples(sql, args):
        yield dict(zip(COLUMNS, found, strict=True))

"""Stores made with the store's own API, for the inventory tests."""

from __future__ import annotations

import dataclasses
from typing import Any

from aws.fakes import hub_plan
from rolechain.executor.records import Record, RecordError, Summary
from rolechain.planner.plan import TaskRef
from rolechain.results.store import Store

ACCOUNTS = ["222222222222", "333333333333", "444444444444"]
TASK = TaskRef(id="things", task="python", key=("id",))


def store_run(
    store: Store,
    run_id: str,
    rows: dict[str, dict[str, dict[str, Any]]],
    failed: set[str] = frozenset(),  # type: ignore[assignment]
    when: str = "2026-01-01T00:00:00Z",
    skipped: set[str] = frozenset(),  # type: ignore[assignment]
    accounts: list[str] = ACCOUNTS,
) -> None:
    """A run of job ``inv`` with ``rows[account][key] = row``; ``failed`` accounts failed
    at their hop; ``skipped`` ones have no record at all."""
    plan = dataclasses.replace(hub_plan(accounts), run_id=run_id, job="inv", tasks=(TASK,))
    store.start(plan)
    for account in accounts:
        target = f"audit@{account}"
        if account in skipped:
            continue
        if account in failed:
            error = RecordError("AccessDenied", "denied", f"ci -> hub -> {target}")
            store.add(
                Record("inv", run_id, target, account, "arn", None, None, "error", None, error)
            )
            continue
        data = [{"id": key, **row} for key, row in sorted(rows.get(account, {}).items())]
        store.add(Record("inv", run_id, target, account, "arn", "us-east-1", "things", "ok", data))
    status = "failed" if failed else "ok"
    store.finish(
        Summary("inv", run_id, started_at=when, finished_at=when, targets_failed=len(failed))
    )
    assert store.query("SELECT status FROM runs WHERE run_id = ?", run_id)[0]["status"] == status


def connect(where: Any) -> Any:
    """A plain connection of the backend's own driver (sqlite3 or psycopg), as a user's
    SQL client has: for looking at a store from outside rolechain."""
    if str(where).startswith("postgresql://"):
        import psycopg

        return psycopg.connect(str(where), autocommit=True)
    import sqlite3

    return sqlite3.connect(where)


def set_version(where: Any, version: int) -> None:
    """Say the store at ``where`` (made by rolechain) has schema ``version``."""
    db = connect(where)
    try:
        if str(where).startswith("postgresql://"):
            db.execute("UPDATE rolechain_schema SET version = %s", (version,))
        else:
            db.execute(f"PRAGMA user_version={int(version)}")
            db.commit()
    finally:
        db.close()

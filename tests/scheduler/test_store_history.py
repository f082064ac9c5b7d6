"""The store as the scheduler's history: migration of files written by rolechain 0.1, the
scheduled-run columns, retention, and the one-scheduler-per-store lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from results.stores import set_version
from rolechain.errors import RolechainError
from rolechain.results.store import SCHEMA_VERSION, Store
from rolechain.scheduler.lock import LockedError, StoreLock, lock_path
from rolechain.scheduler.types import Trigger

HERE = Path(__file__).resolve().parent


def v1_store(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript((HERE / "store-v1.sql").read_text())
    db.close()
    return path


def test_a_version_1_store_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = v1_store(tmp_path / "old.db")
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (1,)
    with Store(path) as store:
        (run,) = store.runs()
        assert run["run_id"] == "r1"
        assert run["status"] == "failed"  # as 0.1 wrote it
        assert run["trigger"] == "manual"
        assert run["attempt"] == 0
        assert len(list(store.records("r1"))) == 1
        assert store.last_fire("hub-job") is None  # a manual run is not a fire
        store.begin_scheduled(
            "s1", "hub-job", trigger="schedule", scheduled_for=datetime(2026, 1, 2, tzinfo=UTC)
        )
        assert store.last_fire("hub-job") == datetime(2026, 1, 2, tzinfo=UTC)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    assert {"trigger", "scheduled_for", "attempt", "retry_of", "reason"} <= columns
    # opening it again is a no-op
    with Store(path) as store:
        assert len(store.runs()) == 2


def test_a_store_from_a_newer_rolechain_is_refused(store_url: Path | str) -> None:
    Store(store_url).close()
    set_version(store_url, SCHEMA_VERSION + 1)
    with pytest.raises(RolechainError, match="written by a newer rolechain") as refused:
        Store(store_url)
    assert f"store version {SCHEMA_VERSION + 1}" in str(refused.value)
    assert "pg-" not in str(refused.value)  # a URL's password is never shown
    # and it was left as it was
    set_version(store_url, SCHEMA_VERSION)
    with Store(store_url) as store:
        assert store.runs() == []


def test_an_empty_sqlite_file_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    sqlite3.connect(path).execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RolechainError, match="written by a newer rolechain"):
        Store(path)


def test_history_queries_and_retention(store_url: Path | str) -> None:
    base = datetime(2026, 6, 1, tzinfo=UTC)
    with Store(store_url) as store:
        for i in range(10):
            when = base + timedelta(days=i)
            store.begin_scheduled(
                f"r{i}", "j", trigger="schedule", scheduled_for=when, started_at=when
            )
            store.end_scheduled(f"r{i}", status="failed" if i == 8 else "ok", reason=None)
        store.record_skipped(
            "j",
            "s9",
            Trigger(
                "schedule", base + timedelta(days=9, hours=1), base + timedelta(days=9, hours=1)
            ),
            "busy",
        )
        assert store.last_fire("j") == base + timedelta(days=9, hours=1)
        assert store.last_outcome("j") == "ok"  # the skip does not count
        assert store.prune("j", 4, base) == 7  # 11 rows, newest 4 kept
        assert [r["run_id"] for r in store.runs(job="j", limit=None)] == ["s9", "r9", "r8", "r7"]
        assert store.prune("j", 100, base + timedelta(days=30)) == 3  # all old; newest stays
        assert [r["run_id"] for r in store.runs(job="j", limit=None)] == ["s9"]


def test_records_of_two_runs_interleave_without_locking_each_other(
    store_url: Path | str,
) -> None:
    """Each record is its own transaction, none left open: two stores on one database."""
    import dataclasses

    sys.path.insert(0, str(HERE.parent))
    from results.test_store import OK, hub_plan, summary

    first, second = Store(store_url), Store(store_url)
    plans = [dataclasses.replace(hub_plan(["222222222222"]), run_id=f"r{n}") for n in (1, 2)]
    first.start(plans[0])
    second.start(plans[1])
    for _ in range(50):
        first.add(dataclasses.replace(OK, run_id="r1"))
        second.add(dataclasses.replace(OK, run_id="r2"))
    first.finish(summary(run_id="r1"))
    second.finish(summary(run_id="r2"))
    assert len(list(first.records("r1"))) == 50
    assert len(list(first.records("r2"))) == 50
    first.close()
    second.close()


def test_one_scheduler_per_store(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    with StoreLock(store, command="rolechain schedule chains/demo.yaml"):
        # another process cannot take it, and is told who holds it
        code = (
            "import sys; from pathlib import Path; from rolechain.scheduler.lock import StoreLock\n"
            f"try:\n    StoreLock(Path({str(store)!r})).acquire()\n"
            "except Exception as exc:\n    print(exc); sys.exit(2)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert other.returncode == 2
        assert "another scheduler holds" in other.stdout
        assert "rolechain schedule chains/demo.yaml" in other.stdout
        assert "pid " in other.stdout
    # released: the next one takes it
    with StoreLock(store):
        assert lock_path(store).exists()
    with pytest.raises(LockedError), StoreLock(store), StoreLock(store):
        pass


def test_a_stopped_run_keeps_its_status_and_says_why(store_url: Path | str) -> None:
    """The run writes its own status (and why it stopped); the scheduler's end_scheduled
    adds its reason in the same words and refuses any other spelling."""
    from rolechain.executor.records import Summary
    from rolechain.planner.plan import Plan

    plan = Plan(job="j", principal="bot", principal_kind="user", run_id="r1", regions=(),
                hops=(), targets=())  # fmt: skip
    when = datetime(2026, 6, 1, tzinfo=UTC)
    with Store(store_url) as store:
        store.begin_scheduled("r1", "j", trigger="schedule", scheduled_for=when)
        store.start(plan)
        summary = Summary(job="j", run_id="r1", finished_at="2026-06-01T00:00:05Z")
        summary.stop, summary.stop_reason = "deadline-exceeded", "deadline of 20m"
        store.finish(summary)
        (row,) = store.runs()
        assert (row["status"], row["reason"]) == ("deadline-exceeded", "deadline of 20m")
        assert row["trigger"] == "schedule"  # the run's finish keeps the scheduler's columns
        store.end_scheduled("r1", status="deadline-exceeded", reason="the job's runtime (20m)")
        assert store.runs()[0]["reason"] == "the job's runtime (20m)"
        with pytest.raises(ValueError, match="unknown run status 'deadline_exceeded'"):
            store.end_scheduled("r1", status="deadline_exceeded", reason=None)
        assert store.runs()[0]["status"] == "deadline-exceeded"

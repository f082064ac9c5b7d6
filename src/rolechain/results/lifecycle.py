"""What the store needs to keep a run's outcome through a crash: its planned units, a
fingerprint of its plan, a heartbeat, whether its process is alive, and what to say when
the store file cannot be written.

A run's row is written when it starts (with the pid, host and rolechain version of the
process running it) and its ``heartbeat_at`` is renewed every :data:`HEARTBEAT_SECONDS`
while it runs. A run still ``running`` (or ``starting``) whose process is gone -- on this
host: its pid no longer exists; elsewhere: no heartbeat for :data:`STALE_SECONDS` -- has
crashed (``kill -9``, the OOM killer, a lost node): the next command that opens the store
marks it ``crashed`` with the number of its units that have no final record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rolechain.executor.records import STOP_CODES
from rolechain.executor.units import task_regions
from rolechain.planner.plan import Plan, Target

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # six heartbeats missed: the run's host is gone or its process hung

Unit = tuple[str, str, str]  # (target, region, task); region "all" until it is looked up

# A record that ends its unit: ok, or an error that is not "the run stopped first".
FINAL_SQL = "(status = 'ok' OR coalesce(error_code, '') NOT IN ({}))".format(
    ", ".join(f"'{code}'" for code in sorted(STOP_CODES))
)


def planned_units(plan: Plan) -> list[Unit]:
    """One (target, region, task) per unit the plan runs; a task in ``all`` regions is one
    unit per target (its regions are known only once the target account is asked)."""
    units: list[Unit] = []
    # A glob over an Organizations role set that matched none of the listed accounts is
    # planned as a target of its own: its one error record (target-level) ends its units,
    # and --retry-failed (or a schedule's retry_failed) applies the glob again.
    stand_ins = [Target(m.selector, "", "", (), 0, False) for m in plan.unmatched]
    for target in (*plan.targets, *stand_ins):
        for task in plan.tasks:
            regions = task_regions(plan, target, task)
            for region in ("all",) if "all" in regions else regions:
                units.append((target.name, region, task.id))
    return units


def unfinished_units(
    planned: list[Unit], finished: set[tuple[str, str | None, str | None]]
) -> list[Unit]:
    """The ``planned`` units without a record in ``finished`` (target, region, task). A
    target-level record (a hop failed: no region, no task) stands for all the target's
    units; a unit in ``all`` regions is done once any of its regions is."""
    done = set(finished)
    for target, _region, task in finished:
        done.add((target, "all", task))
    return [u for u in planned if u not in done and (u[0], None, None) not in done]


def plan_hash(plan: Plan) -> str:
    """A fingerprint of the plan's units: its targets (and the paths reaching them), its
    task ids and regions. Two runs with the same hash have the same units (a task's
    parameters may change between them: that is how a failed task is fixed and retried)."""
    body = {
        "job": plan.job,
        "targets": sorted([t.name, list(t.path), list(t.regions or ())] for t in plan.targets),
        "tasks": [[t.id, t.regions] for t in plan.tasks],
        "regions": list(plan.regions),
        "region": plan.region,
    }
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


@dataclass(frozen=True)
class StoreFailure:
    """Why the store could not be written, and what to do about it."""

    path: str  # the store as messages name it (a URL without its password)
    problem: str
    fix: str

    def __str__(self) -> str:
        return (
            f"the store {self.path} cannot be written ({self.problem}); the run goes on "
            f"and its records are on stdout/--output only. Fix: {self.fix}"
        )


def failure_of(exc: BaseException, path: Path) -> StoreFailure:
    """A write error of SQLite or the OS, said with its fix."""
    text = str(exc) or type(exc).__name__
    name = str(getattr(exc, "sqlite_errorname", ""))
    if (name.startswith("SQLITE_IOERR") and "write" in name.lower()) or "disk i/o" in text.lower():
        text += " (a write failed: the disk is full, the file size limit was reached, or "
        text += "the disk failed)"
    problem, fix = sqlite_fix(text, path)
    return StoreFailure(str(path), problem, fix)


def sqlite_fix(text: str, path: Path) -> tuple[str, str]:
    """(problem, fix) of a failed write to the SQLite file ``path``."""
    lower = text.lower()
    if "a write failed: the disk is full" in lower:
        lower = "full"
    if "full" in lower or "too large" in lower or "no space" in lower:
        fix = (
            f"free space on the disk holding {path} (or raise the file size limit), "
            "or give --store a file on another disk"
        )
    elif "readonly" in lower or "read-only" in lower or "permission" in lower:
        fix = f"make {path}, its -wal and -shm files and their folder writable by this user"
    elif "locked" in lower or "busy" in lower:
        fix = (
            f"another process holds a write lock on {path} (an open sqlite3 shell or a "
            "long query); end it, or give --store another file"
        )
    else:
        fix = f"check the disk and permissions of {path}, or give --store another file"
    return text, fix


WRITE_ERRORS = (sqlite3.Error, OSError)


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, beat: Callable[[], None], interval: float = HEARTBEAT_SECONDS) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rolechain-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # the store says its own failures
                self._beat()

"""The one place the scheduler starts real runs: :class:`ExecutorLauncher`.

Each run is a :class:`rolechain.executor.Run` -- the same code as ``rolechain run`` --
consumed on a worker thread of its own, writing to the store (its own connection). The
scheduled row (trigger, cron time, attempt) is written first, so even a run that cannot
start (a plan, credentials or identity error) is in the history with status ``error`` and
why.

The run bounds itself: the job's ``runtime`` (real seconds, also in a rehearsal) is its
deadline, and :meth:`ExecutorHandle.cancel` (shutdown, ``overlap: replace``) is
:meth:`Run.cancel`: no new task starts, tasks in flight get the grace period, then every
unit left gets an ``Interrupted`` record. Either way the run writes a record for every
unit and its summary, and its final status (``ok``, ``failed``, ``interrupted``,
``deadline-exceeded``) is the scheduled run's status. Tasks that never return do not hold
it up: the run gives up on them (``Summary.still_running`` counts them; their daemon
threads end only when the task returns).

A backstop remains for a run whose *consuming* thread does not come back after a cancel
(it should always: the run returns within its grace, whatever its tasks do; only a bug,
or a store that never answers, could keep it): ``cancel_grace`` real seconds after the
run's own grace has passed, the handle records the run as stopped and the scheduler moves
on, while the worker thread (a daemon) is left to end on its own and write what it has.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rolechain.clock import RunClock
from rolechain.errors import RolechainError, redact
from rolechain.executor.options import DEFAULT_GRACE
from rolechain.executor.records import STOP_CODES, Record, Summary
from rolechain.locations import location_of
from rolechain.model.chain import Chain
from rolechain.model.durations import format_duration
from rolechain.planner.plan import Plan
from rolechain.results.store import Store
from rolechain.scheduler.logs import EventLog
from rolechain.scheduler.types import (
    DEADLINE_EXCEEDED,
    ERROR,
    INTERRUPTED,
    LaunchRequest,
    RunResult,
)

if TYPE_CHECKING:
    from rolechain.executor import Run

CredentialsFor = Callable[[Chain, str], Any]  # (chain, job) -> botocore Credentials | None


CHANGES_IN_ALERT = 100  # changes listed in an on_change alert (the counts are whole)


def _now() -> datetime:
    return datetime.now(UTC)


def _first_lines(text: str, limit: int = 20) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:limit]) + (
        f"\n... ({len(lines) - limit} more lines)" if len(lines) > limit else ""
    )


def _end_without_summary(store: Store, result: RunResult) -> None:
    """The row of a run that never wrote its summary: its status, why, and its counts."""
    store.end_scheduled(
        result.run_id, status=result.status, reason=result.reason,
        targets=result.targets or None, targets_ok=result.targets_ok,
        targets_failed=result.targets_failed, records=result.records,
        records_failed=result.records_failed, started_at=result.started_at,
        finished_at=result.finished_at,
    )  # fmt: skip


class ExecutorHandle:
    """A run on a worker thread. See the module docs for how stopping works."""

    def __init__(
        self,
        launcher: ExecutorLauncher,
        request: LaunchRequest,
        on_done: Callable[[], None],
    ) -> None:
        self._launcher = launcher
        self._request = request
        self._on_done = on_done
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._result: RunResult | None = None
        self._run: Run | None = None
        self._stop_reason: str | None = None
        self._stop_grace: float | None = None
        self._backstop: threading.Timer | None = None
        # Filled in by the worker as the run goes; read by _give_up on a timer thread.
        self._progress_lock = threading.Lock()
        self._plan_targets: list[str] = []
        self._finished_ok: set[str] = set()
        self._finished_failed: set[str] = set()
        self._unfinished: set[str] = set()
        self._records = 0
        self._records_failed = 0
        self._started_at: str | None = None

    # -- RunHandle ---------------------------------------------------------------------

    @property
    def request(self) -> LaunchRequest:
        return self._request

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def result(self) -> RunResult | None:
        return self._result

    @property
    def run(self) -> Run | None:
        """The :class:`~rolechain.executor.Run`, once it exists."""
        return self._run

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def cancel(self, reason: str, grace: float | None = None) -> None:
        """Stop the run: no new task starts, tasks in flight get ``grace`` real seconds
        (default: the launcher's), the rest is recorded ``Interrupted``."""
        self._stop(reason, grace)

    def abandon(self, reason: str) -> None:
        """Stop now (a second signal): tasks in flight are not waited for. Returns once the
        run has written its records and summary, or at most ``cancel_grace`` seconds
        later, having recorded the run as interrupted."""
        self._stop(reason, 0.0)
        if not self._done.wait(self._launcher.cancel_grace):
            self._give_up()

    # -- stopping ----------------------------------------------------------------------

    def _stop(self, reason: str, grace: float | None) -> None:
        grace = self._launcher.grace if grace is None else max(0.0, grace)
        with self._lock:
            if self._done.is_set():
                return
            if self._stop_reason is None:
                self._stop_reason = reason
            if self._stop_grace is not None and grace >= self._stop_grace:
                return  # an earlier cancel already asked for as short a grace
            self._stop_grace = grace
            execution = self._run
        if execution is not None:  # else the worker applies it as soon as the run exists
            execution.cancel(self._stop_reason or reason, grace=grace)
        self._arm_backstop(grace)

    def _arm_backstop(self, grace: float) -> None:
        timer = threading.Timer(grace + self._launcher.cancel_grace, self._give_up)
        timer.daemon = True
        with self._lock:
            if self._done.is_set():
                return
            if self._backstop is not None:
                self._backstop.cancel()
            self._backstop = timer
        timer.start()

    def _give_up(self) -> None:
        """The run did not come back after a cancel (see the module docs): record it as
        interrupted now, with what it had finished."""
        result = self._partial_result(
            INTERRUPTED,
            f"{self._stop_reason or 'stopped'}; the run did not stop within "
            f"{self._launcher.cancel_grace:g}s of its grace period and was given up on",
        )
        if not self._settle(result):
            return
        try:
            with Store(self._launcher.store) as store:
                _end_without_summary(store, result)
        finally:
            self._notify()

    # -- the worker --------------------------------------------------------------------

    def start(self, chain: Chain) -> None:
        thread = threading.Thread(
            target=self._work, args=(chain,), name=f"rolechain-run-{self._request.job}",
            daemon=True,
        )  # fmt: skip
        thread.start()

    def _progress(self, target: str, ok: bool, done: int, total: int) -> None:
        with self._progress_lock:
            (self._finished_ok if ok else self._finished_failed).add(target)

    def _plan_ready(self, plan: Plan) -> None:
        """The checked plan: warn, as ``rolechain run`` does, when the principal's keys
        turned out to be a session and the job was planned again with its one-hour cap."""
        from rolechain.aws.identity import SESSION_NOTE

        log = self._launcher.log
        for note in plan.notes:
            if log is not None and note.kind == SESSION_NOTE:
                log.warning("plan_note", job=plan.job, run_id=plan.run_id, note=str(note))

    def _count(self, record: Record) -> None:
        with self._progress_lock:
            self._records += 1
            if not record.ok:
                self._records_failed += 1
                if record.error is not None and record.error.code in STOP_CODES:
                    self._unfinished.add(record.target)

    def _start_run(self, chain: Chain, store: Store) -> Run:
        from rolechain.executor import run

        request, launcher = self._request, self._launcher
        execution = run(
            chain,
            request.job,
            targets=list(request.targets) if request.targets else None,
            run_id=request.run_id,
            # The job's runtime, in real seconds: a rehearsal (--time-scale) compresses the
            # schedule, not the run's own limits, since its AWS calls take real time. None
            # when the job has no runtime, whatever the run would otherwise default to.
            deadline=request.deadline if request.deadline else math.inf,
            grace=launcher.grace,
            store=store,
            credentials=launcher.credentials_for(chain, request.job),
            progress=self._progress,
            on_plan=self._plan_ready,
            run_clock=launcher.run_clock,
        )
        with self._lock:
            self._run = execution
            reason, grace = self._stop_reason, self._stop_grace
        if reason is not None:  # cancelled before the run existed
            execution.cancel(reason, grace=grace)
        return execution

    def _work(self, chain: Chain) -> None:
        request = self._request
        trigger = request.trigger
        launcher = self._launcher
        result: RunResult
        try:
            with Store(launcher.store, on_error=self._store_failed) as store:
                started = launcher.now()
                self._started_at = started.isoformat()
                store.begin_scheduled(
                    request.run_id, request.job, trigger=trigger.kind,
                    scheduled_for=trigger.scheduled_for, attempt=trigger.attempt,
                    retry_of=trigger.retry_of, started_at=started,
                )  # fmt: skip
                finished = False
                try:
                    execution = self._start_run(chain, store)
                    self._plan_targets = [t.name for t in execution.plan.targets]
                    for record in execution:
                        self._count(record)
                    self._plan_targets = [t.name for t in execution.plan.targets]
                    result = self._summary_result(execution.summary)
                    finished = True
                    if request.changes:
                        result = self._with_changes(store, result)
                    if store.failure is not None:
                        # The run went on, but its records are not all in the store: an
                        # error, retried and alerted like a run that could not start.
                        result = replace(result, status=ERROR, reason=f"store: {store.failure}")
                except RolechainError as exc:
                    result = self._partial_result(ERROR, _first_lines(redact(str(exc))))
                except Exception as exc:  # a bug must not take the scheduler down
                    result = self._partial_result(ERROR, redact(f"{type(exc).__name__}: {exc}"))
                # Unless _give_up settled it first: then the scheduler has moved on, and
                # the store is still told how the run really ended.
                self._settle(result)
                if finished:
                    # The run wrote its own status and counts (Store.finish); add why.
                    store.end_scheduled(request.run_id, status=result.status,
                                        reason=result.reason)  # fmt: skip
                else:
                    _end_without_summary(store, result)
        except Exception as exc:  # the store itself failed (disk full, permissions)
            self._settle(self._partial_result(ERROR, f"store: {type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                if self._backstop is not None:
                    self._backstop.cancel()
            self._notify()

    def _store_failed(self, failure: Any) -> None:
        log = self._launcher.log
        if log is not None:
            log.error("store_failed", job=self._request.job, run_id=self._request.run_id,
                      reason=failure.problem, fix=failure.fix)  # fmt: skip

    # -- results -----------------------------------------------------------------------

    def _with_changes(self, store: Store, result: RunResult) -> RunResult:
        """The result with its diff against the job's previous complete run (on_change)."""
        from rolechain.results.inventory import diff, previous_complete
        from rolechain.results.store import COMPLETE

        if result.status not in COMPLETE:
            return result
        try:
            previous = previous_complete(store, result.run_id)
            if previous is None:
                return result
            found = diff(store, result.job, previous, result.run_id)
        except Exception as exc:  # a diff that fails must not lose the run's own alerts
            log = self._launcher.log
            if log is not None:
                log.error("diff_failed", job=result.job, run_id=result.run_id,
                          reason=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return result
        changes = {
            "changed": found.changed,
            "summary": found.summary(),
            "text": found.summary_line(),
            "changes": [c.to_dict() for c in found.changes[:CHANGES_IN_ALERT]],
            "unknown": [u.to_dict() for u in found.unknown[:CHANGES_IN_ALERT]],
        }
        return dataclasses.replace(result, changes=changes)

    def _ordered(self, names: set[str]) -> tuple[str, ...]:
        order = {name: i for i, name in enumerate(self._plan_targets)}
        return tuple(sorted(names, key=lambda t: (order.get(t, len(order)), t)))

    def _summary_result(self, summary: Summary) -> RunResult:
        """How the run ended, from its final summary."""
        status = summary.status
        reason = summary.stop_reason
        if status == DEADLINE_EXCEEDED and self._request.deadline:
            reason = (
                f"the job's runtime ({format_duration(int(self._request.deadline))}) was reached"
            )
        with self._progress_lock:
            unfinished = set(self._unfinished)
        failed = set(summary.failed_targets)
        return RunResult(
            run_id=self._request.run_id,
            job=self._request.job,
            status=status,
            targets=summary.targets,
            targets_ok=summary.targets_ok,
            targets_failed=summary.targets_failed,
            targets_unfinished=summary.targets_unfinished,
            failed_targets=self._ordered(failed | unfinished),  # both are retried
            records=summary.records,
            records_failed=summary.records_failed,
            started_at=self._started_at,
            finished_at=self._launcher.now().isoformat(),
            reason=reason,
            abandoned=summary.abandoned,
            still_running=summary.still_running,
        )

    def _partial_result(self, status: str, reason: str | None) -> RunResult:
        """How a run that has no final summary ended (it could not start, or was given up
        on): every target that did not finish is to be retried."""
        with self._progress_lock:
            ok, failed = set(self._finished_ok), set(self._finished_failed)
            records, records_failed = self._records, self._records_failed
        unfinished = {t for t in self._plan_targets if t not in ok | failed}
        return RunResult(
            run_id=self._request.run_id,
            job=self._request.job,
            status=status,
            targets=len(self._plan_targets),
            targets_ok=len(ok),
            targets_failed=len(failed),
            targets_unfinished=len(unfinished),
            failed_targets=self._ordered(failed | unfinished),
            records=records,
            records_failed=records_failed,
            started_at=self._started_at,
            finished_at=self._launcher.now().isoformat(),
            reason=reason,
        )

    def _settle(self, result: RunResult) -> bool:
        """Fix the result once; False if it was already fixed (by _give_up)."""
        with self._lock:
            if self._result is not None:
                return False
            self._result = result
            return True

    def _notify(self) -> None:
        if self._result is None:
            return
        with self._lock:
            first = not self._done.is_set()
            self._done.set()
        if first:
            self._on_done()


class ExecutorLauncher:
    """Starts each run with :func:`rolechain.run` on a worker thread, writing to ``store``.

    ``credentials_for(chain, job)`` supplies the starting credentials (None: the
    principal's own source, as ``rolechain run`` does); ``time_scale`` is the rehearsal's
    (it scales the schedule only: a job's runtime stays real seconds); ``grace`` is how
    long tasks in flight of a cancelled run may finish (real seconds); ``cancel_grace``
    is the backstop's margin past that (see the module docs); ``log`` gets what a run has
    to say before it ends (a principal planned again as a session); ``run_clock`` is the
    runs' own time (deadline, grace: :mod:`rolechain.clock`; real unless a test moves it).
    """

    def __init__(
        self,
        store: str | Path,
        *,
        credentials_for: CredentialsFor | None = None,
        time_scale: float = 1.0,
        grace: float = DEFAULT_GRACE,
        cancel_grace: float = 5.0,
        now: Callable[[], datetime] = _now,
        log: EventLog | None = None,
        run_clock: RunClock | None = None,
    ) -> None:
        self.store = location_of(store)  # a SQLite file, or a postgresql:// URL
        self._credentials_for = credentials_for
        self.time_scale = time_scale
        self.grace = grace
        self.cancel_grace = cancel_grace
        self.now = now
        self.log = log
        self.run_clock = run_clock

    def credentials_for(self, chain: Chain, job: str) -> Any:
        if self._credentials_for is None:
            return None
        return self._credentials_for(chain, job)

    def launch(
        self, chain: Chain, request: LaunchRequest, on_done: Callable[[], None]
    ) -> ExecutorHandle:
        handle = ExecutorHandle(self, request, on_done)
        handle.start(chain)
        return handle

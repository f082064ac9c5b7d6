"""The one place the scheduler starts real runs: :class:`ExecutorLauncher`.

Each run is ``rolechain.run()`` -- the same code as ``rolechain run`` -- consumed on a
worker thread of its own, writing to the store (its own connection). The scheduled row
(trigger, cron time, attempt) is written first, so even a run that cannot start (a plan,
credentials or identity error) is in the history with status ``error`` and why.

Stopping a run (``cancel``: shutdown, ``overlap: replace``; or its deadline, the job's
``runtime``) uses what :class:`rolechain.executor.Run` offers today: the worker stops
consuming records and closes the run, which stops starting targets, shuts the pool down
without waiting, marks the summary interrupted and writes every record that finished.
That takes effect when the next record arrives; a run whose in-flight tasks all hang
produces none, so ``cancel_grace`` real seconds after a cancel the handle gives up on it:
the row is marked (``interrupted`` or ``deadline_exceeded``) and the scheduler moves on,
while the worker thread (a daemon) is left to end on its own and add its counts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechain.errors import RolechainError
from rolechain.model.chain import Chain
from rolechain.results.store import Store
from rolechain.scheduler.types import (
    DEADLINE_EXCEEDED,
    ERROR,
    FAILED,
    INTERRUPTED,
    OK,
    LaunchRequest,
    RunResult,
)

CredentialsFor = Callable[[Chain, str], Any]  # (chain, job) -> botocore Credentials | None


def _now() -> datetime:
    return datetime.now(UTC)


def _first_lines(text: str, limit: int = 20) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:limit]) + (
        f"\n... ({len(lines) - limit} more lines)" if len(lines) > limit else ""
    )


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
        self._stop_reason: str | None = None
        self._stop_status: str | None = None
        self._timers: list[threading.Timer] = []
        # Filled in by the worker as the run goes; read by _give_up on a timer thread.
        self._progress_lock = threading.Lock()
        self._plan_targets: list[str] = []
        self._finished_ok: set[str] = set()
        self._finished_failed: set[str] = set()
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

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def cancel(self, reason: str) -> None:
        self._stop(INTERRUPTED, reason)

    def abandon(self, reason: str) -> None:
        """Stop waiting for the run now: record it interrupted (a second signal)."""
        self._stop(INTERRUPTED, reason)
        self._give_up()

    # -- stopping ----------------------------------------------------------------------

    def _stop(self, status: str, reason: str) -> None:
        with self._lock:
            if self._stop_reason is not None or self._done.is_set():
                return
            self._stop_reason, self._stop_status = reason, status
        timer = threading.Timer(self._launcher.cancel_grace, self._give_up)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _deadline(self) -> None:
        seconds = self._request.deadline or 0
        self._stop(DEADLINE_EXCEEDED, f"the job's runtime ({seconds:g}s) was reached")

    def _give_up(self) -> None:
        """The run did not stop within cancel_grace: record it as stopped now."""
        result = self._make_result(
            self._stop_status or INTERRUPTED, self._stop_reason, gave_up=True
        )
        if not self._settle(result):
            return
        try:
            with Store(self._launcher.store) as store:
                store.end_scheduled(result.run_id, status=result.status, reason=result.reason,
                                    finished_at=result.finished_at)  # fmt: skip
        finally:
            self._notify()

    # -- the worker --------------------------------------------------------------------

    def start(self, chain: Chain) -> None:
        if self._request.deadline:
            real = self._launcher.real_seconds(self._request.deadline)
            timer = threading.Timer(real, self._deadline)
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        thread = threading.Thread(
            target=self._work, args=(chain,), name=f"rolechain-run-{self._request.job}",
            daemon=True,
        )  # fmt: skip
        thread.start()

    def _progress(self, target: str, ok: bool, done: int, total: int) -> None:
        with self._progress_lock:
            (self._finished_ok if ok else self._finished_failed).add(target)

    def _work(self, chain: Chain) -> None:
        from rolechain.executor import run

        request = self._request
        trigger = request.trigger
        launcher = self._launcher
        result: RunResult
        try:
            with Store(launcher.store) as store:
                started = launcher.now()
                self._started_at = started.isoformat()
                store.begin_scheduled(
                    request.run_id, request.job, trigger=trigger.kind,
                    scheduled_for=trigger.scheduled_for, attempt=trigger.attempt,
                    retry_of=trigger.retry_of, started_at=started,
                )  # fmt: skip
                try:
                    execution = run(
                        chain,
                        request.job,
                        targets=list(request.targets) if request.targets else None,
                        run_id=request.run_id,
                        store=store,
                        credentials=launcher.credentials_for(chain, request.job),
                        progress=self._progress,
                    )
                    self._plan_targets = [t.name for t in execution.plan.targets]
                    records = iter(execution)
                    try:
                        for record in records:
                            self._records += 1
                            if not record.ok:
                                self._records_failed += 1
                            if self._stop_reason is not None:
                                break
                    finally:
                        close = getattr(records, "close", None)
                        if close is not None:
                            close()  # stops the pool, writes the summary (interrupted)
                    self._plan_targets = [t.name for t in execution.plan.targets]
                    summary = execution.summary
                    if self._stop_reason is not None:
                        result = self._make_result(
                            self._stop_status or INTERRUPTED, self._stop_reason
                        )
                    else:
                        status = OK if summary.ok else FAILED
                        result = self._make_result(status, None)
                except RolechainError as exc:
                    result = self._make_result(ERROR, _first_lines(str(exc)))
                except Exception as exc:  # a bug must not take the scheduler down
                    result = self._make_result(ERROR, f"{type(exc).__name__}: {exc}")
                self._settle(result)  # unless _give_up settled it first: its status stays
                final = self._result or result
                store.end_scheduled(
                    request.run_id, status=final.status, reason=final.reason,
                    targets=result.targets or None, targets_ok=result.targets_ok,
                    targets_failed=result.targets_failed, records=result.records,
                    records_failed=result.records_failed, started_at=result.started_at,
                    finished_at=result.finished_at,
                )  # fmt: skip
        except Exception as exc:  # the store itself failed (disk full, permissions)
            self._settle(self._make_result(ERROR, f"store: {type(exc).__name__}: {exc}"))
        finally:
            for timer in self._timers:
                timer.cancel()
            self._notify()

    # -- results -----------------------------------------------------------------------

    def _make_result(self, status: str, reason: str | None, *, gave_up: bool = False) -> RunResult:
        with self._progress_lock:
            ok_targets, failed = set(self._finished_ok), set(self._finished_failed)
        if status in (INTERRUPTED, DEADLINE_EXCEEDED, ERROR) or gave_up:
            # Targets that never finished are as good as failed: a retry runs them.
            finished = ok_targets | failed
            failed |= {t for t in self._plan_targets if t not in finished}
        order = {name: i for i, name in enumerate(self._plan_targets)}
        failed_targets = tuple(sorted(failed, key=lambda t: (order.get(t, len(order)), t)))
        return RunResult(
            run_id=self._request.run_id,
            job=self._request.job,
            status=status,
            targets=len(self._plan_targets),
            targets_ok=len(ok_targets),
            targets_failed=len(failed),
            failed_targets=failed_targets,
            records=self._records,
            records_failed=self._records_failed,
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
        first = not self._done.is_set()
        self._done.set()
        if first:
            self._on_done()


class ExecutorLauncher:
    """Starts each run with :func:`rolechain.run` on a worker thread, writing to ``store``.

    ``credentials_for(chain, job)`` supplies the starting credentials (None: the
    principal's own source, as ``rolechain run`` does); ``time_scale`` converts a job's
    runtime (scheduler time) into real seconds; ``cancel_grace`` is how long a stopped run
    may take to wind down before it is recorded as stopped regardless.
    """

    def __init__(
        self,
        store: Path,
        *,
        credentials_for: CredentialsFor | None = None,
        time_scale: float = 1.0,
        cancel_grace: float = 5.0,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.store = Path(store)
        self._credentials_for = credentials_for
        self.time_scale = time_scale
        self.cancel_grace = cancel_grace
        self.now = now

    def credentials_for(self, chain: Chain, job: str) -> Any:
        if self._credentials_for is None:
            return None
        return self._credentials_for(chain, job)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.time_scale

    def launch(
        self, chain: Chain, request: LaunchRequest, on_done: Callable[[], None]
    ) -> ExecutorHandle:
        handle = ExecutorHandle(self, request, on_done)
        handle.start(chain)
        return handle

"""The thread engine: bounded concurrency over targets on daemon threads of this process.

For each target (pulled lazily from the plan) a *prepare* step gets the target's
credentials from the hop tree and expands the target into work units
(:func:`~rolechain.executor.work.expand_target`); units then run the same way
(:func:`~rolechain.executor.work.execute_unit`). At most ``concurrency`` of them are in
flight and no result is kept after it is yielded, so memory stays flat as targets grow.
The run loop (:mod:`rolechain.executor.loop`) does the rest: the stop signal, the
deadline, the sink, the summary, the progress.

A run is bounded in time and never hangs:

* Work runs on daemon worker threads that the engine can *give up on*: a unit past its
  task ``timeout`` gets a ``TaskTimeout`` record at once and its slot goes to the next
  unit; its thread finishes in the background, off the count, and its late result is
  dropped (``Summary.late_results``). Daemon threads never hold up the process's exit, so
  a task that never returns cannot stop the run or the program from finishing. ``exec``
  enforces its own timeout (killing the command); the engine gives up on it a little later
  if even that hangs.
* The run's deadline (``RunContext.deadline``): when it comes, running units get
  ``TaskTimeout``, units not started ``DeadlineExceeded``; the run ends at once.
* :meth:`~rolechain.executor.loop.StopSignal.cancel` (``Run.cancel``, the CLI's
  SIGINT/SIGTERM handlers): no new unit starts; in-flight units get the grace period to
  finish (their records are kept); then whatever is left gets an ``Interrupted`` record. A
  second cancel with ``grace=0`` ends the wait at once.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from queue import SimpleQueue
from typing import Any

from rolechain.executor.context import services_of
from rolechain.executor.loop import CancelRequest, Out, RunLoop, RunnerBase
from rolechain.executor.records import (
    INTERRUPTED,
    TASK_TIMEOUT,
    Record,
    RecordError,
    error_of,
    iso,
    now,
    target_record,
    task_error,
    unit_record,
)
from rolechain.executor.units import WorkUnit
from rolechain.executor.work import execute_unit, expand_target
from rolechain.planner.plan import Target

EXEC_MARGIN = 5.0  # seconds past an exec task's own timeout before the engine gives up
MAX_WAIT = 5.0  # the loop looks around at least this often

# -- flights and workers ------------------------------------------------------------------

QUEUED, RUNNING, DONE, ABANDONED = "queued", "running", "done", "abandoned"


class _Flight:
    """One piece of work on a worker: a target's preparation, then possibly its unit."""

    __slots__ = (
        "_callbacks",
        "_lock",
        "kind",
        "returned",
        "started",
        "started_at",
        "state",
        "target",
        "timeout",
        "unit",
    )

    def __init__(
        self,
        kind: str,
        target: Target,
        unit: WorkUnit | None = None,
        timeout: float | None = None,
    ) -> None:
        self.kind = kind  # "prepare" | "unit"
        self.target = target
        self.unit = unit
        self.timeout = timeout  # seconds, measured from when the unit's task starts
        self.state = QUEUED
        self.started: float | None = None  # start of the current phase, on the run clock
        self.started_at: datetime | None = None
        self.returned = False  # the worker has come back from it (even if given up)
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def begin(self, at: float) -> bool:
        """It starts, ``at`` on the run clock."""
        with self._lock:
            if self.state != QUEUED:  # given up on, or finished without starting
                return False
            self.state = RUNNING
            self.started, self.started_at = at, now()
            return True

    def become_unit(self, unit: WorkUnit, timeout: float | None, at: float) -> bool:
        """A prepared target's single unit runs in place: its timeout starts now (``at``)."""
        with self._lock:
            if self.state != RUNNING:
                return False
            self.kind, self.unit, self.timeout = "unit", unit, timeout
            self.started, self.started_at = at, now()
            return True

    def finish(self) -> bool:
        """The worker is done with it; False if it was given up meanwhile."""
        with self._lock:
            self.returned = True
            if self.state == ABANDONED:
                return False
            self.state = DONE
            return True

    def abandon(self) -> str:
        """Give up on it; returns the state it was in (no change if it was done)."""
        with self._lock:
            before = self.state
            if before in (QUEUED, RUNNING):
                self.state = ABANDONED
                callbacks, self._callbacks = self._callbacks, []
            else:
                callbacks = []
        for callback in callbacks:
            with contextlib.suppress(Exception):  # stopping is best effort
                callback()
        return before

    def on_abandon(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if self.state != ABANDONED:
                self._callbacks.append(callback)
                return
        callback()

    def watch(self) -> tuple[str, str, float | None, float | None]:
        with self._lock:
            return self.state, self.kind, self.started, self.timeout


@dataclass(frozen=True)
class _Started:
    flight: _Flight


@dataclass(frozen=True)
class _Finished:
    flight: _Flight
    result: Any  # list[WorkUnit] | Record | _Crashed


@dataclass(frozen=True)
class _Crashed:
    error: BaseException


@dataclass(frozen=True)
class _NotStarted:
    """A worker got the job after a cancel and did not start it."""


class _Workers:
    """Daemon threads that run jobs; one that is given up on is replaced, not waited for.

    ``size`` workers count; a worker stuck in a job the runner gave up on stops counting
    (:meth:`retire`) and exits when the job returns. Being daemon threads, none of them
    keeps the interpreter from exiting (a ``ThreadPoolExecutor`` joins its threads at exit).
    """

    def __init__(self, size: int, name: str) -> None:
        self._jobs: SimpleQueue[Callable[[], bool] | None] = SimpleQueue()
        self._size = size
        self._name = name
        self._live = 0
        self._lock = threading.Lock()
        self._serial = itertools.count(1)

    def submit(self, job: Callable[[], bool]) -> None:
        """Run ``job``; it returns True when its worker must exit afterwards."""
        with self._lock:
            spawn = self._live < self._size
            if spawn:
                self._live += 1
        if spawn:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{next(self._serial)}", daemon=True
            )
            thread.start()
        self._jobs.put(job)

    def retire(self) -> None:
        """A worker is stuck in a job given up on: it no longer counts."""
        with self._lock:
            self._live -= 1

    def shutdown(self) -> None:
        with self._lock:
            idle, self._live = self._live, 0
        for _ in range(idle):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or job():
                return


# -- the engine -----------------------------------------------------------------------------


class ThreadRunner(RunnerBase):
    """Runs a prepared-or-not context's plan on threads; iterate :meth:`records`.

    The context is prepared (identity, discovery, hop tree) on a worker thread when the
    iteration starts, so that a cancel or the deadline can stop that too. The parts are
    :class:`~rolechain.executor.loop.RunnerBase`'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._closed = False

    def loop(self) -> ThreadLoop:
        return ThreadLoop(self)

    # called from worker threads -----------------------------------------------------------

    def late(self) -> None:
        """A task given up on has finished: its result is dropped, and counted."""
        with self._lock:
            if not self._closed:
                self.summary.late_results += 1

    def closed(self) -> None:
        with self._lock:
            self._closed = True


class ThreadLoop(RunLoop):
    """One iteration of a :class:`ThreadRunner` (on the consumer's thread)."""

    runner: ThreadRunner

    def __init__(self, runner: ThreadRunner) -> None:
        super().__init__(runner)
        self.workers = _Workers(self.context.concurrency, "rolechain")
        self.ready: deque[_Flight] = deque()
        self.inflight: set[_Flight] = set()
        self.abandoned: list[_Flight] = []
        self.next_target = 0
        self.timeouts = {t.id: t.timeout_seconds for t in self.context.plan.tasks}

    # -- the run ---------------------------------------------------------------------------

    def _setup(self) -> None:
        """Prepare the context on a worker thread, watching for a cancel and the deadline."""
        context = self.context
        if not context.prepared and not self._in_background(context.prepare, "rolechain-setup"):
            return  # gave up on the preparation: every target of the plan is unfinished
        plan = context.plan
        self.timeouts = {t.id: t.timeout_seconds for t in plan.tasks}
        context.sessions.warm(services_of(plan, context.regions), plan.region)
        self.set_up = True

    def _more(self) -> bool:
        if self.stop is not None:
            return bool(self.inflight) and not self._grace_over()
        self._fill()
        return bool(self.inflight)

    def _look_around(self) -> list[Out]:
        out = self._check_timeouts()
        return out + self._check_deadline()

    def _stop_work(self) -> None:
        self.workers.shutdown()
        self.runner.closed()

    def _tally(self) -> None:
        summary = self.summary
        summary.still_running = sum(1 for f in self.abandoned if not f.returned)
        summary.cpu_seconds = round(time.process_time() - self.cpu0, 3)
        summary.set_call_counts(self.context.stats.counts())
        summary.pacing = self.context.pacing_report()

    # -- scheduling ----------------------------------------------------------------------

    def _fill(self) -> None:
        while self.stop is None and len(self.inflight) < self.context.concurrency:
            if self.ready:
                self._submit(self.ready.popleft())
                continue
            if self.next_target >= len(self.targets):
                return
            self.next_target += 1
            self._submit(_Flight("prepare", self.targets[self.next_target - 1]))

    def _submit(self, flight: _Flight) -> None:
        self.inflight.add(flight)
        work = self._prepare if flight.kind == "prepare" else self._execute
        queue, runner = self.queue, self.runner

        def job() -> bool:
            if runner.stop.requested and flight.finish():
                # Cancelled after it was handed to this worker: never start it.
                queue.put(_Finished(flight, _NotStarted()))
                return False
            if not flight.begin(self.clock.monotonic()):
                return False  # given up on before it started
            if flight.kind == "unit" and flight.timeout:
                queue.put(_Started(flight))
            result: Any
            try:
                result = work(flight)
            except BaseException as exc:
                result = _Crashed(exc)
            if flight.finish():
                queue.put(_Finished(flight, result))
                return False
            runner.late()
            return True  # a replacement was started when it was given up on

        self.workers.submit(job)

    def _wait_seconds(self) -> float:
        now = self.clock.monotonic()
        wake = [now + MAX_WAIT]
        if self.deadline_at is not None:
            wake.append(self.deadline_at)
        if self.grace_until is not None:
            wake.append(self.grace_until)
        for flight in self.inflight:
            limit = self._limit(flight)
            if limit is not None:
                wake.append(limit)
        return max(0.0, min(wake) - now)

    def _limit(self, flight: _Flight) -> float | None:
        """When (on the run clock) the runner gives up on a running unit, if ever."""
        state, kind, started, timeout = flight.watch()
        if state != RUNNING or kind != "unit" or not timeout or started is None:
            return None
        assert flight.unit is not None
        margin = EXEC_MARGIN if flight.unit.task.task == "exec" else 0.0
        return started + timeout + margin

    def _grace_over(self) -> bool:
        return self.grace_until is not None and self.clock.monotonic() >= self.grace_until

    # -- events --------------------------------------------------------------------------

    def _handle(self, item: object) -> list[Out]:
        if isinstance(item, _Finished):
            return self._finished(item.flight, item.result)
        if isinstance(item, CancelRequest):
            self._cancel(item)
        return []  # _Started: only wakes the loop to watch the new timeout

    def _work_left(self) -> bool:
        pending = self.inflight or self.ready or self.next_target < len(self.targets)
        return not self.set_up or bool(pending)

    def _finished(self, flight: _Flight, result: Any) -> list[Out]:
        self.inflight.discard(flight)
        target = flight.target
        if isinstance(result, Record):
            return [(result, target)]
        if isinstance(result, _NotStarted):
            # Back in line: the stop (whose request may still be on the queue) records it.
            self.ready.appendleft(_Flight(flight.kind, target, flight.unit, flight.timeout))
            return []
        if isinstance(result, _Crashed):
            error = error_of(result.error)
            started = self._started_at(flight)
            if flight.kind == "unit" and flight.unit is not None:
                return [(unit_record(flight.unit, None, error, started, 0), target)]
            return [(target_record(self.context.plan, target, error, started, 0), target)]
        units: list[WorkUnit] = result
        if not units:
            self._finish_target(flight.target)
            return []
        self.remaining[flight.target.name] = len(units)
        # Finish started targets first: their units go to the front.
        for unit in reversed(units):
            self.ready.appendleft(
                _Flight("unit", flight.target, unit, self.timeouts.get(unit.task.id))
            )
        return []

    def _check_timeouts(self) -> list[Out]:
        out: list[Out] = []
        now = self.clock.monotonic()
        for flight in list(self.inflight):
            limit = self._limit(flight)
            if limit is None or now < limit:
                continue
            if self._give_up(flight) != RUNNING:
                continue  # it finished meanwhile: its result is on the queue
            assert flight.unit is not None
            assert flight.timeout is not None
            error = RecordError(
                code=TASK_TIMEOUT, message=f"task did not finish within {flight.timeout:g}s"
            )
            started, ms = self._started_at(flight), int(flight.timeout * 1000)
            out.append((unit_record(flight.unit, None, error, started, ms), flight.target))
        return out

    def _give_up(self, flight: _Flight) -> str:
        before = flight.abandon()
        if before in (QUEUED, RUNNING):
            self.inflight.discard(flight)
        if before == RUNNING:
            self.workers.retire()
            self.abandoned.append(flight)
            self.summary.abandoned += 1
        return before

    # -- stopping ------------------------------------------------------------------------

    def _wind_down(self) -> Iterator[Out]:
        """Everything that is left once the run stops (nothing when it ran to the end)."""
        # Results already finished come first: they are kept, never marked Interrupted.
        item = self._get(0)
        while item is not None:
            yield from self._handle(item)
            item = self._get(0)
        while self.inflight:
            waiting = False
            for flight in list(self.inflight):
                before = self._give_up(flight)
                if before in (QUEUED, RUNNING):
                    yield self._stopped_flight(flight, started=before == RUNNING), flight.target
                else:
                    waiting = True  # finished just now: its result is being queued
            if waiting:
                item = self._get(1.0)
                while item is not None:
                    yield from self._handle(item)
                    item = self._get(0)
        while self.ready:
            flight = self.ready.popleft()
            yield self._stopped_flight(flight, started=False), flight.target
        while self.next_target < len(self.targets):
            target = self.targets[self.next_target]
            self.next_target += 1
            yield self._stop_target_record(target), target

    def _stopped_flight(self, flight: _Flight, *, started: bool) -> Record:
        if flight.kind == "prepare" or flight.unit is None:
            return self._stop_target_record(flight.target, "before the target's tasks started")
        if not started:
            return self._stop_unit_record(flight.unit)
        now = self.clock.monotonic()
        ms = int((now - flight.started) * 1000) if flight.started is not None else 0
        if self.stop == "deadline-exceeded":
            error = RecordError(TASK_TIMEOUT, self._stop_message("while the task was running"))
        else:
            error = RecordError(
                INTERRUPTED,
                self._stop_message("and the task was still running when the grace period ended"),
            )
        return unit_record(flight.unit, None, error, self._started_at(flight), ms)

    def _stop_unit_record(self, unit: WorkUnit) -> Record:
        error = self._stop_error("before the task started")
        return unit_record(unit, None, error, iso(now()), 0)

    def _stop_target_record(
        self, target: Target, when: str = "before the target was started"
    ) -> Record:
        return target_record(self.context.plan, target, self._stop_error(when), iso(now()), 0)

    # -- accounting ----------------------------------------------------------------------

    def _finish_target(self, target: Target) -> None:
        if self.set_up:  # its clients are garbage now
            creds = self.context.tree.peek(target.hop_id)
            if creds is not None:
                self.context.sessions.release(creds)
        super()._finish_target(target)

    # -- work done on worker threads -------------------------------------------------------

    def _prepare(self, flight: _Flight) -> list[WorkUnit] | Record:
        context = self.context
        target = flight.target
        started = flight.started_at or now()
        t0 = time.perf_counter()
        try:
            units = expand_target(context, target, context.regions)
        except BaseException as exc:
            ms = int((time.perf_counter() - t0) * 1000)
            return target_record(context.plan, target, task_error(exc), iso(started), ms)
        if len(units) != 1 or self.runner.stop.requested:
            return units
        # The common case (one task, one region): run it here rather than going back
        # through the scheduler. Its timeout counts from now, not from the preparation.
        unit = units[0]
        if not flight.become_unit(unit, self.timeouts.get(unit.task.id), self.clock.monotonic()):
            return units
        if flight.timeout:
            self.queue.put(_Started(flight))
        return self._execute(flight)

    def _execute(self, flight: _Flight) -> Record:
        assert flight.unit is not None
        return execute_unit(
            self.context,
            flight.unit,
            timeout=flight.timeout,
            on_abandon=flight.on_abandon,
            started=flight.started_at,
        )

    @staticmethod
    def _started_at(flight: _Flight) -> str:
        return iso(flight.started_at or now())


__all__ = ["EXEC_MARGIN", "ThreadLoop", "ThreadRunner"]

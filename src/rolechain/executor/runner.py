"""The runner: bounded concurrency over targets, streaming records as units finish.

For each target (pulled lazily from the plan) a *prepare* step gets the target's
credentials from the hop tree (assuming hops the first time they are needed) and expands
the target into work units, one per (region, task); ``all`` regions are looked up in the
target account. Units then run the same way. At most ``concurrency`` of them are in flight
and no result is kept after it is yielded, so memory stays flat as targets grow.

A run is bounded in time and never hangs:

* Work runs on daemon worker threads that the runner can *give up on*: a unit past its
  task ``timeout`` gets a ``TaskTimeout`` record at once and its slot goes to the next
  unit; its thread finishes in the background, off the count, and its late result is
  dropped (``Summary.late_results``). Daemon threads never hold up the process's exit, so
  a task that never returns cannot stop the run or the program from finishing. ``exec``
  enforces its own timeout (killing the command); the runner gives up on it a little later
  if even that hangs.
* The run's deadline (``RunContext.deadline``): when it comes, running units get
  ``TaskTimeout``, units not started ``DeadlineExceeded``; the run ends at once.
* :meth:`StopSignal.cancel` (``Run.cancel``, the CLI's SIGINT/SIGTERM handlers): no new
  unit starts; in-flight units get the grace period to finish (their records are kept);
  then whatever is left gets an ``Interrupted`` record. A second cancel with ``grace=0``
  ends the wait at once.

Every unit of every planned target gets exactly one record (a target that fails before
its units exist, at a hop, gets one record for the target), and every record goes to the
sink (the store) before it is yielded, so the store holds them even if the consumer stops
reading.

Failures stay with their target: whatever a task raises (``SystemExit`` from
``sys.exit``, ``KeyboardInterrupt``, any ``BaseException``) becomes that unit's error
record, and the run goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from queue import Empty, SimpleQueue
from typing import Any, Protocol, runtime_checkable

from rolechain.aws.credentials import HopCredentials
from rolechain.aws.errors import describe_foreign
from rolechain.errors import AwsError, ExpiredTokenError, RolechainError, TaskError
from rolechain.executor.context import RunContext, services_of
from rolechain.executor.records import (
    DEADLINE_EXCEEDED,
    INTERRUPTED,
    STOP_CODES,
    TASK_TIMEOUT,
    Record,
    RecordError,
    StopKind,
    Summary,
)
from rolechain.executor.tasks import TASK_FUNCTIONS, TaskEnv, TaskFailed, enabled_regions
from rolechain.executor.units import WorkUnit, task_regions, units_for
from rolechain.model.durations import format_duration
from rolechain.planner.plan import Plan, Target

ProgressCallback = Callable[[str, bool, int, int], None]  # target, ok, done, total

EXEC_MARGIN = 5.0  # seconds past an exec task's own timeout before the runner gives up
MAX_WAIT = 5.0  # the scheduler looks around at least this often


@runtime_checkable
class RecordSink(Protocol):
    """Somewhere records go as they are made (the SQLite store implements this)."""

    def start(self, plan: Plan) -> None: ...

    def add(self, record: Record) -> None: ...

    def finish(self, summary: Summary) -> None: ...


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC)


def iso_now() -> str:
    """Now, as records write their ``started_at``."""
    return _iso(_now())


def _seconds(value: float) -> str:
    """``900`` -> ``15m``; ``1.5`` -> ``1.5s``."""
    return format_duration(int(value)) if value == int(value) else f"{value:g}s"


def unit_record(
    unit: WorkUnit, data: Any, error: RecordError | None, started_at: str, duration_ms: int
) -> Record:
    """The record of one unit: ok with ``data``, or an error."""
    return Record(
        job=unit.job,
        run_id=unit.run_id,
        target=unit.target,
        account_id=unit.account_id,
        role_arn=unit.role_arn,
        region=unit.region,
        task=unit.task.id,
        status="error" if error else "ok",
        data=data,
        error=error,
        started_at=started_at,
        duration_ms=duration_ms,
    )


def target_record(
    plan: Plan, target: Target, error: RecordError, started_at: str, ms: int
) -> Record:
    """The one record of a target that failed (or stopped) before its units existed."""
    return Record(
        job=plan.job,
        run_id=plan.run_id,
        target=target.name,
        account_id=target.account_id,
        role_arn=target.role_arn,
        region=None,
        task=None,
        status="error",
        error=error,
        started_at=started_at,
        duration_ms=ms,
    )


def error_of(exc: BaseException) -> RecordError:
    """The record's error for an exception (never includes a credential)."""
    if isinstance(exc, AwsError):
        return RecordError(code=exc.code, message=exc.aws_message, hop=exc.context.hop)
    if isinstance(exc, TaskError):
        return RecordError(code=exc.code, message=exc.message)
    if isinstance(exc, RolechainError):
        return RecordError(code=type(exc).__name__, message=exc.message)
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        return RecordError(code=name, message=f"the task called sys.exit({exc.code!r})")
    if not isinstance(exc, Exception):  # KeyboardInterrupt, GeneratorExit, other BaseExceptions
        detail = f": {exc}" if str(exc) else ""
        return RecordError(code=name, message=f"the task raised {name}{detail}")
    return RecordError(code=name, message=str(exc) or name)


def _task_error(exc: BaseException) -> RecordError:
    foreign = describe_foreign(exc) if isinstance(exc, Exception) else None
    return error_of(foreign if foreign is not None else exc)


# -- running one unit (also what a distributed engine's worker calls) ---------------------


def execute_unit(
    context: RunContext,
    unit: WorkUnit,
    *,
    timeout: float | None = None,
    on_abandon: Callable[[Callable[[], None]], None] | None = None,
    started: datetime | None = None,
) -> Record:
    """Run one unit with the context's hop tree; always returns its record.

    Whatever the task raises, ``BaseException`` included, becomes an error record.
    ``timeout`` is passed to the task (``exec`` enforces it); ``on_abandon`` registers
    what to stop if the caller gives up on the task.
    """
    started = started or _now()
    t0 = time.perf_counter()
    data: Any = None
    error: RecordError | None = None
    try:
        data = _run_task(context, unit, timeout, on_abandon)
    except TaskFailed as exc:
        data, error = exc.data, error_of(exc)
    except BaseException as exc:
        error = _task_error(exc)
    return unit_record(unit, data, error, _iso(started), int((time.perf_counter() - t0) * 1000))


def _run_task(
    context: RunContext,
    unit: WorkUnit,
    timeout: float | None,
    on_abandon: Callable[[Callable[[], None]], None] | None,
) -> Any:
    func = TASK_FUNCTIONS.get(unit.task.task)
    if func is None:
        raise TaskError(f"unknown task {unit.task.task!r}", code="UnknownTask")
    creds: HopCredentials = context.tree.credentials(unit.hop_id)
    env = task_env(context, creds, timeout, on_abandon)
    used = creds.get_frozen_credentials().access_key
    try:
        return func(unit, env)
    except ExpiredTokenError:
        # The target's session expired under us (clock skew, a revoked session):
        # re-assume it from its parent and try once more.
        creds.force_refresh(stale_access_key=used)
        context.stats.add_expired_token_refresh()
        return func(unit, env)
    finally:
        env.close()  # its clients go back to be lent to the next task


def task_env(
    context: RunContext,
    creds: HopCredentials,
    timeout: float | None = None,
    on_abandon: Callable[[Callable[[], None]], None] | None = None,
) -> TaskEnv:
    """What a task gets from the run: credentials, clients, retries, the throttle budget
    and the run's deadline."""
    return TaskEnv(
        creds,
        context.sessions,
        context.policy,
        context.stats,
        timeout,
        on_abandon,
        budget=context.budget,
        deadline=context.deadline_at,
    )


def expand_target(
    context: RunContext, target: Target, regions: tuple[str, ...] | None = None
) -> list[WorkUnit]:
    """The target's units, one per (region, task); assumes its hops if needed.

    ``all`` regions are looked up in the target account (ec2:DescribeRegions).
    """
    plan = context.plan
    creds = context.tree.for_target(target)
    units: list[WorkUnit] = []
    enabled: tuple[str, ...] | None = None
    for task in plan.tasks:
        chosen = task_regions(plan, target, task, regions)
        if "all" in chosen:
            if enabled is None:
                env = task_env(context, creds)
                try:
                    enabled = enabled_regions(env, plan.region)
                finally:
                    env.close()
            chosen = enabled
        units.extend(units_for(plan, target, task, chosen))
    skip = context.options.skip
    if skip:  # a resumed run: what the run it resumes finished is not run again
        units = [u for u in units if (u.target, u.region, u.task.id) not in skip]
    return units


# -- cancelling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelRequest:
    """What :meth:`StopSignal.cancel` puts on the run's queue."""

    reason: str
    grace: float | None


class StopSignal:
    """Cancel requests for one run, from any thread or from a signal handler.

    :meth:`cancel` only sets a flag and puts an item on a :class:`queue.SimpleQueue`,
    whose ``put`` is reentrant, so it is safe in a signal handler that interrupts the very
    thread reading the records.
    """

    def __init__(self) -> None:
        self.queue: SimpleQueue[object] = SimpleQueue()
        self.requested = False
        self.reason: str | None = None

    def cancel(self, reason: str = "cancelled", *, grace: float | None = None) -> None:
        if self.reason is None:
            self.reason = reason
        self.requested = True
        self.queue.put(CancelRequest(reason, grace))


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
        self.started: float | None = None  # monotonic start of the current phase
        self.started_at: datetime | None = None
        self.returned = False  # the worker has come back from it (even if given up)
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def begin(self) -> bool:
        with self._lock:
            if self.state != QUEUED:  # given up on, or finished without starting
                return False
            self.state = RUNNING
            self.started, self.started_at = time.monotonic(), _now()
            return True

    def become_unit(self, unit: WorkUnit, timeout: float | None) -> bool:
        """A prepared target's single unit runs in place: its timeout starts now."""
        with self._lock:
            if self.state != RUNNING:
                return False
            self.kind, self.unit, self.timeout = "unit", unit, timeout
            self.started, self.started_at = time.monotonic(), _now()
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


# -- the runner ---------------------------------------------------------------------------


class Runner:
    """Runs a prepared-or-not context's plan; iterate :meth:`records` for records.

    The context is prepared (identity, discovery, hop tree) on a worker thread when the
    iteration starts, so that a cancel or the deadline can stop that too.

    ``targets`` runs only these targets of the plan (by name; a distributed engine's worker
    runs one batch of them with the run's context). ``deadline_at`` is the run's deadline as
    a wall-clock time (``time.time()``), shared by every process of a distributed run;
    without it the deadline counts from when the iteration starts.
    """

    def __init__(
        self,
        context: RunContext,
        *,
        progress: ProgressCallback | None = None,
        summary: Summary | None = None,
        sink: RecordSink | None = None,
        stop: StopSignal | None = None,
        targets: Sequence[str] | None = None,
        deadline_at: float | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> None:
        self.context = context
        self.progress = progress
        self.on_plan = on_plan
        plan = context.plan
        self.summary = summary or Summary(job=plan.job, run_id=plan.run_id)
        self.sink = sink
        self.stop = stop or StopSignal()
        self.only = frozenset(targets) if targets is not None else None
        self.deadline_at = deadline_at
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self) -> Iterator[Record]:
        return iterate(_Schedule(self))

    # called from worker threads -----------------------------------------------------------

    def late(self) -> None:
        """A task given up on has finished: its result is dropped, and counted."""
        with self._lock:
            if not self._closed:
                self.summary.late_results += 1

    def closed(self) -> None:
        with self._lock:
            self._closed = True


class Iteration:
    """What every engine's iteration of a run shares (on the consumer's thread): the run's
    queue, how the run is stopping (why; until when in-flight work may finish), and the
    accounting of records and targets into the summary, the sink and the progress callback.
    :func:`iterate` drives one.
    """

    def __init__(
        self,
        context: RunContext,
        summary: Summary,
        stop: StopSignal,
        *,
        sink: RecordSink | None,
        progress: ProgressCallback | None,
        deadline_at: float | None = None,
    ) -> None:
        self.context = context
        self.summary = summary
        self.queue = stop.queue
        self.sink = sink
        self.progress = progress
        self.failed: set[str] = set()
        self.unfinished: set[str] = set()
        self.done_targets = 0
        self.set_up = False
        self.sink_started = False
        self.stop: StopKind | None = None
        self.stop_reason: str | None = None
        self.grace_until: float | None = None
        self.clock0 = time.monotonic()
        self.cpu0 = time.process_time()
        # The run begins: paced calls and retries stop waiting at its deadline too.
        self.deadline_at = context.begin(self.clock0)
        if deadline_at is not None:  # the run's, as a wall-clock time (shared by processes)
            self.deadline_at = self.clock0 + (deadline_at - time.time())
            context.deadline_at = self.deadline_at

    # what each engine provides
    def run(self) -> Iterator[Record]:
        raise NotImplementedError

    def abort(self, reason: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _work_left(self) -> bool:
        """Whether a stop would cut anything short (a run that is done stays done)."""
        raise NotImplementedError

    def _handle(self, item: object) -> list[Any]:
        """React to an item of the run's queue (a cancel, a result); records it made."""
        raise NotImplementedError

    def _wait_seconds(self) -> float:
        raise NotImplementedError

    def _check_deadline(self) -> object:
        raise NotImplementedError

    # -- waiting -------------------------------------------------------------------------

    def _in_background(self, work: Callable[[], object], name: str) -> bool:
        """Run ``work`` (preparing the run) on a daemon thread while watching for a cancel
        and the deadline. False if the run stopped first: the thread is given up on. What
        ``work`` raises is raised here."""
        box: list[BaseException] = []
        queue = self.queue

        def run() -> None:
            try:
                work()
            except BaseException as exc:
                box.append(exc)
            queue.put(_SetupDone())

        threading.Thread(target=run, name=name, daemon=True).start()
        while True:
            item = self._get(self._wait_seconds())
            if isinstance(item, _SetupDone):
                break
            if item is not None:
                self._handle(item)  # a cancel: nothing has started, no records
            self._check_deadline()
            if self._stopping():
                return False
        if box:
            raise box[0]
        return True

    def _get(self, timeout: float | None) -> object | None:
        try:
            if timeout is not None and timeout <= 0:
                return self.queue.get_nowait()
            return self.queue.get(timeout=timeout)
        except Empty:
            return None

    def _stopping(self) -> bool:
        return self.stop is not None

    # -- stopping ------------------------------------------------------------------------

    def _cancel(self, request: CancelRequest) -> bool:
        """Apply a cancel: stop, with the grace; a later one may shorten the grace. Whether
        anything changed."""
        now = time.monotonic()
        grace = self.context.grace if request.grace is None else max(0.0, request.grace)
        if self.stop is None and self._work_left():
            self.stop, self.stop_reason = "interrupted", request.reason
            self.grace_until = now + grace
            return True
        if self.stop == "interrupted" and request.grace is not None:
            assert self.grace_until is not None
            self.grace_until = min(self.grace_until, now + grace)
            return True
        return False

    def _deadline_passed(self) -> bool:
        """Stop if the deadline has come (and anything is left); whether it stopped now."""
        if self.deadline_at is None or self.stop == "deadline-exceeded":
            return False
        if time.monotonic() < self.deadline_at or not self._work_left():
            return False
        self.stop = "deadline-exceeded"
        self.stop_reason = f"deadline of {_seconds(self.context.deadline or 0)}"
        self.grace_until = time.monotonic()
        return True

    def _stop_message(self, when: str) -> str:
        if self.stop == "deadline-exceeded":
            return f"the run's {self.stop_reason} was reached {when}"
        return f"the run was interrupted ({self.stop_reason}) {when}"

    def _stop_code(self) -> str:
        return DEADLINE_EXCEEDED if self.stop == "deadline-exceeded" else INTERRUPTED

    def _stop_error(self, when: str) -> RecordError:
        return RecordError(self._stop_code(), self._stop_message(when))

    # -- accounting ----------------------------------------------------------------------

    def _count(self, record: Record) -> None:
        """A record into the summary (its target's outcome is decided when it finishes)."""
        summary = self.summary
        summary.records += 1
        if not record.ok:
            summary.records_failed += 1
            assert record.error is not None
            failed = self.unfinished if record.error.code in STOP_CODES else self.failed
            failed.add(record.target)

    def _store(self, record: Record) -> Record:
        if self.sink is not None:
            self.sink.add(record)
        return record

    def _finish_target(self, target: Target) -> None:
        summary = self.summary
        name = target.name
        self.done_targets += 1
        unfinished = name in self.unfinished
        ok = not unfinished and name not in self.failed
        if unfinished:
            summary.targets_unfinished += 1
        elif ok:
            summary.targets_ok += 1
        else:
            summary.targets_failed += 1
            summary.failed_targets.append(name)
        self.unfinished.discard(name)
        self.failed.discard(name)
        # Progress reports targets that finished; one the run stopped before is not.
        if self.progress is not None and not unfinished:
            self.progress(name, ok, self.done_targets, summary.targets)

    def _close_summary(self) -> None:
        summary = self.summary
        summary.stop, summary.stop_reason = self.stop, self.stop_reason
        summary.elapsed_seconds = round(time.monotonic() - self.clock0, 3)
        summary.finished_at = _iso(_now())


def iterate(schedule: Iteration) -> Iterator[Record]:
    """The records of one iteration; whatever stops the caller, the rest go to the sink."""
    try:
        yield from schedule.run()
    except (GeneratorExit, KeyboardInterrupt, SystemExit) as exc:
        # The consumer stopped reading (GeneratorExit), or KeyboardInterrupt/SystemExit
        # arrived while the runner waited: stop, and put every unit's record in the
        # sink; they cannot be yielded any more.
        reason = (
            "the caller stopped reading records"
            if isinstance(exc, GeneratorExit)
            else type(exc).__name__
        )
        schedule.abort(reason)
        raise
    finally:
        schedule.close()


class _Schedule(Iteration):
    """The state of one iteration of a :class:`Runner` (on the consumer's thread)."""

    def __init__(self, runner: Runner) -> None:
        super().__init__(
            runner.context,
            runner.summary,
            runner.stop,
            sink=runner.sink,
            progress=runner.progress,
            deadline_at=runner.deadline_at,
        )
        self.runner = runner
        self.workers = _Workers(self.context.concurrency, "rolechain")
        self.ready: deque[_Flight] = deque()
        self.inflight: set[_Flight] = set()
        self.abandoned: list[_Flight] = []
        self.remaining: dict[str, int] = {}
        self.targets: tuple[Target, ...] = ()  # set once the plan is final
        self.next_target = 0
        self.timeouts = {t.id: t.timeout_seconds for t in self.context.plan.tasks}

    # -- the whole run -------------------------------------------------------------------

    def run(self) -> Iterator[Record]:
        self.summary.started_at = _iso(_now())
        item = self._get(0)
        while item is not None:  # a cancel that came before the run started
            self._handle(item)
            item = self._get(0)
        self._check_deadline()  # a batch of a distributed run may start after it
        self._setup()
        if self.stop is None:
            while self._step_needed():
                yield from self._step()
        yield from self._finish()

    def _setup(self) -> None:
        """Prepare the context on a worker thread, watching for a cancel and the deadline."""
        context = self.context
        if self.stop is not None:
            self._start_sink()
            self.targets = self._planned()
            return
        if not context.prepared and not self._in_background(context.prepare, "rolechain-setup"):
            # Gave up on the preparation; every target of the plan is unfinished.
            self._start_sink()
            self.targets = self._planned()
            return
        self._start_sink()
        plan = context.plan
        self.timeouts = {t.id: t.timeout_seconds for t in plan.tasks}
        context.sessions.warm(services_of(plan, context.regions), plan.region)
        self.targets = self._planned()
        self.set_up = True

    def _planned(self) -> tuple[Target, ...]:
        """The targets this iteration runs: the plan's, or those the runner was given."""
        targets = self.context.plan.targets
        only = self.runner.only
        return targets if only is None else tuple(t for t in targets if t.name in only)

    def _start_sink(self) -> None:
        plan = self.context.plan
        self.summary.targets = len(self._planned())
        self.summary.planned_assume_calls = plan.assume_calls
        if self.sink_started:
            return
        if self.runner.sink is not None:
            self.runner.sink.start(plan)
        self.sink_started = True
        if self.runner.on_plan is not None:
            self.runner.on_plan(plan)

    def _step_needed(self) -> bool:
        if self.stop is not None:
            return bool(self.inflight) and not self._grace_over()
        self._fill()
        return bool(self.inflight)

    def _step(self) -> Iterator[Record]:
        item = self._get(self._wait_seconds())
        out: list[_Out] = []
        while item is not None:
            out.extend(self._handle(item))
            item = self._get(0)
        out.extend(self._check_timeouts())
        self._check_deadline()
        # Into the sink (and the summary) first: if the caller stops reading, none is lost.
        yield from [self._emit(record, target) for record, target in out]

    def _finish(self) -> Iterator[Record]:
        """Records for everything left: finished results first, then stop records."""
        for record, target in self._wind_down():
            yield self._emit(record, target)

    def abort(self, reason: str) -> None:
        """Stop now, without yielding: remaining records go to the sink only."""
        if self.stop is None and self._work_left():
            self.stop, self.stop_reason = "interrupted", reason
        self.grace_until = time.monotonic()
        if not self.sink_started:  # stopped while preparing: every target is unfinished
            self._start_sink()
            self.targets = self._planned()
        for record, target in self._wind_down():
            self._emit(record, target)

    def close(self) -> None:
        summary = self.summary
        context = self.context
        self.workers.shutdown()
        self.runner.closed()
        self._close_summary()
        summary.still_running = sum(1 for f in self.abandoned if not f.returned)
        summary.cpu_seconds = round(time.process_time() - self.cpu0, 3)
        summary.set_call_counts(context.stats.counts())
        summary.pacing = context.pacing_report()
        if self.runner.sink is not None and self.sink_started:
            self.runner.sink.finish(summary)

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
            if not flight.begin():
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
        now = time.monotonic()
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
        """When (monotonic) the runner gives up on a running unit, if ever."""
        state, kind, started, timeout = flight.watch()
        if state != RUNNING or kind != "unit" or not timeout or started is None:
            return None
        assert flight.unit is not None
        margin = EXEC_MARGIN if flight.unit.task.task == "exec" else 0.0
        return started + timeout + margin

    def _grace_over(self) -> bool:
        return self.grace_until is not None and time.monotonic() >= self.grace_until

    # -- events --------------------------------------------------------------------------

    def _handle(self, item: object) -> list[_Out]:
        if isinstance(item, _Finished):
            return self._finished(item.flight, item.result)
        if isinstance(item, CancelRequest):
            self._cancel(item)
        return []  # _Started: only wakes the loop to watch the new timeout

    def _work_left(self) -> bool:
        pending = self.inflight or self.ready or self.next_target < len(self.targets)
        return not self.set_up or bool(pending)

    def _check_deadline(self) -> None:
        self._deadline_passed()

    def _finished(self, flight: _Flight, result: Any) -> list[_Out]:
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

    def _check_timeouts(self) -> list[_Out]:
        out: list[_Out] = []
        now = time.monotonic()
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

    def _wind_down(self) -> Iterator[_Out]:
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
        now = time.monotonic()
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
        return unit_record(unit, None, error, _iso(_now()), 0)

    def _stop_target_record(
        self, target: Target, when: str = "before the target was started"
    ) -> Record:
        return target_record(self.context.plan, target, self._stop_error(when), _iso(_now()), 0)

    # -- accounting ----------------------------------------------------------------------

    def _emit(self, record: Record, target: Target) -> Record:
        self._count(record)
        name = record.target
        left = self.remaining.get(name, 1) - 1
        if left <= 0:
            self.remaining.pop(name, None)
            self._finish_target(target)
        else:
            self.remaining[name] = left
        return self._store(record)

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
        started = flight.started_at or _now()
        t0 = time.perf_counter()
        try:
            units = expand_target(context, target, context.regions)
        except BaseException as exc:
            ms = int((time.perf_counter() - t0) * 1000)
            return target_record(context.plan, target, _task_error(exc), _iso(started), ms)
        if len(units) != 1 or self.runner.stop.requested:
            return units
        # The common case (one task, one region): run it here rather than going back
        # through the scheduler. Its timeout counts from now, not from the preparation.
        unit = units[0]
        if not flight.become_unit(unit, self.timeouts.get(unit.task.id)):
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
        return _iso(flight.started_at or _now())


@dataclass(frozen=True)
class _SetupDone:
    pass


_Out = tuple[Record, Target]  # a record and the target it belongs to


__all__ = [
    "CancelRequest",
    "Iteration",
    "ProgressCallback",
    "RecordSink",
    "Runner",
    "StopSignal",
    "error_of",
    "execute_unit",
    "expand_target",
    "iso_now",
    "iterate",
    "services_of",
    "target_record",
    "unit_record",
]

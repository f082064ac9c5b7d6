"""The run loop every engine shares: how a run starts, steps, stops and ends.

An engine (:mod:`~rolechain.executor.threads`, :mod:`~rolechain.executor.dask`) is a
:class:`RunnerBase` (the parts of a run: context, summary, sink, progress, stop signal,
``on_plan``) whose :meth:`~RunnerBase.records` drives one :class:`RunLoop` on the
consumer's thread. The loop owns the skeleton, written once:

* :meth:`RunLoop.run`: take any cancel that came first, check the deadline, set up (the
  engine's :meth:`~RunLoop._setup`, on a thread the loop may give up on), start the sink,
  launch, then step until the engine has nothing more (:meth:`~RunLoop._more`), then wind
  down;
* :meth:`RunLoop._step`: wait for the run's queue (results, cancels), let the engine react
  (:meth:`~RunLoop._handle`) and look around (:meth:`~RunLoop._look_around`: timeouts,
  the deadline, workers), then emit what came of it;
* stopping: a cancel (:class:`StopSignal`, the run's queue) stops the run with a grace
  period; the deadline stops it at once; :meth:`RunLoop.abort` when the consumer stops
  reading;
* accounting, once: every record into the summary and the sink before it is yielded, each
  target's outcome and the progress callback when its last record is emitted, the summary
  closed and handed to the sink whatever happened.

The engine says only what differs: how it sets up and launches work, how it reacts to its
queue, what is left when the run stops (:meth:`~RunLoop._wind_down`), and what it adds to
the summary at the end.

Every unit of every planned target gets exactly one record (a target that fails before
its units exist gets one record for the target; a glob over an Organizations role set that
matched none of the listed accounts gets one ``NoMatchingAccounts`` record and counts as a
failed target), and every record goes to the sink (the store) before it is yielded, so the
store holds them even if the consumer stops reading.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from queue import Empty, SimpleQueue

from rolechain.executor.context import RunContext
from rolechain.executor.records import (
    DEADLINE_EXCEEDED,
    INTERRUPTED,
    STOP_CODES,
    Record,
    RecordError,
    RecordSink,
    StopKind,
    Summary,
    iso_now,
    no_match_record,
)
from rolechain.model.durations import format_duration
from rolechain.planner.plan import NoMatch, Plan, Target

ProgressCallback = Callable[[str, bool, int, int], None]  # target, ok, done, total

Out = tuple[Record, Target]
"""A record and the target it belongs to, as an engine hands it to the loop."""


def _seconds(value: float) -> str:
    """``900`` -> ``15m``; ``1.5`` -> ``1.5s``."""
    return format_duration(int(value)) if value == int(value) else f"{value:g}s"


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


@dataclass(frozen=True)
class _SetupDone:
    pass


# -- an engine ----------------------------------------------------------------------------


class RunnerBase:
    """The parts of one run an engine is given, and its records: iterate :meth:`records`.

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

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self) -> Iterator[Record]:
        return iterate(self.loop())

    def loop(self) -> RunLoop:
        """A new iteration of this run (the engine's :class:`RunLoop`)."""
        raise NotImplementedError


# -- the loop -----------------------------------------------------------------------------


class RunLoop:
    """One iteration of a run, on the consumer's thread (see the module docstring).

    Subclasses provide :meth:`_setup`, :meth:`_more`, :meth:`_handle`,
    :meth:`_wait_seconds`, :meth:`_work_left` and :meth:`_wind_down`, and may extend
    :meth:`_launch`, :meth:`_look_around`, :meth:`_on_deadline`, :meth:`_finish_target`,
    :meth:`_stop_work`, :meth:`_tally` and :meth:`_release`.
    """

    engine_name = "threads"

    def __init__(self, runner: RunnerBase) -> None:
        context = runner.context
        self.runner = runner
        self.context = context
        self.summary = runner.summary
        self.queue = runner.stop.queue
        self.sink = runner.sink
        self.progress = runner.progress
        self.on_plan = runner.on_plan
        self.only = runner.only
        self.targets: tuple[Target, ...] = ()  # set once the plan is final
        self.remaining: dict[str, int] = {}  # records still to come, by target
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
        if runner.deadline_at is not None:  # the run's, as a wall-clock time (shared)
            self.deadline_at = self.clock0 + (runner.deadline_at - time.time())
            context.deadline_at = self.deadline_at

    # -- the skeleton ----------------------------------------------------------------------

    def run(self) -> Iterator[Record]:
        self.summary.started_at = iso_now()
        self.summary.engine = self.engine_name
        item = self._get(0)
        while item is not None:  # a cancel that came before the run started
            self._handle(item)
            item = self._get(0)
        self._check_deadline()  # a batch of a distributed run may start after it
        if self.stop is None:
            self._setup()
        self._start_sink()
        if self.set_up and self.stop is None:
            yield from self._no_matches()
            self._launch()
            while self._more():
                yield from self._step()
        yield from self._finish()

    def _step(self) -> Iterator[Record]:
        item = self._get(self._wait_seconds())
        out: list[Out] = []
        while item is not None:
            out.extend(self._handle(item))
            item = self._get(0)
        out.extend(self._look_around())
        # Into the sink (and the summary) first: if the caller stops reading, none is lost.
        yield from [self._emit(record, target) for record, target in out]

    def _finish(self) -> Iterator[Record]:
        """Records for everything left: finished results first, then stop records."""
        for record, target in self._wind_down():
            yield self._emit(record, target)

    def abort(self, reason: str) -> None:
        """Stop now, without yielding: the records left go to the sink only."""
        if self.stop is None and self._work_left():
            self.stop, self.stop_reason = "interrupted", reason
        self.grace_until = time.monotonic()
        if not self.sink_started:  # stopped while preparing: every target is unfinished
            self._start_sink()
        for record, target in self._wind_down():
            self._emit(record, target)

    def close(self) -> None:
        """The end of the iteration, however it ended: the summary, closed, to the sink."""
        self._stop_work()
        self._close_summary()
        self._tally()
        try:
            if self.sink is not None and self.sink_started:
                self.sink.finish(self.summary)
        finally:
            self._release()

    def _start_sink(self) -> None:
        """The plan is final (or the run stopped before it was): its targets are the
        run's; the sink and ``on_plan`` get the plan (once)."""
        plan = self.context.plan
        self.targets = self._planned()
        self.summary.targets = len(self.targets) + len(self._unmatched())
        self.summary.planned_assume_calls = plan.assume_calls
        if self.sink_started:
            return
        if self.sink is not None:
            self.sink.start(plan)
        self.sink_started = True
        if self.on_plan is not None:
            self.on_plan(plan)

    def _unmatched(self) -> tuple[NoMatch, ...]:
        """Globs over Organizations role sets that matched no listed account: each is a
        failed target of the whole run with one error record (not of a batch of it)."""
        return self.context.plan.unmatched if self.only is None else ()

    def _no_matches(self) -> Iterator[Record]:
        for miss in self._unmatched():
            record = no_match_record(self.context.plan, miss, iso_now())
            self._count(record)
            self._target_done(record.target)
            if self.sink is not None:
                self.sink.add(record)
            yield record

    def _planned(self) -> tuple[Target, ...]:
        """The targets this iteration runs: the plan's, or those the runner was given."""
        targets = self.context.plan.targets
        only = self.only
        return targets if only is None else tuple(t for t in targets if t.name in only)

    # -- what each engine provides ---------------------------------------------------------

    def _setup(self) -> None:
        """Get ready (prepare the context, connect...), watching for a cancel and the
        deadline (:meth:`_in_background`); set :attr:`set_up` when the work may start."""
        raise NotImplementedError

    def _launch(self) -> None:
        """Start the work, once set up (before the first step)."""

    def _more(self) -> bool:
        """Whether to step again (False: wind down)."""
        raise NotImplementedError

    def _handle(self, item: object) -> list[Out]:
        """React to an item of the run's queue (a cancel, a result); records it made."""
        raise NotImplementedError

    def _wait_seconds(self) -> float:
        """How long the next step may wait for the queue."""
        raise NotImplementedError

    def _look_around(self) -> list[Out]:
        """After the queue: what the time says (the deadline; an engine adds its own)."""
        return self._check_deadline()

    def _work_left(self) -> bool:
        """Whether a stop would cut anything short (a run that is done stays done)."""
        raise NotImplementedError

    def _wind_down(self) -> Iterator[Out]:
        """Everything that is left once the run stops (nothing when it ran to the end)."""
        raise NotImplementedError

    def _stop_work(self) -> None:
        """The iteration ends: stop what the engine started (before the summary closes)."""

    def _tally(self) -> None:
        """Put the engine's counts (calls, pacing, CPU...) into the closed summary."""

    def _release(self) -> None:
        """Let go of what the engine holds (after the sink has the summary)."""

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
            if self.stop is not None:
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

    def _check_deadline(self) -> list[Out]:
        """Stop if the deadline has come (and anything is left): the records that makes."""
        if self.deadline_at is None or self.stop == "deadline-exceeded":
            return []
        if time.monotonic() < self.deadline_at or not self._work_left():
            return []
        self.stop = "deadline-exceeded"
        self.stop_reason = f"deadline of {_seconds(self.context.deadline or 0)}"
        self.grace_until = time.monotonic()
        return self._on_deadline()

    def _on_deadline(self) -> list[Out]:
        """The deadline has just stopped the run: records of what will not run now."""
        return []

    def _stop_message(self, when: str) -> str:
        if self.stop == "deadline-exceeded":
            return f"the run's {self.stop_reason} was reached {when}"
        return f"the run was interrupted ({self.stop_reason}) {when}"

    def _stop_error(self, when: str) -> RecordError:
        code = DEADLINE_EXCEEDED if self.stop == "deadline-exceeded" else INTERRUPTED
        return RecordError(code, self._stop_message(when))

    # -- accounting ----------------------------------------------------------------------

    def _emit(self, record: Record, target: Target) -> Record:
        """A record into the summary and the sink; its target finishes with its last."""
        self._count(record)
        name = record.target
        left = self.remaining.get(name, 1) - 1
        if left <= 0:
            self.remaining.pop(name, None)
            self._finish_target(target)
        else:
            self.remaining[name] = left
        if self.sink is not None:
            self.sink.add(record)
        return record

    def _count(self, record: Record) -> None:
        """A record into the summary (its target's outcome is decided when it finishes)."""
        summary = self.summary
        summary.records += 1
        if not record.ok:
            summary.records_failed += 1
            assert record.error is not None
            failed = self.unfinished if record.error.code in STOP_CODES else self.failed
            failed.add(record.target)

    def _finish_target(self, target: Target) -> None:
        self._target_done(target.name)

    def _target_done(self, name: str) -> None:
        """The target's last record is in: count its outcome, report progress."""
        summary = self.summary
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
        summary.finished_at = iso_now()


def iterate(loop: RunLoop) -> Iterator[Record]:
    """The records of one iteration; whatever stops the caller, the rest go to the sink."""
    try:
        yield from loop.run()
    except (GeneratorExit, KeyboardInterrupt, SystemExit) as exc:
        # The consumer stopped reading (GeneratorExit), or KeyboardInterrupt/SystemExit
        # arrived while the loop waited: stop, and put every unit's record in the sink;
        # they cannot be yielded any more.
        reason = (
            "the caller stopped reading records"
            if isinstance(exc, GeneratorExit)
            else type(exc).__name__
        )
        loop.abort(reason)
        raise
    finally:
        loop.close()


__all__ = [
    "CancelRequest",
    "Out",
    "ProgressCallback",
    "RunLoop",
    "RunnerBase",
    "StopSignal",
    "iterate",
]

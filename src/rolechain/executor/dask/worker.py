"""What runs on the Dask workers of a run; the driver refers to these functions by name.

Each worker process keeps, per run, one :class:`~rolechain.executor.context.RunContext`
(in :data:`_RUNS`, keyed by the run's key: its run id and a nonce of the driver's): one
hop tree, so each hop the worker needs is assumed once for the whole run, whatever the
number of batches it takes, and refreshed in place. The context is built from the plain
data the driver sends (:class:`RunSpec`: the plan, the options, the worker's share of the
AssumeRole rate) and from the worker's *own* environment: the principal's credentials are
loaded where the worker runs (an instance or pod role, the environment, a profile), never
sent, unless the run ships them over TLS (:class:`SealedCredentials`).

A batch (:func:`run_batch`) runs with the thread engine's
:class:`~rolechain.executor.threads.ThreadRunner` over its targets: the same task timeouts
(a stuck task is given up on, its slot freed), the same deadline (the run's, as a
wall-clock time), the same failure isolation. It returns every record of its targets at
once (:class:`BatchResult`); the driver alone writes them.

:func:`stop_run` (sent to every worker with ``Client.run`` when the driver stops the run)
cancels the batches running for that run with the grace left, makes the batches that start
afterwards record their targets ``Interrupted`` without starting them, and answers which of
the run's batches are running there: the driver cancels every other one at once.

Nothing here puts a secret where Dask shows or logs it: task keys and names carry the run
id and a batch number; the arguments' ``repr`` (which Dask logs when a task fails) name the
run and count targets; credentials, when shipped, print masked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.credentials import Credentials
from distributed import WorkerPlugin, get_worker

from rolechain.aws.assumer import mask
from rolechain.aws.pacer import LaneReport, Pacer
from rolechain.aws.session import static_credentials
from rolechain.errors import RolechainError
from rolechain.executor.context import RunContext, default_pacer
from rolechain.executor.loop import StopSignal
from rolechain.executor.options import RunOptions
from rolechain.executor.records import Record, Summary, error_of, iso_now, target_record
from rolechain.executor.threads import ThreadRunner
from rolechain.model.chain import Chain
from rolechain.planner.plan import Plan, RunSettings

KEEP_RUNS = 8  # runs a worker keeps contexts for (the driver also tells it to forget)


@dataclass(frozen=True)
class SealedCredentials:
    """The principal's credentials, shipped to workers (``ship_credentials``, TLS only).

    Never shows its secret in ``repr``/``str`` (Dask logs the arguments of a failed task).
    """

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, credentials: Credentials) -> SealedCredentials:
        frozen = credentials.get_frozen_credentials()
        return cls(frozen.access_key or "", frozen.secret_key or "", frozen.token)

    def credentials(self) -> Credentials:
        return static_credentials(self.access_key, self.secret_key, self.token)

    def __repr__(self) -> str:
        return f"SealedCredentials({mask(self.access_key)})"

    __str__ = __repr__


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to run a part of a run: plain data, carried by each task.

    ``key``: the run's key on the cluster (run id and the driver's nonce). ``plan``: the
    driver's offline plan for :func:`prepare_run`; for a batch, the part of the checked,
    resolved plan it needs (its targets and the hops on their paths), so that a task is as
    big as its batch and needs no other task's data (it can run on any worker).
    ``options``: the run's options (engine: threads, on the worker). ``share``: the
    worker's part of the AssumeRole rate. ``deadline_at``: the run's deadline, wall clock.
    ``credentials``: shipped credentials, or None (the worker's own environment).
    ``worker_source``: where the worker loads the principal's credentials instead of the
    declared source.
    """

    key: str
    plan: Plan
    options: RunOptions
    share: float = 1.0
    deadline_at: float | None = None
    credentials: SealedCredentials | None = None
    worker_source: Literal["default", "env"] | None = None

    def __repr__(self) -> str:
        plan = self.plan
        return f"RunSpec({self.key}, job={plan.job!r}, {len(plan.targets)} targets)"

    __str__ = __repr__


@dataclass(frozen=True)
class PrepareSpec:
    """The argument of :func:`prepare_run`: the run, and the chain (for re-planning)."""

    spec: RunSpec
    chain: Chain | None = None

    def __repr__(self) -> str:
        return f"PrepareSpec({self.spec!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class Batch:
    """Targets (by name) that one Dask task runs; ``key`` is the task's key."""

    index: int
    targets: tuple[str, ...]
    key: str = ""

    def __repr__(self) -> str:
        return f"Batch({self.index}, {len(self.targets)} targets)"

    __str__ = __repr__


@dataclass(frozen=True)
class WorkerInfo:
    """Which worker process answered, and its counters for the run so far."""

    address: str
    process: str  # unique per worker process (a restarted worker is a new one)
    counts: dict[str, int]
    pacing: str  # the worker's AssumeRole pacing, e.g. "5/s (share 0.5)"
    lanes: tuple[dict[str, Any], ...] = ()  # its pacer's report, per calling account


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_run` found: the checked, resolved plan, or why not."""

    worker: WorkerInfo
    plan: Plan | None = None
    error: RolechainError | None = None


@dataclass(frozen=True)
class BatchResult:
    """Every record of a batch's targets, and what the runner counted."""

    index: int
    records: tuple[Record, ...]
    worker: WorkerInfo
    abandoned: int = 0
    late_results: int = 0
    still_running: int = 0
    cpu_seconds: float = 0.0  # the worker process's, while it ran the batch

    def __repr__(self) -> str:
        return f"BatchResult({self.index}, {len(self.records)} records)"


class SharedPacing:
    """The worker's AssumeRole pacing for a run: the run's pacer
    (:func:`~rolechain.executor.context.default_pacer`) for the worker's share of a fixed
    ``assume_rate`` ceiling (an ``auto`` pacer adapts to the account's throttling by itself,
    as each of W TCP flows sharing a link finds its share of it).

    The share is known once the driver has cut the run into batches (W is the smaller of
    the workers and the batches); the worker that prepared the run was given a first guess,
    so the pacer behind is rebuilt when the share of a ceiling changes (:meth:`use_share`).
    A :class:`~rolechain.aws.pacer.Pacing`: ``RunContext(limiter=)`` takes it as is.
    """

    def __init__(self, settings: RunSettings, share: float) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self.share = share
        self._inner: Pacer = default_pacer(settings, share=share)

    def use_share(self, share: float) -> None:
        with self._lock:
            if share != self.share and self._inner.ceiling is not None:
                self._inner = default_pacer(self._settings, share=share)
            self.share = share

    @property
    def clock(self) -> Callable[[], float]:
        return self._inner.clock

    def acquire(self, key: Hashable, *, deadline: float | None = None) -> Any:
        with self._lock:
            inner = self._inner
        return inner.acquire(key, deadline=deadline)

    def record(self, ticket: Any, *, throttled: bool) -> None:
        with self._lock:
            inner = self._inner
        inner.record(ticket, throttled=throttled)

    def report(self) -> list[LaneReport]:
        with self._lock:
            inner = self._inner
        return inner.report()

    def describe(self) -> str:
        """``5/s (share 0.5)``, or ``adaptive (share 0.5)`` without a ceiling."""
        with self._lock:
            ceiling = self._inner.ceiling
        shown = f"{ceiling:g}/s" if ceiling is not None else "adaptive"
        return f"{shown} (share {self.share:.3g})"


class _WorkerRun:
    """One run on this worker process: its context and its running batches."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.context: RunContext | None = None
        self.pacing: SharedPacing | None = None
        self.cancelled: str | None = None  # the reason, once the driver cancelled the run
        self.active: dict[StopSignal, str] = {}  # running batches: their stop, their key
        self.done: set[str] = set()  # keys of the batches this worker has run

    def ensure(self, spec: RunSpec, chain: Chain | None = None) -> RunContext:
        """The run's context on this worker, with the spec's part of the plan in it."""
        with self.lock:
            if self.context is None or self.pacing is None:
                self.pacing = SharedPacing(spec.plan.settings, spec.share)
                self.context = _context(spec, chain, self.pacing)
            else:
                self.pacing.use_share(spec.share)
                self.context.extend(_worker_plan(spec))
            return self.context


_RUNS: OrderedDict[str, _WorkerRun] = OrderedDict()
_RUNS_LOCK = threading.Lock()


def _run(key: str) -> _WorkerRun:
    with _RUNS_LOCK:
        found = _RUNS.get(key)
        if found is None:
            found = _RUNS[key] = _WorkerRun()
            while len(_RUNS) > KEEP_RUNS:
                _, old = _RUNS.popitem(last=False)
                _release(old)
        _RUNS.move_to_end(key)
        return found


def _worker_plan(spec: RunSpec) -> Plan:
    plan = spec.plan
    if spec.worker_source is not None:
        plan = dataclasses.replace(
            plan, principal_source=spec.worker_source, principal_profile=None
        )
    return plan


def _context(spec: RunSpec, chain: Chain | None, pacing: SharedPacing) -> RunContext:
    return RunContext(
        _worker_plan(spec),
        chain,
        spec.options,
        credentials=spec.credentials.credentials() if spec.credentials else None,
        limiter=pacing,  # the run's pacing, for this worker's share of the rate
    )


def _release(run: _WorkerRun) -> None:
    context = run.context
    if context is not None:
        context.sessions.clear()


def _worker(run: _WorkerRun) -> WorkerInfo:
    worker = get_worker()
    context = run.context
    counts = context.stats.counts() if context is not None else {}
    pacing = run.pacing.describe() if run.pacing is not None else ""
    lanes = tuple(context.pacing_report()) if context is not None else ()
    return WorkerInfo(worker.address, f"{worker.address}/{os.getpid()}", counts, pacing, lanes)


# -- tasks ----------------------------------------------------------------------------------


def prepare_run(request: PrepareSpec) -> Prepared:
    """Check the identity and resolve discovery with this worker's credentials: the plan
    every batch then runs with. The context stays, for this worker's batches."""
    spec = request.spec
    run = _run(spec.key)
    try:
        context = run.ensure(spec, request.chain)
        context.prepare()
    except RolechainError as exc:
        return Prepared(_worker(run), error=exc)
    except Exception as exc:  # a bug must reach the driver as an error, not a lost worker
        return Prepared(_worker(run), error=RolechainError(f"{type(exc).__name__}: {exc}"))
    return Prepared(_worker(run), plan=context.plan)


def run_batch(spec: RunSpec, batch: Batch) -> BatchResult:
    """Run a batch of targets with this worker's context for the run; every target gets
    its records, whatever happens (a failed identity check is each target's error)."""
    run = _run(spec.key)
    stop = StopSignal()
    with run.lock:
        if run.cancelled is not None:  # handed to this worker after a cancel: do not start
            stop.cancel(run.cancelled, grace=0)
        run.active[stop] = batch.key
    summary = Summary(job=spec.plan.job, run_id=spec.plan.run_id)
    try:
        context = run.ensure(spec)
        runner = ThreadRunner(
            context,
            summary=summary,
            stop=stop,
            targets=batch.targets,
            deadline_at=spec.deadline_at,
        )
        records = tuple(runner.records())
    except Exception as exc:  # the context could not be prepared here (credentials...)
        now = iso_now()
        error = error_of(exc)
        records = tuple(
            target_record(spec.plan, spec.plan.target(name), error, now, 0)
            for name in batch.targets
        )
    finally:
        with run.lock:
            run.active.pop(stop, None)
            run.done.add(batch.key)
    return BatchResult(
        batch.index,
        records,
        _worker(run),
        abandoned=summary.abandoned,
        late_results=summary.late_results,
        still_running=summary.still_running,
        cpu_seconds=summary.cpu_seconds,
    )


# -- messages from the driver (Client.run: on every worker, in its event loop) --------------


async def stop_run(key: str, reason: str | None, grace: float | None) -> list[str]:
    """The keys of the run's batches running or run on this worker; with a ``reason``,
    first cancel those running (``grace`` seconds to finish) and let no later batch of the
    run start.

    One message does both, under the run's lock: a batch not in the answer will not start
    here, so the driver can cancel it and record it ``Interrupted`` at once (a batch that
    has run here may have its records on their way). A coroutine: ``Client.run`` runs it in
    the worker's event loop; it never waits for anything.
    """
    run = _run(key)
    with run.lock:
        if reason is not None:
            if run.cancelled is None:
                run.cancelled = reason
            for stop in run.active:
                stop.cancel(reason, grace=grace)
        return sorted({*run.active.values(), *run.done})


def forget_run(key: str) -> None:
    """The run is over: drop its context (hop credentials, clients)."""
    with _RUNS_LOCK:
        run = _RUNS.pop(key, None)
    if run is not None:
        _release(run)


def runs_kept() -> list[str]:
    """The runs this worker keeps a context for (tests, diagnostics)."""
    with _RUNS_LOCK:
        return list(_RUNS)


# -- local clusters --------------------------------------------------------------------------


class LocalWorkerSetup(WorkerPlugin):
    """Set up the worker processes of a local cluster a run starts.

    * Ctrl-C at a terminal signals the whole foreground process group; the workers ignore
      SIGINT, so that only the driver decides (cancel, grace, keep finished records).
    * Only the driver writes stdout (the records): a worker's stdout (a ``python`` task's
      prints) goes to stderr.
    """

    name = "rolechain-local-worker"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
            os.dup2(2, 1)


__all__ = [
    "Batch",
    "BatchResult",
    "LocalWorkerSetup",
    "PrepareSpec",
    "Prepared",
    "RunSpec",
    "SealedCredentials",
    "SharedPacing",
    "WorkerInfo",
    "forget_run",
    "prepare_run",
    "run_batch",
    "runs_kept",
    "stop_run",
]

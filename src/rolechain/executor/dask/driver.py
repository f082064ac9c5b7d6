"""The Dask engine's driver: batches of targets on a Dask cluster, records streamed back.

The driver (the process that iterates the :class:`~rolechain.executor.Run`) plans once and:

1. connects to the cluster: an existing scheduler (``tcp://``/``tls://``), or a local
   cluster of N worker processes it starts for the run (workers ignore SIGINT and write
   nothing on stdout; :class:`~rolechain.executor.dask.worker.LocalWorkerSetup`);
2. has one worker check the identity and resolve Organizations role sets with *its*
   credentials (:func:`~rolechain.executor.dask.worker.prepare_run`): the driver needs no
   AWS credentials at all, and the plan it cuts is the one the workers run;
3. cuts the targets into batches that share their hubs
   (:func:`~rolechain.executor.partition.partition`) and submits one Dask task per batch
   (:func:`~rolechain.executor.dask.worker.run_batch`); each worker process keeps its hop
   tree for the run, so AssumeRole <= N + W x inner hops;
4. takes each batch's records as it completes (``distributed.as_completed``), drops any
   unit it already has (dedup by unit id: target, region, task; the books are a
   :class:`~rolechain.executor.dask.ledger.BatchLedger`), and alone writes them to the sink
   and yields them.

A worker that dies (SIGKILL, OOM) loses its batch's records with it; Dask runs the batch
again on another worker, and its records arrive once. A batch that kills its workers again
and again (``KilledWorker``) is split into one batch per target, so that only the target
that kills its workers fails.

Stopping is the thread engine's contract, driven by the same run loop
(:mod:`rolechain.executor.loop`): on :meth:`Run.cancel`, batches not started are cancelled
and recorded ``Interrupted``; every worker is told (``Client.run``) to give its running
batches the grace left, and their finished records come back and are kept; what has not
come back soon after the grace is recorded ``Interrupted``. The run's deadline is sent to
the workers as a wall-clock time: each batch's runner stops there by itself
(``TaskTimeout`` for tasks running, ``DeadlineExceeded`` for the rest), and the driver
waits only a little longer for them.
Per-task timeouts hold on the workers: each batch runs with the thread engine's runner.

The driver never loses track silently: if the thread that takes the batches' outcomes from
Dask fails, the batches still out get an error record saying why (the run ends); a
cluster whose scheduler cannot be asked for its workers is told apart from one that has
none, and the cause is kept.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from rolechain.errors import EngineError
from rolechain.executor.context import RunContext
from rolechain.executor.dask.cluster import Cluster, local_env, security_for
from rolechain.executor.dask.ledger import BatchLedger, LedgerBatch
from rolechain.executor.dask.worker import (
    Batch,
    BatchResult,
    Prepared,
    PrepareSpec,
    RunSpec,
    SealedCredentials,
    WorkerInfo,
    forget_run,
    prepare_run,
    run_batch,
    stop_run,
)
from rolechain.executor.loop import CancelRequest, Out, RunLoop, RunnerBase
from rolechain.executor.options import EngineOptions
from rolechain.executor.partition import (
    assume_bound,
    batch_plan,
    default_batch_size,
    partition,
)
from rolechain.executor.records import Record, RecordError, iso_now, target_record
from rolechain.planner.plan import Plan

log = logging.getLogger(__name__)

RETURN_MARGIN = 2.0  # seconds after the grace (or the deadline) for records still on their way
NO_WORKERS_LIMIT = 60.0  # seconds without any worker before the rest of the run fails
MAX_WAIT = 5.0  # the driver looks around at least this often
ASK_TIMEOUT = 10.0  # seconds to wait for the workers to say which batches they are running
# Parts of a context that stay on the driver: MFA prompts cannot reach workers (an MFA hop
# fails there as in any unattended run), the driver's AWS sessions are not used.
STAYS_ON_DRIVER = frozenset({"token_provider", "aws_sessions"})
WORKER_LOST = "WorkerLost"
NO_WORKERS = "NoWorkers"
NO_RECORD = "NoRecord"
CLUSTER_UNREACHABLE = "ClusterUnreachable"  # the scheduler did not say which workers it has
LOST_TRACK = "LostTrack"  # the driver stopped hearing of its batches


def check_engine(context: RunContext, engine: EngineOptions) -> None:
    """Refuse, before anything runs, what cannot work on a cluster (see the module doc)."""
    refused = sorted(context.injected - STAYS_ON_DRIVER - {"credentials"})
    if refused:
        names = ", ".join(f"{name}=" for name in refused)
        raise EngineError(
            f"{names} cannot be used with the dask engine: every worker builds its own "
            "assumer, limiter and clock from the plan",
            hint="run with the threads engine to inject them",
        )
    if "credentials" in context.injected and not (engine.local or engine.ship_credentials):
        raise EngineError(
            "credentials= would have to travel to the Dask workers, and credentials never "
            "travel unless asked: each worker starts from the principal in its own "
            "environment",
            hint="drop credentials= (each worker loads the principal's credentials), or ship "
            "them over TLS with ship_credentials=True (--ship-credentials)",
        )
    if engine.ship_credentials and not engine.local:
        security_for(engine, shipping=True)


class DaskRunner(RunnerBase):
    """Runs a context's plan on a Dask cluster; iterate :meth:`records` for records.

    Same parts and contract as :class:`~rolechain.executor.threads.ThreadRunner` (see the
    module docstring). Raises :class:`~rolechain.errors.EngineError` at once for what cannot
    work on a cluster.
    """

    def __init__(self, context: RunContext, engine: EngineOptions, **parts: Any) -> None:
        check_engine(context, engine)
        super().__init__(context, **parts)
        self.engine = engine

    def loop(self) -> DaskLoop:
        return DaskLoop(self)


# -- hearing from the cluster ---------------------------------------------------------------


@dataclass(frozen=True)
class _BatchDone:
    future: Any
    result: Any  # BatchResult | (type, exception, traceback) | CancelledError


@dataclass(frozen=True)
class _FeedFailed:
    """The feeder could not take the next outcome from Dask: why."""

    error: BaseException


class _Feeder:
    """Puts each batch's outcome on the run's queue as it completes (``as_completed``).

    If taking the next outcome fails, it says so on the queue (:class:`_FeedFailed`) and
    stops: the driver would otherwise wait for batches it can no longer hear of.
    """

    def __init__(self, client: Any, queue: Any) -> None:
        self.client = client
        self.queue = queue
        self.lock = threading.Lock()
        self.completed: Any = None
        self.running = False

    def add(self, futures: list[Any]) -> None:
        from distributed import as_completed

        with self.lock:
            if self.completed is None:
                self.completed = as_completed(
                    loop=self.client.loop, with_results=True, raise_errors=False
                )
            self.completed.update(futures)
            if not self.running:
                self.running = True
                threading.Thread(target=self._feed, name="rolechain-dask-feed", daemon=True).start()

    def _feed(self) -> None:
        while True:
            with self.lock:
                if self.completed.is_empty():
                    self.running = False
                    return
            try:
                future, result = next(self.completed)
            except StopIteration:
                continue
            except Exception as exc:
                with self.lock:
                    self.running = False
                self.queue.put(_FeedFailed(exc))
                return
            self.queue.put(_BatchDone(future, result))


# -- the loop -------------------------------------------------------------------------------


class DaskLoop(RunLoop):
    """One iteration of a :class:`DaskRunner` (on the consumer's thread)."""

    engine_name = "dask"
    runner: DaskRunner

    def __init__(self, runner: DaskRunner) -> None:
        super().__init__(runner)
        self.engine = runner.engine
        plan = self.context.plan
        # The run's key on the cluster: its id and a nonce (two runs may share an id).
        self.key = f"{plan.run_id}-{secrets.token_hex(4)}"
        self.cluster = Cluster(self.engine, local_env(self.context, self.engine))
        self.feeder: _Feeder | None = None
        self.ledger = BatchLedger(self.key)
        self.window = 1  # batches out at once: the cluster's live worker threads
        self.workers: dict[str, WorkerInfo] = {}  # by process: its latest counts
        self.batch_workers: set[str] = set()
        deadline = self.context.deadline
        self.deadline_wall = time.time() + deadline if deadline is not None else None
        self.next_check = self.clock0 + MAX_WAIT
        self.no_workers_since: float | None = None
        self.unreachable: BaseException | None = None  # why asking for the workers failed
        self.share = 1.0  # each worker's part of the AssumeRole rate

    # -- the run ---------------------------------------------------------------------------

    def _setup(self) -> None:
        """Connect and prepare on a thread, watching for a cancel and the deadline."""
        box: dict[str, Prepared] = {}
        cluster = self.cluster
        plan, chain = self.context.plan, self.context.chain

        def work() -> None:
            cluster.connect()
            client = cluster.client
            if client is None:  # given up on meanwhile
                return
            spec = self._spec(plan, share=1.0 / max(1, cluster.workers))
            future = client.submit(
                prepare_run, PrepareSpec(spec, chain), key=f"rolechain-prepare-{self.key}"
            )
            try:
                box["prepared"] = future.result()
            except Exception as exc:
                raise EngineError(
                    f"the Dask worker preparing the run failed: {type(exc).__name__}: {exc}"
                ) from exc

        if not self._in_background(work, "rolechain-dask-setup"):
            cluster.close()  # gave up on the set-up: every target of the plan is unfinished
            return
        prepared = box["prepared"]
        self._note(prepared.worker)
        if prepared.error is not None:
            raise prepared.error
        assert prepared.plan is not None
        self.context.use_plan(prepared.plan)
        self.set_up = True
        dashboard = cluster.dashboard
        if dashboard:
            log.info("dask dashboard: %s", dashboard)

    def _spec(self, plan: Plan, share: float) -> RunSpec:
        # On a worker, a batch runs on threads with the run's options.
        options = replace(self.context.options, engine=EngineOptions(kind="threads"))
        credentials = None
        if self.engine.ship_credentials:
            from rolechain.aws.session import principal_credentials

            given = self.context.starting_credentials
            loaded = given or principal_credentials(plan.principal_source, plan.principal_profile)
            credentials = SealedCredentials.of(loaded)
        return RunSpec(
            key=self.key,
            plan=plan,
            options=options,
            share=share,
            deadline_at=self.deadline_wall,
            credentials=credentials,
            worker_source="env" if self.cluster.worker_env else self.engine.worker_source,
        )

    def _launch(self) -> None:
        """Cut the plan into batches and send the first ones."""
        client = self.cluster.client
        plan = self.context.plan
        nthreads = client.nthreads()
        workers = max(1, len(nthreads))
        size = self.engine.batch_size or default_batch_size(
            len(plan.targets), workers, self.context.concurrency
        )
        groups = partition(plan, size)
        self.share = 1.0 / max(1, min(workers, len(groups)))
        self.ledger.queue(groups)
        self.summary.batches = len(groups)
        self.feeder = _Feeder(client, self.queue)
        self._top_up()

    def _top_up(self) -> None:
        """Send batches from the backlog while the cluster has a free worker thread.

        A worker holds only the batch it runs: Dask blames every task a worker holds when
        it dies, so a queued batch would be blamed for another's crash; and a cancel finds
        every batch not running still here, never started.
        """
        if self.stop is not None or not self.ledger.backlog:
            return
        self._refresh_window()
        futures = []
        for batch in self.ledger.to_send(self.window):
            spec = self._spec(batch_plan(self.context.plan, batch.targets), self.share)
            future = self.cluster.client.submit(
                run_batch,
                spec,
                Batch(batch.index, batch.names, batch.key),
                key=batch.key,
                pure=False,
            )
            self.ledger.sent_as(batch, future)
            futures.append(future)
        if futures:
            assert self.feeder is not None
            self.feeder.add(futures)

    def _refresh_window(self) -> None:
        """The window is the worker threads the cluster has now: after a worker dies (a
        task that kills its process), fewer batches go out until it is back, so no batch
        waits on a worker behind one that kills it and is blamed for its death. Kept as it
        was if the scheduler does not answer (:meth:`_check_workers` handles that)."""
        client = self.cluster.client
        if client is None:
            return
        try:
            nthreads = client.nthreads()
        except Exception:
            return
        self.window = sum(nthreads.values())

    def _more(self) -> bool:
        return bool(self.ledger.pending) and not self._waited_enough()

    def _look_around(self) -> list[Out]:
        out = self._check_deadline()
        out.extend(self._check_workers())
        self._top_up()
        return out

    def _tally(self) -> None:
        summary = self.summary
        totals: dict[str, int] = {}
        for worker in self.workers.values():
            for name, value in worker.counts.items():
                totals[name] = totals.get(name, 0) + value
        summary.set_call_counts(totals)
        summary.pacing = merged_lanes(w.lanes for w in self.workers.values())
        # Workers that took part: those that ran a batch or assumed a hop (discovery).
        taking_part = [
            w
            for w in self.workers.values()
            if w.process in self.batch_workers or w.counts.get("assume_calls", 0)
        ]
        summary.workers = len(taking_part)
        summary.cluster_workers = self.cluster.workers
        summary.worker_pacing = (
            "; ".join(sorted({w.pacing for w in taking_part if w.pacing})) or None
        )
        if self.set_up:
            summary.assume_bound = assume_bound(self.context.plan, max(1, len(taking_part)))
        stats = self.context.stats
        for name, value in totals.items():
            if isinstance(getattr(stats, name, None), int):
                setattr(stats, name, value)

    def _release(self) -> None:
        client = self.cluster.client
        if client is not None and not self.engine.local:  # local workers end with it
            with contextlib.suppress(Exception):
                client.run(forget_run, self.key, on_error="ignore")
        self.cluster.close()

    # -- events --------------------------------------------------------------------------

    def _wait_seconds(self) -> float:
        now = self.clock.monotonic()
        wake = [now + MAX_WAIT, self.next_check]
        if self.deadline_at is not None and self.stop is None:
            wake.append(self.deadline_at)
        if self.grace_until is not None:
            wake.append(self.grace_until + RETURN_MARGIN)
        return max(0.0, min(wake) - now)

    def _handle(self, item: object) -> list[Out]:
        if isinstance(item, _BatchDone):
            return self._done(item.future, item.result)
        if isinstance(item, _FeedFailed):
            return self._lost_track(item.error)
        if isinstance(item, CancelRequest):
            return self._stop_batches(item)
        return []

    def _work_left(self) -> bool:
        return not self.set_up or bool(self.ledger.pending)

    def _stop_batches(self, request: CancelRequest) -> list[Out]:
        if not self._cancel(request):
            return []
        assert self.grace_until is not None
        # Running batches get the grace left; the others never start.
        left = max(0.0, self.grace_until - self.clock.monotonic())
        return self._drop_queued(request.reason, left)

    def _on_deadline(self) -> list[Out]:
        # No cancel: every batch sent stops by itself at the deadline (a wall-clock time)
        # and comes back within the margin; those never sent will not start.
        out: list[Out] = []
        error = self._stop_error("before the target was started")
        for batch in self.ledger.unsent():
            out.extend(self._settle(batch, error))
        return out

    def _waited_enough(self) -> bool:
        grace_until = self.grace_until
        return grace_until is not None and self.clock.monotonic() >= grace_until + RETURN_MARGIN

    def _drop_queued(self, reason: str | None, grace: float | None) -> list[Out]:
        """Cancel the run on the workers (running batches get ``grace``), then cancel the
        batches no worker has run or is running: their targets get stop records now. The
        others come back when they are done (or are recorded at the end of the
        wind-down)."""
        client = self.cluster.client
        pending = self.ledger.pending
        if client is None or not self.set_up or not pending:
            return []
        running = self._running(client, reason, grace)
        queued = [
            batch
            for key, batch in pending.items()
            if key not in running and (batch.future is None or batch.future.status == "pending")
        ]
        with contextlib.suppress(Exception):
            client.cancel([batch.future for batch in queued if batch.future is not None])
        out: list[Out] = []
        for batch in queued:
            out.extend(self._settle(batch, self._stop_error("before the target was started")))
        return out

    def _running(self, client: Any, reason: str | None, grace: float | None) -> set[str]:
        """The batches the workers are running or have run (:func:`~rolechain.executor.
        dask.worker.stop_run`). Asked on a thread, so that a worker that does not answer
        cannot hold the driver; without an answer, every batch a worker holds counts as
        running."""
        answer: dict[str, Any] = {}

        def ask() -> None:
            answer.update(client.run(stop_run, self.key, reason, grace, on_error="return"))

        asking = threading.Thread(target=ask, name="rolechain-dask-stop", daemon=True)
        asking.start()
        asking.join(ASK_TIMEOUT)
        if not asking.is_alive() and answer:
            return {key for keys in answer.values() if isinstance(keys, list) for key in keys}
        try:
            return {str(key) for keys in client.processing().values() for key in keys}
        except Exception:
            return set(self.ledger.pending)

    def _check_workers(self) -> list[Out]:
        """The end of a run whose cluster has had no worker for :data:`NO_WORKERS_LIMIT`
        seconds, or could not say which workers it has for as long: its batches fail (a run
        always ends), with the reason."""
        now = self.clock.monotonic()
        if now < self.next_check or not self.ledger.pending or self.stop is not None:
            return []
        self.next_check = now + MAX_WAIT
        client = self.cluster.client
        try:
            nthreads = client.nthreads() if client is not None else {}
        except Exception as exc:  # not "no workers": the scheduler did not answer
            log.warning(
                "cannot ask the Dask scheduler for its workers: %s: %s", type(exc).__name__, exc
            )
            self.unreachable = exc
            nthreads = None
        else:
            self.unreachable = None
        if nthreads:
            self.no_workers_since = None
            self.window = sum(nthreads.values())  # workers come and go
            return []
        if self.no_workers_since is None:
            self.no_workers_since = now
        if now - self.no_workers_since < NO_WORKERS_LIMIT:
            return []
        cause = self.unreachable
        if cause is not None:
            error = RecordError(
                CLUSTER_UNREACHABLE,
                f"the Dask scheduler could not say which workers it has for "
                f"{NO_WORKERS_LIMIT:g}s: {type(cause).__name__}: {cause}",
            )
        else:
            error = RecordError(
                NO_WORKERS, f"the Dask cluster had no worker for {NO_WORKERS_LIMIT:g}s"
            )
        out: list[Out] = []
        for batch in list(self.ledger.pending.values()):
            out.extend(self._settle(batch, error))
        return out

    def _lost_track(self, exc: BaseException) -> list[Out]:
        """The feeder failed: the batches sent will not be heard of; they fail, with why."""
        if self.cluster.client is None:
            return []  # the client is closing: the run is over
        log.warning("lost track of the Dask batches: %s: %s", type(exc).__name__, exc)
        error = RecordError(
            LOST_TRACK,
            "the driver could not take the outcome of this target's batch from Dask: "
            f"{type(exc).__name__}: {exc}",
        )
        out: list[Out] = []
        for key in list(self.ledger.sent):
            batch = self.ledger.get(key)
            if batch is not None:
                out.extend(self._settle(batch, error))
        self.feeder = _Feeder(self.cluster.client, self.queue)  # batches sent from now on
        return out

    def _done(self, future: Any, result: Any) -> list[Out]:
        batch = self.ledger.get(future.key)
        if batch is None:
            return []
        if batch.settled:
            if isinstance(result, BatchResult):  # came back after the run stopped it
                self.summary.late_results += len(result.records)
            return []
        if isinstance(result, BatchResult):
            return self._accept(batch, result)
        exc = result[1] if isinstance(result, tuple) and len(result) == 3 else result
        if self.stop is not None and _cancelled(exc):
            return []  # the wind-down records it
        if _killed_worker(exc) and len(batch.targets) > 1 and self.stop is None:
            # A batch whose workers keep dying: run each of its targets on its own.
            self.summary.batches += len(self.ledger.split(batch))
            return []
        if _killed_worker(exc):
            error = RecordError(
                WORKER_LOST,
                "the worker process running this target died each time it ran (a task "
                f"that exits the process, crashes the interpreter or runs out of memory): {exc}",
            )
        else:
            error = RecordError(type(exc).__name__, str(exc) or type(exc).__name__)
        return self._settle(batch, error)

    def _accept(self, batch: LedgerBatch, result: BatchResult) -> list[Out]:
        self.ledger.settle(batch)
        self._note(result.worker)
        self.batch_workers.add(result.worker.process)
        summary = self.summary
        summary.abandoned += result.abandoned
        summary.late_results += result.late_results
        summary.still_running += result.still_running
        summary.cpu_seconds = round(summary.cpu_seconds + result.cpu_seconds, 3)
        by_target: dict[str, list[Record]] = {}
        for record in result.records:
            by_target.setdefault(record.target, []).append(record)
        out: list[Out] = []
        for target in batch.targets:
            records = by_target.get(target.name) or [
                target_record(
                    self.context.plan,
                    target,
                    RecordError(NO_RECORD, "the worker returned no record for this target"),
                    iso_now(),
                    0,
                )
            ]
            kept = [r for r in records if self._first(r)]
            if kept:  # a target's records arrive together (its batch)
                self.remaining[target.name] = len(kept)
            out.extend((r, target) for r in kept)
        return out

    def _first(self, record: Record) -> bool:
        """Whether this unit has no record yet (dedup by unit id)."""
        if self.ledger.first(record):
            return True
        self.summary.duplicates_dropped += 1
        return False

    def _settle(self, batch: LedgerBatch, error: RecordError) -> list[Out]:
        """The batch's targets get ``error`` (target records), unless they have records."""
        self.ledger.settle(batch)
        now = iso_now()
        out: list[Out] = []
        for target in batch.targets:
            record = target_record(self.context.plan, target, error, now, 0)
            if self._first(record):
                out.append((record, target))
        return out

    def _note(self, worker: WorkerInfo) -> None:
        known = self.workers.get(worker.process)
        if known is None or sum(worker.counts.values()) >= sum(known.counts.values()):
            self.workers[worker.process] = worker

    # -- stopping ------------------------------------------------------------------------

    def _wind_down(self) -> Iterator[Out]:
        """Everything left once the run stops (nothing when it ran to the end)."""
        item = self._get(0)
        while item is not None:
            yield from self._handle(item)
            item = self._get(0)
        if not self.set_up:  # stopped before the batches existed
            error = self._stop_error("before the target was started")
            now = iso_now()
            for target in self.targets:
                yield target_record(self.context.plan, target, error, now, 0), target
            return
        if self.ledger.pending and self.stop is None:  # cannot happen: the loop ran them all
            self.stop, self.stop_reason = "interrupted", "the run ended early"
        left = list(self.ledger.pending.values())
        client = self.cluster.client
        if client is not None and left:
            with contextlib.suppress(Exception):
                client.cancel([b.future for b in left if b.future is not None])
        when = (
            "before the target's batch came back from its worker"
            if self.stop == "deadline-exceeded"
            else "and the target's batch was still running when the grace period ended"
        )
        for batch in left:
            yield from self._settle(batch, self._stop_error(when))


def merged_lanes(reports: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The workers' pacing reports as one per calling account: calls, throttles, cuts and
    waits added up; the rate is the cluster's (the workers' rates added up; None if any
    worker never slowed down); the lowest rate and the background the extremes."""
    merged: dict[str, dict[str, Any]] = {}
    for report in reports:
        for lane in report:
            found = merged.get(lane["key"])
            if found is None:
                merged[lane["key"]] = dict(lane)
                continue
            for name in ("calls", "throttled", "cuts", "undone"):
                found[name] += lane[name]
            found["waited"] = round(found["waited"] + lane["waited"], 3)
            rates = (found["rate"], lane["rate"])
            found["rate"] = None if None in rates else round(sum(rates), 2)
            lows = [r for r in (found["lowest_rate"], lane["lowest_rate"]) if r is not None]
            found["lowest_rate"] = min(lows) if lows else None
            found["background"] = max(found["background"], lane["background"])
    return list(merged.values())


def _killed_worker(exc: object) -> bool:
    return type(exc).__name__ == "KilledWorker"


def _cancelled(exc: object) -> bool:
    return type(exc).__name__ in ("CancelledError", "FutureCancelledError")


__all__ = ["DaskLoop", "DaskRunner", "check_engine", "merged_lanes"]

"""The Dask engine's driver: batches of targets on a Dask cluster, records streamed back.

The driver (the process that iterates the :class:`~rolechain.executor.Run`) plans once and:

1. connects to the cluster: an existing scheduler (``tcp://``/``tls://``), or a local
   cluster of N worker processes it starts for the run (workers ignore SIGINT and write
   nothing on stdout; :class:`~rolechain.executor.dask_worker.LocalWorkerSetup`);
2. has one worker check the identity and resolve Organizations role sets with *its*
   credentials (:func:`~rolechain.executor.dask_worker.prepare_run`): the driver needs no
   AWS credentials at all, and the plan it cuts is the one the workers run;
3. cuts the targets into batches that share their hubs
   (:func:`~rolechain.executor.partition.partition`) and submits one Dask task per batch
   (:func:`~rolechain.executor.dask_worker.run_batch`); each worker process keeps its hop
   tree for the run, so AssumeRole <= N + W x inner hops;
4. takes each batch's records as it completes (``distributed.as_completed``), drops any
   unit it already has (dedup by unit id: target, region, task), and alone writes them to
   the sink and yields them.

A worker that dies (SIGKILL, OOM) loses its batch's records with it; Dask runs the batch
again on another worker, and its records arrive once. A batch that kills its workers again
and again (``KilledWorker``) is split into one batch per target, so that only the target
that kills its workers fails.

Stopping is the thread engine's contract, driven by the same :class:`~rolechain.executor.
runner.StopSignal`: on :meth:`Run.cancel`, batches not started are cancelled and recorded
``Interrupted``; every worker is told (``Client.run``) to give its running batches the grace
left, and their finished records come back and are kept; what has not come back soon after
the grace is recorded ``Interrupted``. The run's deadline is sent to the workers as a wall-
clock time: each batch's runner stops there by itself (``TaskTimeout`` for tasks running,
``DeadlineExceeded`` for the rest), and the driver waits only a little longer for them.
Per-task timeouts hold on the workers: each batch runs with the thread engine's runner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from rolechain.errors import EngineError
from rolechain.executor.context import RunContext
from rolechain.executor.dask_worker import (
    Batch,
    BatchResult,
    LocalWorkerSetup,
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
from rolechain.executor.engine import EngineOptions
from rolechain.executor.partition import (
    assume_bound,
    batch_plan,
    default_batch_size,
    partition,
)
from rolechain.executor.records import Record, RecordError, Summary
from rolechain.executor.runner import (
    CancelRequest,
    Iteration,
    ProgressCallback,
    RecordSink,
    StopSignal,
    iso_now,
    iterate,
    target_record,
)
from rolechain.planner.plan import Plan, Target

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0  # seconds to reach an existing scheduler
WORKER_WAIT = 60.0  # seconds to wait for the first worker of an existing cluster
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
# Dask config for the workers of a local cluster a run starts. Dask's statistical profiler
# calls sys._current_frames() every 10 ms on each worker; on CPython 3.11 before 3.11.9
# that call can deadlock the whole process against the garbage collector when many threads
# run (CPython gh-106883): seen here on 3.11.7, a worker of `make bench` froze for good,
# and so did the worker Dask started in its place. A local cluster's dashboard is never
# looked at, so the profiler is off (it also costs CPU); docs/scaling.md says what to do
# on a cluster of your own.
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}


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


def security_for(engine: EngineOptions, *, shipping: bool) -> Any:
    """The ``distributed.Security`` to connect with (Dask's configuration by default);
    when credentials are shipped, refuse anything but a TLS connection with certificates."""
    from distributed import Security

    security = engine.security if engine.security is not None else Security()
    if not shipping:
        return security
    address = engine.cluster or ""
    if not address.startswith("tls://"):
        raise EngineError(
            f"--ship-credentials needs a TLS connection to the cluster, and {address!r} is "
            "not tls://",
            hint="connect with tls:// and TLS certificates (Dask's distributed.comm.tls.* "
            "settings or Security), or let each worker start from its own credentials",
        )
    if security.get_connection_args("client").get("ssl_context") is None:
        raise EngineError(
            "--ship-credentials needs TLS certificates for the connection to "
            f"{address}, and none are configured",
            hint="set distributed.comm.tls.ca-file, client.cert and client.key (e.g. "
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE) or pass security=Security(...)",
        )
    return security


class DaskRunner:
    """Runs a context's plan on a Dask cluster; iterate :meth:`records` for records.

    Same parts and contract as :class:`~rolechain.executor.runner.Runner` (see the module
    docstring). Raises :class:`~rolechain.errors.EngineError` at once for what cannot work
    on a cluster.
    """

    def __init__(
        self,
        context: RunContext,
        engine: EngineOptions,
        *,
        progress: ProgressCallback | None = None,
        summary: Summary | None = None,
        sink: RecordSink | None = None,
        stop: StopSignal | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> None:
        check_engine(context, engine)
        self.context = context
        self.engine = engine
        self.progress = progress
        plan = context.plan
        self.summary = summary or Summary(job=plan.job, run_id=plan.run_id)
        self.sink = sink
        self.stop = stop or StopSignal()
        self.on_plan = on_plan

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self) -> Iterator[Record]:
        return iterate(_Schedule(self))


# -- the cluster ------------------------------------------------------------------------------


class _Cluster:
    """The client (and the local cluster, if the run started one), made on a thread that
    the driver may give up on: whatever it makes after that is closed at once."""

    def __init__(self, engine: EngineOptions, worker_env: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.worker_env = worker_env  # for the processes of a local cluster
        self.lock = threading.Lock()
        self.abandoned = False
        self.client: Any = None
        self.cluster: Any = None
        self.workers = 0  # worker processes when connected

    def connect(self) -> None:
        engine = self.engine
        if engine.local:
            cluster = self._local()
            if not self._keep(cluster=cluster):
                return
            client = self._client(cluster)
        else:
            client = self._client(engine.cluster)
            if not self._keep(client=client):
                return
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT)
            except Exception:
                raise EngineError(
                    f"the Dask cluster at {engine.cluster} has no worker (waited {WORKER_WAIT:g}s)",
                    hint="start workers ('dask worker ADDRESS --nthreads 1') or check the address",
                ) from None
        self._keep(client=client)
        self.workers = len(client.nthreads())

    def _local(self) -> Any:
        import dask
        from distributed import LocalCluster, Security

        engine = self.engine
        tls = engine.ship_credentials  # shipped credentials travel over TLS, even locally
        try:
            # The nannies hand this config to every worker process they start (restarts
            # too). LOCAL_WORKER_CONFIG: no statistical profiler (see there).
            with dask.config.set(LOCAL_WORKER_CONFIG):
                return LocalCluster(
                    n_workers=engine.workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    scheduler_port=0,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                    protocol="tls://" if tls else None,
                    security=Security.temporary() if tls else None,
                    env=self.worker_env or {},
                )
        except Exception as exc:
            raise EngineError(
                f"cannot start a local Dask cluster: {type(exc).__name__}: {exc}",
                hint="a script that runs the dask engine with local workers must start it "
                "under 'if __name__ == \"__main__\":' (workers re-import the main module)",
            ) from None

    def _client(self, where: Any) -> Any:
        from distributed import Client

        engine = self.engine
        try:
            if isinstance(where, str):
                security = security_for(engine, shipping=engine.ship_credentials)
                client = Client(where, security=security, timeout=CONNECT_TIMEOUT)
            else:
                client = Client(where)
        except EngineError:
            raise
        except Exception as exc:
            address = where if isinstance(where, str) else where.scheduler_address
            raise EngineError(
                f"cannot connect to the Dask scheduler at {address}: {type(exc).__name__}: {exc}",
                hint="check the address and that the scheduler is running",
            ) from None
        if engine.local:
            client.register_plugin(LocalWorkerSetup())
        return client

    def _keep(self, *, client: Any = None, cluster: Any = None) -> bool:
        with self.lock:
            if not self.abandoned:
                if client is not None:
                    self.client = client
                if cluster is not None:
                    self.cluster = cluster
                return True
        _close(client, cluster)
        return False

    def close(self) -> None:
        with self.lock:
            self.abandoned = True
            client, cluster = self.client, self.cluster
            self.client = self.cluster = None
        _close(client, cluster)

    @property
    def dashboard(self) -> str | None:
        client = self.client
        return getattr(client, "dashboard_link", None) if client is not None else None


def _local_env(context: RunContext, engine: EngineOptions) -> dict[str, str] | None:
    """The environment of a local cluster's worker processes when the caller gave the
    starting credentials (``credentials=``) and they are not shipped: the workers are this
    machine's own processes, started with the principal's keys in their environment, as a
    shell would start them (nothing goes through the cluster's connections)."""
    given = context.starting_credentials
    if given is None or not engine.local or engine.ship_credentials:
        return None
    frozen = given.get_frozen_credentials()
    env = {
        "AWS_ACCESS_KEY_ID": frozen.access_key or "",
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key or "",
    }
    if frozen.token:
        env["AWS_SESSION_TOKEN"] = frozen.token
    return env


def _close(client: Any, cluster: Any) -> None:
    for thing in (client, cluster):
        if thing is not None:
            with contextlib.suppress(Exception):
                thing.close()


@dataclass(frozen=True)
class _BatchDone:
    future: Any
    result: Any  # BatchResult | (type, exception, traceback) | CancelledError


class _Feeder:
    """Puts each batch's outcome on the run's queue as it completes (``as_completed``)."""

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
            except Exception:  # the client is closing
                with self.lock:
                    self.running = False
                return
            self.queue.put(_BatchDone(future, result))


@dataclass
class _Batch:
    key: str
    index: int
    targets: tuple[Target, ...]
    future: Any = None
    settled: bool = False
    split: bool = False
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(t.name for t in self.targets)


_Out = tuple[Record, Target, bool]  # a record, its target, whether it is the target's last


class _Schedule(Iteration):
    """One iteration of a :class:`DaskRunner` (on the consumer's thread)."""

    def __init__(self, runner: DaskRunner) -> None:
        super().__init__(
            runner.context,
            runner.summary,
            runner.stop,
            sink=runner.sink,
            progress=runner.progress,
        )
        self.runner = runner
        self.engine = runner.engine
        plan = self.context.plan
        # The run's key on the cluster: its id and a nonce (two runs may share an id).
        self.key = f"{plan.run_id}-{secrets.token_hex(4)}"
        self.cluster = _Cluster(self.engine, _local_env(self.context, self.engine))
        self.feeder: _Feeder | None = None
        self.batches: dict[str, _Batch] = {}
        self.pending: dict[str, _Batch] = {}  # not settled yet: sent, or in the backlog
        self.backlog: deque[_Batch] = deque()  # not sent yet
        self.flying: set[str] = set()  # sent to the cluster, not settled
        self.window = 1  # batches sent at once: the cluster's worker threads
        self.targets: tuple[Target, ...] = ()
        self.seen: set[tuple[str, str | None, str | None]] = set()
        self.workers: dict[str, WorkerInfo] = {}  # by process: its latest counts
        self.batch_workers: set[str] = set()
        deadline = self.context.deadline
        self.deadline_wall = time.time() + deadline if deadline is not None else None
        self.next_check = self.clock0 + MAX_WAIT
        self.no_workers_since: float | None = None
        self.share = 1.0  # each worker's part of the AssumeRole rate

    # -- the whole run -------------------------------------------------------------------

    def run(self) -> Iterator[Record]:
        summary = self.summary
        summary.started_at = iso_now()
        summary.engine = "dask"
        item = self._get(0)
        while item is not None:  # a cancel that came before the run started
            self._handle(item)
            item = self._get(0)
        self._check_deadline()  # nothing is submitted yet: no records
        self._setup()
        if self.set_up and self.stop is None:
            self._submit()
            while self.pending and not self._waited_enough():
                yield from self._step()
        yield from self._finish()

    def _setup(self) -> None:
        """Connect and prepare on a thread, watching for a cancel and the deadline."""
        if self.stop is not None:
            self._start_sink()
            return
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
                ) from None

        if not self._in_background(work, "rolechain-dask-setup"):
            # Gave up on the set-up; every target of the plan is unfinished.
            cluster.close()
            self._start_sink()
            return
        prepared = box["prepared"]
        self._note(prepared.worker)
        if prepared.error is not None:
            raise prepared.error
        assert prepared.plan is not None
        self.context.use_plan(prepared.plan)
        self._start_sink()
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

    def _submit(self) -> None:
        client = self.cluster.client
        plan = self.context.plan
        nthreads = client.nthreads()
        workers = max(1, len(nthreads))
        self.window = max(1, sum(nthreads.values()))
        size = self.engine.batch_size or default_batch_size(
            len(plan.targets), workers, self.context.concurrency
        )
        groups = partition(plan, size)
        self.share = 1.0 / max(1, min(workers, len(groups)))
        self.backlog.extend(self._new_batch(i, targets) for i, targets in enumerate(groups))
        self.summary.batches = len(groups)
        self.feeder = _Feeder(client, self.queue)
        self._top_up()

    def _top_up(self) -> None:
        """Send batches from the backlog while the cluster has a free worker thread.

        A worker holds only the batch it runs: Dask blames every task a worker holds when
        it dies, so a queued batch would be blamed for another's crash; and a cancel finds
        every batch not running still here, never started.
        """
        futures = []
        while self.backlog and self.stop is None and len(self.flying) < self.window:
            batch = self.backlog.popleft()
            spec = self._spec(batch_plan(self.context.plan, batch.targets), self.share)
            batch.future = self.cluster.client.submit(
                run_batch,
                spec,
                Batch(batch.index, batch.names, batch.key),
                key=batch.key,
                pure=False,
            )
            self.flying.add(batch.key)
            futures.append(batch.future)
        if futures:
            assert self.feeder is not None
            self.feeder.add(futures)

    def _new_batch(self, index: int, targets: tuple[Target, ...]) -> _Batch:
        batch = _Batch(f"rolechain-batch-{self.key}-{index:05d}", index, targets)
        self.batches[batch.key] = batch
        self.pending[batch.key] = batch
        return batch

    def _start_sink(self) -> None:
        plan = self.context.plan
        self.targets = plan.targets
        self.summary.targets = len(plan.targets)
        self.summary.planned_assume_calls = plan.assume_calls
        if self.sink_started:
            return
        sink = self.runner.sink
        if sink is not None:
            sink.start(plan)
        self.sink_started = True
        if self.runner.on_plan is not None:
            self.runner.on_plan(plan)

    def _step(self) -> Iterator[Record]:
        item = self._get(self._wait_seconds())
        out: list[_Out] = []
        while item is not None:
            out.extend(self._handle(item))
            item = self._get(0)
        out.extend(self._check_deadline())
        out.extend(self._check_workers())
        self._top_up()
        # Into the sink (and the summary) first: if the caller stops reading, none is lost.
        yield from [self._emit(*entry) for entry in out]

    def _finish(self) -> Iterator[Record]:
        for entry in self._wind_down():
            yield self._emit(*entry)

    def abort(self, reason: str) -> None:
        """Stop now, without yielding: the records left go to the sink only."""
        if self.stop is None and self._work_left():
            self.stop, self.stop_reason = "interrupted", reason
        self.grace_until = time.monotonic()
        if not self.sink_started:
            self._start_sink()
        for entry in self._wind_down():
            self._emit(*entry)

    def close(self) -> None:
        summary = self.summary
        self._close_summary()
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
        summary.worker_pacing = (
            "; ".join(sorted({w.pacing for w in taking_part if w.pacing})) or None
        )
        if self.set_up:
            summary.assume_bound = assume_bound(self.context.plan, max(1, len(taking_part)))
        stats = self.context.stats
        for name, value in totals.items():
            if isinstance(getattr(stats, name, None), int):
                setattr(stats, name, value)
        sink = self.runner.sink
        try:
            if sink is not None and self.sink_started:
                sink.finish(summary)
        finally:
            client = self.cluster.client
            if client is not None and not self.engine.local:  # local workers end with it
                with contextlib.suppress(Exception):
                    client.run(forget_run, self.key, on_error="ignore")
            self.cluster.close()

    # -- events --------------------------------------------------------------------------

    def _wait_seconds(self) -> float:
        now = time.monotonic()
        wake = [now + MAX_WAIT, self.next_check]
        if self.deadline_at is not None and self.stop is None:
            wake.append(self.deadline_at)
        if self.grace_until is not None:
            wake.append(self.grace_until + RETURN_MARGIN)
        return max(0.0, min(wake) - now)

    def _handle(self, item: object) -> list[_Out]:
        if isinstance(item, _BatchDone):
            return self._done(item.future, item.result)
        if isinstance(item, CancelRequest):
            return self._stop_batches(item)
        return []

    def _work_left(self) -> bool:
        return not self.set_up or bool(self.pending)

    def _stop_batches(self, request: CancelRequest) -> list[_Out]:
        if not self._cancel(request):
            return []
        assert self.grace_until is not None
        # Running batches get the grace left; the others never start.
        left = max(0.0, self.grace_until - time.monotonic())
        return self._drop_queued(request.reason, left)

    def _check_deadline(self) -> list[_Out]:
        if not self._deadline_passed():
            return []
        # No cancel: every batch sent stops by itself at the deadline (a wall-clock time)
        # and comes back within the margin; those never sent will not start.
        out: list[_Out] = []
        error = self._stop_error("before the target was started")
        while self.backlog:
            out.extend(self._settle(self.backlog.popleft(), error))
        return out

    def _waited_enough(self) -> bool:
        grace_until = self.grace_until
        return grace_until is not None and time.monotonic() >= grace_until + RETURN_MARGIN

    def _drop_queued(self, reason: str | None, grace: float | None) -> list[_Out]:
        """Cancel the run on the workers (running batches get ``grace``), then cancel the
        batches no worker has run or is running: their targets get stop records now. The
        others come back when they are done (or are recorded at the end of the
        wind-down)."""
        client = self.cluster.client
        if client is None or not self.set_up or not self.pending:
            return []
        running = self._running(client, reason, grace)
        queued = [
            batch
            for key, batch in self.pending.items()
            if key not in running and (batch.future is None or batch.future.status == "pending")
        ]
        with contextlib.suppress(Exception):
            client.cancel([batch.future for batch in queued if batch.future is not None])
        out: list[_Out] = []
        for batch in queued:
            out.extend(self._settle(batch, self._stop_error("before the target was started")))
        return out

    def _running(self, client: Any, reason: str | None, grace: float | None) -> set[str]:
        """The batches the workers are running or have run (:func:`~rolechain.executor.
        dask_worker.stop_run`). Asked on a thread, so that a worker that does not answer cannot hold
        the driver; without an answer, every batch a worker holds counts as running."""
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
            return set(self.pending)

    def _check_workers(self) -> list[_Out]:
        """The end of a run whose cluster has had no worker for :data:`NO_WORKERS_LIMIT`
        seconds: its batches fail (a run always ends)."""
        out: list[_Out] = []
        now = time.monotonic()
        if now < self.next_check or not self.pending or self.stop is not None:
            return out
        self.next_check = now + MAX_WAIT
        client = self.cluster.client
        try:
            nthreads = client.nthreads() if client is not None else {}
        except Exception:
            nthreads = {}
        if nthreads:
            self.no_workers_since = None
            self.window = max(1, sum(nthreads.values()))  # workers come and go
            return out
        if self.no_workers_since is None:
            self.no_workers_since = now
        if now - self.no_workers_since < NO_WORKERS_LIMIT:
            return out
        error = RecordError(NO_WORKERS, f"the Dask cluster had no worker for {NO_WORKERS_LIMIT:g}s")
        for batch in list(self.pending.values()):
            out.extend(self._settle(batch, error))
        return out

    def _done(self, future: Any, result: Any) -> list[_Out]:
        batch = self.batches.get(future.key)
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
            self._split(batch)
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

    def _split(self, batch: _Batch) -> None:
        """A batch whose workers keep dying: run each of its targets on its own."""
        self._settled(batch)
        batch.split = True
        start = len(self.batches)
        parts = [
            self._new_batch(start + offset, (target,))
            for offset, target in enumerate(batch.targets)
        ]
        self.backlog.extendleft(reversed(parts))  # next to run
        self.summary.batches += len(parts)

    def _accept(self, batch: _Batch, result: BatchResult) -> list[_Out]:
        self._settled(batch)
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
        out: list[_Out] = []
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
            out.extend((r, target, i == len(kept) - 1) for i, r in enumerate(kept))
        return out

    def _first(self, record: Record) -> bool:
        """Whether this unit has no record yet (dedup by unit id)."""
        unit = (record.target, record.region, record.task)
        if unit in self.seen:
            self.summary.duplicates_dropped += 1
            return False
        self.seen.add(unit)
        return True

    def _settle(self, batch: _Batch, error: RecordError) -> list[_Out]:
        """The batch's targets get ``error`` (target records), unless they have records."""
        self._settled(batch)
        now = iso_now()
        out: list[_Out] = []
        for target in batch.targets:
            record = target_record(self.context.plan, target, error, now, 0)
            if self._first(record):
                out.append((record, target, True))
        return out

    def _settled(self, batch: _Batch) -> None:
        batch.settled = True
        self.pending.pop(batch.key, None)
        self.flying.discard(batch.key)
        if batch.future is None:  # never sent
            with contextlib.suppress(ValueError):
                self.backlog.remove(batch)

    def _note(self, worker: WorkerInfo) -> None:
        known = self.workers.get(worker.process)
        if known is None or sum(worker.counts.values()) >= sum(known.counts.values()):
            self.workers[worker.process] = worker

    # -- stopping ------------------------------------------------------------------------

    def _wind_down(self) -> Iterator[_Out]:
        """Everything left once the run stops (nothing when it ran to the end)."""
        item = self._get(0)
        while item is not None:
            yield from self._handle(item)
            item = self._get(0)
        if not self.set_up:  # stopped before the batches existed
            error = self._stop_error("before the target was started")
            now = iso_now()
            for target in self.targets:
                yield target_record(self.context.plan, target, error, now, 0), target, True
            return
        if self.pending and self.stop is None:  # cannot happen: the loop ran them all
            self.stop, self.stop_reason = "interrupted", "the run ended early"
        left = list(self.pending.values())
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

    # -- accounting ----------------------------------------------------------------------

    def _emit(self, record: Record, target: Target, last: bool) -> Record:
        self._count(record)
        if last:  # a target's records arrive together (its batch)
            self._finish_target(target)
        return self._store(record)


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


__all__ = ["DaskRunner", "check_engine", "security_for"]

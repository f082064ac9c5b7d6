"""The public face of the executor: :class:`Run` (and :func:`run`), and
:class:`SessionFactory` (and :func:`sessions`). :mod:`rolechain.executor` re-exports them.

A run, in order: plan (offline; a bad chain file or plan raises before any call), check the
principal with GetCallerIdentity (re-planning if user keys turn out to be a session),
resolve Organizations role sets through their ``via`` hop and plan again with the accounts,
then run the tasks on the engine the run's context chose (:mod:`rolechain.executor.engine`),
assuming each hop once and refreshing as needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from botocore.credentials import Credentials

from rolechain.aws.assumer import Assumer, Clock, utc_now
from rolechain.aws.credentials import HopCredentials, HopTree, TokenProvider
from rolechain.aws.pacer import Pacing
from rolechain.aws.ratelimit import AssumeLimiter
from rolechain.aws.retry import CallStats
from rolechain.aws.session import AwsSessions
from rolechain.executor.context import RunContext
from rolechain.executor.engine import runner_for
from rolechain.executor.loop import ProgressCallback, StopSignal
from rolechain.executor.options import EngineKind, EngineOptions, RunOptions
from rolechain.executor.records import Record, RecordSink, RunStatus, Summary
from rolechain.model.chain import Chain
from rolechain.planner.plan import NoMatch, Plan

if TYPE_CHECKING:
    import boto3


class Run:
    """An iterable of records (streamed as units finish) with a :attr:`summary`.

    Iterate it once. The plan is made when the Run is made (so a bad chain file raises
    there, before any AWS call); AWS is first called when iteration starts.

    :meth:`cancel` stops the run from any thread (or a signal handler): no new unit
    starts, in-flight units get the grace period, then the rest is marked ``Interrupted``
    and the iteration ends; every record made is yielded and stored. The run also ends at
    its :attr:`deadline`. :attr:`status` (``summary.status``) says how it ended. The
    library never installs signal handlers; the CLI does, and calls :meth:`cancel`.

    The units run on the context's :attr:`engine` (threads, or a Dask cluster); making a
    Run raises :class:`~rolechain.errors.EngineError` at once if that engine cannot be used
    (the ``dask`` extra missing, credentials that would have to travel without TLS).
    """

    def __init__(
        self,
        context: RunContext,
        *,
        store: RecordSink | None = None,
        progress: ProgressCallback | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> None:
        self.context = context
        plan = context.plan
        self.summary = Summary(job=plan.job, run_id=plan.run_id, targets=len(plan.targets))
        self.summary.planned_assume_calls = plan.assume_calls
        self._stop = StopSignal()
        self._runner = runner_for(
            context,
            progress=progress,
            summary=self.summary,
            sink=store,
            stop=self._stop,
            on_plan=on_plan,
        )
        self._started = False
        self._lock = threading.Lock()

    @property
    def plan(self) -> Plan:
        """The plan: the offline one until the run starts, then the checked, resolved one."""
        return self.context.plan

    @property
    def chain(self) -> Chain | None:
        return self.context.chain

    @property
    def concurrency(self) -> int:
        return self.context.concurrency

    @property
    def deadline(self) -> float | None:
        """Seconds the run may take from its start (None: no deadline)."""
        return self.context.deadline

    @property
    def grace(self) -> float:
        """Seconds in-flight units get to finish after :meth:`cancel`."""
        return self.context.grace

    @property
    def engine(self) -> EngineOptions:
        """Where the units run (``threads`` or ``dask``, with its options)."""
        return self.context.engine

    @property
    def status(self) -> RunStatus:
        """``running``, then ``ok``, ``failed``, ``interrupted`` or ``deadline-exceeded``."""
        return self.summary.status

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._stop.requested

    @property
    def tree(self) -> HopTree | None:
        return self.context.tree if self.context.prepared else None

    @property
    def stats(self) -> CallStats:
        return self.context.stats

    def cancel(self, reason: str = "cancelled", *, grace: float | None = None) -> None:
        """Stop the run: start no new unit, give in-flight ones ``grace`` seconds (default
        :attr:`grace`), then mark the rest ``Interrupted``.

        Safe from any thread and from a signal handler; calling it again with a shorter
        ``grace`` (``0``: now) shortens the wait. ``reason`` ends up in
        ``summary.stop_reason``. A no-op once the run has ended.
        """
        self._stop.cancel(reason, grace=grace)

    def __iter__(self) -> Iterator[Record]:
        with self._lock:
            if self._started:
                raise RuntimeError("a Run can be iterated only once")
            self._started = True
        return self._runner.records()


def run(
    chain_or_plan: Chain | Plan,
    job: str | None = None,
    *,
    targets: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    concurrency: int | None = None,
    deadline: float | None = None,
    grace: float | None = None,
    run_id: str | None = None,
    store: RecordSink | None = None,
    credentials: Credentials | None = None,
    assumer: Assumer | None = None,
    clock: Clock = utc_now,
    token_provider: TokenProvider | None = None,
    progress: ProgressCallback | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    aws_sessions: AwsSessions | None = None,
    check_identity: bool = True,
    limiter: Pacing | AssumeLimiter | None = None,
    engine: EngineOptions | EngineKind | None = None,
    skip: Iterable[tuple[str, str, str]] = (),
) -> Run:
    """Plan ``job`` of a chain (or take a ready plan) and return the :class:`Run`.

    ``targets`` narrows the job's targets (names or globs); ``regions`` overrides the job's
    regions; ``deadline`` bounds the whole run in seconds (default: the job's ``runtime``;
    ``math.inf``: none); ``grace`` is how long in-flight units may finish after
    :meth:`Run.cancel` (default 10 s); ``credentials`` replaces the principal's (botocore
    Credentials); ``assumer`` replaces STS (a cache or a fake); ``clock`` returns an aware
    datetime (tests compress time); ``token_provider(hop) -> str`` supplies MFA codes;
    ``progress(target, ok, done, total)`` is called as each target finishes; ``on_plan(plan)``
    is called once with the checked, resolved plan before the first unit starts (its notes
    say what the identity check re-planned); ``store`` receives every record; ``limiter``
    paces AssumeRole instead of a new adaptive :class:`~rolechain.aws.pacer.Pacer` (share
    one between runs that call from the same accounts at once); ``engine`` runs the units
    on ``"threads"`` (a pool in this process) or ``"dask"`` (a Dask cluster;
    :class:`EngineOptions` for its address, workers, batch size), default: the chain file's
    ``settings.engine``; ``skip`` lists (target, region, task id) units not to run (done
    by an earlier run: see :mod:`rolechain.results.resume`). Raises
    :class:`~rolechain.errors.ChainFileError` /
    :class:`~rolechain.errors.PlanError` at once for an invalid chain or plan,
    :class:`~rolechain.errors.EngineError` for an engine that cannot be used.
    """
    options = RunOptions(
        targets=tuple(targets) if targets is not None else None,
        regions=tuple(regions) if regions else None,
        concurrency=concurrency,
        deadline=deadline,
        check_identity=check_identity,
        run_id=run_id,
        engine=engine,
        skip=frozenset(skip),
        **({"grace": grace} if grace is not None else {}),
    )
    context = RunContext.for_job(
        chain_or_plan,
        job,
        options,
        credentials=credentials,
        assumer=assumer,
        clock=clock,
        token_provider=token_provider,
        aws_sessions=aws_sessions,
        limiter=limiter,
    )
    return Run(context, store=store, progress=progress, on_plan=on_plan)


class SessionFactory:
    """Refreshable boto3 sessions for the planned targets of a job.

    The principal is checked and Organizations role sets resolved on first use; each hop is
    assumed once and shared, and every session refreshes through the hop tree.
    """

    def __init__(self, context: RunContext) -> None:
        self.context = context
        self._lock = threading.Lock()
        self._ready_done = False

    def _ready(self) -> RunContext:
        if not self._ready_done:
            with self._lock:
                if not self._ready_done:
                    context = self.context.prepare()
                    # Parse the models this job's tasks use once, before user threads ask
                    # for clients (botocore's loader does not lock).
                    context.sessions.warm(context.services(), context.plan.region)
                    self._ready_done = True
        return self.context

    @property
    def plan(self) -> Plan:
        return self._ready().plan

    @property
    def targets(self) -> list[str]:
        return [t.name for t in self.plan.targets]

    @property
    def unmatched(self) -> tuple[NoMatch, ...]:
        """Requested globs over Organizations role sets that matched none of the accounts
        AWS Organizations listed (each with its message and fix): they select nothing,
        never every account; asking for one of them raises that message."""
        return self.plan.unmatched

    def credentials(self, target: str) -> HopCredentials:
        """The target's refreshable botocore credentials."""
        return self._ready().credentials_for(target)

    def session(self, target: str, region: str | None = None) -> boto3.Session:
        """A boto3 Session for ``target`` (default region: the plan's)."""
        context = self._ready()
        return context.sessions.boto3_session(
            self.credentials(target), region or context.plan.region
        )

    def client(self, service: str, target: str, region: str | None = None) -> Any:
        """A botocore client for ``target`` built from the shared session (cheap)."""
        context = self._ready()
        return context.sessions.client(
            service, region or context.plan.region, self.credentials(target)
        )

    @property
    def assume_calls(self) -> int:
        return self._ready().stats.assume_calls


def sessions(
    chain_or_plan: Chain | Plan,
    job: str | None = None,
    *,
    targets: Sequence[str] | None = None,
    credentials: Credentials | None = None,
    assumer: Assumer | None = None,
    clock: Clock = utc_now,
    token_provider: TokenProvider | None = None,
    concurrency: int = 16,
    check_identity: bool = True,
) -> SessionFactory:
    """A :class:`SessionFactory` for ``job``: the chain's paths, your own code."""
    options = RunOptions(
        targets=tuple(targets) if targets is not None else None,
        concurrency=concurrency,
        check_identity=check_identity,
    )
    context = RunContext.for_job(
        chain_or_plan,
        job,
        options,
        credentials=credentials,
        assumer=assumer,
        clock=clock,
        token_provider=token_provider,
    )
    return SessionFactory(context)


__all__ = ["Run", "SessionFactory", "run", "sessions"]

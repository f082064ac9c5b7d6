"""Running jobs: :func:`run` streams records; :func:`sessions` hands out target sessions.

>>> import rolechain
>>> chain = rolechain.load("chains/org-inventory.yaml")             # doctest: +SKIP
>>> result = rolechain.run(chain, "inventory", concurrency=32)        # doctest: +SKIP
>>> for record in result:                                             # doctest: +SKIP
...     print(record.target, record.region, record.status)
>>> result.summary.targets_failed                                     # doctest: +SKIP
0
>>> factory = rolechain.sessions(chain, "inventory")                  # doctest: +SKIP
>>> s3 = factory.session("audit@222222222222").client("s3")           # doctest: +SKIP

A run, in order: plan (offline; a bad chain file or plan raises before any call), check the
principal with GetCallerIdentity (re-planning if user keys turn out to be a session),
resolve Organizations role sets through their ``via`` hop and plan again with the accounts,
then run the tasks on a bounded pool, assuming each hop once and refreshing as needed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from botocore.credentials import Credentials

from rolechain.aws.assumer import Assumer, Clock, StsAssumer, utc_now
from rolechain.aws.credentials import HopCredentials, HopTree, TokenProvider
from rolechain.aws.identity import CallerIdentity, caller_identity, check_principal
from rolechain.aws.organizations import Organizations, discover
from rolechain.aws.ratelimit import RateLimiter
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import AwsSessions, principal_credentials
from rolechain.errors import PlanError, RolechainError, Violation
from rolechain.executor.records import Record, RecordError, Summary
from rolechain.executor.runner import ProgressCallback, Runner
from rolechain.executor.tasks import TaskContext
from rolechain.executor.units import WorkUnit
from rolechain.model.chain import Chain
from rolechain.planner import new_run_id
from rolechain.planner import plan as make_plan
from rolechain.planner.plan import Plan

if TYPE_CHECKING:
    import boto3

__all__ = [
    "Record",
    "RecordError",
    "RecordSink",
    "Run",
    "SessionFactory",
    "Summary",
    "TaskContext",
    "WorkUnit",
    "run",
    "sessions",
]


@runtime_checkable
class RecordSink(Protocol):
    """Somewhere records go as they are made (the SQLite store implements this)."""

    def start(self, plan: Plan) -> None: ...

    def add(self, record: Record) -> None: ...

    def finish(self, summary: Summary) -> None: ...


def _plan(
    chain_or_plan: Chain | Plan,
    job: str | None,
    targets: Sequence[str] | None,
    run_id: str | None,
    resolved: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    if isinstance(chain_or_plan, Plan):
        return chain_or_plan
    if job is None:
        raise TypeError("run(chain, job): the job name is required with a chain")
    return make_plan(
        chain_or_plan,
        job,
        targets=list(targets) if targets is not None else None,
        run_id=run_id or new_run_id(),
        resolved=resolved,
    )


class _Prepared:
    """Steps 2-3 of a run, shared by :class:`Run` and :class:`SessionFactory`."""

    def __init__(
        self,
        plan: Plan,
        chain: Chain | None,
        *,
        targets: Sequence[str] | None,
        credentials: Credentials | None,
        assumer: Assumer | None,
        clock: Clock,
        token_provider: TokenProvider | None,
        concurrency: int,
        aws_sessions: AwsSessions | None,
        check_identity: bool,
        sleep: Any = None,
    ) -> None:
        settings = plan.settings_dict
        self.policy = RetryPolicy.from_settings(settings)
        self.stats = CallStats()
        self.sessions = aws_sessions or AwsSessions(concurrency=concurrency)
        self.root = credentials or principal_credentials(
            plan.principal_source, plan.principal_profile
        )
        rate = float(settings.get("assume_rate") or 10.0)
        if assumer is None:
            assumer = StsAssumer(
                self.sessions,
                policy=self.policy,
                limiter=RateLimiter(rate),
                stats=self.stats,
                default_region=plan.region,
                clock=clock,
                sleep=sleep,
            )
        else:
            self.stats = getattr(assumer, "stats", None) or self.stats
        self.assumer = assumer
        self.identity: CallerIdentity | None = None
        if check_identity:
            self.identity = caller_identity(
                self.sessions, self.root, region=plan.region, policy=self.policy, stats=self.stats
            )
            plan = check_principal(plan, self.identity, chain=chain, targets=targets)
        self.tree = HopTree(plan, self.root, assumer, clock=clock, token_provider=token_provider)
        if plan.discoveries:
            plan = self._discover(plan, chain, targets)
        self.plan = plan

    def _discover(self, plan: Plan, chain: Chain | None, targets: Sequence[str] | None) -> Plan:
        if chain is None:
            raise PlanError(
                plan.job,
                [
                    Violation(
                        rule="discovery-needs-chain",
                        message="this plan has Organizations role sets; resolving them needs "
                        "the chain, not just the plan",
                        fix="pass the loaded chain to run()/sessions()",
                    )
                ],
            )
        resolved: dict[str, list[str]] = {}
        for discovery in plan.discoveries:
            creds: Credentials = (
                self.root if discovery.via_hop is None else self.tree.credentials(discovery.via_hop)
            )
            orgs = Organizations(
                self.sessions,
                creds,
                region=discovery.region,
                policy=self.policy,
                stats=self.stats,
                hop=plan.hop(discovery.via_hop).label if discovery.via_hop else plan.principal,
            )
            resolved[discovery.role_set] = discover(discovery, orgs)
        new_plan = _plan(chain, plan.job, targets, plan.run_id, resolved)
        if self.identity is not None:
            new_plan = check_principal(
                new_plan, self.identity, chain=chain, targets=targets, resolved=resolved
            )
        tree = HopTree(
            new_plan,
            self.root,
            self.assumer,
            clock=self.tree.clock,
            token_provider=self.tree.token_provider,
        )
        tree.adopt(self.tree)
        self.tree = tree
        return new_plan


class Run:
    """An iterable of records (streamed as units finish) with a :attr:`summary`.

    Iterate it once. The plan is made when the Run is made (so a bad chain file raises
    there, before any AWS call); AWS is first called when iteration starts.
    """

    def __init__(
        self,
        plan: Plan,
        chain: Chain | None,
        *,
        targets: Sequence[str] | None = None,
        regions: Sequence[str] | None = None,
        concurrency: int | None = None,
        store: RecordSink | None = None,
        credentials: Credentials | None = None,
        assumer: Assumer | None = None,
        clock: Clock = utc_now,
        token_provider: TokenProvider | None = None,
        progress: ProgressCallback | None = None,
        aws_sessions: AwsSessions | None = None,
        check_identity: bool = True,
        sleep: Any = None,
    ) -> None:
        self.plan = plan
        self.chain = chain
        self.concurrency = concurrency or plan.concurrency or 16
        self.summary = Summary(job=plan.job, run_id=plan.run_id, targets=len(plan.targets))
        self.summary.planned_assume_calls = plan.assume_calls
        self._targets = targets
        self._regions = tuple(regions) if regions else None
        self._store = store
        self._options: dict[str, Any] = dict(
            targets=targets,
            credentials=credentials,
            assumer=assumer,
            clock=clock,
            token_provider=token_provider,
            concurrency=self.concurrency,
            aws_sessions=aws_sessions,
            check_identity=check_identity,
            sleep=sleep,
        )
        self._progress = progress
        self._started = False
        self.stats: CallStats | None = None
        self.tree: HopTree | None = None

    def __iter__(self) -> Iterator[Record]:
        if self._started:
            raise RuntimeError("a Run can be iterated only once")
        self._started = True
        return self._records()

    def _records(self) -> Iterator[Record]:
        started = datetime.now(UTC)
        self.summary.started_at = started.isoformat()
        prepared = _Prepared(self.plan, self.chain, **self._options)
        self.plan, self.tree, self.stats = prepared.plan, prepared.tree, prepared.stats
        runner = Runner(
            prepared.plan,
            prepared.tree,
            prepared.sessions,
            concurrency=self.concurrency,
            policy=prepared.policy,
            stats=prepared.stats,
            regions=self._regions,
            progress=self._progress,
            summary=self.summary,
        )
        if self._store is not None:
            self._store.start(prepared.plan)
        try:
            for record in runner:
                if self._store is not None:
                    self._store.add(record)
                yield record
        finally:
            if self._store is not None:
                self._store.finish(self.summary)


def run(
    chain_or_plan: Chain | Plan,
    job: str | None = None,
    *,
    targets: Sequence[str] | None = None,
    regions: Sequence[str] | None = None,
    concurrency: int | None = None,
    run_id: str | None = None,
    store: RecordSink | None = None,
    credentials: Credentials | None = None,
    assumer: Assumer | None = None,
    clock: Clock = utc_now,
    token_provider: TokenProvider | None = None,
    progress: ProgressCallback | None = None,
    aws_sessions: AwsSessions | None = None,
    check_identity: bool = True,
) -> Run:
    """Plan ``job`` of a chain (or take a ready plan) and return the :class:`Run`.

    ``targets`` narrows the job's targets (names or globs); ``regions`` overrides the job's
    regions; ``credentials`` replaces the principal's (botocore Credentials); ``assumer``
    replaces STS (a cache or a fake); ``clock`` returns an aware datetime (tests compress
    time); ``token_provider(hop) -> str`` supplies MFA codes; ``progress(target, ok, done,
    total)`` is called as each target finishes; ``store`` receives every record.
    Raises :class:`~rolechain.errors.ChainFileError` / :class:`~rolechain.errors.PlanError`
    at once for an invalid chain or plan.
    """
    plan = _plan(chain_or_plan, job, targets, run_id)
    chain = chain_or_plan if isinstance(chain_or_plan, Chain) else None
    return Run(
        plan,
        chain,
        targets=targets,
        regions=regions,
        concurrency=concurrency,
        store=store,
        credentials=credentials,
        assumer=assumer,
        clock=clock,
        token_provider=token_provider,
        progress=progress,
        aws_sessions=aws_sessions,
        check_identity=check_identity,
    )


class SessionFactory:
    """Refreshable boto3 sessions for the planned targets of a job.

    The principal is checked and Organizations role sets resolved on first use; each hop is
    assumed once and shared, and every session refreshes through the hop tree.
    """

    def __init__(self, plan: Plan, chain: Chain | None, **options: Any) -> None:
        self._plan = plan
        self._chain = chain
        self._options = options
        self._prepared: _Prepared | None = None
        self._lock = threading.Lock()

    def _ready(self) -> _Prepared:
        with self._lock:
            if self._prepared is None:
                self._prepared = _Prepared(self._plan, self._chain, **self._options)
            return self._prepared

    @property
    def plan(self) -> Plan:
        return self._ready().plan

    @property
    def targets(self) -> list[str]:
        return [t.name for t in self.plan.targets]

    def credentials(self, target: str) -> HopCredentials:
        """The target's refreshable botocore credentials."""
        prepared = self._ready()
        try:
            found = prepared.plan.target(target)
        except KeyError:
            raise RolechainError(
                f"{target!r} is not a target of job {prepared.plan.job!r}",
                hint="targets: " + ", ".join(t.name for t in prepared.plan.targets[:20]),
            ) from None
        return prepared.tree.for_target(found)

    def session(self, target: str, region: str | None = None) -> boto3.Session:
        """A boto3 Session for ``target`` (default region: the plan's)."""
        prepared = self._ready()
        return prepared.sessions.boto3_session(
            self.credentials(target), region or prepared.plan.region
        )

    def client(self, service: str, target: str, region: str | None = None) -> Any:
        """A botocore client for ``target`` built from the shared session (cheap)."""
        prepared = self._ready()
        return prepared.sessions.client(
            service, region or prepared.plan.region, self.credentials(target)
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
    plan = _plan(chain_or_plan, job, targets, None)
    chain = chain_or_plan if isinstance(chain_or_plan, Chain) else None
    return SessionFactory(
        plan,
        chain,
        targets=targets,
        credentials=credentials,
        assumer=assumer,
        clock=clock,
        token_provider=token_provider,
        concurrency=concurrency,
        aws_sessions=None,
        check_identity=check_identity,
    )

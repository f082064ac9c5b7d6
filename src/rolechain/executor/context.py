"""The run context: everything a run needs, built in one place.

Every entry point that calls AWS for a job (``rolechain.run``, ``rolechain.sessions``, the
``credentials``/``exec``/``env`` commands, and schedulers or engines built on them) builds
one :class:`RunContext` from a plan, the chain it came from and a frozen
:class:`~rolechain.executor.options.RunOptions`, plus what a caller may inject (starting
credentials, an assumer or an assumer wrapper such as the credential cache, a limiter, a
clock, an MFA token provider, the AWS sessions, a sleep function). The context owns, and
is the only place that builds:

* the retry policy and the call counters (:mod:`rolechain.aws.retry`);
* the AWS sessions (one shared botocore session, cached clients);
* the AssumeRole pacing (:func:`default_pacer`: adaptive, per calling account, under the
  chain's ``assume_rate`` ceiling if it sets one; replace it with ``limiter=``; a
  distributed engine gives each worker its ``share`` of a ceiling) and the
  throttle budget (``throttle_budget``, bounded by the run's deadline);
* the assumer (STS with that pacing, budget and policy, or the injected one, wrapped once
  per plan by ``wrap_assumer``);
* the identity check (GetCallerIdentity, re-planning when user keys are a session);
* Organizations discovery (re-planning with the discovered accounts);
* the hop tree.

Building a context is cheap and makes no call; :meth:`RunContext.prepare` loads the
starting credentials, checks the identity, resolves discovery and builds the hop tree,
once, and is safe to call from many threads.
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from botocore.credentials import Credentials

from rolechain.aws.assumer import PRINCIPAL_KEY, Assumer, Clock, StsAssumer, utc_now
from rolechain.aws.calls import ThrottleBudget
from rolechain.aws.credentials import HopCredentials, HopTree, TokenProvider
from rolechain.aws.identity import CallerIdentity, caller_identity, check_principal
from rolechain.aws.organizations import Organizations, discover
from rolechain.aws.pacer import Pacer, Pacing, as_pacing
from rolechain.aws.ratelimit import AssumeLimiter
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import AwsSessions, principal_credentials
from rolechain.errors import PlanError, RolechainError, Violation
from rolechain.executor.options import (
    DEFAULT_CONCURRENCY,
    EngineOptions,
    RunOptions,
    choose_engine,
)
from rolechain.model.chain import Chain
from rolechain.planner import new_run_id
from rolechain.planner import plan as make_plan
from rolechain.planner.plan import Hop, Plan, RunSettings, Target

_ARN_ACCOUNT = re.compile(r"^arn:[\w-]+:[\w-]+::(\d{12}):")

AssumerWrapper = Callable[[Assumer, Plan], Assumer]
"""``wrap(inner, plan) -> assumer``: called each time the context builds a hop tree for a
plan (after the identity check or discovery re-plans), e.g. to put the credential cache,
keyed by that plan's hops, around STS."""


def plan_job(
    chain_or_plan: Chain | Plan,
    job: str | None,
    options: RunOptions,
    resolved: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """The plan of ``job`` (or the plan given), narrowed as ``options`` say."""
    if isinstance(chain_or_plan, Plan):
        return chain_or_plan
    if job is None:
        raise TypeError("run(chain, job): the job name is required with a chain")
    return make_plan(
        chain_or_plan,
        job,
        targets=list(options.targets) if options.targets is not None else None,
        run_id=options.run_id or new_run_id(),
        resolved=resolved,
    )


def default_pacer(settings: RunSettings, *, share: float = 1.0) -> Pacer:
    """The run's AssumeRole pacing: adaptive per calling account (``assume_rate: auto``,
    the default), never above ``assume_rate`` calls a second when it is a number.

    ``share`` (0 < share <= 1) is the part of a fixed ceiling this process may use (a
    distributed engine's workers split it); an ``auto`` pacer learns its share itself.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    ceiling = settings.assume_rate
    return Pacer(ceiling=ceiling * share if ceiling is not None else None)


def services_of(plan: Plan, regions_override: tuple[str, ...] | None = None) -> list[str]:
    """The AWS services a run of ``plan`` will use, as far as the plan says."""
    services = ["sts"]
    regions = [*plan.regions, *(regions_override or ())]
    for task in plan.tasks:
        if task.task == "call":
            services.append(str(task.params_dict.get("service", "")))
        elif task.task in ("s3.list_buckets", "sts.get_caller_identity"):
            services.append(task.task.split(".")[0])
        regions.extend(task.regions or ())
    if "all" in regions:
        services.append("ec2")  # DescribeRegions lists the enabled regions
    return services


class RunContext:
    """Everything one run of a job uses (see the module docstring).

    ``credentials`` replaces the principal's starting credentials; ``assumer`` replaces
    STS (a fake in tests); ``wrap_assumer(inner, plan)`` wraps whichever assumer is used
    (the credential cache); ``limiter`` replaces :func:`default_pacer` (a
    :class:`~rolechain.aws.pacer.Pacing`, e.g. one shared by a cluster, or a plain
    :class:`~rolechain.aws.ratelimit.AssumeLimiter`); ``clock`` returns an aware datetime
    (tests compress time); ``token_provider(hop)`` gives MFA codes; ``aws_sessions``
    replaces the run's :class:`~rolechain.aws.session.AwsSessions`; ``sleep`` replaces
    ``time.sleep`` between retries.

    AssumeRole calls are paced per *calling account*: a hop's parent's account, or for a
    first hop the principal's (from the identity check, else its declared ARN).
    """

    def __init__(
        self,
        plan: Plan,
        chain: Chain | None = None,
        options: RunOptions | None = None,
        *,
        credentials: Credentials | None = None,
        assumer: Assumer | None = None,
        wrap_assumer: AssumerWrapper | None = None,
        limiter: Pacing | AssumeLimiter | None = None,
        clock: Clock = utc_now,
        token_provider: TokenProvider | None = None,
        aws_sessions: AwsSessions | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.options = options or RunOptions()
        self.chain = chain
        given = {
            "credentials": credentials,
            "assumer": assumer,
            "wrap_assumer": wrap_assumer,
            "limiter": limiter,
            "token_provider": token_provider,
            "aws_sessions": aws_sessions,
            "sleep": sleep,
        }
        # What the caller injected (a distributed engine refuses what cannot travel).
        self.injected = frozenset(
            [name for name, value in given.items() if value is not None]
            + (["clock"] if clock is not utc_now else [])
        )
        self._plan = plan
        self.clock = clock
        self.token_provider = token_provider
        settings = plan.settings
        self.policy = RetryPolicy(
            attempts=settings.retry_attempts,
            max_wait=settings.retry_max_wait,
            initial_wait=settings.retry_initial_wait,
        )
        self.stats = CallStats()
        self.concurrency = max(
            1, self.options.concurrency or plan.concurrency or DEFAULT_CONCURRENCY
        )
        self.sessions = aws_sessions or AwsSessions(concurrency=self.concurrency)
        # Where the units run: ``options.engine``, else the chain file's settings (chosen
        # once: re-planning keeps the job, and with it its settings).
        self.engine: EngineOptions = choose_engine(settings, self.options.engine)
        self.pacer: Pacing = as_pacing(limiter) if limiter is not None else default_pacer(settings)
        self.budget = ThrottleBudget(per_call=settings.throttle_budget)
        self.deadline_at: float | None = None  # time.monotonic() of the deadline, once begun
        self._accounts: dict[str, str] = {}  # hop id -> its account, of every plan seen
        if assumer is None:
            assumer = StsAssumer(
                self.sessions,
                policy=self.policy,
                pacer=self.pacer,
                budget=self.budget,
                stats=self.stats,
                default_region=plan.region,
                clock=clock,
                sleep=sleep,
                calling_account=self.calling_account,
                deadline=lambda: self.deadline_at,
            )
        else:
            # A fake or a custom assumer counts its own calls when it can.
            found = getattr(assumer, "stats", None)
            if isinstance(found, CallStats):
                self.stats = found
        self.base_assumer: Assumer = assumer
        self.assumer: Assumer = assumer
        self._wrap = wrap_assumer
        self._credentials = credentials
        self.root: Credentials | None = None
        self.identity: CallerIdentity | None = None
        self._tree: HopTree | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_job(
        cls,
        chain_or_plan: Chain | Plan,
        job: str | None = None,
        options: RunOptions | None = None,
        **injected: Any,
    ) -> RunContext:
        """Plan ``job`` of a chain (or take a ready plan) and build its context.

        Raises :class:`~rolechain.errors.ChainFileError` / :class:`~rolechain.errors.
        PlanError` at once for an invalid chain or plan; no AWS call is made.
        """
        options = options or RunOptions()
        plan = plan_job(chain_or_plan, job, options)
        chain = chain_or_plan if isinstance(chain_or_plan, Chain) else None
        return cls(plan, chain, options, **injected)

    # -- what the run is -----------------------------------------------------------------

    @property
    def plan(self) -> Plan:
        """The plan: the offline one until :meth:`prepare`, then the checked, resolved one."""
        return self._plan

    @property
    def deadline(self) -> float | None:
        """Seconds the run may take (``options.deadline``, else the job's runtime)."""
        chosen = self.options.deadline
        if chosen is None:
            chosen = self._plan.runtime_seconds
        if chosen is None or math.isinf(chosen):
            return None
        return float(chosen)

    def begin(self, now: float | None = None) -> float | None:
        """The run starts now (``time.monotonic()``): fix :attr:`deadline_at`, the moment
        every paced call and retry stops waiting. Returns it (None: no deadline)."""
        deadline = self.deadline
        start = time.monotonic() if now is None else now
        self.deadline_at = start + deadline if deadline is not None else None
        return self.deadline_at

    def calling_account(self, hop: Hop) -> Hashable:
        """The account whose credentials assume ``hop`` (STS charges the call to it): its
        parent hop's, or the principal's for a first hop."""
        if hop.parent is not None:
            found = self._accounts.get(hop.parent)
            if found is None:
                found = self._plan.hop(hop.parent).account_id
            return found
        if self.identity is not None:
            return self.identity.account
        match = _ARN_ACCOUNT.match(self._plan.principal_arn or "")
        return match.group(1) if match else PRINCIPAL_KEY

    def pacing_report(self) -> list[dict[str, Any]]:
        """Per calling account: attempts, throttles, the final and lowest rate, cuts (for
        the summary). Empty when the pacer reports nothing."""
        report = getattr(self.pacer, "report", None)
        if not callable(report):
            return []
        return [lane.to_dict() for lane in report()]

    @property
    def grace(self) -> float:
        return self.options.grace

    @property
    def starting_credentials(self) -> Credentials | None:
        """The credentials the caller gave to start from (None: the principal's source)."""
        return self._credentials

    @property
    def regions(self) -> tuple[str, ...] | None:
        return self.options.regions

    @property
    def prepared(self) -> bool:
        return self._tree is not None

    @property
    def tree(self) -> HopTree:
        """The hop tree (after :meth:`prepare`)."""
        if self._tree is None:
            raise RuntimeError("the run context is not prepared: call prepare() first")
        return self._tree

    def services(self) -> list[str]:
        return services_of(self._plan, self.options.regions)

    # -- getting ready -------------------------------------------------------------------

    def prepare(self) -> RunContext:
        """Load the starting credentials, check the identity, resolve Organizations role
        sets and build the hop tree (once; later calls return at once)."""
        with self._lock:
            if self._tree is not None:
                return self
            plan = self._plan
            root = self._credentials or principal_credentials(
                plan.principal_source, plan.principal_profile
            )
            self.root = root
            if self.options.check_identity:
                self.identity = caller_identity(
                    self.sessions, root, region=plan.region, policy=self.policy, stats=self.stats
                )
                plan = check_principal(
                    plan, self.identity, chain=self.chain, targets=self.options.targets
                )
            tree = self._new_tree(plan, root)
            if plan.discoveries:
                plan, tree = self._discover(plan, tree, root)
            self._plan = plan
            self._tree = tree
            return self

    def use_plan(self, plan: Plan) -> None:
        """Take a plan that was checked and resolved elsewhere (by a distributed engine's
        worker: the identity check and discovery ran there, with the workers' credentials).
        This context then builds no hop tree of its own."""
        if plan.run_id != self._plan.run_id or plan.job != self._plan.job:
            raise ValueError("use_plan: the plan is of another run")
        self._plan = plan

    def extend(self, plan: Plan) -> None:
        """Add the hops and targets of ``plan``, another part of the same run (a distributed
        engine's worker gets the run batch by batch). Hops this context has already assumed
        are kept and shared, not assumed again."""
        with self._lock:
            current = self._plan
            if plan.run_id != current.run_id or plan.job != current.job:
                raise ValueError("extend: the plan is of another run")
            known = {hop.id for hop in current.hops}
            names = {target.name for target in current.targets}
            hops = tuple(hop for hop in plan.hops if hop.id not in known)
            targets = tuple(target for target in plan.targets if target.name not in names)
            if not hops and not targets:
                return
            merged = dataclasses.replace(
                current, hops=current.hops + hops, targets=current.targets + targets
            )
            if self._tree is not None:
                assert self.root is not None
                tree = self._new_tree(merged, self.root)
                tree.adopt(self._tree)
                self._tree = tree
            self._plan = merged

    def _new_tree(self, plan: Plan, root: Credentials) -> HopTree:
        self.assumer = self._wrap(self.base_assumer, plan) if self._wrap else self.base_assumer
        self._accounts.update({hop.id: hop.account_id for hop in plan.hops})
        return HopTree(
            plan,
            root,
            self.assumer,
            clock=self.clock,
            token_provider=self.token_provider,
            stats=self.stats,
        )

    def _discover(self, plan: Plan, tree: HopTree, root: Credentials) -> tuple[Plan, HopTree]:
        if self.chain is None:
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
                root if discovery.via_hop is None else tree.credentials(discovery.via_hop)
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
        options = RunOptions(targets=self.options.targets, run_id=plan.run_id)
        new_plan = with_discovery_hops(plan_job(self.chain, plan.job, options, resolved), plan)
        if self.identity is not None:
            new_plan = check_principal(
                new_plan,
                self.identity,
                chain=self.chain,
                targets=self.options.targets,
                resolved=resolved,
            )
        new_tree = self._new_tree(new_plan, root)
        new_tree.adopt(tree)
        return new_plan, new_tree

    # -- using it ------------------------------------------------------------------------

    def target(self, name: str) -> Target:
        """The planned target ``name`` (after :meth:`prepare`, the resolved plan's)."""
        try:
            return self._plan.target(name)
        except KeyError:
            for miss in self._plan.unmatched:
                if miss.selector == name:
                    raise RolechainError(miss.message, hint=miss.fix) from None
            raise RolechainError(
                f"{name!r} is not a target of job {self._plan.job!r}",
                hint="targets: " + ", ".join(t.name for t in self._plan.targets[:20]),
            ) from None

    def credentials_for(self, target: Target | str) -> HopCredentials:
        """The target's refreshable credentials (prepares the context if needed)."""
        self.prepare()
        found = self.target(target) if isinstance(target, str) else target
        return self.tree.for_target(found)


def with_discovery_hops(resolved: Plan, offline: Plan) -> Plan:
    """``resolved`` with the hops ``offline`` took to list Organizations accounts (assumed
    before the re-plan, so part of this run's AssumeRole calls and of its planned count)."""
    have = {hop.id for hop in resolved.hops}
    extra: list[Hop] = []
    for discovery in offline.discoveries:
        hop_id = discovery.via_hop
        while hop_id is not None and hop_id not in have:
            hop = offline.hop(hop_id)
            extra.append(hop)
            have.add(hop_id)
            hop_id = hop.parent
    if not extra:
        return resolved
    return dataclasses.replace(resolved, hops=(*resolved.hops, *reversed(extra)))


__all__ = [
    "AssumerWrapper",
    "RunContext",
    "default_pacer",
    "plan_job",
    "services_of",
]

"""Turn a job into a :class:`~rolechain.planner.plan.Plan` that AWS will accept.

How
---
:class:`Planner` runs the concerns in order: :mod:`~rolechain.planner.targets` (which
targets), :mod:`~rolechain.planner.paths` (the path to each, as a tree),
:mod:`~rolechain.planner.hops` (each hop's checks, durations and the one-hour chaining rule)
and :mod:`~rolechain.planner.naming` (session names); their shared state is
:class:`~rolechain.planner.base.PlannerBase`.

Organization role sets
----------------------
Without ``resolved`` accounts, an organization role set is one placeholder target
``set@*``: its hops show the path every member will take; their session names keep ``*``
for the account (the executor re-plans with the resolved accounts before assuming them).
The plan carries a :class:`~rolechain.planner.plan.Discovery` per such set with the hop
whose credentials call Organizations; that path is part of the tree and counted.

Plain data
----------
Task parameters and session tags are stored sorted by key, so a plan equals itself after a
trip through JSON with sorted keys. Notes and violations that repeat for many hops of one
role or role set (a capped duration, a refresh) are reported once with a count.

Rules
-----
See :mod:`rolechain.planner.rules` for rule ids and AWS sources. Violations are collected
across the whole job and raised together as one :class:`~rolechain.errors.PlanError`. A
violation that repeats for many hops of the same role set is reported once with a count.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from rolechain.graph import trust_graph
from rolechain.model.chain import Chain
from rolechain.model.schema import RetrySettings, Settings, unknown_choice
from rolechain.planner import rules as R
from rolechain.planner.base import Draft, Graph
from rolechain.planner.hops import HopBuilding
from rolechain.planner.paths import PathSearch
from rolechain.planner.plan import Note, Plan, RunSettings, Target, TaskRef
from rolechain.planner.targets import TargetSelection

RUN_ID_LENGTH = 21


def new_run_id() -> str:
    """A run id such as ``20261129T121209Z-3f9a``: UTC time and 16 random bits, 21 chars."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def plan(
    chain: Chain,
    job: str,
    *,
    targets: Sequence[str] | None = None,
    run_id: str | None = None,
    resolved: Mapping[str, Sequence[str]] | None = None,
    graph: Graph | None = None,
) -> Plan:
    """Plan ``job``: the hops from its principal to each target, checked against AWS's rules.

    ``targets`` narrows the job to some of its targets (names or globs, as in ``to``);
    ``resolved`` maps organization role sets to their account ids; ``graph`` reuses a graph
    from :func:`rolechain.graph.trust_graph` or :func:`~rolechain.graph.build_graph` (it must
    be built with the same ``resolved``).
    Raises :class:`~rolechain.errors.PlanError` listing every violation.
    """
    return Planner(
        chain, job, targets, run_id if run_id is not None else new_run_id(), resolved, graph
    ).run()


class Planner(TargetSelection, PathSearch, HopBuilding):
    """One planning of one job: the concerns' methods over one shared state."""

    def run(self) -> Plan:
        model = self.model
        job = model.jobs.get(self.job_name)
        if job is None:
            self.violate(
                R.UNKNOWN_JOB,
                unknown_choice("job", self.job_name, list(model.jobs)),
                "name a job defined under 'jobs'",
            )
            raise self.fail()
        self.job = job
        principal = model.principals.get(job.from_)
        if principal is None:
            self.violate(
                R.UNKNOWN_PRINCIPAL,
                unknown_choice("principal", job.from_, list(model.principals)),
                "define the principal under 'principals' or fix 'from'",
                location=self.locate("jobs", self.job_name, "from"),
            )
            raise self.fail()
        self.principal = principal
        self.principal_name = job.from_
        if principal.is_root:
            self.violate(
                R.ROOT_PRINCIPAL,
                f"principal {job.from_} is the root user of account {principal.account_id}; "
                "AWS refuses AssumeRole from root credentials ('Roles may not be assumed by "
                "root accounts')",
                "start from an IAM user or role instead of root credentials",
                location=self.locate("principals", job.from_, "arn"),
            )
        graph = self._graph if self._graph is not None else trust_graph(self.chain, self.resolved)
        self.graph = graph

        target_names = self.select_targets()
        template = self.session_template()
        paths = self.find_paths(target_names)
        discovery_paths = self.find_discovery_paths(target_names)

        drafts: dict[str, Draft] = {}
        target_hops: dict[str, tuple[str, ...]] = {}
        for name, nodes in [*paths.items(), *discovery_paths.values()]:
            ids = self.add_path(drafts, nodes)
            if name in paths and not name.startswith("\0"):
                target_hops[name] = ids
        ordered = sorted(drafts.values(), key=lambda d: d.path)
        hops = self.build_hops(ordered, template)

        by_id = {h.id: h for h in hops}
        runtime = job.runtime
        regions = self.regions(job.regions)
        target_regions = () if regions == ("all",) else regions
        targets: list[Target] = []
        for name in target_names:
            found = target_hops.get(name)
            if not found:
                continue
            ids = found
            node = self.node(name)
            assert node is not None
            lifetime = min(by_id[h].duration_seconds for h in ids)
            targets.append(
                Target(
                    name=name,
                    role_arn=node.arn,
                    account_id=node.account,
                    path=ids,
                    lifetime_seconds=lifetime,
                    needs_refresh=runtime is not None and runtime > lifetime,
                    regions=target_regions,
                )
            )
        discoveries = tuple(
            self.discovery(set_name, via_nodes)
            for set_name, (_, via_nodes) in sorted(discovery_paths.items())
        )

        if self.violations:
            raise self.fail()
        if not targets and not self.unmatched:
            self.notes.add(
                Note(
                    kind="no-targets",
                    message=f"job {self.job_name} has no targets (its role sets resolved to "
                    "no accounts)",
                    location=self.locate("jobs", self.job_name, "to"),
                )
            )

        settings = model.settings
        return Plan(
            job=self.job_name,
            principal=self.principal_name,
            principal_kind=principal.kind,
            run_id=self.run_id,
            regions=regions,
            hops=hops,
            targets=tuple(targets),
            tasks=tuple(
                TaskRef(
                    id=t.result_id,
                    task=t.task,
                    params=tuple(sorted(t.with_.items())),
                    regions=None if t.regions is None else self.regions(t.regions),
                    timeout_seconds=t.timeout,
                    rows=t.rows,
                    key=tuple(t.key) if t.key is not None else None,
                )
                for t in job.tasks
            ),
            notes=tuple(self.notes.items("hops like it")),
            discoveries=discoveries,
            concurrency=job.concurrency or settings.concurrency,
            runtime_seconds=runtime,
            settings=run_settings(settings, job.retry),
            principal_source=principal.source,
            principal_profile=principal.profile,
            principal_arn=principal.arn,
            region=principal.region or settings.region,
            unmatched=tuple(self.unmatched.values()),
        )

    def regions(self, value: Sequence[str] | str | None) -> tuple[str, ...]:
        if value is None:
            return (self.model.settings.region,)
        if value == "all":
            return ("all",)
        return tuple(value)


def run_settings(settings: Settings, retry: RetrySettings | None = None) -> RunSettings:
    """The chain file's settings (with a job's own ``retry``, if it has one), typed for
    the run: built here once and carried on the plan."""
    retry = retry or settings.retry
    engine = settings.engine
    return RunSettings(
        max_hops=settings.max_hops,
        assume_rate=None if settings.assume_rate == "auto" else float(settings.assume_rate),
        retry_attempts=retry.attempts,
        retry_initial_wait=retry.initial_wait,
        retry_max_wait=retry.max_wait,
        throttle_budget=settings.throttle_budget,
        engine=engine.kind,
        engine_cluster=engine.cluster,
        engine_workers=engine.workers,
        engine_batch_size=engine.batch_size,
        engine_ship_credentials=engine.ship_credentials,
        engine_dashboard=engine.dashboard,
    )

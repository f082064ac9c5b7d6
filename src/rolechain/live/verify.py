"""``rolechain verify``: every hop of a job's plan against IAM, hop by hop.

For each job (all, or those asked for):

1. plan it offline (a bad chain file or plan raises before any call);
2. add the ``verify.reader`` roles the hops need to the job's targets, so that they are
   planned and assumed in the same hop tree (or, when the job's ``via`` keeps them out of
   reach, in a plan of their own);
3. prepare the run as ``rolechain run`` does (:func:`rolechain.live.prepare.prepare_hops`):
   identity check, Organizations discovery, one hop tree;
4. for every hop, parents first and each level in parallel: assume it (each distinct hop
   once), read its role with ``iam:GetRole`` (with the reader's credentials when one is
   declared for the role's account, else the hop's own), and compare
   (:func:`rolechain.live.compare.compare`).

A hop whose parent failed is not tried. Roles are read once per verify, whatever the
number of jobs that reach them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.credentials import Credentials

from rolechain.aws.iam import Iam, IamCalls, LiveRole
from rolechain.aws.session import AwsSessions
from rolechain.errors import AwsError, PlanError, RolechainError, UsageError
from rolechain.live.compare import HopFacts, compare, inherited_source_identity
from rolechain.live.findings import HopReport, Status, VerifyReport, hop_status
from rolechain.live.identities import (
    DeclaredTrust,
    declared_trust,
    known_accounts,
    node_caller,
    node_settings,
)
from rolechain.live.prepare import PreparedHops, prepare_hops
from rolechain.model.chain import Chain
from rolechain.model.schema import ChainFile, unknown_choice
from rolechain.model.targets import DISCOVERED, expand_targets, member_name, split_member
from rolechain.planner import plan as make_plan
from rolechain.planner.plan import Hop, Plan

CredentialsFor = Callable[[str], Credentials | None]  # principal name -> credentials


def verify(
    chain: Chain,
    *,
    jobs: Sequence[str] | None = None,
    credentials: CredentialsFor | None = None,
    concurrency: int | None = None,
    aws_sessions: AwsSessions | None = None,
) -> VerifyReport:
    """Verify every hop of ``jobs`` (default: every job) against IAM.

    ``credentials(principal)`` gives a principal's starting credentials (default: what the
    chain file's principal says). Raises UsageError for an unknown job and PlanError for a
    job that cannot be planned; AWS errors are part of the report.
    """
    model = chain.model
    names = list(jobs) if jobs else list(model.jobs)
    for name in names:
        if name not in model.jobs:
            raise UsageError(unknown_choice("job", name, list(model.jobs)))
    report = VerifyReport(jobs=names)
    reads = _RoleReads()
    for name in names:
        _Job(chain, name, report, reads, credentials, concurrency, aws_sessions).run()
    report.iam_calls = reads.calls.total
    return report


class _RoleReads:
    """Live roles by ARN, read once per verify (a failed read is tried again later)."""

    def __init__(self) -> None:
        self.calls = IamCalls()
        self._roles: dict[str, LiveRole | None] = {}
        self._lock = threading.Lock()

    def get(self, arn: str, iam: Iam) -> LiveRole | None:
        with self._lock:
            if arn in self._roles:
                return self._roles[arn]
        found = iam.get_role(arn.rsplit("/", 1)[-1])
        with self._lock:
            self._roles[arn] = found
        return found


@dataclass(frozen=True)
class _Outcome:
    """One hop's credentials (or why there are none)."""

    credentials: Credentials | None
    error: str | None


def _error_text(exc: RolechainError) -> str:
    if isinstance(exc, AwsError):
        return f"{exc.code}: {exc.aws_message}"
    return exc.message


class _Job:
    """Verify one job."""

    def __init__(
        self,
        chain: Chain,
        job: str,
        report: VerifyReport,
        reads: _RoleReads,
        credentials: CredentialsFor | None,
        concurrency: int | None,
        aws_sessions: AwsSessions | None,
    ) -> None:
        self.chain = chain
        self.model = chain.model
        self.job = job
        self.report = report
        self.reads = reads
        self.principal = self.model.jobs[job].from_
        self.start = credentials(self.principal) if credentials else None
        self.concurrency = (
            concurrency or self.model.jobs[job].concurrency or (self.model.settings.concurrency)
        )
        self.aws_sessions = aws_sessions
        self.outcomes: dict[str, _Outcome] = {}
        self.reader_hops: dict[str, str] = {}  # reader node -> hop id (in self.prepared)
        self.reader_prepared: PreparedHops | None = None
        self.vias: list[str] = []
        self.failed_readers: set[str] = set()
        self.lock = threading.Lock()

    def note(self, text: str) -> None:
        self.report.notes.append(f"job {self.job}: {text}")

    # -- planning ------------------------------------------------------------------------

    def run(self) -> None:
        base = make_plan(self.chain, self.job)
        chain = self.chain
        # The roles that list an organization's accounts are hops of the run too: as
        # targets they stay in the plan once the accounts are resolved, and are verified.
        self.vias = [d.via for d in base.discoveries if d.via_hop is not None]
        if self.vias:
            chain = self.planned_with(chain, self.vias, base.run_id) or chain
        readers = reader_targets(self.model, base.hops)
        separate: list[str] = []
        if readers:
            combined = self.planned_with(chain, readers, base.run_id)
            if combined is not None:
                chain = combined
            else:
                separate = readers  # beyond the job's via: a plan of their own
        try:
            prepared = self.prepare(chain, base.run_id)
        except PlanError:
            raise  # the chain file is wrong: the caller reports it (exit 2)
        except RolechainError as exc:
            self.note(f"cannot start: {_error_text(exc)}")
            self.report.failures += 1
            return
        if separate:
            self.prepare_readers(separate, base.run_id)
        else:
            self.reader_hops = {t.name: t.hop_id for t in prepared.plan.targets}
        self.prepared = prepared
        self.verify_hops(prepared)
        self.report.assume_calls += prepared.stats.assume_calls
        if self.reader_prepared is not None:
            self.report.assume_calls += self.reader_prepared.stats.assume_calls

    def planned_with(self, chain: Chain, extra: list[str], run_id: str) -> Chain | None:
        """``chain`` with ``extra`` among the job's targets, if the job still plans."""
        combined = with_targets(chain, self.job, extra)
        try:
            make_plan(combined, self.job, run_id=run_id)
        except PlanError:
            return None
        return combined

    def prepare(self, chain: Chain, run_id: str) -> PreparedHops:
        planned = make_plan(chain, self.job, run_id=run_id)
        return prepare_hops(
            planned,
            chain,
            credentials=self.start,
            concurrency=self.concurrency,
            aws_sessions=self.aws_sessions,
        )

    def prepare_readers(self, readers: list[str], run_id: str) -> None:
        job = self.model.jobs[self.job].model_copy(update={"to": readers, "via": []})
        chain = dataclasses.replace(
            self.chain, model=self.model.model_copy(update={"jobs": {self.job: job}})
        )
        try:
            prepared = self.prepare(chain, run_id)
        except RolechainError as exc:
            self.note(f"readers {', '.join(readers)} cannot be used: {_error_text(exc)}")
            return
        self.reader_prepared = prepared
        self.reader_hops = {t.name: t.hop_id for t in prepared.plan.targets}

    # -- hops ----------------------------------------------------------------------------

    def job_hops(self, plan: Plan) -> list[Hop]:
        """The hops of the job's own targets (not those only readers need)."""
        context_resolved = _Context.resolved_of(self.model, plan)
        selectors = [*self.model.jobs[self.job].targets, *self.vias]
        own, _ = expand_targets(self.model, selectors, context_resolved)
        wanted = set(own)
        ids = {h for t in plan.targets if t.name in wanted for h in t.path}
        return [h for h in plan.hops if h.id in ids]

    def verify_hops(self, prepared: PreparedHops) -> None:
        plan = prepared.plan
        by_depth: dict[int, list[Hop]] = {}
        for hop in self.job_hops(plan):
            by_depth.setdefault(hop.depth, []).append(hop)
        context = _Context.of(self.model, plan, prepared)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for depth in sorted(by_depth):
                hops = by_depth[depth]
                # Assume the whole level first (in parallel), then read and compare it.
                outcomes = list(pool.map(lambda h: self.assume(prepared, h), hops))
                for hop, outcome in zip(hops, outcomes, strict=True):
                    self.outcomes[hop.id] = outcome
                reports = list(pool.map(lambda h: self.check(prepared, context, h), hops))
                self.report.hops.extend(reports)

    def assume(self, prepared: PreparedHops, hop: Hop) -> _Outcome:
        parent = self.outcomes.get(hop.parent) if hop.parent else None
        if parent is not None and parent.credentials is None:
            return _Outcome(None, f"not tried: hop {hop.caller} could not be assumed")
        try:
            return _Outcome(prepared.credentials(hop.id), None)
        except RolechainError as exc:
            return _Outcome(None, _error_text(exc))

    def reader_credentials(self, hop: Hop) -> tuple[Credentials, str] | None:
        """The credentials of the reader declared for ``hop``'s role, if it has one."""
        reader = reader_for(self.model, hop)
        if reader is None or reader == hop.role:
            return None
        hop_id = self.reader_hops.get(reader)
        if hop_id is None:
            return None
        source = self.reader_prepared or self.prepared
        outcome = self.outcomes.get(hop_id)
        if outcome is not None and source is self.prepared:
            if outcome.credentials is None:
                self.reader_failed(reader, outcome.error or "")
            return (outcome.credentials, hop_id) if outcome.credentials else None
        try:
            return source.credentials(hop_id), hop_id
        except RolechainError as exc:
            self.reader_failed(reader, _error_text(exc))
            return None

    def reader_failed(self, reader: str, error: str) -> None:
        """Say once that a reader could not be assumed (its roles are read by their hops)."""
        with self.lock:
            if reader in self.failed_readers:
                return
            self.failed_readers.add(reader)
        self.note(f"reader {reader} could not be assumed ({error}); its roles were read "
                  "with their own hops' credentials")  # fmt: skip

    def check(self, prepared: PreparedHops, context: _Context, hop: Hop) -> HopReport:
        outcome = self.outcomes[hop.id]
        found = node_settings(self.model, hop.role)
        assert found is not None
        entity, settings = found

        def report(status: Status, **details: Any) -> HopReport:
            return HopReport(
                self.job, hop.id, hop.caller, hop.role, hop.role_arn, status,
                location=hop.location, **details,
            )  # fmt: skip

        reader = self.reader_credentials(hop)
        if reader is not None:
            read_creds, read_with = reader
        elif outcome.credentials is not None:
            read_creds, read_with = outcome.credentials, hop.id
        else:
            return report("unassumable", error=outcome.error)
        iam = Iam(
            prepared.sessions,
            read_creds,
            region=hop.region or prepared.plan.region,
            policy=prepared.policy,
            stats=prepared.stats,
            calls=self.reads.calls,
            hop=read_with,
        )
        try:
            live = self.reads.get(hop.role_arn, iam)
        except RolechainError as exc:
            error = outcome.error or f"iam:GetRole: {_error_text(exc)}"
            status: Status = "unassumable" if outcome.credentials is None else "unreadable"
            return report(status, error=error, read_with=read_with)
        parent = context.hops.get(hop.parent) if hop.parent else None
        facts = HopFacts(
            hop=hop,
            caller=node_caller(
                self.model,
                hop.caller,
                session=parent.session_name if parent else None,
                identities=context.identities,
            ),
            entity=entity,
            settings=settings,
            inherited_source_identity=inherited_source_identity(context.hops, hop),
        )
        findings = compare(
            self.chain,
            facts,
            live,
            declared=context.declared(entity, settings.trusts),
            known_accounts=context.accounts,
            assumed=outcome.credentials is not None,
        )
        status = hop_status(assumed=outcome.credentials is not None, read=True, findings=findings)
        return report(status, findings=tuple(findings), error=outcome.error, read_with=read_with)


@dataclass
class _Context:
    """What every hop of a prepared plan shares."""

    model: ChainFile
    hops: dict[str, Hop]
    identities: dict[str, str]
    resolved: dict[str, list[str]]
    accounts: set[str]
    _declared: dict[tuple[str, str], DeclaredTrust]

    @staticmethod
    def resolved_of(model: ChainFile, plan: Plan) -> dict[str, list[str]]:
        """The accounts a prepared plan resolved for organization role sets."""
        resolved: dict[str, list[str]] = {}
        for name in [h.role for h in plan.hops] + [t.name for t in plan.targets]:
            member = split_member(name)
            if member is None or member[0] not in model.role_sets:
                continue
            if model.role_sets[member[0]].organization is not None and member[1] != DISCOVERED:
                resolved.setdefault(member[0], [])
                if member[1] not in resolved[member[0]]:
                    resolved[member[0]].append(member[1])
        return resolved

    @classmethod
    def of(cls, model: ChainFile, plan: Plan, prepared: PreparedHops) -> _Context:
        resolved = cls.resolved_of(model, plan)
        identities = {plan.principal: prepared.identity.arn} if prepared.identity else {}
        return cls(
            model,
            {h.id: h for h in plan.hops},
            identities,
            resolved,
            known_accounts(model, resolved),
            {},
        )

    def declared(self, entity: tuple[str, str], trusts: Sequence[str]) -> DeclaredTrust:
        found = self._declared.get(entity)
        if found is None:
            found = declared_trust(
                self.model, trusts, resolved=self.resolved, identities=self.identities
            )
            self._declared[entity] = found
        return found


def reader_for(model: ChainFile, hop: Hop) -> str | None:
    """The node whose credentials read ``hop``'s role, if a reader is declared for it: a
    role in the same account, or the member of a reader role set in that account."""
    found = node_settings(model, hop.role)
    if found is None:
        return None
    _, settings = found
    name = (settings.verify.reader if settings.verify else None) or model.settings.verify.reader
    if name is None:
        return None
    if name in model.roles:
        return name if model.roles[name].account_id == hop.account_id else None
    if name in model.role_sets:
        return member_name(name, hop.account_id)
    return None


def reader_targets(model: ChainFile, hops: Iterable[Hop]) -> list[str]:
    """The targets to add to a job so that its hops' readers are planned: reader roles,
    reader members in the hops' accounts, or whole organization reader sets."""
    out: dict[str, None] = {}
    for hop in hops:
        reader = reader_for(model, hop)
        if reader is None or reader == hop.role:
            continue
        member = split_member(reader)
        if reader in model.roles:
            out.setdefault(reader, None)
        elif member is not None:
            spec = model.role_sets[member[0]]
            if spec.organization is not None or member[1] == DISCOVERED:
                out.setdefault(member[0], None)
            elif member[1] in spec.members:
                out.setdefault(reader, None)
    return list(out)


def with_targets(chain: Chain, job: str, extra: Sequence[str]) -> Chain:
    """``chain`` with ``extra`` added to job ``job``'s targets (the same job otherwise)."""
    spec = chain.model.jobs[job]
    targets = list(dict.fromkeys([*spec.targets, *extra]))
    jobs = {**chain.model.jobs, job: spec.model_copy(update={"to": targets})}
    return dataclasses.replace(chain, model=chain.model.model_copy(update={"jobs": jobs}))

"""Hop building: each drafted hop's duration (with the one-hour cap on chained sessions),
MFA, source identity, transitive tags and per-role settings, checked against STS's rules
(:mod:`rolechain.planner.rules`), and turned into a :class:`~rolechain.planner.plan.Hop`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rolechain.errors import Location
from rolechain.model.durations import format_duration
from rolechain.model.schema import Job, Principal
from rolechain.planner import rules as R
from rolechain.planner.base import Draft, Node
from rolechain.planner.naming import SessionNaming
from rolechain.planner.plan import Hop, Note
from rolechain.planner.session_names import NameRegistry, Template


@dataclass
class _State:
    """What a hop's session carries to its children."""

    source_identity: str | None
    transitive: frozenset[str]  # lower-cased transitive tag keys in force


class HopBuilding(SessionNaming):
    """The hops of the plan, in the order drafted, with their checks."""

    def build_hops(self, ordered: Sequence[Draft], template: Template) -> tuple[Hop, ...]:
        job = self.job
        principal = self.principal
        runtime = job.runtime
        registry = NameRegistry()
        states: dict[str | None, _State] = {None: _State(None, frozenset())}
        entity_checked: set[tuple[tuple[str, str], str]] = set()
        entity_locations: dict[tuple[str, str], Location | None] = {}
        hops: list[Hop] = []
        for draft in ordered:
            node = self.node(draft.role)
            assert node is not None
            settings = node.settings
            entity = node.entity
            label = f"{draft.caller} -> {draft.role}"
            if entity not in entity_locations:
                entity_locations[entity] = self.locate(*entity)
            loc = entity_locations[entity]
            first = draft.depth == 1
            chained = not first or principal.kind == "session"

            # Only managed policy ARNs depend on the member's account.
            policy = settings.session_policy
            check_key = (entity, node.account if policy and policy.managed else "")
            if check_key not in entity_checked:
                entity_checked.add(check_key)
                for finding in R.check_settings(settings, node.account, node.partition):
                    self.violate(
                        finding.rule,
                        f"{'.'.join(entity)}: {finding.message}",
                        finding.fix,
                        hop=label,
                        location=self.locate(*entity, finding.key),
                        group=(finding.rule, entity, finding.key),
                    )

            duration, source = self.duration(draft, node, chained, label)
            self.check_mfa(draft, node, label, duration, first, principal)

            parent_state = states[draft.parent]
            sid = settings.source_identity
            if sid is not None and parent_state.source_identity not in (None, sid):
                self.violate(
                    R.SOURCE_IDENTITY_CHANGED,
                    f"source_identity {sid!r} differs from {parent_state.source_identity!r}, "
                    "set by an earlier hop on this path; a source identity cannot be changed "
                    "once set",
                    f"use {parent_state.source_identity!r} or remove source_identity from "
                    f"{'.'.join(entity)}",
                    hop=label,
                    location=self.locate(*entity, "source_identity"),
                    group=(R.SOURCE_IDENTITY_CHANGED, entity, parent_state.source_identity),
                )
            tag_keys = {k.lower(): k for k in settings.tags}
            repassed = sorted(tag_keys[k] for k in tag_keys.keys() & parent_state.transitive)
            if repassed:
                self.violate(
                    R.TRANSITIVE_TAG_REPASSED,
                    f"tags {repassed} were made transitive by an earlier hop on this path; "
                    "AWS rejects a hop that passes an inherited transitive tag key again",
                    f"remove {repassed} from {'.'.join(entity)}.tags (they are inherited)",
                    hop=label,
                    location=self.locate(*entity, "tags"),
                    group=(R.TRANSITIVE_TAG_REPASSED, entity, tuple(repassed)),
                )
            states[draft.id] = _State(
                parent_state.source_identity or sid,
                parent_state.transitive | {k.lower() for k in settings.transitive_tag_keys},
            )

            if runtime is not None and runtime > duration:
                self.notes.add(
                    Note(
                        kind="refresh-needed",
                        message=f"job runtime {format_duration(runtime)} is longer than the "
                        f"{format_duration(duration)} session of {label}; it is refreshed "
                        "during the run",
                        hop=draft.id,
                        location=loc,
                    ),
                    group=("refresh-needed", entity, duration),
                )

            hops.append(
                Hop(
                    id=draft.id,
                    parent=draft.parent,
                    caller=draft.caller,
                    role=draft.role,
                    role_arn=node.arn,
                    account_id=node.account,
                    partition=node.partition,
                    depth=draft.depth,
                    chained=chained,
                    duration_seconds=duration,
                    duration_source=source,
                    session_name=self.session_name(template, draft, node, registry),
                    external_id=settings.external_id,
                    mfa_serial=settings.mfa_serial,
                    source_identity=sid,
                    policy=policy.inline_json if policy else None,
                    policy_arns=tuple(policy.managed) if policy else (),
                    tags=tuple(sorted(settings.tags.items())),
                    transitive_tag_keys=tuple(settings.transitive_tag_keys),
                    region=settings.region,
                    location=loc,
                )
            )
        return tuple(hops)

    def why_chained(self, draft: Draft) -> str:
        if draft.depth > 1:
            return "its caller is a role session"
        return f"principal {self.principal_name} has session credentials"

    def duration(
        self, draft: Draft, node: Node, chained: bool, label: str
    ) -> tuple[int, Literal["requested", "default", "capped"]]:
        settings, entity = node.settings, node.entity
        maximum = settings.max_session_duration
        requested = settings.duration
        where = self.locate(*entity, "duration")
        name = ".".join(entity)
        if requested is None:
            if chained and maximum > R.CHAINED_MAX_DURATION:
                self.notes.add(
                    Note(
                        kind="duration-capped",
                        message=f"{label} is chained ({self.why_chained(draft)}): duration "
                        f"capped at 1h instead of {name}'s max_session_duration "
                        f"{format_duration(maximum)}",
                        hop=draft.id,
                        location=self.locate(*entity),
                    ),
                    group=("duration-capped", entity),
                )
                return R.CHAINED_MAX_DURATION, "capped"
            return maximum, "default"
        if requested < R.MIN_DURATION:
            self.violate(
                R.DURATION_RANGE,
                f"{name} requests {requested} s; AssumeRole needs at least 900 s",
                "request 15m or more",
                hop=label,
                location=where,
                group=(R.DURATION_RANGE, entity),
            )
        if requested > maximum:
            self.violate(
                R.DURATION_OVER_MAX,
                f"{name} requests {format_duration(requested)}, above its "
                f"max_session_duration {format_duration(maximum)}; AWS answers ValidationError",
                f"request {format_duration(maximum)} or less, or raise the role's "
                "MaxSessionDuration (and max_session_duration here)",
                hop=label,
                location=where,
                group=(R.DURATION_OVER_MAX, entity),
            )
        if chained and requested > R.CHAINED_MAX_DURATION:
            why = self.why_chained(draft)
            self.violate(
                R.CHAINED_DURATION,
                f"{label} is chained ({why}) and requests {format_duration(requested)}; "
                "role chaining limits a session to 1h and AWS rejects longer requests",
                f"request 1h or less for {name}"
                + (
                    ", or start from long-term IAM user keys (principal kind: user)"
                    if draft.depth == 1
                    else ", or assume it directly from user keys"
                ),
                hop=label,
                location=where,
                group=(R.CHAINED_DURATION, entity, draft.depth == 1),
            )
        return requested, "requested"

    def check_mfa(
        self,
        draft: Draft,
        node: Node,
        label: str,
        duration: int,
        first: bool,
        principal: Principal,
    ) -> None:
        if node.settings.mfa_serial is None:
            return
        entity = node.entity
        where = self.locate(*entity, "mfa_serial")
        name = ".".join(entity)
        if not (first and principal.kind == "user"):
            caller = (
                f"{draft.caller} is a role session"
                if not first
                else f"principal {self.principal_name} has session credentials (kind: session)"
            )
            self.violate(
                R.MFA_CALLER,
                f"{name} has an mfa_serial but {caller}; an MFA code can only be passed on a "
                "hop assumed with long-term IAM user keys",
                "assume this role first, from a principal with kind: user, or remove mfa_serial",
                hop=label,
                location=where,
                group=(R.MFA_CALLER, entity),
            )
            return
        job: Job = self.job
        job_where = self.locate("jobs", self.job_name)
        if job.schedule is not None:
            self.violate(
                R.MFA_SCHEDULED,
                f"job {self.job_name} runs on a schedule ({job.schedule!r}) but {label} needs "
                "an MFA code, which nobody is there to type",
                f"remove mfa_serial from {name} or the schedule from the job",
                hop=label,
                location=self.locate("jobs", self.job_name, "schedule") or job_where,
                group=(R.MFA_SCHEDULED, entity),
            )
        if job.runtime is not None and duration < job.runtime:
            self.violate(
                R.MFA_REFRESH,
                f"{label} needs an MFA code and its {format_duration(duration)} session is "
                f"shorter than the job's runtime {format_duration(job.runtime)}: it cannot be "
                "refreshed unattended",
                f"raise {name}'s duration (and max_session_duration) to at least the runtime, "
                "or shorten the job",
                hop=label,
                location=where,
                group=(R.MFA_REFRESH, entity),
            )

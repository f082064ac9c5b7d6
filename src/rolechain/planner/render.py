"""A plan as readable text: the hop tree with durations, markers and notes.

The output is deterministic (tests compare it) and never shows an ExternalId's value,
only that one is set.
"""

from __future__ import annotations

from collections import defaultdict

from rolechain.model.durations import format_duration
from rolechain.planner.plan import Hop, Plan


def _hop_line(hop: Hop, targets: dict[str, list[str]]) -> str:
    flags = []
    if hop.chained:
        flags.append("chained")
    if hop.duration_source == "capped":
        flags.append("capped")
    elif hop.duration_source == "requested":
        flags.append("requested")
    duration = format_duration(hop.duration_seconds)
    parts = [
        f"{hop.role}  {hop.role_arn}",
        f"{duration} ({', '.join(flags)})" if flags else duration,
        f"session {hop.session_name}",
    ]
    if hop.external_id is not None:
        parts.append("external-id set")
    if hop.mfa_serial is not None:
        parts.append("mfa")
    if hop.source_identity is not None:
        parts.append(f"source-identity {hop.source_identity}")
    if hop.tags:
        keys = ", ".join(k for k, _ in hop.tags)
        transitive = (
            f"; transitive: {', '.join(hop.transitive_tag_keys)}"
            if (hop.transitive_tag_keys)
            else ""
        )
        parts.append(f"tags [{keys}{transitive}]")
    if hop.policy is not None or hop.policy_arns:
        count = len(hop.policy_arns) + (hop.policy is not None)
        parts.append(f"session policy ({count})")
    if hop.region is not None:
        parts.append(f"sts {hop.region}")
    names = targets.get(hop.id)
    if names:
        parts.append("<- target" if names == [hop.role] else f"<- target {', '.join(names)}")
    return "  ".join(parts)


def render_plan_text(plan: Plan) -> str:
    """The plan as an indented tree, one hop per line, then totals and notes."""
    children: dict[str | None, list[Hop]] = defaultdict(list)
    for hop in plan.hops:
        children[hop.parent].append(hop)
    at_hop: dict[str, list[str]] = defaultdict(list)
    for target in plan.targets:
        at_hop[target.hop_id].append(target.name)

    source: str = plan.principal_source
    if plan.principal_profile:
        source += f" {plan.principal_profile}"
    creds = "user keys" if plan.principal_kind == "user" else "session credentials"
    lines = [
        f"job {plan.job}: {len(plan.targets)} target{'s' if len(plan.targets) != 1 else ''}, "
        f"run {plan.run_id}",
        f"regions: {', '.join(plan.regions)}; sts region {plan.region}; "
        f"concurrency {plan.concurrency}"
        + (f"; runtime {format_duration(plan.runtime_seconds)}" if plan.runtime_seconds else ""),
        f"{plan.principal}  ({source}, {creds}"
        + (f", {plan.principal_arn}" if plan.principal_arn else "")
        + ")",
    ]

    def walk(parent: str | None, indent: str) -> None:
        kids = children.get(parent, [])
        for i, hop in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{indent}{'└── ' if last else '├── '}{_hop_line(hop, at_hop)}")
            walk(hop.id, indent + ("    " if last else "│   "))

    walk(None, "")
    path_total = sum(len(t.path) for t in plan.targets)
    what = "target paths"
    if any(d.via_hop for d in plan.discoveries):
        path_total += sum(plan.hop(d.via_hop).depth for d in plan.discoveries if d.via_hop)
        what = "target and discovery paths"
    calls = plan.assume_calls
    lines.append(
        f"{calls} AssumeRole call{'s' if calls != 1 else ''} "
        f"({path_total} hop{'s' if path_total != 1 else ''} over all {what})"
    )
    for d in plan.discoveries:
        lines.append(
            f"discover {d.role_set}: accounts from AWS Organizations via {d.via}"
            + (f" (hop {d.via_hop})" if d.via_hop else "")
            + (f", OUs {', '.join(d.ous)}" if d.ous else "")
            + (f", excluding {len(d.exclude)}" if d.exclude else "")
        )
    if plan.tasks:
        lines.append("tasks:")
        for task in plan.tasks:
            extra = []
            if task.regions is not None:
                extra.append(f"regions {', '.join(task.regions)}")
            if task.timeout_seconds is not None:
                extra.append(f"timeout {format_duration(task.timeout_seconds)}")
            tail = f" ({'; '.join(extra)})" if extra else ""
            name = task.id if task.id == task.task else f"{task.id} ({task.task})"
            lines.append(f"  - {name}{tail}")
    refresh = [t for t in plan.targets if t.needs_refresh]
    if refresh:
        lines.append(
            f"{len(refresh)} target{'s outlive' if len(refresh) != 1 else ' outlives'} a "
            "session and will be refreshed during the run"
        )
    if plan.notes:
        lines.append("notes:")
        lines.extend(f"  - [{note.kind}] {note}" for note in plan.notes)
    return "\n".join(lines) + "\n"

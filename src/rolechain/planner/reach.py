"""Who can reach a role: every principal and path in the trust graph that ends at it.

:func:`reach` lists, for each principal of the chain (or the one asked for), the simple
paths (no role twice) through the trust graph that end at the target, fewest hops first, up
to ``settings.max_hops`` hops and ``limit`` paths per principal. Cycles in the graph (roles
that trust each other) are legal in IAM and cannot make a path repeat a role.

Each path is checked by the planner exactly as a job pinned to it (``via`` listing every
role between the principal and the target) would be: the one-hour cap on chained sessions,
MaxSessionDuration, MFA, source identity, session tags and every other rule. A path
``fits`` when the planner finds no violation; otherwise its violations say why.

Entries of ``trusts`` that name identities outside the chain file (an account root, a
vendor's role) cannot be planned from, but they can reach the target too: they are listed
as :class:`ExternalEntry` with the role that trusts them and the hops from there.

This is PMapper's "who can access", restricted to role assumption and computed offline
from the chain file (declared, or written by ``rolechain discover``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import networkx as nx

from rolechain.errors import PlanError, UsageError, Violation
from rolechain.graph import PRINCIPAL, build_graph
from rolechain.model.chain import Chain
from rolechain.model.schema import Job, unknown_choice
from rolechain.model.targets import DISCOVERED, expand_targets, member_name, split_member
from rolechain.planner.plan import Hop
from rolechain.planner.planner import plan

DEFAULT_LIMIT = 100
_JOB = "reach"


@dataclass(frozen=True)
class ReachPath:
    """One path from a principal to the target, and whether AWS would let a job take it."""

    principal: str
    nodes: tuple[str, ...]  # the principal first, the target last
    violations: tuple[Violation, ...] = ()
    hops: tuple[Hop, ...] = ()  # as the planner would assume them (when the path fits)

    @property
    def length(self) -> int:
        return len(self.nodes) - 1

    @property
    def fits(self) -> bool:
        return not self.violations

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.rule for v in self.violations))

    def to_dict(self) -> dict[str, object]:
        return {
            "principal": self.principal,
            "path": list(self.nodes),
            "hops": self.length,
            "fits": self.fits,
            "chained": [h.chained for h in self.hops],
            "durations": [h.duration_seconds for h in self.hops],
            "violations": [
                {"rule": v.rule, "message": v.message, "fix": v.fix, "hop": v.hop}
                for v in self.violations
            ],
        }


@dataclass(frozen=True)
class ExternalEntry:
    """An identity outside the chain file that a role on the way to the target trusts."""

    entry: str  # the trusts entry (an ARN)
    role: str  # the node that trusts it
    nodes: tuple[str, ...]  # that role first, the target last

    @property
    def length(self) -> int:
        return len(self.nodes)  # the hop into ``role`` plus the path from there

    def to_dict(self) -> dict[str, object]:
        return {
            "entry": self.entry,
            "trusted_by": self.role,
            "path": list(self.nodes),
            "hops": self.length,
        }


@dataclass(frozen=True)
class Reach:
    """Everything that reaches ``target``."""

    target: str
    target_arn: str | None
    paths: tuple[ReachPath, ...]
    external: tuple[ExternalEntry, ...] = ()
    truncated: tuple[str, ...] = ()  # principals with more paths than the limit
    max_hops: int = 10

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "arn": self.target_arn,
            "max_hops": self.max_hops,
            "paths": [p.to_dict() for p in self.paths],
            "external": [e.to_dict() for e in self.external],
            "truncated": list(self.truncated),
        }


def resolve_target(chain: Chain, graph: nx.DiGraph, target: str) -> tuple[str, str]:
    """(name shown, graph node) of ``target``: a role, a member, an organization member,
    or the ARN of either. Raises UsageError for anything else."""
    model = chain.model
    if target in graph and graph.nodes[target].get("kind") != PRINCIPAL:
        return target, target
    if target.startswith("arn:"):
        for node, arn in graph.nodes(data="arn"):
            if arn == target and graph.nodes[node].get("kind") != PRINCIPAL:
                return node, node
    member = split_member(target)
    if member is not None and member[0] in model.role_sets:
        placeholder = member_name(member[0], DISCOVERED)
        spec = model.role_sets[member[0]]
        if placeholder in graph and spec.organization is not None:
            return target, placeholder
    if target in model.role_sets:
        members = [n for n, s in graph.nodes(data="role_set") if s == target]
        raise UsageError(
            f"{target!r} is a role set; name one member: {', '.join(sorted(members)[:8])}"
            + (" ..." if len(members) > 8 else ""),
            hint="reach takes one role: a role name, 'set@account', or a role ARN",
        )
    if target in model.principals:
        raise UsageError(f"{target!r} is a principal; reach takes a role or a role-set member")
    roles = sorted(n for n, k in graph.nodes(data="kind") if k != PRINCIPAL)
    raise UsageError(_unknown_role(target, graph, roles))


def _unknown_role(target: str, graph: nx.DiGraph, roles: list[str]) -> str:
    """'unknown role ...' with each role set's members as one entry (``audit@... (5)``)."""
    sets: dict[str, int] = {}
    for _, role_set in graph.nodes(data="role_set"):
        if role_set:
            sets[role_set] = sets.get(role_set, 0) + 1

    def alone(name: str) -> bool:
        member = split_member(name)
        return member is None or member[0] not in sets

    shown = [r for r in roles if alone(r)]
    shown += [f"{name}@ACCOUNT ({count} accounts)" for name, count in sorted(sets.items())]
    text = unknown_choice("role", target, shown).split("; did you mean")[0]
    from rolechain.model.schema import closest

    guess = closest(target, roles)
    return text + (f"; did you mean {guess!r}?" if guess else "")


def reach_all(
    chain: Chain,
    selector: str,
    *,
    principals: Sequence[str] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Reach]:
    """:func:`reach` for every role ``selector`` names: one role, or a role set's members or
    a glob over roles and members (``audit``, ``audit@1*``), in name order."""
    graph = build_graph(chain)
    model = chain.model
    if selector not in model.role_sets and not any(ch in selector for ch in "*?["):
        return [reach(chain, selector, principals=principals, limit=limit, graph=graph)]
    names, unmatched = expand_targets(model, [selector])
    if unmatched or not names:
        roles = sorted(n for n, k in graph.nodes(data="kind") if k != PRINCIPAL)
        raise UsageError(
            f"{selector!r} matches no role or role-set member; "
            + _unknown_role(selector, graph, roles).split("; ", 1)[1]
        )
    return [
        reach(chain, name, principals=principals, limit=limit, graph=graph)
        for name in sorted(names)
    ]


def reach(
    chain: Chain,
    target: str,
    *,
    principals: Sequence[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    graph: nx.DiGraph | None = None,
) -> Reach:
    """Who can reach ``target`` (see the module docs). Raises UsageError for an unknown
    target or principal."""
    graph = graph if graph is not None else build_graph(chain)
    shown, node = resolve_target(chain, graph, target)
    model = chain.model
    if principals is None:
        principals = sorted(model.principals)
    for name in principals:
        if name not in model.principals:
            raise UsageError(unknown_choice("principal", name, sorted(model.principals)))
    max_hops = model.settings.max_hops
    found: list[ReachPath] = []
    truncated: list[str] = []
    for principal in principals:
        for count, nodes in enumerate(_simple_paths(graph, principal, node, max_hops)):
            if count >= limit:
                truncated.append(principal)
                break
            named = (*nodes[:-1], shown)
            found.append(_check(chain, graph, named, nodes))
    found.sort(key=lambda p: (p.length, p.principal, p.nodes))
    return Reach(
        target=shown,
        target_arn=graph.nodes[node].get("arn"),
        paths=tuple(found),
        external=tuple(_external(graph, node, shown, max_hops)),
        truncated=tuple(truncated),
        max_hops=max_hops,
    )


def _simple_paths(
    graph: nx.DiGraph, source: str, target: str, max_hops: int
) -> Iterator[tuple[str, ...]]:
    """Simple paths fewest hops first (Yen's algorithm, networkx), up to ``max_hops``."""
    if source not in graph or source == target:
        return
    try:
        for path in nx.shortest_simple_paths(graph, source, target):
            if len(path) - 1 > max_hops:
                return
            # Only the first node may be a principal: principals trust nobody, so no path
            # passes through one, but a stray edge must not make one a hop.
            if any(graph.nodes[n].get("kind") == PRINCIPAL for n in path[1:]):
                continue
            yield tuple(path)
    except nx.NetworkXNoPath:
        return


def _check(
    chain: Chain, graph: nx.DiGraph, named: tuple[str, ...], nodes: tuple[str, ...]
) -> ReachPath:
    """Plan a job pinned to the path, on the path's own subgraph (cheap however big the
    chain), and keep its hops or its violations."""
    job = Job.model_validate({"from": named[0], "to": named[-1], "via": list(named[1:-1])})
    pinned = dataclasses.replace(chain, model=chain.model.model_copy(update={"jobs": {_JOB: job}}))
    subgraph = graph.subgraph(nodes).copy()
    try:
        planned = plan(pinned, _JOB, graph=subgraph)
    except PlanError as exc:
        return ReachPath(named[0], named, violations=exc.violations)
    target = planned.targets[0] if planned.targets else None
    hops = tuple(planned.path_hops(target)) if target is not None else ()
    return ReachPath(named[0], named, hops=hops)


def _external(graph: nx.DiGraph, node: str, shown: str, max_hops: int) -> Iterator[ExternalEntry]:
    """Outside identities trusted by a role from which ``node`` can be reached."""
    upstream = nx.single_source_shortest_path(graph.reverse(copy=False), node)
    seen: set[tuple[str, str]] = set()
    entries: list[ExternalEntry] = []
    for role, entry in graph.graph.get("external_trusts", ()):
        if role not in upstream or (role, entry) in seen:
            continue
        seen.add((role, entry))
        path = tuple(reversed(upstream[role]))  # role ... node
        if len(path) > max_hops:
            continue
        entries.append(ExternalEntry(entry, role, (*path[:-1], shown)))
    entries.sort(key=lambda e: (e.length, e.entry, e.role))
    yield from entries

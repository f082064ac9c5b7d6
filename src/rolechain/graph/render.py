"""The trust graph as Mermaid or Graphviz DOT, with a plan's hops highlighted.

Edges point from the trusted identity to the role it may assume. Principals are drawn as
stadiums (mermaid) or ellipses (dot), roles and members as boxes; a plan's hops are drawn
thick and red, its targets filled. Node ids are sanitized (``n_`` plus letters, digits and
``_``, made unique) and labels escaped, so any role name renders.

Big role sets: members of one role set that have exactly the same callers and the same
callees (and, with a plan, are planned the same way) are drawn as one node ``audit (1000
accounts)`` once a group reaches ``collapse_at`` members (default 8; ``None`` draws every
member). ``rolechain graph --job`` collapses from two members, as ``plan`` does, unless
``--expand``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import networkx as nx

from rolechain.graph.build import MEMBER, PRINCIPAL


class _PlannedHop(Protocol):
    @property
    def caller(self) -> str: ...
    @property
    def role(self) -> str: ...


class _PlannedTarget(Protocol):
    @property
    def name(self) -> str: ...


class PlanLike(Protocol):
    """What the renderers read of a :class:`rolechain.planner.plan.Plan`.

    (The graph layer sits below the planner, so it names the shape, not the class.)
    """

    @property
    def principal(self) -> str: ...
    @property
    def hops(self) -> Sequence[_PlannedHop]: ...
    @property
    def targets(self) -> Sequence[_PlannedTarget]: ...


HIGHLIGHT = "#d62728"
COLLAPSE_AT = 8


@dataclass(frozen=True)
class _View:
    """The graph as drawn: nodes (id, label, kind, planned) and edges (src, dst, planned)."""

    nodes: tuple[tuple[str, str, str, bool, bool], ...]  # id, label, kind, on path, target
    edges: tuple[tuple[str, str, bool], ...]


def _ids(names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(names):
        base = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        out[name] = candidate
    return out


def _view(graph: nx.DiGraph, plan: PlanLike | None, collapse_at: int | None) -> _View:
    planned_edges: set[tuple[str, str]] = set()
    on_path: set[str] = set()
    targets: set[str] = set()
    if plan is not None:

        def drawn_as(name: str) -> str:
            # A planned member of an organization set not resolved in this graph is drawn
            # as the set's placeholder.
            if name in graph or "@" not in name:
                return name
            return name.rpartition("@")[0] + "@*"

        for hop in plan.hops:
            caller, role = drawn_as(hop.caller), drawn_as(hop.role)
            planned_edges.add((caller, role))
            on_path.update((caller, role))
        targets = {drawn_as(t.name) for t in plan.targets}
        on_path.add(plan.principal)

    # group[node] = drawn name
    drawn: dict[str, str] = {n: n for n in graph.nodes}
    labels: dict[str, str] = {}
    if collapse_at is not None:
        groups: dict[tuple[object, ...], list[str]] = defaultdict(list)
        for node, data in graph.nodes(data=True):
            if data.get("kind") == MEMBER:
                # Members on a plan's path group with members planned the same way only.
                key = (
                    str(data.get("role_set")),
                    frozenset(graph.pred[node]),
                    frozenset(graph.succ[node]),
                    node in on_path,
                    node in targets,
                    frozenset(c for c in graph.pred[node] if (c, node) in planned_edges),
                    frozenset(c for c in graph.succ[node] if (node, c) in planned_edges),
                )
                groups[key].append(node)
        for number, ((role_set, *_), members) in enumerate(groups.items()):
            if len(members) >= collapse_at:
                name = f"{role_set}@[{len(members)}#{number}]"
                for member in members:
                    drawn[member] = name
                labels[name] = f"{role_set} ({len(members)} accounts)"
    on_path = {drawn.get(n, n) for n in on_path}
    targets = {drawn.get(n, n) for n in targets}

    kinds: dict[str, str] = {}
    for node, data in graph.nodes(data=True):
        name = drawn[node]
        kinds[name] = str(data.get("kind"))
        if name not in labels:
            account = data.get("account")
            labels[name] = f"{node}\n{account}" if account and data.get("kind") != MEMBER else node
    ids = _ids(labels)
    nodes = tuple(
        (ids[name], labels[name], kinds[name], name in on_path, name in targets)
        for name in sorted(labels)
    )
    edges: dict[tuple[str, str], bool] = {}
    for src, dst in graph.edges:
        pair = (ids[drawn[src]], ids[drawn[dst]])
        edges[pair] = edges.get(pair, False) or (src, dst) in planned_edges
    return _View(nodes, tuple((s, d, p) for (s, d), p in sorted(edges.items())))


def _mermaid_label(text: str) -> str:
    escaped = (
        text.replace("&", "#amp;")
        .replace('"', "#quot;")
        .replace("<", "#lt;")
        .replace(">", "#gt;")
        .replace("\n", "<br/>")
    )
    return f'"{escaped}"'


def to_mermaid(
    graph: nx.DiGraph, plan: PlanLike | None = None, *, collapse_at: int | None = COLLAPSE_AT
) -> str:
    """A Mermaid flowchart of ``graph``; ``plan``'s hops are highlighted."""
    view = _view(graph, plan, collapse_at)
    lines = ["flowchart LR"]
    for node_id, label, kind, _, _ in view.nodes:
        shape = (
            f"([{_mermaid_label(label)}])" if kind == PRINCIPAL else f"[{_mermaid_label(label)}]"
        )
        lines.append(f"  {node_id}{shape}")
    planned: list[int] = []
    for i, (src, dst, hot) in enumerate(view.edges):
        lines.append(f"  {src} --> {dst}")
        if hot:
            planned.append(i)
    lines.append("  classDef principal fill:#e8f0fe,stroke:#1a73e8")
    lines.append("  classDef path stroke:#d62728,stroke-width:2px")
    lines.append("  classDef target fill:#fde8e8,stroke:#d62728,stroke-width:2px")
    principals = [n for n, _, kind, _, _ in view.nodes if kind == PRINCIPAL]
    if principals:
        lines.append(f"  class {','.join(principals)} principal")
    path = [n for n, _, kind, hot, target in view.nodes if hot and not target and kind != PRINCIPAL]
    if path:
        lines.append(f"  class {','.join(path)} path")
    targets = [n for n, _, _, _, target in view.nodes if target]
    if targets:
        lines.append(f"  class {','.join(targets)} target")
    if planned:
        lines.append(
            f"  linkStyle {','.join(map(str, planned))} stroke:{HIGHLIGHT},stroke-width:3px"
        )
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(
    graph: nx.DiGraph, plan: PlanLike | None = None, *, collapse_at: int | None = COLLAPSE_AT
) -> str:
    """A Graphviz digraph of ``graph``; ``plan``'s hops are highlighted."""
    view = _view(graph, plan, collapse_at)
    lines = [
        "digraph trust {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="Helvetica"];',
    ]
    for node_id, label, kind, hot, target in view.nodes:
        attrs = [f"label={_dot_string(label)}"]
        if kind == PRINCIPAL:
            attrs.append("shape=ellipse")
        if target:
            attrs.append('style=filled, fillcolor="#fde8e8"')
        if hot or target:
            attrs.append(f'color="{HIGHLIGHT}", penwidth=2')
        lines.append(f"  {node_id} [{', '.join(attrs)}];")
    for src, dst, hot in view.edges:
        style = f' [color="{HIGHLIGHT}", penwidth=3]' if hot else ""
        lines.append(f"  {src} -> {dst}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"

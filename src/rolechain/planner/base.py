"""What the planner's concerns share: the graph it reads, the nodes and hop drafts it
builds, how violations and notes are collected, and :class:`PlannerBase`, the state each
concern (:mod:`~rolechain.planner.targets`, :mod:`~rolechain.planner.paths`,
:mod:`~rolechain.planner.naming`, :mod:`~rolechain.planner.hops`) works on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rolechain.errors import Location, PlanError, Violation
from rolechain.graph.build import MEMBER
from rolechain.model.chain import Chain
from rolechain.model.schema import HopSettings, Job, Principal
from rolechain.model.targets import DISCOVERED, split_member
from rolechain.planner import rules as R
from rolechain.planner.plan import NoMatch


class Graph(Protocol):
    """What the planner reads of a trust graph: a :class:`~rolechain.graph.TrustGraph`, or
    the networkx ``DiGraph`` of :func:`~rolechain.graph.build_graph`."""

    @property
    def nodes(self) -> Any: ...

    @property
    def succ(self) -> Any: ...

    @property
    def pred(self) -> Any: ...

    def __contains__(self, node: object) -> bool: ...


STAND_IN_ACCOUNT = "000000000000"
_LIST_LIMIT = 8


def abbreviate(items: Iterable[str], limit: int = _LIST_LIMIT) -> str:
    """``a, b, c`` or ``a, b, ... (+12 more)``."""
    listed = list(items)
    if len(listed) <= limit:
        return ", ".join(listed)
    return ", ".join(listed[:limit]) + f", ... (+{len(listed) - limit} more)"


def quote_chars(chars: Sequence[str]) -> str:
    """``'a', 'b'`` for a list of characters."""
    return ", ".join(repr(c) for c in chars)


@dataclass(frozen=True)
class Node:
    """What the planner needs to know of a role node."""

    name: str
    kind: str
    arn: str
    account: str
    partition: str
    entity: tuple[str, str]  # ("roles", name) or ("role_sets", set name)
    settings: HopSettings

    @property
    def placeholder(self) -> bool:
        return self.account == DISCOVERED


@dataclass
class Draft:
    id: str
    parent: str | None
    caller: str
    role: str
    depth: int
    path: tuple[str, ...]


class Collector:
    """Violations (or notes) in order of discovery; repeats of one group are counted."""

    def __init__(self) -> None:
        self._items: dict[object, list[Any]] = {}

    def add(self, item: Any, group: object = None) -> None:
        key = group if group is not None else item
        entry = self._items.get(key)
        if entry is None:
            self._items[key] = [item, 1]
        else:
            entry[1] += 1

    def __bool__(self) -> bool:
        return bool(self._items)

    def items(self, what: str) -> list[Any]:
        out = []
        for item, count in self._items.values():
            if count > 1:
                item = replace(item, message=f"{item.message} (and {count - 1} more {what})")
            out.append(item)
        return out


class PlannerBase:
    """The state every concern of the planner shares: the chain, the job, the graph, and the
    violations and notes collected so far (set by :meth:`rolechain.planner.planner.Planner.run`
    before the concerns run)."""

    job: Job
    principal: Principal
    principal_name: str
    graph: Graph
    template_location: Location | None
    principal_tree: dict[str, str | None]
    prefix: list[str]

    def __init__(
        self,
        chain: Chain,
        job: str,
        targets: Sequence[str] | None,
        run_id: str,
        resolved: Mapping[str, Sequence[str]] | None,
        graph: Graph | None,
    ) -> None:
        self.chain = chain
        self.model = chain.model
        self.job_name = job
        self.requested = targets
        self.run_id = run_id
        self.resolved = resolved
        self._graph = graph
        self.violations = Collector()
        self.notes = Collector()
        # Globs over Organizations role sets that matched no listed account (run time).
        self.unmatched: dict[str, NoMatch] = {}
        self._nodes: dict[str, Node] = {}

    # -- helpers -------------------------------------------------------------------------

    def locate(self, *path: str | int) -> Location | None:
        return self.chain.locate(*path)

    def violate(
        self,
        rule: str,
        message: str,
        fix: str,
        *,
        hop: str | None = None,
        location: Location | None = None,
        target: str | None = None,
        group: object = None,
    ) -> None:
        self.violations.add(
            Violation(
                rule=rule,
                message=message,
                fix=fix,
                hop=hop,
                location=location,
                source=R.SOURCES.get(rule),
                target=target,
            ),
            group,
        )

    def fail(self) -> PlanError:
        return PlanError(self.job_name, self.violations.items("hops like it"))

    def node(self, name: str) -> Node | None:
        """A role or member node (a concrete member of an unresolved set is allowed)."""
        found = self._nodes.get(name)
        if found is not None:
            return found
        model = self.model
        role = model.roles.get(name)
        if role is not None:
            found = Node(
                name, "role", role.arn, role.account_id, role.partition, ("roles", name), role
            )
        else:
            member = split_member(name)
            spec = model.role_sets.get(member[0]) if member else None
            if member is None or spec is None:
                return None
            account = member[1]
            found = Node(
                name,
                MEMBER,
                spec.member_arn(account),
                account,
                spec.partition,
                ("role_sets", member[0]),
                spec,
            )
        self._nodes[name] = found
        return found

"""Turn a job into a :class:`~rolechain.planner.plan.Plan` that AWS will accept.

Paths
-----
Each target is reached by a path with the fewest hops from the job's principal. Ties are
broken by a breadth-first search that visits each level in lexicographic (Python ``str``)
order of node names, so every node's parent is the **lexicographically smallest
predecessor** at the previous distance. The chosen parents form a shortest-path *tree*:
paths to different targets agree on every shared prefix, so a hub is assumed once however
many targets lie behind it. The choice for a node depends only on nodes closer to the
principal, so adding an unrelated role never changes an existing path.

A job's ``via`` waypoints pin the path: ``principal -> via[0] -> ... -> via[-1] -> target``
where each segment is the shortest path (same tie-break) from the previous waypoint;
listing every intermediate role pins the path exactly. A target that is itself one of the
waypoints (or lies on the pinned prefix) is reached at its first place on the prefix.

Hop ids are the node names of the path joined with ``>`` (``ci>hub>audit@222222222222``);
hops are listed parents first, in lexicographic order of their paths (a pre-order walk of
the tree with children sorted by name).

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from rolechain.errors import Location, PlanError, Violation
from rolechain.graph import trust_graph
from rolechain.graph.build import MEMBER, PRINCIPAL
from rolechain.model.chain import Chain
from rolechain.model.durations import format_duration
from rolechain.model.schema import (
    HopSettings,
    Job,
    Principal,
    RetrySettings,
    Settings,
    unknown_choice,
)
from rolechain.model.targets import (
    DISCOVERED,
    expand_targets,
    is_glob,
    member_name,
    no_match_message,
    set_members,
    split_member,
)
from rolechain.planner import rules as R
from rolechain.planner.plan import (
    HOP_SEPARATOR,
    Discovery,
    Hop,
    Note,
    Plan,
    RunSettings,
    Target,
    TaskRef,
)
from rolechain.planner.session_names import VARIABLES, NameRegistry, Template, invalid_chars


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


RUN_ID_LENGTH = 21
_STAND_IN_ACCOUNT = "000000000000"
_LIST_LIMIT = 8


def new_run_id() -> str:
    """A run id such as ``20261129T121209Z-3f9a``: UTC time and 16 random bits, 21 chars."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def abbreviate(items: Iterable[str], limit: int = _LIST_LIMIT) -> str:
    """``a, b, c`` or ``a, b, ... (+12 more)``."""
    listed = list(items)
    if len(listed) <= limit:
        return ", ".join(listed)
    return ", ".join(listed[:limit]) + f", ... (+{len(listed) - limit} more)"


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
    return _Planner(chain, job, targets, run_id, resolved, graph).run()


def bfs_tree(graph: Graph, source: str) -> dict[str, str | None]:
    """Parent of every node reachable from ``source`` in the documented shortest-path tree.

    Levels are visited in sorted order, so the first (smallest) predecessor at distance
    ``d - 1`` becomes the parent of a node at distance ``d``. O(V + E + V log V).
    """
    parent: dict[str, str | None] = {source: None}
    if source not in graph:
        return parent
    succ = graph.succ
    frontier = [source]
    while frontier:
        found: list[str] = []
        for node in frontier:
            for nxt in succ[node]:
                if nxt not in parent:
                    parent[nxt] = node
                    found.append(nxt)
        found.sort()
        frontier = found
    return parent


def tree_path(parent: Mapping[str, str | None], node: str) -> list[str]:
    out = [node]
    up = parent[node]
    while up is not None:
        out.append(up)
        up = parent[up]
    out.reverse()
    return out


@dataclass(frozen=True)
class _Node:
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
class _Draft:
    id: str
    parent: str | None
    caller: str
    role: str
    depth: int
    path: tuple[str, ...]


@dataclass
class _State:
    """What a hop's session carries to its children."""

    source_identity: str | None
    transitive: frozenset[str]  # lower-cased transitive tag keys in force


class _Collector:
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


class _Planner:
    def __init__(
        self,
        chain: Chain,
        job: str,
        targets: Sequence[str] | None,
        run_id: str | None,
        resolved: Mapping[str, Sequence[str]] | None,
        graph: Graph | None,
    ) -> None:
        self.chain = chain
        self.model = chain.model
        self.job_name = job
        self.requested = targets
        self.run_id = run_id if run_id is not None else new_run_id()
        self.resolved = resolved
        self._graph = graph
        self.violations = _Collector()
        self.notes = _Collector()
        self._nodes: dict[str, _Node] = {}

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

    def node(self, name: str) -> _Node | None:
        """A role or member node (a concrete member of an unresolved set is allowed)."""
        found = self._nodes.get(name)
        if found is not None:
            return found
        model = self.model
        role = model.roles.get(name)
        if role is not None:
            found = _Node(
                name, "role", role.arn, role.account_id, role.partition, ("roles", name), role
            )
        else:
            member = split_member(name)
            spec = model.role_sets.get(member[0]) if member else None
            if member is None or spec is None:
                return None
            account = member[1]
            found = _Node(
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

    # -- the plan ------------------------------------------------------------------------

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

        drafts: dict[str, _Draft] = {}
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
        if not targets:
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
        )

    def regions(self, value: Sequence[str] | str | None) -> tuple[str, ...]:
        if value is None:
            return (self.model.settings.region,)
        if value == "all":
            return ("all",)
        return tuple(value)

    # -- targets and paths ---------------------------------------------------------------

    def select_targets(self) -> list[str]:
        model, job = self.model, self.job
        where = self.locate("jobs", self.job_name, "to")
        job_targets, unmatched = expand_targets(model, job.targets, self.resolved)
        choices = sorted(model.roles) + sorted(model.role_sets)
        for selector in unmatched:
            if self.empty_set(selector):
                continue
            self.violate(
                R.UNKNOWN_TARGET,
                no_match_message(model, selector, self.resolved)
                or unknown_choice("target", selector, choices),
                "name a role, a role set, a member 'set@account' or a glob that matches one",
                location=where,
                target=selector,
            )
        chosen = job_targets
        if self.requested is not None:
            picked, unmatched = expand_targets(model, self.requested, self.resolved)
            for selector in unmatched:
                if is_glob(selector):
                    message = (
                        f"glob {selector!r} matches no target of job {self.job_name} "
                        f"(its targets: {abbreviate(job_targets, 20)})"
                    )
                else:
                    message = unknown_choice("target", selector, job_targets[:20])
                self.violate(
                    R.UNKNOWN_TARGET,
                    message,
                    f"choose among the targets of job {self.job_name}",
                    target=selector,
                )
            in_job = set(job_targets)
            open_sets = {t[: -len("@" + DISCOVERED)] for t in job_targets if t.endswith("@*")}
            chosen = []
            for name in picked:
                member = split_member(name)
                if name in in_job or (member is not None and member[0] in open_sets):
                    chosen.append(name)
                else:
                    self.violate(
                        R.TARGET_NOT_IN_JOB,
                        f"{name} is not a target of job {self.job_name} "
                        f"(its targets: {abbreviate(job_targets)})",
                        f"pick a target of the job, or add {name} to jobs.{self.job_name}.to",
                        location=where,
                        target=name,
                    )
        return chosen

    def empty_set(self, selector: str) -> bool:
        """True if ``selector`` names a role set that has no members (resolved to none)."""
        member = split_member(selector)
        if selector in self.model.role_sets:
            return True
        if member is None or not is_glob(member[1]) or member[0] not in self.model.role_sets:
            return False
        # A glob over a set with members that matches none of them is an error, never "all".
        return not set_members(self.model, member[0], self.resolved)

    def graph_node(self, name: str) -> str | None:
        """The graph node whose path ``name`` takes (the placeholder for an open member)."""
        if name in self.graph:
            return name
        member = split_member(name)
        if member is not None:
            placeholder = member_name(member[0], DISCOVERED)
            if placeholder in self.graph and self.node(name) is not None:
                return placeholder
        return None

    def find_paths(self, target_names: Sequence[str]) -> dict[str, list[str]]:
        job, graph = self.job, self.graph
        start = self.principal_name
        via_where = self.locate("jobs", self.job_name, "via")
        waypoints: list[str] = []
        for name in job.via:
            if name in graph and graph.nodes[name].get("kind") != PRINCIPAL:
                waypoints.append(name)
            else:
                roles = sorted(n for n in graph.nodes if graph.nodes[n].get("kind") != PRINCIPAL)
                self.violate(
                    R.UNKNOWN_VIA,
                    unknown_choice("via role", name, roles),
                    "list roles or role-set members ('set@account') the path must pass through",
                    location=via_where,
                )
        if len(waypoints) != len(job.via):
            return {}

        prefix = [start]
        tree = bfs_tree(graph, start)
        source = start
        for waypoint in waypoints:
            if waypoint not in tree:
                self.unreachable([waypoint], waypoint, source, tree, via=True)
                return {}
            prefix.extend(tree_path(tree, waypoint)[1:])
            tree = bfs_tree(graph, waypoint)
            source = waypoint
        self.principal_tree = tree if source == start else bfs_tree(graph, start)
        self.prefix = prefix
        first_place: dict[str, int] = {}
        for i, node in enumerate(prefix):
            first_place.setdefault(node, i)

        paths: dict[str, list[str]] = {}
        unreachable: dict[str, list[str]] = {}
        limit = self.model.settings.max_hops
        too_long: dict[int, list[str]] = {}
        long_paths: dict[str, list[str]] = {}
        for name in target_names:
            gnode = self.graph_node(name)
            if gnode is None:
                self.violate(
                    R.UNKNOWN_TARGET,
                    f"{name} is not a declared role or member (accounts of its role set: "
                    f"{self.resolved_accounts(name)})",
                    "target a resolved account of the role set",
                    location=self.locate("jobs", self.job_name, "to"),
                    target=name,
                )
                continue
            if gnode in first_place:
                nodes = prefix[: first_place[gnode] + 1]
            elif gnode in tree:
                nodes = prefix + tree_path(tree, gnode)[1:]
            else:
                unreachable.setdefault(gnode, []).append(name)
                continue
            if gnode != name:
                nodes = [*nodes[:-1], name]
            if len(nodes) - 1 > limit:
                too_long.setdefault(len(nodes) - 1, []).append(name)
                long_paths[name] = nodes
                continue
            paths[name] = nodes
        for length, names in sorted(too_long.items()):
            self.violate(
                R.MAX_HOPS,
                f"{abbreviate(names)} need{'s' if len(names) == 1 else ''} {length} hops; "
                f"the limit is {limit}",
                "shorten the path (trust the principal from a role closer to the target) or "
                "raise settings.max_hops",
                location=self.locate("settings", "max_hops"),
                target=names[0],
                hop=" -> ".join(long_paths[names[0]][-2:]),
            )
        if unreachable:
            self.unreachable_targets(unreachable, source, tree)
        return paths

    def resolved_accounts(self, name: str) -> str:
        member = split_member(name)
        if member is None or self.resolved is None:
            return "none"
        return abbreviate(self.resolved.get(member[0], ())) or "none"

    def unreachable_targets(
        self,
        unreachable: Mapping[str, list[str]],
        source: str,
        tree: Mapping[str, str | None],
    ) -> None:
        groups: dict[tuple[tuple[str, str], tuple[str, ...]], list[str]] = {}
        for gnode, names in unreachable.items():
            node = self.node(gnode)
            assert node is not None
            trusted = tuple(sorted(p for p in self.graph.pred[gnode] if p != gnode))
            groups.setdefault((node.entity, trusted), []).extend(names)
        for (_entity, _), names in groups.items():
            self.unreachable(names, self.graph_node(names[0]) or names[0], source, tree)

    def unreachable(
        self,
        names: Sequence[str],
        gnode: str,
        source: str,
        tree: Mapping[str, str | None],
        *,
        via: bool = False,
    ) -> None:
        node = self.node(gnode)
        assert node is not None
        trusted = sorted(p for p in self.graph.pred[gnode] if p != gnode)
        reach = sorted(n for n in tree if n != source)
        start = f"{source} (via waypoint)" if source != self.principal_name else source
        what = names[0] if len(names) == 1 else f"{len(names)} targets ({abbreviate(names, 4)})"
        if trusted:
            trust = (
                f"{gnode} trusts [{abbreviate(trusted)}]; none of them is reachable from {start}"
            )
        else:
            trust = f"{gnode} trusts no principal or role declared in the chain file"
        reachable = (
            f"reachable from {start}: [{abbreviate(reach)}]"
            if reach
            else f"nothing is reachable from {start}"
        )
        key = ".".join(node.entity) + ".trusts"
        candidates = [source, *reach]
        self.violate(
            R.UNREACHABLE,
            f"{'via waypoint ' if via else ''}{what} cannot be reached: {trust}; {reachable}",
            f"add one of [{abbreviate(candidates)}] to {key}"
            + ("" if via else ", or pin a path with 'via'"),
            hop=f"{source} -> {gnode}",
            location=self.locate(*node.entity, "trusts"),
            target=None if via else names[0],
        )

    def find_discovery_paths(self, target_names: Sequence[str]) -> dict[str, tuple[str, list[str]]]:
        """Per organization set among the targets: a key for ``paths`` and the via path."""
        out: dict[str, tuple[str, list[str]]] = {}
        if not hasattr(self, "principal_tree"):
            return out
        for name in target_names:
            member = split_member(name)
            if member is None or member[1] != DISCOVERED or member[0] in out:
                continue
            spec = self.model.role_sets[member[0]]
            assert spec.organization is not None
            via = spec.organization.via
            where = self.locate("role_sets", member[0], "organization", "via")
            if via == self.principal_name:
                out[member[0]] = ("\0" + member[0], [via])
                continue
            if via not in self.graph:
                self.violate(
                    R.DISCOVERY_UNREACHABLE,
                    f"organization via {via!r} of role set {member[0]} is not a declared "
                    "principal or role",
                    "name the principal or role that can call Organizations",
                    location=where,
                )
                continue
            if via in self.prefix:
                nodes = self.prefix[: self.prefix.index(via) + 1]
            elif via in self.principal_tree:
                nodes = tree_path(self.principal_tree, via)
            else:
                reach = sorted(n for n in self.principal_tree if n != self.principal_name)
                self.violate(
                    R.DISCOVERY_UNREACHABLE,
                    f"role set {member[0]} discovers its accounts through {via}, which is not "
                    f"reachable from {self.principal_name} (reachable: [{abbreviate(reach)}])",
                    f"let {via} trust one of [{abbreviate([self.principal_name, *reach])}], "
                    "or choose a reachable organization.via",
                    location=where,
                )
                continue
            limit = self.model.settings.max_hops
            if len(nodes) - 1 > limit:
                self.violate(
                    R.MAX_HOPS,
                    f"role set {member[0]} discovers its accounts through {via}, which needs "
                    f"{len(nodes) - 1} hops; the limit is {limit}",
                    "choose an organization.via closer to the principal or raise settings.max_hops",
                    location=where,
                    hop=" -> ".join(nodes[-2:]),
                )
                continue
            out[member[0]] = ("\0" + member[0], nodes)
        return out

    def discovery(self, set_name: str, via_nodes: Sequence[str]) -> Discovery:
        spec = self.model.role_sets[set_name]
        org = spec.organization
        assert org is not None
        via_hop = HOP_SEPARATOR.join(via_nodes) if len(via_nodes) > 1 else None
        self.notes.add(
            Note(
                kind="discovery-pending",
                message=f"accounts of role set {set_name} are discovered at run time from AWS "
                f"Organizations through {org.via}; the plan shows them as "
                f"{member_name(set_name, DISCOVERED)}",
                hop=via_hop,
                target=member_name(set_name, DISCOVERED),
                location=self.locate("role_sets", set_name, "organization"),
            )
        )
        return Discovery(
            role_set=set_name,
            via=org.via,
            via_hop=via_hop,
            ous=tuple(org.ous),
            tags=tuple(
                (k, (v,) if isinstance(v, str) else tuple(v)) for k, v in sorted(org.tags.items())
            ),
            exclude=tuple(sorted(set(spec.exclude) | set(org.exclude))),
            region=org.region,
        )

    @staticmethod
    def add_path(drafts: dict[str, _Draft], nodes: Sequence[str]) -> tuple[str, ...]:
        ids: list[str] = []
        hop_id = nodes[0]
        parent: str | None = None
        for depth in range(1, len(nodes)):
            hop_id = hop_id + HOP_SEPARATOR + nodes[depth]
            if hop_id not in drafts:
                drafts[hop_id] = _Draft(
                    hop_id, parent, nodes[depth - 1], nodes[depth], depth, tuple(nodes[: depth + 1])
                )
            ids.append(hop_id)
            parent = hop_id
        return tuple(ids)

    # -- hops ----------------------------------------------------------------------------

    def session_template(self) -> Template:
        job = self.job
        if job.session_name is not None:
            text, where = job.session_name, self.locate("jobs", self.job_name, "session_name")
        else:
            text = self.model.settings.session_name
            where = self.locate("settings", "session_name")
        template = Template.parse(text)
        self.template_location = where
        for name in template.unknown_variables:
            self.violate(
                R.SESSION_NAME_INVALID,
                unknown_choice("session_name variable", name, VARIABLES),
                "use only the listed variables",
                location=where,
            )
        bad = template.literal_invalid_chars
        if bad:
            self.violate(
                R.SESSION_NAME_INVALID,
                f"session_name template {text!r} contains {_chars(bad)}, which a "
                "RoleSessionName may not contain (allowed: A-Z a-z 0-9 _+=,.@-)",
                "remove or replace those characters in the template",
                location=where,
            )
        return template

    def session_name(
        self,
        template: Template,
        draft: _Draft,
        node: _Node,
        registry: NameRegistry,
    ) -> str:
        values = {
            "job": self.job_name,
            "run_id": self.run_id,
            "principal": self.principal_name,
            "role": node.entity[1],
            "target": node.name,
            "account": node.account,
            "partition": node.partition,
            "depth": str(draft.depth),
        }
        if template.unknown_variables or template.literal_invalid_chars:
            return template.render({**values, **dict.fromkeys(template.unknown_variables, "")})
        label = f"{draft.caller} -> {draft.role}"
        checked = values
        if node.placeholder:
            checked = {
                **values,
                "account": _STAND_IN_ACCOUNT,
                "target": member_name(node.entity[1], _STAND_IN_ACCOUNT),
            }
        for var in template.variables:
            bad = invalid_chars(checked[var])
            if bad:
                self.violate(
                    R.SESSION_NAME_INVALID,
                    f"session_name variable {{{var}}} is {checked[var]!r}, which contains "
                    f"{_chars(bad)}; a RoleSessionName allows only A-Z a-z 0-9 _+=,.@-",
                    f"drop {{{var}}} from the template or give it a value without those characters",
                    hop=label,
                    location=self.template_location,
                    group=(R.SESSION_NAME_INVALID, var, checked[var]),
                )
                return template.render(values)
        full = template.render(checked)
        if len(full) < 2:
            self.violate(
                R.SESSION_NAME_TOO_SHORT,
                f"session name {full!r} is shorter than 2 characters",
                "add text or variables to the session_name template",
                hop=label,
                location=self.template_location,
                group=(R.SESSION_NAME_TOO_SHORT, full),
            )
            return full
        if node.placeholder:
            # Rendered per account once the accounts are known; show the template's shape.
            return template.render(values)
        final, other = registry.register(full)
        if other is not None:
            self.violate(
                R.SESSION_NAME_COLLISION,
                f"session names {full!r} and {other!r} both shorten to {final!r}",
                "make the session_name template shorter so names are not shortened",
                hop=label,
                location=self.template_location,
            )
        elif final != full:
            self.notes.add(
                Note(
                    kind="session-name-shortened",
                    message=f"session name {full!r} is {len(full)} characters; shortened to "
                    f"{final!r}",
                    hop=draft.id,
                    location=self.template_location,
                ),
                group=("session-name-shortened", node.entity),
            )
        return final

    def build_hops(self, ordered: Sequence[_Draft], template: Template) -> tuple[Hop, ...]:
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

    def why_chained(self, draft: _Draft) -> str:
        if draft.depth > 1:
            return "its caller is a role session"
        return f"principal {self.principal_name} has session credentials"

    def duration(
        self, draft: _Draft, node: _Node, chained: bool, label: str
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
        draft: _Draft,
        node: _Node,
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


def _chars(chars: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in chars)


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

"""Path search: the shortest-path tree from the job's principal to each target.
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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rolechain.graph.build import PRINCIPAL
from rolechain.model.schema import unknown_choice
from rolechain.model.targets import DISCOVERED, member_name, split_member
from rolechain.planner import rules as R
from rolechain.planner.base import Draft, Graph, PlannerBase, abbreviate
from rolechain.planner.plan import HOP_SEPARATOR


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


class PathSearch(PlannerBase):
    """The path to each target (and to each organization set's discovery role), and the
    hop drafts that make up the tree."""

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

    @staticmethod
    def add_path(drafts: dict[str, Draft], nodes: Sequence[str]) -> tuple[str, ...]:
        ids: list[str] = []
        hop_id = nodes[0]
        parent: str | None = None
        for depth in range(1, len(nodes)):
            hop_id = hop_id + HOP_SEPARATOR + nodes[depth]
            if hop_id not in drafts:
                drafts[hop_id] = Draft(
                    hop_id, parent, nodes[depth - 1], nodes[depth], depth, tuple(nodes[: depth + 1])
                )
            ids.append(hop_id)
            parent = hop_id
        return tuple(ids)

"""The trust graph: who may assume which role.

Nodes are principals, roles and role-set members (``set@account``; an organization role set
whose accounts are not resolved yet is one placeholder ``set@*``). An edge ``a -> b`` means
"``b`` trusts ``a``": credentials of ``a`` may call AssumeRole on ``b``.

Node attributes:

``kind``
    ``"principal"``, ``"role"`` or ``"member"``.
``arn``, ``account``, ``partition``
    What is known of the identity (a principal may lack all three; a placeholder member's
    account is ``"*"``).
``role_set``
    The role set of a member, else ``None``.

Each edge carries ``trust``: the ``trusts`` entry that made it (the first one, when several
entries give the same edge).

A ``trusts`` entry is ``"*"`` (every identity: each declared node, and anyone outside, listed
in ``external_trusts``), a principal or role name, a role-set name (every member is trusted),
a member name, the ARN of a declared node, or an account root ARN
``arn:<partition>:iam::<account>:root`` (every declared identity of that account, as IAM
reads a root principal in a trust policy). Entries that name nothing declared (an
identity outside the chain file, or the root of an account with nothing declared in it) add
no edge; they are listed in
``graph.graph["external_trusts"]`` as ``(role node, entry)`` pairs. Trust cycles and
self-trust are legal in IAM and kept as edges; path finding never needs them.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rolechain.model.chain import Chain
from rolechain.model.schema import HopSettings
from rolechain.model.targets import DISCOVERED, set_members, split_member

if TYPE_CHECKING:
    import networkx as nx

PRINCIPAL = "principal"
ROLE = "role"
MEMBER = "member"

WILDCARD = "*"  # a trusts entry: every AWS identity ("Principal": "*")
_ROOT_ARN = re.compile(r"^arn:([\w-]+):iam::(\d{12}):root$")


def _principal_partition(arn: str | None) -> str | None:
    if arn and arn.startswith("arn:"):
        parts = arn.split(":")
        if len(parts) > 1 and parts[1]:
            return parts[1]
    return None


@dataclass(frozen=True)
class TrustGraph:
    """The trust graph as plain dicts, shaped like networkx's ``DiGraph`` where the planner
    reads it (``nodes[n]``, ``succ[n]``, ``pred[n]``, ``n in graph``).

    Planning needs nothing more, and importing networkx costs a ``rolechain run`` 50 to
    100 ms; :func:`build_graph` gives the networkx graph for drawing and exports.
    """

    nodes: dict[str, dict[str, Any]]
    succ: dict[str, dict[str, dict[str, str]]]
    pred: dict[str, dict[str, dict[str, str]]]
    external_trusts: list[tuple[str, str]]

    def __contains__(self, node: object) -> bool:
        return node in self.nodes


def build_graph(chain: Chain, resolved: Mapping[str, Sequence[str]] | None = None) -> nx.DiGraph:
    """The trust graph of ``chain`` as a networkx ``DiGraph``; ``resolved`` gives
    organization role sets' accounts."""
    return as_networkx(trust_graph(chain, resolved))


def as_networkx(data: TrustGraph) -> nx.DiGraph:
    """A :class:`TrustGraph` as the networkx ``DiGraph`` :func:`build_graph` gives."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(data.nodes.items())
    graph.add_edges_from((a, b, attrs) for a, out in data.succ.items() for b, attrs in out.items())
    graph.graph["external_trusts"] = data.external_trusts
    return graph


def trust_graph(chain: Chain, resolved: Mapping[str, Sequence[str]] | None = None) -> TrustGraph:
    """The trust graph of ``chain`` as a :class:`TrustGraph` (see :func:`build_graph`)."""
    model = chain.model
    nodes: dict[str, dict[str, Any]] = {}
    by_arn: dict[str, list[str]] = defaultdict(list)
    # (partition or None, account) -> nodes; a principal without a known partition is
    # matched by account alone.
    by_account: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    set_nodes: dict[str, list[str]] = {}

    for name, principal in model.principals.items():
        account = principal.account_id
        partition = _principal_partition(principal.arn)
        nodes[name] = {
            "kind": PRINCIPAL,
            "arn": principal.arn,
            "account": account,
            "partition": partition,
            "role_set": None,
        }
        if principal.arn:
            by_arn[principal.arn].append(name)
        if account:
            by_account[(partition, account)].append(name)

    for name, role in model.roles.items():
        nodes[name] = {
            "kind": ROLE,
            "arn": role.arn,
            "account": role.account_id,
            "partition": role.partition,
            "role_set": None,
        }
        by_arn[role.arn].append(name)
        by_account[(role.partition, role.account_id)].append(name)

    for set_name, spec in model.role_sets.items():
        members = set_members(model, set_name, resolved)
        set_nodes[set_name] = members
        for member in members:
            account = member.rpartition("@")[2]
            arn = spec.member_arn(account)
            nodes[member] = {
                "kind": MEMBER,
                "arn": arn,
                "account": account,
                "partition": spec.partition,
                "role_set": set_name,
            }
            if account != DISCOVERED:
                by_arn[arn].append(member)
                by_account[(spec.partition, account)].append(member)

    def trusted(entry: str) -> Iterable[str] | None:
        if entry == WILDCARD:
            return list(nodes)
        if entry in model.principals or entry in model.roles:
            return (entry,)
        if entry in set_nodes:
            return set_nodes[entry]
        member = split_member(entry)
        if member and entry in nodes and nodes[entry]["kind"] == MEMBER:
            return (entry,)
        if entry in by_arn:
            return by_arn[entry]
        root = _ROOT_ARN.match(entry)
        if root:
            partition, account = root.groups()
            return [*by_account.get((partition, account), ()), *by_account.get((None, account), ())]
        return None

    external: list[tuple[str, str]] = []
    edges: dict[tuple[str, str], str] = {}

    def add_trusts(targets: Sequence[str], settings: HopSettings) -> None:
        for entry in settings.trusts:
            callers = trusted(entry)
            if not callers or entry == WILDCARD:
                # nothing declared: an outside identity, or a foreign root; "*": anyone,
                # declared or not
                external.extend((node, entry) for node in targets)
            if not callers:
                continue
            for caller in callers:
                for node in targets:
                    edges.setdefault((caller, node), entry)

    for name, role in model.roles.items():
        add_trusts((name,), role)
    for set_name, spec in model.role_sets.items():
        add_trusts(set_nodes[set_name], spec)

    succ: dict[str, dict[str, dict[str, str]]] = {node: {} for node in nodes}
    pred: dict[str, dict[str, dict[str, str]]] = {node: {} for node in nodes}
    for (a, b), entry in edges.items():
        attrs = {"trust": entry}
        succ[a][b] = attrs
        pred[b][a] = attrs
    return TrustGraph(nodes, succ, pred, external)

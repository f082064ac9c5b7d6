"""Properties of plans over random trust graphs (hypothesis)."""

from __future__ import annotations

from typing import Any

import networkx as nx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rolechain.errors import PlanError
from rolechain.graph import build_graph
from rolechain.model.chain import Chain
from rolechain.model.schema import ChainFile
from rolechain.planner import plan
from rolechain.planner.plan import HOP_SEPARATOR, Plan
from rolechain.planner.session_names import VALID_NAME

from .chains import acct, make_chain, role_arn

TEMPLATES = [
    "rolechain-{job}-{run_id}",
    "{principal}.{role}.{depth}",
    "{job}-{target}-{account}-{partition}-" + "x" * 40,
    "r-{run_id}-{target}-{role}-{account}-{job}-{principal}-{depth}",
    "{depth}{depth}",
]
DURATIONS = [None, None, 900, 1800, 3600, 7200]
MAX_SESSION = [3600, 3600, 7200, 43200]


@st.composite
def chains(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 9))
    names = [f"r{i}" for i in range(n)]
    callers = ["ci", *names, "aud"]
    roles: dict[str, Any] = {}
    for i, name in enumerate(names):
        max_session = draw(st.sampled_from(MAX_SESSION))
        duration = draw(st.sampled_from(DURATIONS))
        if duration is not None and duration > max_session:
            duration = None
        roles[name] = {
            "arn": role_arn(10 + i, name),
            "trusts": draw(st.lists(st.sampled_from(callers), max_size=3, unique=True)),
            "max_session_duration": max_session,
            **({"duration": duration} if duration is not None else {}),
        }
    members = draw(st.integers(1, 4))
    set_trusts = draw(st.lists(st.sampled_from(callers), max_size=3, unique=True))
    roles[names[0]]["trusts"] = sorted({*roles[names[0]]["trusts"], "ci"})
    # Target what is reachable (unreachable targets have their own tests), so most
    # examples plan.
    trusts = {name: role["trusts"] for name, role in roles.items()} | {"aud": set_trusts}
    reach, frontier = {"ci"}, ["ci"]
    while frontier:
        frontier = [n for n, t in trusts.items() if n not in reach and reach & set(t)]
        reach.update(frontier)
    targets = [n for n in ["aud", *names] if n in reach]
    return {
        "settings": {"max_hops": 50},
        "principals": {"ci": {"kind": draw(st.sampled_from(["user", "session"]))}},
        "roles": roles,
        "role_sets": {
            "aud": {
                "role_name": "aud",
                "accounts": [acct(500 + i) for i in range(members)],
                "trusts": set_trusts,
                "max_session_duration": draw(st.sampled_from(MAX_SESSION)),
            }
        },
        "jobs": {
            "job": {
                "from": "ci",
                "to": targets,
                "session_name": draw(st.sampled_from(TEMPLATES)),
                "runtime": draw(st.sampled_from([None, 1800, 7200])),
            }
        },
    }


def check_tree(p: Plan) -> None:
    seen: set[str] = set()
    for hop in p.hops:
        assert hop.id not in seen
        assert hop.parent is None or hop.parent in seen  # parents first
        expected = hop.caller + HOP_SEPARATOR + hop.role
        assert hop.id.endswith(expected)
        assert hop.depth == hop.id.count(HOP_SEPARATOR)
        seen.add(hop.id)
    used: set[str] = set()
    for target in p.targets:
        for i, hop_id in enumerate(target.path):
            assert hop_id in seen
            assert p.hop(hop_id).parent == (target.path[i - 1] if i else None)
        used.update(target.path)
        assert p.hop(target.path[-1]).role == target.name
        assert target.lifetime_seconds == min(p.hop(h).duration_seconds for h in target.path)
    assert p.assume_calls == len(used) == len(p.hops)
    assert p.assume_calls <= sum(len(t.path) for t in p.targets)


def plan_or_none(chain: Chain) -> Plan | None:
    """The plan, or None after checking that a refusal carries complete violations."""
    error: PlanError | None = None
    try:
        return plan(chain, "job", run_id="20261129T121209Z-3f9a")
    except PlanError as exc:
        error = exc
    assert error.violations
    for v in error.violations:
        assert v.rule
        assert v.message
        assert v.fix
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains())
def test_plans_keep_aws_rules_and_form_a_tree(data: dict[str, Any]) -> None:
    chain = make_chain(data)
    p = plan_or_none(chain)
    if p is None:
        return
    for hop in p.hops:
        if hop.chained:
            assert hop.duration_seconds <= 3600
        assert 900 <= hop.duration_seconds <= 43200
        assert VALID_NAME.match(hop.session_name), hop.session_name
    check_tree(p)
    # fewest hops
    graph = build_graph(chain)
    lengths = nx.single_source_shortest_path_length(graph, "ci")
    for target in p.targets:
        assert len(target.path) == lengths[target.name]
    # deterministic, and independent of declaration order
    assert plan(chain, "job", run_id="20261129T121209Z-3f9a") == p
    shuffled = dict(data)
    shuffled["roles"] = {
        k: {**v, "trusts": list(reversed(v["trusts"]))} for k, v in reversed(data["roles"].items())
    }
    again = plan(Chain(ChainFile.model_validate(shuffled)), "job", run_id="20261129T121209Z-3f9a")
    assert [(h.id, h.duration_seconds, h.session_name) for h in again.hops] == [
        (h.id, h.duration_seconds, h.session_name) for h in p.hops
    ]
    assert [t.path for t in again.targets] == [t.path for t in p.targets]

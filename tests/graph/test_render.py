"""Mermaid and DOT renderings of the trust graph, with a plan highlighted."""

from __future__ import annotations

import re
from typing import Any

from rolechain.graph import build_graph
from rolechain.graph.render import to_dot, to_mermaid
from rolechain.model.chain import Chain
from rolechain.model.schema import ChainFile
from rolechain.planner import plan

A = "111111111111"


def arn(account: str, name: str) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def data(members: int = 2) -> dict[str, Any]:
    return {
        "principals": {"ci": {"kind": "user"}},
        "roles": {
            "hub": {"arn": arn(A, "hub"), "trusts": ["ci"]},
            "other-hub": {"arn": arn(A, "other"), "trusts": ["ci"]},
            "other_hub": {"arn": arn(A, "other2"), "trusts": []},
        },
        "role_sets": {
            "audit": {
                "role_name": "audit",
                "trusts": ["hub", "other-hub"],
                "accounts": [f"{200 + i:012d}" for i in range(members)],
            }
        },
        "jobs": {"inv": {"from": "ci", "to": "audit", "via": ["hub"]}},
    }


def chain(members: int = 2) -> Chain:
    return Chain(model=ChainFile.model_validate(data(members)))


def test_mermaid_highlights_planned_hops() -> None:
    c = chain()
    text = to_mermaid(build_graph(c), plan(c, "inv", run_id="r"))
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  n_ci(["ci"])' in lines
    assert '  n_hub["hub<br/>111111111111"]' in lines
    edges = [line.strip() for line in lines if "-->" in line]
    assert edges == [
        "n_ci --> n_hub",
        "n_ci --> n_other_hub",
        "n_hub --> n_audit_000000000200",
        "n_hub --> n_audit_000000000201",
        "n_other_hub --> n_audit_000000000200",
        "n_other_hub --> n_audit_000000000201",
    ]
    assert lines[-1] == "  linkStyle 0,2,3 stroke:#d62728,stroke-width:3px"
    assert "  class n_ci principal" in lines
    assert "  class n_audit_000000000200,n_audit_000000000201 target" in lines
    assert "  class n_hub path" in lines


def test_node_ids_are_sanitized_and_unique() -> None:
    text = to_mermaid(build_graph(chain()))
    ids = re.findall(r"^  (n_\w+)[\[(]", text, flags=re.MULTILINE)
    assert len(ids) == len(set(ids)) == 6
    assert "n_other_hub" in ids
    assert "n_other_hub_2" in ids


def test_labels_are_escaped() -> None:
    d = data()
    d["principals"] = {"ci": {"kind": "user", "account": A}}
    c = Chain(model=ChainFile.model_validate(d))
    g = build_graph(c)
    g.nodes["hub"]["account"] = 'a"b<c>'
    assert '["hub<br/>a#quot;b#lt;c#gt;"]' in to_mermaid(g)
    assert 'label="hub\\na\\"b<c>"' in to_dot(g)


def test_dot_highlights_planned_hops_and_shapes_principals() -> None:
    c = chain()
    text = to_dot(build_graph(c), plan(c, "inv", run_id="r"))
    assert text.startswith("digraph trust {\n")
    assert text.endswith("}\n")
    assert '  n_ci [label="ci", shape=ellipse, color="#d62728", penwidth=2];' in text
    assert '  n_ci -> n_hub [color="#d62728", penwidth=3];' in text
    assert "  n_ci -> n_other_hub;" in text
    assert '  n_hub -> n_audit_000000000200 [color="#d62728", penwidth=3];' in text
    assert "  n_other_hub -> n_audit_000000000200;" in text


def test_big_role_sets_collapse_unless_planned() -> None:
    c = chain(members=50)
    g = build_graph(c)
    text = to_mermaid(g)
    assert '["audit (50 accounts)"]' in text
    assert text.count("-->") == 4  # ci->hub, ci->other-hub, hub->set, other-hub->set
    assert len(to_mermaid(g, collapse_at=None).splitlines()) > 100
    # Planned members are drawn one by one.
    p = plan(c, "inv", targets=["audit@000000000200"], run_id="r")
    text = to_dot(g, p)
    assert "n_audit_000000000200 [" in text
    assert 'label="audit (49 accounts)"' in text


def test_renderings_are_deterministic() -> None:
    c = chain()
    p = plan(c, "inv", run_id="r")
    assert to_mermaid(build_graph(c), p) == to_mermaid(build_graph(c), p)
    assert to_dot(build_graph(c), p) == to_dot(build_graph(c), p)


def test_a_planned_member_of_an_open_organization_set_highlights_the_placeholder() -> None:
    d = data()
    d["role_sets"]["audit"] = {
        "role_name": "audit",
        "trusts": ["hub"],
        "organization": {"via": "ci"},
    }
    c = Chain(model=ChainFile.model_validate(d))
    p = plan(c, "inv", targets=["audit@000000000300"], run_id="r")
    text = to_dot(build_graph(c), p)
    assert '  n_hub -> n_audit__ [color="#d62728", penwidth=3];' in text
    assert 'n_audit__ [label="audit@*", style=filled' in text

"""The trust graph: nodes, attributes, and every kind of ``trusts`` entry."""

from __future__ import annotations

from typing import Any

from rolechain.graph import MEMBER, PRINCIPAL, ROLE, build_graph
from rolechain.model.chain import Chain
from rolechain.model.schema import ChainFile

A, B, C = "111111111111", "222222222222", "333333333333"


def chain(data: dict[str, Any]) -> Chain:
    return Chain(model=ChainFile.model_validate(data))


def arn(account: str, name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:role/{name}"


def base(**roles: Any) -> dict[str, Any]:
    return {
        "principals": {
            "ci": {"kind": "user", "arn": f"arn:aws:iam::{A}:user/ci"},
            "sso": {"account": B},
        },
        "roles": {"hub": {"arn": arn(A, "hub"), "trusts": ["ci"]}, **roles},
        "role_sets": {"audit": {"role_name": "ops/audit", "accounts": [B, C], "trusts": ["hub"]}},
    }


def test_nodes_and_attributes() -> None:
    g = build_graph(chain(base()))
    assert sorted(g.nodes) == sorted(["ci", "sso", "hub", f"audit@{B}", f"audit@{C}"])
    assert g.nodes["ci"] == {
        "kind": PRINCIPAL,
        "arn": f"arn:aws:iam::{A}:user/ci",
        "account": A,
        "partition": "aws",
        "role_set": None,
    }
    assert g.nodes["sso"]["account"] == B
    assert g.nodes["sso"]["partition"] is None
    assert g.nodes["hub"] == {
        "kind": ROLE,
        "arn": arn(A, "hub"),
        "account": A,
        "partition": "aws",
        "role_set": None,
    }
    assert g.nodes[f"audit@{B}"] == {
        "kind": MEMBER,
        "arn": arn(B, "ops/audit"),
        "account": B,
        "partition": "aws",
        "role_set": "audit",
    }
    assert sorted(g.edges) == sorted([("ci", "hub"), ("hub", f"audit@{B}"), ("hub", f"audit@{C}")])
    assert g.edges["ci", "hub"]["trust"] == "ci"


def test_trusting_a_role_set_trusts_every_member() -> None:
    g = build_graph(chain(base(x={"arn": arn(A, "x"), "trusts": ["audit"]})))
    assert set(g.predecessors("x")) == {f"audit@{B}", f"audit@{C}"}


def test_trusting_a_member_or_an_arn() -> None:
    g = build_graph(chain(base(x={"arn": arn(A, "x"), "trusts": [f"audit@{C}", arn(A, "hub")]})))
    assert set(g.predecessors("x")) == {f"audit@{C}", "hub"}
    assert g.edges["hub", "x"]["trust"] == arn(A, "hub")


def test_principal_arn_is_trusted() -> None:
    g = build_graph(chain(base(x={"arn": arn(A, "x"), "trusts": [f"arn:aws:iam::{A}:user/ci"]})))
    assert set(g.predecessors("x")) == {"ci"}


def test_account_root_trusts_every_declared_identity_of_the_account() -> None:
    g = build_graph(chain(base(x={"arn": arn(C, "x"), "trusts": [f"arn:aws:iam::{B}:root"]})))
    # sso (account only, partition unknown) and the member in account B
    assert set(g.predecessors("x")) == {"sso", f"audit@{B}"}
    g = build_graph(chain(base(x={"arn": arn(C, "x"), "trusts": [f"arn:aws:iam::{A}:root"]})))
    assert set(g.predecessors("x")) == {"ci", "hub"}


def test_account_root_respects_the_partition() -> None:
    g = build_graph(chain(base(x={"arn": arn(C, "x"), "trusts": [f"arn:aws-cn:iam::{A}:root"]})))
    assert set(g.predecessors("x")) == set()


def test_unknown_identities_are_recorded_as_external_trusts() -> None:
    outside = "arn:aws:iam::999999999999:role/elsewhere"
    g = build_graph(chain(base(x={"arn": arn(A, "x"), "trusts": [outside, "hub"]})))
    assert g.graph["external_trusts"] == [("x", outside)]
    assert set(g.predecessors("x")) == {"hub"}


def test_cycles_and_self_trust_are_kept() -> None:
    data = base(x={"arn": arn(A, "x"), "trusts": ["x", "hub"]})
    data["roles"]["hub"]["trusts"] = ["ci", "x"]
    g = build_graph(chain(data))
    assert g.has_edge("x", "x")
    assert g.has_edge("x", "hub")
    assert g.has_edge("hub", "x")


def org(resolved: dict[str, list[str]] | None = None) -> Any:
    data = base()
    data["role_sets"]["audit"] = {
        "role_name": "audit",
        "trusts": ["hub"],
        "organization": {"via": "hub", "exclude": [C]},
    }
    return build_graph(chain(data), resolved)


def test_organization_set_without_accounts_is_one_placeholder() -> None:
    g = org()
    assert g.nodes["audit@*"]["account"] == "*"
    assert g.nodes["audit@*"]["role_set"] == "audit"
    assert g.has_edge("hub", "audit@*")


def test_organization_set_with_resolved_accounts() -> None:
    g = org({"audit": [B, C]})
    assert "audit@*" not in g
    assert g.has_edge("hub", f"audit@{B}")
    assert f"audit@{C}" not in g  # excluded by the organization query

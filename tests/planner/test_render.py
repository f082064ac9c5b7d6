"""The plan as text: a deterministic tree."""

from __future__ import annotations

from typing import Any

from rolechain.planner import plan
from rolechain.planner.render import render_plan_text

from .chains import hub_chain, make_chain, role_arn


def chain_data() -> dict[str, Any]:
    data = hub_chain(
        members=2,
        hub={
            "max_session_duration": "12h",
            "external_id": "secret-ext",
            "tags": {"Team": "sec"},
            "transitive_tag_keys": ["Team"],
        },
        audit={"duration": "30m", "source_identity": "alice"},
        job={"runtime": "2h", "tasks": [{"task": "s3.list_buckets", "id": "b", "timeout": "5m"}]},
    )
    data["principals"]["ci"].update(source="profile", profile="ci")
    data["roles"]["mgmt"] = {"arn": role_arn(5, "mgmt"), "trusts": ["ci"]}
    data["role_sets"]["org"] = {
        "role_name": "o",
        "trusts": ["hub"],
        "organization": {"via": "mgmt", "ous": ["r-abcd"]},
    }
    data["jobs"]["inv"]["to"] = ["audit", "org"]
    return data


EXPECTED = """\
job inv: 3 targets, run r1
regions: us-east-1; sts region us-east-1; concurrency 16; runtime 2h
ci  (profile ci, session credentials)
├── hub  arn:aws:iam::000000000001:role/hub  1h (chained, capped)  session rolechain-inv-r1  \
external-id set  tags [Team; transitive: Team]
│   ├── audit@000000000100  arn:aws:iam::000000000100:role/audit  30m (chained, requested)  \
session rolechain-inv-r1  source-identity alice  <- target
│   ├── audit@000000000101  arn:aws:iam::000000000101:role/audit  30m (chained, requested)  \
session rolechain-inv-r1  source-identity alice  <- target
│   └── org@*  arn:aws:iam::*:role/o  1h (chained)  session rolechain-inv-r1  <- target
└── mgmt  arn:aws:iam::000000000005:role/mgmt  1h (chained)  session rolechain-inv-r1
5 AssumeRole calls (7 hops over all target and discovery paths)
discover org: accounts from AWS Organizations via mgmt (hop ci>mgmt), OUs r-abcd
tasks:
  - b (s3.list_buckets) (timeout 5m)
3 targets outlive a session and will be refreshed during the run
notes:
  - [duration-capped] chain.yaml:8:1: ci -> hub is chained (principal ci has session \
credentials): duration capped at 1h instead of roles.hub's max_session_duration 12h
  - [refresh-needed] chain.yaml:8:1: job runtime 2h is longer than the 1h session of \
ci -> hub; it is refreshed during the run
  - [refresh-needed] chain.yaml:20:1: job runtime 2h is longer than the 30m session of \
hub -> audit@000000000100; it is refreshed during the run (and 1 more hops like it)
  - [refresh-needed] chain.yaml:26:1: job runtime 2h is longer than the 1h session of \
hub -> org@*; it is refreshed during the run
  - [refresh-needed] chain.yaml:16:1: job runtime 2h is longer than the 1h session of \
ci -> mgmt; it is refreshed during the run
  - [discovery-pending] chain.yaml:29:1: accounts of role set org are discovered at run \
time from AWS Organizations through mgmt; the plan shows them as org@*
"""


def test_text_tree() -> None:
    text = render_plan_text(plan(make_chain(chain_data()), "inv", run_id="r1"))
    assert text == EXPECTED


def test_external_id_value_is_never_shown() -> None:
    text = render_plan_text(plan(make_chain(chain_data()), "inv", run_id="r1"))
    assert "secret-ext" not in text


def test_single_target_and_mfa_marker() -> None:
    data = hub_chain(
        members=1,
        principal_kind="user",
        hub={"mfa_serial": "arn:aws:iam::000000000001:mfa/a", "region": "eu-west-1"},
    )
    text = render_plan_text(plan(make_chain(data), "inv", run_id="r1"))
    assert "job inv: 1 target, run r1" in text
    assert "  mfa  sts eu-west-1" in text
    assert text.endswith("2 AssumeRole calls (2 hops over all target paths)\n")

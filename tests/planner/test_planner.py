"""The planner: paths, the hop tree, and every rule with its violation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from rolechain.errors import Location, PlanError, Violation
from rolechain.graph import build_graph
from rolechain.planner import plan
from rolechain.planner import rules as R
from rolechain.planner.plan import Plan
from rolechain.planner.planner import RUN_ID_LENGTH, new_run_id

from .chains import FILE, acct, hub_chain, make_chain, role_arn


def violations(data: dict[str, Any], job: str = "inv", **kwargs: Any) -> list[Violation]:
    chain = make_chain(data)
    with pytest.raises(PlanError) as info:
        plan(chain, job, run_id="r1", **kwargs)
    assert info.value.job == job
    return list(info.value.violations)


def only(found: list[Violation], rule: str) -> Violation:
    matching = [v for v in found if v.rule == rule]
    assert len(matching) == 1, found
    return matching[0]


def line_of(data: dict[str, Any], *path: str) -> Location:
    chain = make_chain(data)
    loc = chain.locate(*path)
    assert loc is not None
    return loc


# -- paths and the tree ------------------------------------------------------------------


def test_fan_out_through_a_hub_assumes_the_hub_once() -> None:
    p = plan(make_chain(hub_chain(members=3)), "inv", run_id="r1")
    assert [h.id for h in p.hops] == [
        "ci>hub",
        f"ci>hub>audit@{acct(100)}",
        f"ci>hub>audit@{acct(101)}",
        f"ci>hub>audit@{acct(102)}",
    ]
    assert p.assume_calls == 4
    assert sum(len(t.path) for t in p.targets) == 6
    assert [t.name for t in p.targets] == [f"audit@{acct(100 + i)}" for i in range(3)]
    target = p.targets[0]
    assert target.path == ("ci>hub", f"ci>hub>audit@{acct(100)}")
    assert target.role_arn == role_arn(100, "audit")
    assert target.account_id == acct(100)
    hub = p.hop("ci>hub")
    assert (hub.caller, hub.role, hub.parent, hub.depth) == ("ci", "hub", None, 1)
    member = p.hops[1]
    assert (member.caller, member.parent, member.depth) == ("hub", "ci>hub", 2)
    assert member.label == f"hub -> audit@{acct(100)}"
    assert member.location == line_of(hub_chain(), "role_sets", "audit")


def diamond(extra_trusts: list[str] | None = None) -> dict[str, Any]:
    """ci -> {b-hub, a-hub} -> target: two equally short paths."""
    return {
        "principals": {"ci": {"kind": "user"}},
        "roles": {
            "b-hub": {"arn": role_arn(2, "b"), "trusts": ["ci"]},
            "a-hub": {"arn": role_arn(3, "a"), "trusts": ["ci"]},
            "target": {"arn": role_arn(4, "t"), "trusts": extra_trusts or ["b-hub", "a-hub"]},
        },
        "jobs": {"inv": {"from": "ci", "to": "target"}},
    }


def test_tie_break_is_the_smallest_predecessor_whatever_the_declaration_order() -> None:
    for trusts in (["b-hub", "a-hub"], ["a-hub", "b-hub"]):
        p = plan(make_chain(diamond(trusts)), "inv", run_id="r1")
        assert p.targets[0].path == ("ci>a-hub", "ci>a-hub>target")


def test_tie_break_keeps_the_plan_a_tree_when_targets_share_nodes() -> None:
    # x and y are both at distance 2 from ci through a-hub or b-hub; z behind both.
    data = diamond()
    data["roles"]["x"] = {"arn": role_arn(5, "x"), "trusts": ["b-hub", "a-hub"]}
    data["roles"]["z"] = {"arn": role_arn(6, "z"), "trusts": ["x", "target"]}
    data["jobs"]["inv"]["to"] = ["z", "x", "target"]
    p = plan(make_chain(data), "inv", run_id="r1")
    ids = {h.id for h in p.hops}
    for t in p.targets:
        for i in range(1, len(t.path)):
            assert t.path[i].startswith(t.path[i - 1] + ">")
        assert set(t.path) <= ids
    assert p.target("z").path[-1] == "ci>a-hub>target>z"
    # ci>a-hub shared by all three: 1 + target + x + z = 4 calls for 2 + 2 + 3 = 7 hops
    assert p.assume_calls == 4


def test_fewest_hops_wins_over_names() -> None:
    data = diamond(["a-hub", "ci"])
    p = plan(make_chain(data), "inv", run_id="r1")
    assert p.targets[0].path == ("ci>target",)


def test_cycles_and_self_trust_do_not_break_planning() -> None:
    data = hub_chain(members=2)
    data["roles"]["hub"]["trusts"] = ["ci", "hub", "loop"]
    data["roles"]["loop"] = {"arn": role_arn(7, "loop"), "trusts": ["hub", "loop", "audit"]}
    data["role_sets"]["audit"]["trusts"] = ["hub", "audit", "loop"]
    data["jobs"]["inv"]["to"] = ["audit", "loop"]
    chain = make_chain(data)
    graph = build_graph(chain)
    assert graph.has_edge("hub", "hub")
    assert graph.has_edge("loop", "hub")
    p = plan(chain, "inv", run_id="r1", graph=graph)
    assert p.target("loop").path == ("ci>hub", "ci>hub>loop")
    assert p.target(f"audit@{acct(100)}").path == ("ci>hub", f"ci>hub>audit@{acct(100)}")
    assert p.assume_calls == 4


def test_via_waypoints_pin_the_path() -> None:
    data = diamond()
    data["jobs"]["inv"]["via"] = ["b-hub"]
    p = plan(make_chain(data), "inv", run_id="r1")
    assert p.targets[0].path == ("ci>b-hub", "ci>b-hub>target")


def test_via_segments_are_concatenated_and_a_waypoint_target_ends_on_the_prefix() -> None:
    data = hub_chain(members=1)
    data["roles"]["mid"] = {"arn": role_arn(8, "mid"), "trusts": ["hub"]}
    data["role_sets"]["audit"]["trusts"] = ["hub", "mid"]
    data["jobs"]["inv"].update(to=["audit", "hub"], via=["mid"])
    p = plan(make_chain(data), "inv", run_id="r1")
    assert p.target(f"audit@{acct(100)}").path == (
        "ci>hub",
        "ci>hub>mid",
        f"ci>hub>mid>audit@{acct(100)}",
    )
    assert p.target("hub").path == ("ci>hub",)
    assert p.assume_calls == 3


def test_unknown_via_is_a_violation() -> None:
    data = hub_chain()
    data["jobs"]["inv"]["via"] = ["hubb"]
    v = only(violations(data), R.UNKNOWN_VIA)
    assert "did you mean 'hub'" in v.message
    assert v.location == line_of(data, "jobs", "inv", "via")


def test_unreachable_via_is_a_violation() -> None:
    data = hub_chain()
    data["roles"]["island"] = {"arn": role_arn(9, "island"), "trusts": []}
    data["jobs"]["inv"]["via"] = ["island"]
    v = only(violations(data), R.UNREACHABLE)
    assert v.hop == "ci -> island"
    assert "via waypoint island cannot be reached" in v.message
    assert v.fix.startswith("add one of [ci, ")


def test_unreachable_target_says_what_is_reachable_and_what_trust_is_missing() -> None:
    data = hub_chain(members=2)
    data["roles"]["hub-b"] = {"arn": role_arn(10, "hub-b"), "trusts": []}
    data["role_sets"]["audit"]["trusts"] = ["hub-b"]
    v = only(violations(data), R.UNREACHABLE)
    assert v.message == (
        f"2 targets (audit@{acct(100)}, audit@{acct(101)}) cannot be reached: "
        f"audit@{acct(100)} trusts [hub-b]; none of them is reachable from ci; "
        "reachable from ci: [hub]"
    )
    assert v.fix == "add one of [ci, hub] to role_sets.audit.trusts, or pin a path with 'via'"
    assert v.hop == f"ci -> audit@{acct(100)}"
    assert v.location == line_of(data, "role_sets", "audit", "trusts")
    assert v.source == R.SOURCES[R.UNREACHABLE]
    assert v.target == f"audit@{acct(100)}"


def test_unreachable_lists_are_abbreviated() -> None:
    extra = {f"r{i:02d}": {"arn": role_arn(200 + i, "r"), "trusts": ["ci"]} for i in range(20)}
    data = hub_chain(extra_roles=extra)
    data["role_sets"]["audit"]["trusts"] = []
    v = only(violations(data), R.UNREACHABLE)
    assert "trusts no principal or role declared in the chain file" in v.message
    assert "(+13 more)" in v.message  # 21 reachable roles, 8 shown
    assert "(+14 more)" in v.fix  # ci and 21 roles


def test_max_hops() -> None:
    roles = {"r0": {"arn": role_arn(300, "r0"), "trusts": ["ci"]}}
    for i in range(1, 5):
        roles[f"r{i}"] = {"arn": role_arn(300 + i, f"r{i}"), "trusts": [f"r{i - 1}"]}
    data = {
        "settings": {"max_hops": 3},
        "principals": {"ci": {"kind": "user"}},
        "roles": roles,
        "jobs": {"inv": {"from": "ci", "to": ["r2", "r4"]}},
    }
    v = only(violations(data), R.MAX_HOPS)
    assert v.message == "r4 needs 5 hops; the limit is 3"
    assert v.target == "r4"
    assert v.location == line_of(data, "settings", "max_hops")
    assert "settings.max_hops" in v.fix


def test_root_principal_is_refused() -> None:
    data = hub_chain()
    data["principals"]["ci"] = {"kind": "user", "arn": f"arn:aws:iam::{acct(1)}:root"}
    v = only(violations(data), R.ROOT_PRINCIPAL)
    assert "Roles may not be assumed by root accounts" in v.message
    assert v.location == line_of(data, "principals", "ci", "arn")


def test_unknown_job_lists_the_jobs() -> None:
    v = only(violations(hub_chain(), job="inb"), R.UNKNOWN_JOB)
    assert "did you mean 'inv'" in v.message


def test_unknown_target_selector() -> None:
    data = hub_chain()
    data["jobs"]["inv"]["to"] = ["audit", "hubx"]
    v = only(violations(data), R.UNKNOWN_TARGET)
    assert "did you mean 'hub'" in v.message
    assert v.location == line_of(data, "jobs", "inv", "to")


def test_targets_narrow_the_job_and_must_belong_to_it() -> None:
    data = hub_chain(members=3)
    chain = make_chain(data)
    p = plan(chain, "inv", targets=[f"audit@{acct(101)}"], run_id="r1")
    assert [t.name for t in p.targets] == [f"audit@{acct(101)}"]
    assert p.assume_calls == 2
    p = plan(chain, "inv", targets=["audit@*10[02]"], run_id="r1")
    assert [t.name for t in p.targets] == [f"audit@{acct(100)}", f"audit@{acct(102)}"]
    v = only(violations(data, targets=["hub"]), R.TARGET_NOT_IN_JOB)
    assert v.target == "hub"


# -- durations ---------------------------------------------------------------------------


def test_defaulted_chained_duration_is_capped_with_a_note() -> None:
    data = hub_chain(members=1, hub={"max_session_duration": "12h"})
    p = plan(make_chain(data), "inv", run_id="r1")
    hub = p.hop("ci>hub")
    assert (hub.chained, hub.duration_seconds, hub.duration_source) == (True, 3600, "capped")
    (note,) = [n for n in p.notes if n.kind == "duration-capped"]
    assert note.hop == "ci>hub"
    assert "principal ci has session credentials" in note.message


def test_first_hop_from_user_keys_is_not_chained_and_gets_the_default() -> None:
    data = hub_chain(members=1, principal_kind="user", hub={"max_session_duration": "12h"})
    p = plan(make_chain(data), "inv", run_id="r1")
    hub = p.hop("ci>hub")
    assert (hub.chained, hub.duration_seconds, hub.duration_source) == (False, 43200, "default")
    assert p.hops[1].chained is True
    assert p.targets[0].lifetime_seconds == 3600


def test_requested_chained_duration_over_an_hour_is_a_violation() -> None:
    data = hub_chain(
        members=2,
        principal_kind="user",
        audit={"max_session_duration": "4h", "duration": "2h"},
    )
    v = only(violations(data), R.CHAINED_DURATION)
    assert v.hop == f"hub -> audit@{acct(100)}"
    assert v.message == (
        f"hub -> audit@{acct(100)} is chained (its caller is a role session) and requests 2h; "
        "role chaining limits a session to 1h and AWS rejects longer requests "
        "(and 1 more hops like it)"
    )
    assert v.fix.startswith("request 1h or less for role_sets.audit")
    assert v.location == line_of(data, "role_sets", "audit", "duration")
    assert v.source == "https://repost.aws/knowledge-center/iam-role-chaining-limit"


def test_requested_first_hop_from_a_session_over_an_hour_suggests_user_keys() -> None:
    data = hub_chain(hub={"max_session_duration": "2h", "duration": "2h"})
    v = only(violations(data), R.CHAINED_DURATION)
    assert v.hop == "ci -> hub"
    assert "principal ci has session credentials" in v.message
    assert "start from long-term IAM user keys" in v.fix


def test_requested_duration_over_max_session_duration() -> None:
    data = hub_chain(principal_kind="user", hub={"duration": "2h"})
    v = only(violations(data), R.DURATION_OVER_MAX)
    assert v.hop == "ci -> hub"
    assert "above its max_session_duration 1h" in v.message
    assert v.location == line_of(data, "roles", "hub", "duration")


def test_requested_duration_within_limits_is_kept() -> None:
    data = hub_chain(principal_kind="user", hub={"duration": "30m"})
    hub = plan(make_chain(data), "inv", run_id="r1").hop("ci>hub")
    assert (hub.duration_seconds, hub.duration_source) == (1800, "requested")


# -- refresh and MFA ---------------------------------------------------------------------


def test_lifetime_and_refresh_per_target() -> None:
    data = hub_chain(
        members=1,
        principal_kind="user",
        hub={"max_session_duration": "4h"},
        audit={"duration": "30m"},
        job={"runtime": "2h"},
    )
    p = plan(make_chain(data), "inv", run_id="r1")
    (target,) = p.targets
    assert target.lifetime_seconds == 1800
    assert target.needs_refresh is True
    refresh = [n for n in p.notes if n.kind == "refresh-needed"]
    assert [n.hop for n in refresh] == [f"ci>hub>audit@{acct(100)}"]


def test_mfa_on_the_first_hop_from_user_keys_is_allowed() -> None:
    mfa = f"arn:aws:iam::{acct(1)}:mfa/alice"
    data = hub_chain(members=1, principal_kind="user", hub={"mfa_serial": mfa})
    p = plan(make_chain(data), "inv", run_id="r1")
    assert p.hop("ci>hub").mfa_serial == mfa


def test_mfa_on_a_chained_hop_is_a_violation() -> None:
    mfa = f"arn:aws:iam::{acct(1)}:mfa/alice"
    data = hub_chain(members=1, principal_kind="user", audit={"mfa_serial": mfa})
    v = only(violations(data), R.MFA_CALLER)
    assert v.hop == f"hub -> audit@{acct(100)}"
    assert "hub is a role session" in v.message
    assert v.location == line_of(data, "role_sets", "audit", "mfa_serial")


def test_mfa_from_a_session_principal_is_a_violation() -> None:
    data = hub_chain(hub={"mfa_serial": f"arn:aws:iam::{acct(1)}:mfa/alice"})
    v = only(violations(data), R.MFA_CALLER)
    assert "principal ci has session credentials" in v.message


def test_mfa_hop_shorter_than_the_runtime_cannot_refresh() -> None:
    data = hub_chain(
        principal_kind="user",
        hub={"mfa_serial": f"arn:aws:iam::{acct(1)}:mfa/alice"},
        job={"runtime": "3h"},
    )
    v = only(violations(data), R.MFA_REFRESH)
    assert v.hop == "ci -> hub"
    assert "cannot be refreshed unattended" in v.message


def test_mfa_in_a_scheduled_job_is_refused() -> None:
    data = hub_chain(
        principal_kind="user",
        hub={"mfa_serial": f"arn:aws:iam::{acct(1)}:mfa/alice"},
        job={"schedule": "0 3 * * *"},
    )
    v = only(violations(data), R.MFA_SCHEDULED)
    assert v.location == line_of(data, "jobs", "inv", "schedule")


# -- session names -----------------------------------------------------------------------


def test_session_name_variables_describe_the_hop() -> None:
    data = hub_chain(
        members=1,
        job={"session_name": "{job}.{principal}.{role}.{target}.{account}.{partition}.{depth}"},
    )
    p = plan(make_chain(data), "inv", run_id="r1")
    assert p.hop("ci>hub").session_name == f"inv.ci.hub.hub.{acct(1)}.aws.1"
    assert p.hops[1].session_name == f"inv.ci.audit.audit@{acct(100)}.{acct(100)}.aws.2"


def test_session_name_invalid_literal_character() -> None:
    data = hub_chain(job={"session_name": "rolechain {job}"})
    v = only(violations(data), R.SESSION_NAME_INVALID)
    assert "' '" in v.message
    assert v.location == line_of(data, "jobs", "inv", "session_name")


def test_session_name_invalid_character_in_a_value() -> None:
    data = hub_chain(job={"session_name": "x-{run_id}"})
    with pytest.raises(PlanError) as info:
        plan(make_chain(data), "inv", run_id="a/b")
    v = only(list(info.value.violations), R.SESSION_NAME_INVALID)
    assert "{run_id} is 'a/b'" in v.message
    assert "'/'" in v.message
    assert v.hop == "ci -> hub"


def test_session_name_too_short() -> None:
    found = violations(hub_chain(job={"session_name": "{depth}"}))
    assert [(v.rule, v.hop) for v in found] == [
        (R.SESSION_NAME_TOO_SHORT, "ci -> hub"),
        (R.SESSION_NAME_TOO_SHORT, f"hub -> audit@{acct(100)}"),
    ]
    assert found[0].message == "session name '1' is shorter than 2 characters"
    assert found[1].message.startswith("session name '2' is shorter")


def test_long_session_names_are_shortened_with_a_hash_and_stay_distinct() -> None:
    data = hub_chain(members=3, job={"session_name": "x" * 60 + "-{account}"})
    p = plan(make_chain(data), "inv", run_id="r1")
    names = [h.session_name for h in p.hops]
    assert all(re.fullmatch(r"[\w+=,.@-]{2,64}", n) for n in names)
    assert all(len(n) == 64 for n in names)
    assert len(set(names)) == len(names)
    assert any(n.kind == "session-name-shortened" for n in p.notes)


def test_run_id_default_is_fixed_length_and_valid_in_a_session_name() -> None:
    run_id = new_run_id()
    assert len(run_id) == RUN_ID_LENGTH
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{4}", run_id)
    p = plan(make_chain(hub_chain()), "inv")
    assert len(p.run_id) == RUN_ID_LENGTH
    assert p.run_id in p.hops[0].session_name


# -- per-role rules ----------------------------------------------------------------------


def test_source_identity_persists_and_cannot_change() -> None:
    data = hub_chain(members=2, hub={"source_identity": "alice"}, audit={"source_identity": "bob"})
    v = only(violations(data), R.SOURCE_IDENTITY_CHANGED)
    assert v.hop == f"hub -> audit@{acct(100)}"
    assert "'bob' differs from 'alice'" in v.message
    assert "(and 1 more hops like it)" in v.message
    assert v.location == line_of(data, "role_sets", "audit", "source_identity")


def test_source_identity_repeated_with_the_same_value_is_fine() -> None:
    data = hub_chain(hub={"source_identity": "alice"}, audit={"source_identity": "alice"})
    p = plan(make_chain(data), "inv", run_id="r1")
    assert {h.source_identity for h in p.hops} == {"alice"}


def test_inherited_transitive_tag_key_passed_again() -> None:
    data = hub_chain(
        hub={"tags": {"Team": "sec"}, "transitive_tag_keys": ["Team"]},
        audit={"tags": {"team": "other"}},
    )
    v = only(violations(data), R.TRANSITIVE_TAG_REPASSED)
    assert "['team']" in v.message
    assert v.location == line_of(data, "role_sets", "audit", "tags")


def test_non_transitive_tags_may_be_passed_again() -> None:
    data = hub_chain(hub={"tags": {"Team": "sec"}}, audit={"tags": {"Team": "other"}})
    p = plan(make_chain(data), "inv", run_id="r1")
    assert p.hops[1].tags == (("Team", "other"),)


def test_session_policy_too_large() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "x" * 2100}],
    }
    data = hub_chain(hub={"session_policy": {"inline": policy}})
    v = only(violations(data), R.SESSION_POLICY_SIZE)
    assert "characters minified; AWS allows 2048" in v.message
    assert v.location == line_of(data, "roles", "hub", "session_policy")


def test_policy_arn_must_be_in_the_roles_account_or_aws_managed() -> None:
    ok = [f"arn:aws:iam::{acct(1)}:policy/p", "arn:aws:iam::aws:policy/ReadOnlyAccess"]
    p = plan(make_chain(hub_chain(hub={"session_policy": {"managed": ok}})), "inv", run_id="r")
    assert p.hop("ci>hub").policy_arns == tuple(ok)
    bad = hub_chain(hub={"session_policy": {"managed": [f"arn:aws:iam::{acct(9)}:policy/p"]}})
    v = only(violations(bad), R.POLICY_ARNS)
    assert f"not in the role's account {acct(1)}" in v.message


def test_external_id_is_passed_and_rechecked() -> None:
    p = plan(make_chain(hub_chain(hub={"external_id": "ext-123"})), "inv", run_id="r1")
    assert p.hop("ci>hub").external_id == "ext-123"
    assert p.hop("ci>hub").assume_role_params()["ExternalId"] == "ext-123"


def test_all_violations_are_reported_together() -> None:
    data = hub_chain(
        principal_kind="user",
        hub={"duration": "2h", "source_identity": "alice"},
        audit={"source_identity": "bob", "mfa_serial": f"arn:aws:iam::{acct(1)}:mfa/a"},
        job={"session_name": "bad name"},
    )
    rules = {v.rule for v in violations(data)}
    assert rules == {
        R.DURATION_OVER_MAX,
        R.SOURCE_IDENTITY_CHANGED,
        R.MFA_CALLER,
        R.SESSION_NAME_INVALID,
    }


# -- organization role sets ----------------------------------------------------------------


def org_chain(via: str = "hub") -> dict[str, Any]:
    data = hub_chain()
    data["role_sets"]["audit"] = {
        "role_name": "audit",
        "trusts": ["hub"],
        "organization": {"via": via, "ous": ["r-abcd"], "exclude": [acct(999)]},
        "exclude": [acct(998)],
    }
    return data


def test_organization_set_without_accounts_plans_a_placeholder_and_a_discovery() -> None:
    data = org_chain()
    data["roles"]["mgmt"] = {"arn": role_arn(5, "mgmt"), "trusts": ["ci"]}
    data["role_sets"]["audit"]["organization"]["via"] = "mgmt"
    p = plan(make_chain(data), "inv", run_id="r1")
    assert [t.name for t in p.targets] == ["audit@*"]
    assert [h.id for h in p.hops] == ["ci>hub", "ci>hub>audit@*", "ci>mgmt"]
    assert p.assume_calls == 3
    (d,) = p.discoveries
    assert (d.role_set, d.via, d.via_hop, d.ous) == ("audit", "mgmt", "ci>mgmt", ("r-abcd",))
    assert d.exclude == (acct(998), acct(999))
    assert any(n.kind == "discovery-pending" for n in p.notes)


def test_organization_discovery_through_the_principal_needs_no_hop() -> None:
    p = plan(make_chain(org_chain(via="ci")), "inv", run_id="r1")
    assert p.discoveries[0].via_hop is None
    assert p.assume_calls == 2


def test_organization_discovery_via_must_be_reachable() -> None:
    data = org_chain(via="island")
    data["roles"]["island"] = {"arn": role_arn(9, "island"), "trusts": []}
    v = only(violations(data), R.DISCOVERY_UNREACHABLE)
    assert "island, which is not reachable from ci" in v.message


def test_organization_discovery_path_obeys_max_hops() -> None:
    data = org_chain(via="m3")
    data["roles"]["m1"] = {"arn": role_arn(5, "m1"), "trusts": ["ci"]}
    data["roles"]["m2"] = {"arn": role_arn(6, "m2"), "trusts": ["m1"]}
    data["roles"]["m3"] = {"arn": role_arn(7, "m3"), "trusts": ["m2"]}
    data["settings"] = {"max_hops": 2}  # ci>hub>audit@* fits; ci>m1>m2>m3 does not
    v = only(violations(data), R.MAX_HOPS)
    assert "discovers its accounts through m3, which needs 3 hops; the limit is 2" in v.message
    assert v.hop == "m2 -> m3"
    data["settings"] = {"max_hops": 3}
    assert plan(make_chain(data), "inv", run_id="r1").discoveries[0].via_hop == "ci>m1>m2>m3"


def test_organization_set_with_resolved_accounts_plans_real_members() -> None:
    resolved = {"audit": [acct(500), acct(998), acct(501)]}
    p = plan(make_chain(org_chain()), "inv", run_id="r1", resolved=resolved)
    assert [t.name for t in p.targets] == [f"audit@{acct(500)}", f"audit@{acct(501)}"]
    assert p.discoveries == ()
    assert p.assume_calls == 3


def test_a_glob_over_resolved_organization_accounts_matching_none_is_a_no_match() -> None:
    """Offline the glob stands for the set's placeholder; with the accounts resolved, a glob
    that matches none of them selects nothing (never every account) and is carried in the
    plan, through JSON, for the run to give its error record."""
    chain = make_chain(org_chain())
    offline = plan(chain, "inv", targets=["audit@9*"], run_id="r1")
    assert [t.name for t in offline.targets] == ["audit@*"]
    assert offline.unmatched == ()
    resolved = {"audit": [acct(500), acct(501)]}
    p = plan(chain, "inv", targets=["audit@9*", f"audit@{acct(501)}"], run_id="r1",
             resolved=resolved)  # fmt: skip
    assert [t.name for t in p.targets] == [f"audit@{acct(501)}"]
    (miss,) = p.unmatched
    assert (miss.selector, miss.role_set, miss.code) == ("audit@9*", "audit", "NoMatchingAccounts")
    assert miss.message == (
        "glob 'audit@9*' matches none of the 2 accounts AWS Organizations listed for role set "
        f"audit: audit@{acct(500)}, audit@{acct(501)}"
    )
    assert "role_sets.audit.organization" in miss.fix
    assert Plan.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    alone = plan(chain, "inv", targets=["audit@9*"], run_id="r1", resolved=resolved)
    assert alone.targets == ()
    assert [n.kind for n in alone.notes if n.kind == "no-targets"] == []


def test_a_requested_glob_matching_listed_accounts_outside_the_job_is_a_no_match() -> None:
    data = org_chain()
    data["jobs"]["inv"]["to"] = f"audit@{acct(500)}*"
    resolved = {"audit": [acct(500), acct(501)]}
    p = plan(make_chain(data), "inv", targets=[f"audit@{acct(501)}*"], run_id="r1",
             resolved=resolved)  # fmt: skip
    assert p.targets == ()
    (miss,) = p.unmatched
    assert miss.message == (
        f"glob 'audit@{acct(501)}*' matches none of the 1 targets of job inv among the "
        f"accounts AWS Organizations listed for role set audit: audit@{acct(500)}"
    )


def test_one_member_of_an_unresolved_organization_set() -> None:
    p = plan(make_chain(org_chain()), "inv", targets=[f"audit@{acct(500)}"], run_id="r1")
    (target,) = p.targets
    assert target.path == ("ci>hub", f"ci>hub>audit@{acct(500)}")
    assert target.role_arn == role_arn(500, "audit")


# -- plan fields ---------------------------------------------------------------------------


def test_plan_fields_from_principal_job_and_settings() -> None:
    data = hub_chain(
        job={
            "regions": ["eu-west-1", "us-east-1"],
            "concurrency": 4,
            "runtime": "30m",
            "tasks": [
                {"task": "call", "id": "vpcs", "with": {"service": "ec2", "operation": "x"}},
                {"task": "s3.list_buckets", "regions": "all", "timeout": "1m"},
            ],
            "retry": {"attempts": 3},
        },
        settings={"assume_rate": 5, "region": "eu-central-1"},
    )
    data["principals"]["ci"] = {
        "source": "profile",
        "profile": "ci-prof",
        "arn": f"arn:aws:iam::{acct(1)}:user/ci",
        "kind": "user",
    }
    p = plan(make_chain(data), "inv", run_id="r1")
    assert (p.principal, p.principal_kind, p.principal_source, p.principal_profile) == (
        "ci",
        "user",
        "profile",
        "ci-prof",
    )
    assert p.principal_arn == f"arn:aws:iam::{acct(1)}:user/ci"
    assert p.region == "eu-central-1"
    assert p.regions == ("eu-west-1", "us-east-1")
    assert p.targets[0].regions == ("eu-west-1", "us-east-1")
    assert (p.concurrency, p.runtime_seconds) == (4, 1800)
    assert p.tasks[0].id == "vpcs"
    assert p.tasks[0].params_dict["service"] == "ec2"
    assert p.tasks[1].regions == ("all",)
    assert p.tasks[1].timeout_seconds == 60
    assert p.settings.to_dict() == {
        "assume_rate": 5.0,
        "max_hops": 10,
        "retry_attempts": 3,
        "retry_initial_wait": 0.5,
        "retry_max_wait": 20,
        "throttle_budget": 120,
    }


def test_all_regions() -> None:
    p = plan(make_chain(hub_chain(job={"regions": "all"})), "inv", run_id="r1")
    assert p.regions == ("all",)
    assert p.targets[0].regions == ()


def test_principal_region_wins_over_settings() -> None:
    data = hub_chain()
    data["principals"]["ci"]["region"] = "eu-west-2"
    assert plan(make_chain(data), "inv", run_id="r1").region == "eu-west-2"


def test_plan_json_round_trip() -> None:
    data = hub_chain(
        hub={
            "external_id": "e-1",
            "tags": {"Team": "sec"},
            "transitive_tag_keys": ["Team"],
            "session_policy": {"inline": {"Version": "2012-10-17", "Statement": []}},
        },
        job={"tasks": [{"task": "call", "with": {"service": "s3", "operation": "list_buckets"}}]},
    )
    data["role_sets"]["org"] = {
        "role_name": "o",
        "trusts": ["hub"],
        "organization": {"via": "hub", "tags": {"env": ["prod", "dev"]}},
    }
    data["jobs"]["inv"]["to"] = ["audit", "org"]
    p = plan(make_chain(data), "inv", run_id="r1")
    text = json.dumps(p.to_dict(), sort_keys=True)
    back = Plan.from_dict(json.loads(text))
    assert back == p
    assert json.loads(text)["assume_calls"] == p.assume_calls
    assert json.loads(text)["hops"][0]["location"]["file"] == FILE


def test_plans_are_deterministic() -> None:
    chain = make_chain(hub_chain(members=5))
    assert plan(chain, "inv", run_id="r1") == plan(chain, "inv", run_id="r1")


def test_unreachable_from_the_last_via_waypoint() -> None:
    data = hub_chain(members=1)
    data["roles"]["side"] = {"arn": role_arn(11, "side"), "trusts": ["ci"]}
    data["jobs"]["inv"]["via"] = ["side"]
    v = only(violations(data), R.UNREACHABLE)
    assert "none of them is reachable from side (via waypoint)" in v.message
    assert v.fix == "add one of [side] to role_sets.audit.trusts, or pin a path with 'via'"


def test_ten_thousand_targets_share_one_hub() -> None:
    p = plan(make_chain(hub_chain(members=10_000)), "inv", run_id="r1")
    assert p.assume_calls == 10_001
    assert len(p.targets) == 10_000
    assert sum(len(t.path) for t in p.targets) == 20_000
    assert {t.path[0] for t in p.targets} == {"ci>hub"}


def test_an_organization_set_resolved_to_no_accounts_plans_nothing() -> None:
    p = plan(make_chain(org_chain()), "inv", run_id="r1", resolved={"audit": []})
    assert p.targets == ()
    assert p.assume_calls == 0
    assert [n.kind for n in p.notes] == ["no-targets"]

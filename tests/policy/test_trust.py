"""The trust-policy evaluator shared by verify, discover and the sandbox."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolechain.policy import (
    ANY,
    Caller,
    assume_role_context,
    evaluate,
    parse_policy,
    parse_principal,
)
from rolechain.policy.trust import RequestContext

USER = Caller.parse("arn:aws:iam::111111111111:user/ops")
HUB = Caller.parse("arn:aws:iam::222222222222:role/security/Hub", session="s1")
HUB_SESSION = Caller.parse("arn:aws:sts::222222222222:assumed-role/Hub/s1")  # no path known
assert USER is not None
assert HUB is not None
assert HUB_SESSION is not None
ASSUME = "sts:AssumeRole"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(principal: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": ASSUME, **extra}


def outcome(document: Any, caller: Caller, context: Any = None, action: str = ASSUME) -> str:
    return evaluate(document, caller, action, context or {}).outcome


# -- principals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        ("*", "allow"),
        ({"AWS": "*"}, "allow"),
        ({"AWS": "111111111111"}, "allow"),
        ({"AWS": "arn:aws:iam::111111111111:root"}, "allow"),
        ({"AWS": "arn:aws:iam::111111111111:user/ops"}, "allow"),
        ({"AWS": "arn:aws:iam::111111111111:user/team/ops"}, "allow"),  # names are unique
        ({"AWS": "arn:aws:iam::111111111111:user/other"}, "deny"),
        ({"AWS": "arn:aws:iam::999999999999:root"}, "deny"),
        ({"AWS": "arn:aws-cn:iam::111111111111:root"}, "deny"),  # another partition
        ({"AWS": "arn:aws:iam::111111111111:role/ops"}, "deny"),  # a role, not the user
        ({"Service": "ec2.amazonaws.com"}, "deny"),
        ({"Federated": "arn:aws:iam::111111111111:saml-provider/idp"}, "deny"),
        ({"AWS": "AIDAJQABLZS4A3QDU576Q"}, "deny"),  # a deleted user's unique id
    ],
)
def test_principals_for_an_iam_user(principal: Any, expected: str) -> None:
    assert outcome(policy(allow(principal)), USER) == expected


def test_role_arns_match_sessions_with_or_without_the_path() -> None:
    with_path = policy(allow({"AWS": "arn:aws:iam::222222222222:role/security/Hub"}))
    without = policy(allow({"AWS": "arn:aws:iam::222222222222:role/Hub"}))
    for caller in (HUB, HUB_SESSION):
        assert outcome(with_path, caller) == "allow"
        assert outcome(without, caller) == "allow"
    assert outcome(with_path, USER) == "deny"


def test_session_arns_match_only_that_session() -> None:
    document = policy(allow({"AWS": "arn:aws:sts::222222222222:assumed-role/Hub/s1"}))
    assert outcome(document, HUB) == "allow"
    other = Caller("role", "222222222222", name="Hub", session="s2")
    assert outcome(document, other) == "deny"
    unknown = Caller("role", "222222222222", name="Hub")
    assert outcome(document, unknown) == "unknown"


def test_only_the_account_known_matches_roots_and_leaves_names_open() -> None:
    someone = Caller("account", "111111111111")
    assert outcome(policy(allow({"AWS": "111111111111"})), someone) == "allow"
    decision = evaluate(policy(allow({"AWS": USER.arn})), someone, ASSUME, {})
    assert decision.outcome == "unknown"
    assert decision.unknown_keys == {"principal"}
    assert outcome(policy(allow({"AWS": "999999999999"})), someone) == "deny"


def test_not_principal_and_not_action() -> None:
    document = policy(
        {"Effect": "Allow", "NotPrincipal": {"AWS": USER.arn}, "Action": "sts:*"},
    )
    assert outcome(document, USER) == "deny"
    # IAM refuses NotPrincipal in a role trust policy: such an Allow grants nobody
    assert outcome(document, HUB) == "deny"
    document = policy({"Effect": "Allow", "Principal": "*", "NotAction": "sts:TagSession"})
    assert outcome(document, USER) == "allow"
    assert outcome(document, USER, action="sts:TagSession") == "deny"


def test_action_wildcards_and_case() -> None:
    assert outcome(policy(allow("*", Action="STS:Assume*")), USER) == "allow"
    assert outcome(policy(allow("*", Action=["s3:*", "sts:?ssumeRole"])), USER) == "allow"
    assert outcome(policy(allow("*", Action="sts:TagSession")), USER) == "deny"


def test_an_explicit_deny_wins() -> None:
    document = policy(
        allow({"AWS": "111111111111"}),
        {"Effect": "Deny", "Principal": {"AWS": USER.arn}, "Action": "sts:*"},
    )
    decision = evaluate(document, USER, ASSUME, {})
    assert decision.outcome == "deny"
    assert decision.denied_by == (1,)


# -- conditions ---------------------------------------------------------------------------


def with_condition(condition: dict[str, Any]) -> dict[str, Any]:
    return policy(allow({"AWS": USER.arn}, Condition=condition))


def test_external_id_conditions() -> None:
    document = with_condition({"StringEquals": {"sts:ExternalId": "abc"}})
    assert outcome(document, USER, {"sts:externalid": "abc"}) == "allow"
    decision = evaluate(document, USER, ASSUME, {"sts:ExternalId": "abd"})
    assert decision.outcome == "deny"
    assert decision.failed_keys == {"sts:externalid"}
    assert outcome(document, USER, {"sts:externalid": None}) == "deny"
    assert outcome(document, USER, {"sts:externalid": ANY}) == "allow"
    assert outcome(document, USER, {}) == "unknown"
    like = with_condition({"StringLike": {"sts:ExternalId": ["ab*", "x?z", "q[rs]"]}})
    assert outcome(like, USER, {"sts:externalid": "abzzz"}) == "allow"
    assert outcome(like, USER, {"sts:externalid": "xyz"}) == "allow"
    assert outcome(like, USER, {"sts:externalid": "qr"}) == "deny"  # [...] is no class in IAM
    assert outcome(like, USER, {"sts:externalid": "q[rs]"}) == "allow"


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [
        ({"StringNotEquals": {"aws:PrincipalAccount": "999999999999"}}, {}, "unknown"),
        ({"StringNotEquals": {"sts:ExternalId": "x"}}, {"sts:externalid": None}, "allow"),
        ({"StringNotEquals": {"sts:ExternalId": ["x", "y"]}}, {"sts:externalid": "y"}, "deny"),
        ({"StringEqualsIfExists": {"sts:ExternalId": "x"}}, {"sts:externalid": None}, "allow"),
        ({"StringEqualsIfExists": {"sts:ExternalId": "x"}}, {"sts:externalid": "z"}, "deny"),
        ({"StringEqualsIgnoreCase": {"sts:ExternalId": "ABC"}}, {"sts:externalid": "abc"}, "allow"),
        ({"Null": {"sts:ExternalId": "true"}}, {"sts:externalid": None}, "allow"),
        ({"Null": {"sts:ExternalId": "false"}}, {"sts:externalid": None}, "deny"),
        ({"Bool": {"aws:MultiFactorAuthPresent": True}}, {}, "unknown"),
        (
            {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
            {"aws:multifactorauthpresent": "true"},
            "allow",
        ),
        (
            {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
            {"aws:multifactorauthage": "5"},
            "allow",
        ),
        (
            {"StringEquals": {"aws:PrincipalTag/team": "${aws:username}"}},
            {"aws:principaltag/team": "x"},
            "unknown",
        ),
        (
            {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111111111111:user/*"}},
            {"aws:principalarn": USER.arn},
            "allow",
        ),
        (
            {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}},
            {"aws:principalarn": USER.arn},
            "deny",
        ),
        (
            {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}},
            {"aws:principalarn": USER.arn},
            "allow",
        ),
    ],
)
def test_condition_operators(
    condition: dict[str, Any], context: dict[str, Any], expected: str
) -> None:
    assert outcome(with_condition(condition), USER, context) == expected


def test_set_qualifiers_over_multivalued_keys() -> None:
    any_value = with_condition({"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "cost"]}})
    all_values = with_condition({"ForAllValues:StringLike": {"aws:TagKeys": ["team", "c*"]}})
    assert outcome(any_value, USER, {"aws:tagkeys": ("team", "x")}) == "allow"
    assert outcome(any_value, USER, {"aws:tagkeys": ("x",)}) == "deny"
    assert outcome(any_value, USER, {"aws:tagkeys": None}) == "deny"
    assert outcome(all_values, USER, {"aws:tagkeys": ("team", "cost")}) == "allow"
    assert outcome(all_values, USER, {"aws:tagkeys": ("team", "x")}) == "deny"
    assert outcome(all_values, USER, {"aws:tagkeys": None}) == "allow"  # vacuously true


def test_blocks_and_keys_are_anded_values_ored() -> None:
    document = with_condition(
        {
            "StringEquals": {"sts:ExternalId": ["a", "b"], "aws:PrincipalAccount": "111111111111"},
            "StringLike": {"sts:RoleSessionName": "ci-*"},
        }
    )
    good = {"sts:externalid": "b", "aws:principalaccount": "111111111111",
            "sts:rolesessionname": "ci-42"}  # fmt: skip
    assert outcome(document, USER, good) == "allow"
    decision = evaluate(document, USER, ASSUME, {**good, "sts:rolesessionname": "dev-1"})
    assert decision.outcome == "deny"
    assert decision.failed_keys == {"sts:rolesessionname"}


def test_assume_role_context_keys() -> None:
    context = assume_role_context(
        HUB,
        external_id="x",
        session_name="rolechain-job",
        source_identity="alice",
        tags={"Team": "infra"},
        transitive_tag_keys=["Team"],
        org_id="o-abc123",
    )
    assert context.lookup("aws:PrincipalOrgID") == (True, "o-abc123")
    assert context.lookup("aws:RequestTag/team") == (True, "infra")
    assert context.lookup("aws:RequestTag/missing") == (True, None)  # known to be absent
    assert context.lookup("aws:PrincipalArn") == (
        True,
        "arn:aws:iam::222222222222:role/security/Hub",
    )
    assert context.lookup("aws:PrincipalType") == (True, "AssumedRole")
    assert context.lookup("aws:SourceIp") == (False, None)
    no_path = assume_role_context(HUB_SESSION)
    assert no_path.lookup("aws:PrincipalArn") == (False, None)  # a session ARN has no path
    assert assume_role_context(HUB).lookup("aws:PrincipalOrgID") == (False, None)


def test_principal_org_id_and_request_tags_through_the_context() -> None:
    document = policy(
        allow("*", Condition={"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}),
        {
            "Effect": "Allow",
            "Principal": {"AWS": "222222222222"},
            "Action": "sts:TagSession",
            "Condition": {"StringEquals": {"aws:RequestTag/team": "infra"}},
        },
    )
    inside = assume_role_context(HUB, org_id="o-abc123")
    outside = assume_role_context(HUB, org_id=None)
    assert evaluate(document, HUB, ASSUME, inside).allowed
    assert evaluate(document, HUB, ASSUME, outside).outcome == "deny"
    assert evaluate(document, HUB, ASSUME, assume_role_context(HUB)).outcome == "unknown"
    tagged = assume_role_context(HUB, tags={"team": "infra"})
    assert evaluate(document, HUB, "sts:TagSession", tagged).allowed
    wrong = assume_role_context(HUB, tags={"team": "data"})
    assert evaluate(document, HUB, "sts:TagSession", wrong).outcome == "deny"
    untagged = assume_role_context(HUB)
    assert evaluate(document, HUB, "sts:TagSession", untagged).outcome == "deny"


def test_a_maybe_deny_makes_an_allow_unknown() -> None:
    document = policy(
        allow({"AWS": USER.arn}),
        {"Effect": "Deny", "Principal": "*", "Action": ASSUME,
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
    )  # fmt: skip
    decision = evaluate(document, USER, ASSUME, {})
    assert decision.outcome == "unknown"
    assert decision.unknown_keys == {"aws:sourceip"}
    assert decision.allowed_by == (0,)


# -- documents ----------------------------------------------------------------------------


def test_documents_as_json_text_and_url_encoded() -> None:
    document = policy(allow({"AWS": USER.arn}))
    text = json.dumps(document)
    assert outcome(text, USER) == "allow"
    assert outcome(quote(text), USER) == "allow"


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[1, 2]",
        {"Statement": "nope"},
        {"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": ASSUME}]},
        {"Statement": [{"Effect": "Allow", "Principal": ["*"], "Action": ASSUME}]},
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": ASSUME, "Condition": 3}]},
    ],
)
def test_malformed_documents_grant_nothing_and_say_why(document: Any) -> None:
    parsed = parse_policy(document)
    assert parsed.problems
    assert evaluate(parsed, USER, ASSUME, {}).outcome in ("deny", "unknown")


def test_parse_principal_kinds_and_keys() -> None:
    assert (
        parse_principal("111111111111").key == parse_principal("arn:aws:iam::111111111111:root").key
    )
    assert parse_principal("arn:aws:iam::1:root").kind == "unknown"
    assert parse_principal("AROAJQABLZS4A3QDU576Q").kind == "deleted"
    assert parse_principal("ec2.amazonaws.com", "Service").kind == "service"
    role = parse_principal("arn:aws:iam::222222222222:role/a/b/Hub")
    assert role.key == ("role", "aws", "222222222222", "hub")
    assert role.arn == "arn:aws:iam::222222222222:role/a/b/Hub"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
statement_parts = st.fixed_dictionaries(
    {},
    optional={
        "Effect": st.sampled_from(["Allow", "Deny", "x"]) | json_values,
        "Principal": st.sampled_from(["*", {"AWS": "*"}, {"AWS": ["111111111111"]}]) | json_values,
        "Action": st.sampled_from([ASSUME, "sts:*", ["sts:TagSession"]]) | json_values,
        "Condition": json_values,
        "NotPrincipal": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(statement_parts, max_size=4) | json_values, st.sampled_from([USER, HUB]))
def test_any_document_evaluates_without_raising(statements: Any, caller: Caller) -> None:
    document = {"Statement": statements}
    decision = evaluate(document, caller, ASSUME, RequestContext({"sts:externalid": "x"}))
    assert decision.outcome in ("allow", "deny", "unknown")

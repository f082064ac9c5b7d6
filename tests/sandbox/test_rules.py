"""The AssumeRole decision as a pure function: trust evaluation, tags, source identity."""

from __future__ import annotations

from typing import Any

import pytest

from rolechain.sandbox.responses import CHAINING_CAP, MAX_SESSION, AwsFault
from rolechain.sandbox.rules import (
    AssumeRoleRequest,
    Granted,
    decide_assume_role,
    trust_allows,
    trust_policy,
    validation_errors,
)
from rolechain.sandbox.state import Identity, RoleRecord

USER = Identity("user", "111111111111", "arn:aws:iam::111111111111:user/ops", "AIDA1")
SESSION = Identity(
    "session",
    "222222222222",
    "arn:aws:sts::222222222222:assumed-role/Hub/s",
    "AROA1:s",
    role_arn="arn:aws:iam::222222222222:role/sec/Hub",
)
ROLE = "arn:aws:iam::333333333333:role/Audit"


def request(**kwargs: Any) -> AssumeRoleRequest:
    kwargs.setdefault("role_arn", ROLE)
    kwargs.setdefault("session_name", "sess")
    if "duration" in kwargs:
        kwargs.setdefault("raw_duration", str(kwargs["duration"]))
    return AssumeRoleRequest(**kwargs)


def role(policy: dict[str, Any], max_session: int = 3600) -> RoleRecord:
    return RoleRecord(ROLE, policy, max_session)


def test_role_arn_in_trust_matches_its_sessions_by_path() -> None:
    policy = trust_policy(["arn:aws:iam::222222222222:role/sec/Hub"])
    assert isinstance(decide_assume_role(SESSION, request(), role(policy)), Granted)
    assert isinstance(decide_assume_role(USER, request(), role(policy)), AwsFault)


@pytest.mark.parametrize(
    ("principal", "allowed"),
    [
        ("arn:aws:iam::111111111111:root", True),
        ("111111111111", True),
        ("*", True),
        ("arn:aws:iam::999999999999:root", False),
        ("arn:aws:iam::111111111111:user/other", False),
    ],
)
def test_account_roots_and_wildcards(principal: str, allowed: bool) -> None:
    policy = trust_policy([principal])
    assert trust_allows(policy, USER, "sts:AssumeRole", {}) is allowed


def test_deny_statements_win() -> None:
    policy = trust_policy(["111111111111"])
    policy["Statement"].append(
        {"Effect": "Deny", "Principal": {"AWS": USER.arn}, "Action": "sts:*"}
    )
    assert not trust_allows(policy, USER, "sts:AssumeRole", {})


def test_external_id_condition_and_unknown_operators() -> None:
    policy = trust_policy([USER.arn], external_id="abc")
    assert trust_allows(policy, USER, "sts:AssumeRole", {"sts:externalid": "abc"})
    assert not trust_allows(policy, USER, "sts:AssumeRole", {"sts:externalid": None})
    policy["Statement"][0]["Condition"] = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    assert not trust_allows(policy, USER, "sts:AssumeRole", {})  # cannot evaluate: no match
    policy["Statement"][0]["Condition"] = {"StringLike": {"sts:ExternalId": "ab*"}}
    assert trust_allows(policy, USER, "sts:AssumeRole", {"sts:externalid": "abz"})


def test_chaining_cap_comes_before_max_session_duration() -> None:
    policy = trust_policy([SESSION.role_arn or ""])
    decision = decide_assume_role(SESSION, request(duration=7200), role(policy, 3600))
    assert decision == AwsFault("ValidationError", CHAINING_CAP, 400)
    user_policy = trust_policy([USER.arn])
    decision = decide_assume_role(USER, request(duration=7200), role(user_policy, 3600))
    assert decision == AwsFault("ValidationError", MAX_SESSION, 400)
    granted = decide_assume_role(USER, request(duration=7200), role(user_policy, 7200))
    assert isinstance(granted, Granted)
    assert granted.duration == 7200


def test_default_duration_is_one_hour() -> None:
    granted = decide_assume_role(USER, request(), role(trust_policy([USER.arn])))
    assert isinstance(granted, Granted)
    assert granted.duration == 3600


def test_transitive_tags_persist_and_cannot_be_overridden() -> None:
    policy = trust_policy([USER.arn, "222222222222"], tag_session=True)
    first = decide_assume_role(
        USER,
        request(tags=(("Team", "sec"), ("Env", "prod")), transitive_tag_keys=("team",)),
        role(policy),
    )
    assert isinstance(first, Granted)
    assert first.transitive_tags == (("Team", "sec"),)
    carrier = Identity(
        "session", "333333333333", "arn:aws:sts::333333333333:assumed-role/Audit/s", "x",
        role_arn=ROLE, transitive_tags=first.transitive_tags,
    )  # fmt: skip
    policy = trust_policy(["333333333333"], tag_session=True)
    clash = decide_assume_role(carrier, request(tags=(("TEAM", "x"),)), role(policy))
    assert isinstance(clash, AwsFault)
    assert clash.code == "InvalidParameterValue"
    ok = decide_assume_role(carrier, request(), role(policy))
    assert isinstance(ok, Granted)
    assert ok.transitive_tags == (("Team", "sec"),)


def test_transitive_keys_must_be_tags_of_the_request() -> None:
    policy = trust_policy([USER.arn], tag_session=True)
    decision = decide_assume_role(
        USER, request(tags=(("a", "b"),), transitive_tag_keys=("c",)), role(policy)
    )
    assert isinstance(decision, AwsFault)
    assert decision.code == "InvalidParameterValue"


def test_tag_key_and_value_limits() -> None:
    errors = validation_errors(request(tags=(("k" * 129, "v" * 257),)))
    assert errors == [
        f"Value '{'k' * 129}' at 'tags.1.member.key' failed to satisfy constraint: "
        "Member must have length less than or equal to 128",
        f"Value '{'v' * 257}' at 'tags.1.member.value' failed to satisfy constraint: "
        "Member must have length less than or equal to 256",
    ]


def test_missing_parameters_are_validation_errors() -> None:
    errors = validation_errors(AssumeRoleRequest(role_arn=None, session_name=None))
    assert errors == [
        "Value 'null' at 'roleArn' failed to satisfy constraint: Member must not be null",
        "Value 'null' at 'roleSessionName' failed to satisfy constraint: Member must not be null",
    ]


def test_query_parameters_parse_members_in_order() -> None:
    parsed = AssumeRoleRequest.from_params(
        {
            "RoleArn": ROLE,
            "RoleSessionName": "s",
            "DurationSeconds": "900",
            "Tags.member.2.Key": "b",
            "Tags.member.2.Value": "2",
            "Tags.member.1.Key": "a",
            "Tags.member.1.Value": "1",
            "TransitiveTagKeys.member.1": "a",
            "PolicyArns.member.1.arn": "arn:aws:iam::333333333333:policy/p",
        }
    )
    assert parsed.tags == (("a", "1"), ("b", "2"))
    assert parsed.transitive_tag_keys == ("a",)
    assert parsed.policy_arns == ("arn:aws:iam::333333333333:policy/p",)
    assert parsed.duration == 900


def test_source_identity_needs_the_trust_action() -> None:
    without = trust_policy([USER.arn])
    decision = decide_assume_role(USER, request(source_identity="alice"), role(without))
    assert decision == AwsFault(
        "AccessDenied",
        f"User: {USER.arn} is not authorized to perform: sts:SetSourceIdentity on resource: {ROLE}",
        403,
    )
    allowed = trust_policy([USER.arn], source_identity=True)
    granted = decide_assume_role(USER, request(source_identity="alice"), role(allowed))
    assert isinstance(granted, Granted)
    assert granted.source_identity == "alice"

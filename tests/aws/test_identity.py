from __future__ import annotations

import pytest

from rolechain.aws.identity import (
    CallerIdentity,
    arn_matches,
    as_session_chain,
    caller_identity,
    check_principal,
)
from rolechain.aws.session import AwsSessions, static_credentials
from rolechain.errors import CredentialsError, PlanError
from rolechain.model.loader import loads
from rolechain.planner import plan as make_plan

from .fakes import DEFAULT_ACCOUNT, FAKE_KEY, FAKE_SECRET, hub_plan

CHAIN = """
principals:
  ci: {{kind: user, account: "123456789012"}}
roles:
  hub:
    arn: arn:aws:iam::111111111111:role/hub
    trusts: [ci]
    max_session_duration: 2h
    {hub_duration}
role_sets:
  audit:
    role_name: audit
    accounts: ["222222222222", "333333333333"]
    trusts: [hub]
jobs:
  inventory:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
"""

USER = CallerIdentity(DEFAULT_ACCOUNT, "arn:aws:iam::123456789012:user/ci", "AIDA")
SESSION = CallerIdentity(
    DEFAULT_ACCOUNT, "arn:aws:sts::123456789012:assumed-role/ci/s", "AROA:s", has_token=True
)


def test_caller_identity_against_moto(aws) -> None:  # type: ignore[no-untyped-def]
    found = caller_identity(AwsSessions(), static_credentials(FAKE_KEY, FAKE_SECRET))
    assert found.account == DEFAULT_ACCOUNT
    assert not found.is_session
    assert not found.is_root


def test_assumed_role_credentials_are_a_session(aws) -> None:  # type: ignore[no-untyped-def]
    sessions = AwsSessions()
    sts = sessions.client("sts", "us-east-1", static_credentials(FAKE_KEY, FAKE_SECRET))
    c = sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/ci", RoleSessionName="ci-run")[
        "Credentials"
    ]
    creds = static_credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    found = caller_identity(sessions, creds)
    assert found.is_session
    assert found.arn.endswith(":assumed-role/ci/ci-run")


def test_root_is_refused() -> None:
    root = CallerIdentity(DEFAULT_ACCOUNT, "arn:aws:iam::123456789012:root", "123456789012")
    with pytest.raises(CredentialsError, match="root user"):
        check_principal(hub_plan(["222222222222"]), root)


def test_declared_arn_must_match() -> None:
    import dataclasses

    plan = dataclasses.replace(
        hub_plan(["222222222222"]), principal_arn="arn:aws:iam::123456789012:user/deployer"
    )
    with pytest.raises(CredentialsError, match="declared as"):
        check_principal(plan, USER)
    assert arn_matches("arn:aws:iam::123456789012:role/ci", SESSION.arn)
    assert arn_matches("arn:aws:iam::123456789012:role/path/ci", SESSION.arn)
    assert arn_matches("arn:aws:iam::123456789012:root", USER.arn)
    assert not arn_matches("arn:aws:iam::999999999999:root", USER.arn)


def test_user_keys_keep_the_plan() -> None:
    chain = loads(CHAIN.format(hub_duration=""), file="c.yaml")
    plan = make_plan(chain, "inventory", run_id="r1")
    assert check_principal(plan, USER, chain=chain) is plan
    assert plan.hop("ci>hub").duration_seconds == 7200


def test_session_credentials_replan_with_chained_first_hop() -> None:
    chain = loads(CHAIN.format(hub_duration=""), file="c.yaml")
    plan = make_plan(chain, "inventory", run_id="r1")
    new = check_principal(plan, SESSION, chain=chain)
    assert new is not plan
    assert new.principal_kind == "session"
    assert new.run_id == "r1"
    hub = next(h for h in new.hops if h.parent is None)
    assert hub.chained
    assert hub.duration_seconds == 3600
    [note] = [n for n in new.notes if n.kind == "principal-is-session"]
    # What was detected, and what changed because of it.
    assert "declared kind: user" in note.message
    assert "detected as a session (arn:aws:sts::123456789012:assumed-role/ci/s)" in note.message
    assert "ci -> hub now chained, 2h -> 1h" in note.message


def test_user_keys_with_a_token_are_a_session_too() -> None:
    chain = loads(CHAIN.format(hub_duration=""), file="c.yaml")
    plan = make_plan(chain, "inventory", run_id="r1")
    tokened = CallerIdentity(DEFAULT_ACCOUNT, USER.arn, "AIDA", has_token=True)
    [note] = [n for n in check_principal(plan, tokened, chain=chain).notes if "user" in n.message]
    assert f"({USER.arn}, with a session token)" in note.message


def test_session_credentials_fail_clearly_when_the_plan_no_longer_holds() -> None:
    chain = loads(CHAIN.format(hub_duration="duration: 2h"), file="c.yaml")
    plan = make_plan(chain, "inventory", run_id="r1")
    with pytest.raises(PlanError) as info:
        check_principal(plan, SESSION, chain=chain)
    assert info.value.exit_code == 2
    text = str(info.value)
    assert "detected as a session (arn:aws:sts::123456789012:assumed-role/ci/s)" in text
    # The file already says kind: user: the fix is the credentials, not the declaration.
    assert "(principal kind: user)" not in text
    assert "IAM user's own access keys" in text


def test_session_credentials_without_chain_explain() -> None:
    with pytest.raises(CredentialsError, match="kind: session"):
        check_principal(hub_plan(["222222222222"]), SESSION)


def test_as_session_chain_leaves_the_original() -> None:
    chain = loads(CHAIN.format(hub_duration=""), file="c.yaml")
    changed = as_session_chain(chain, "ci")
    assert changed.model.principals["ci"].kind == "session"
    assert chain.model.principals["ci"].kind == "user"
    assert changed.sources is chain.sources

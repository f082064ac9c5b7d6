"""The fake assumer refuses what STS refuses, or a broken hop tree would stay green."""

from __future__ import annotations

import dataclasses

import pytest

from rolechain.aws.session import static_credentials
from rolechain.errors import AccessDeniedError, AwsValidationError, InvalidCredentialsError

from .fakes import (
    FAKE_KEY,
    PRINCIPAL,
    FakeAssumer,
    FakeClock,
    RoleRules,
    acct,
    fake_for,
    hub_plan,
    trust_of,
)

ROOT = static_credentials(FAKE_KEY, "secret")


def test_trust_follows_the_plan() -> None:
    plan = hub_plan([acct(1)])
    hub, leaf = plan.hops
    rules = trust_of(plan)
    assert rules[hub.role_arn] == RoleRules(frozenset({PRINCIPAL}))
    assert rules[leaf.role_arn].trusts == frozenset({hub.role_arn})


def test_only_the_trusted_caller_may_assume() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    hub, leaf = plan.hops
    fake = fake_for(plan, clock)
    with pytest.raises(AccessDeniedError, match="not authorized"):
        fake.assume(leaf, ROOT)  # the principal's keys for a hop its hub must make
    hub_creds = fake.assume(hub, ROOT)
    as_hub = static_credentials(hub_creds.access_key, hub_creds.secret_key, hub_creds.token)
    with pytest.raises(AccessDeniedError):
        fake.assume(hub, as_hub)  # the hub's role does not trust itself
    issued = fake.assume(leaf, as_hub)
    assert fake.session_role(
        static_credentials(issued.access_key, issued.secret_key, issued.token)
    ) == (leaf.role_arn)
    assert fake.refused["AccessDenied"] == 2


def test_unknown_keys_and_unknown_roles_are_refused() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    fake = fake_for(plan, clock)
    with pytest.raises(InvalidCredentialsError):
        fake.assume(plan.hops[0], static_credentials("AKIANOBODYNOBODY", "x"))
    with pytest.raises(AccessDeniedError):
        FakeAssumer(clock, {}).assume(plan.hops[0], ROOT)


def test_chaining_cap_and_max_session_duration() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    hub, leaf = plan.hops
    long_hub = dataclasses.replace(hub, duration_seconds=7200)
    fake = fake_for(plan, clock)
    with pytest.raises(AwsValidationError, match="MaxSessionDuration"):
        fake.assume(long_hub, ROOT)
    fake = fake_for(plan, clock, max_session={hub.role_arn: 7200, leaf.role_arn: 7200})
    issued = fake.assume(long_hub, ROOT)  # user keys: not chained
    as_hub = static_credentials(issued.access_key, issued.secret_key, issued.token)
    with pytest.raises(AwsValidationError, match="1 hour session limit"):
        fake.assume(dataclasses.replace(leaf, duration_seconds=7200), as_hub)
    session_root = static_credentials(FAKE_KEY, "secret", "a-session-token")
    with pytest.raises(AwsValidationError, match="1 hour session limit"):
        fake.assume(long_hub, session_root)  # keys with a token are a session: chained


def test_external_id_must_match() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    hub = dataclasses.replace(plan.hops[0], external_id="expected-id")
    plan = dataclasses.replace(plan, hops=(hub, *plan.hops[1:]))
    fake = fake_for(plan, clock)
    with pytest.raises(AccessDeniedError):
        fake.assume(dataclasses.replace(hub, external_id=None), ROOT)
    with pytest.raises(AccessDeniedError):
        fake.assume(dataclasses.replace(hub, external_id="wrong-id"), ROOT)
    assert fake.assume(hub, ROOT).access_key.startswith("ASIAFAKE")

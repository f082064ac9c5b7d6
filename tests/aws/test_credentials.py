from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from rolechain.aws.credentials import HopCredentials, HopTree, refresh_windows
from rolechain.aws.session import static_credentials
from rolechain.errors import AccessDeniedError, CredentialsError, TransientAwsError

from .fakes import FakeAssumer, FakeClock, acct, chain_plan, hub_plan, make_hop

ROOT = static_credentials("AKIAROOTROOTROOT", "root-secret")


def tree_for(plan, assumer, clock, **kwargs) -> HopTree:  # type: ignore[no-untyped-def]
    return HopTree(plan, ROOT, assumer, clock=clock, **kwargs)


def test_refresh_windows_are_proportional() -> None:
    assert refresh_windows(900) == (225, 150)
    assert refresh_windows(3600) == (900, 600)
    assert refresh_windows(43200) == (900, 600)  # capped at botocore's windows


def test_fan_out_assumes_each_hop_once_under_concurrency() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(i) for i in range(1000)])
    assumer = FakeAssumer(clock)
    tree = tree_for(plan, assumer, clock)
    with ThreadPoolExecutor(32) as pool:
        creds = list(pool.map(tree.for_target, plan.targets))
    assert sum(assumer.calls.values()) == 1001 == plan.assume_calls
    assert assumer.calls["ci>hub"] == 1
    assert max(assumer.calls.values()) == 1
    assert tree.assumed == 1001
    assert len({c.get_frozen_credentials().access_key for c in creds}) == 1000
    # asking again costs nothing
    tree.for_target(plan.targets[0])
    assert sum(assumer.calls.values()) == 1001


def test_failed_hub_fails_once_for_every_target_below() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(i) for i in range(20)])
    assumer = FakeAssumer(clock, deny={"ci>hub"})
    tree = tree_for(plan, assumer, clock)
    for target in plan.targets:
        with pytest.raises(AccessDeniedError) as info:
            tree.for_target(target)
        assert info.value.context.hop == "ci -> hub"
    assert dict(assumer.calls) == {"ci>hub": 1}
    assert tree.failed("ci>hub") is not None


def test_transient_failure_after_retries_is_kept_too() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1), acct(2)])
    boom = TransientAwsError("Rate exceeded", code="Throttling")
    assumer = FakeAssumer(clock, faults={"ci>hub>audit@" + acct(1): [boom]})
    tree = tree_for(plan, assumer, clock)
    with pytest.raises(TransientAwsError):
        tree.for_target(plan.targets[0])
    with pytest.raises(TransientAwsError):
        tree.for_target(plan.targets[0])
    assert tree.for_target(plan.targets[1]) is not None
    assert assumer.calls["ci>hub>audit@" + acct(1)] == 1


def test_one_failed_leaf_does_not_touch_siblings() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(i) for i in range(5)])
    bad = f"ci>hub>audit@{acct(3)}"
    assumer = FakeAssumer(clock, deny={bad})
    tree = tree_for(plan, assumer, clock)
    failures = []
    for target in plan.targets:
        try:
            tree.for_target(target)
        except AccessDeniedError as exc:
            failures.append((target.name, exc.context.hop))
    assert failures == [(f"audit@{acct(3)}", f"hub -> audit@{acct(3)}")]
    assert sum(assumer.calls.values()) == 6


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_hours_long_job_through_one_hour_sessions_never_sees_expired(depth: int) -> None:
    clock = FakeClock()
    plan = chain_plan(depth, duration=3600)
    assumer = FakeAssumer(clock)
    tree = tree_for(plan, assumer, clock)
    leaf = tree.for_target(plan.targets[0])
    for _ in range(6 * 60):  # six hours, one call a minute
        clock.advance(60)
        assert not assumer.expired(leaf)
    assert assumer.expired_callers == 0
    # A 1-hour session refreshes once fewer than 15 minutes are left: with a call a minute,
    # at 46 minutes of age, so at 46, 92, ..., 322 minutes: 7 times in 6 hours. Every hop
    # above refreshes on the same schedule (never more often than once per its own window).
    assert leaf.refreshes == 7
    assert all(count == 8 for count in assumer.calls.values())
    assert len(assumer.calls) == depth


def test_short_session_does_not_refresh_on_every_call() -> None:
    clock = FakeClock()
    plan = chain_plan(2, duration=900)
    assumer = FakeAssumer(clock)
    tree = tree_for(plan, assumer, clock)
    leaf = tree.for_target(plan.targets[0])
    assert leaf.advisory_window == 225
    for _ in range(600):  # ten minutes of calls, one a second
        clock.advance(1)
        leaf.get_frozen_credentials()
    assert sum(assumer.calls.values()) == 2
    clock.advance(100)  # now 200 s left: inside the advisory window
    leaf.get_frozen_credentials()
    assert leaf.refreshes == 1


def test_expired_token_refreshes_the_parent_then_retries() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    plan = dataclasses.replace(
        plan,
        hops=(
            dataclasses.replace(plan.hops[0], duration_seconds=7200),
            dataclasses.replace(plan.hops[1], duration_seconds=900),
        ),
    )
    assumer = FakeAssumer(clock)
    tree = tree_for(plan, assumer, clock)
    leaf = tree.for_target(plan.targets[0])
    hub = tree.credentials("ci>hub")
    # STS says the hub's session is gone (revoked, or the local clock is behind).
    assumer._expiry[hub.get_frozen_credentials().access_key] = clock.now
    clock.advance(800)  # the leaf must refresh; the hub looks valid locally
    frozen = leaf.get_frozen_credentials()
    assert not assumer.expired(leaf)
    assert frozen.access_key.startswith("ASIAFAKE")
    assert assumer.expired_callers == 1
    assert assumer.calls == {"ci>hub": 2, "ci>hub>audit@" + acct(1): 3}
    assert hub.refreshes == 1


def test_expired_principal_is_a_clear_error() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    assumer = FakeAssumer(clock)
    assumer._expiry[ROOT.access_key] = clock.now
    tree = tree_for(plan, assumer, clock)
    with pytest.raises(CredentialsError, match="principal's credentials expired"):
        tree.for_target(plan.targets[0])


def test_mfa_hop_needs_a_token_provider() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    hub = dataclasses.replace(plan.hops[0], mfa_serial="arn:aws:iam::111111111111:mfa/ci")
    plan = dataclasses.replace(plan, hops=(hub, *plan.hops[1:]))
    tree = tree_for(plan, FakeAssumer(clock), clock)
    with pytest.raises(CredentialsError, match="MFA") as info:
        tree.for_target(plan.targets[0])
    assert "unattended" in str(info.value)

    asked = []
    tree = tree_for(
        plan, FakeAssumer(clock), clock, token_provider=lambda hop: asked.append(hop.id) or "123456"
    )
    tree.for_target(plan.targets[0])
    assert asked == ["ci>hub"]


def test_credentials_never_show_secrets() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    tree = tree_for(plan, FakeAssumer(clock), clock)
    creds = tree.for_target(plan.targets[0])
    assert isinstance(creds, HopCredentials)
    frozen = creds.get_frozen_credentials()
    for text in (repr(creds), str(creds)):
        assert frozen.secret_key not in text
        assert frozen.token not in text
        assert frozen.access_key not in text


def test_adopt_reuses_assumed_hops() -> None:
    clock = FakeClock()
    assumer = FakeAssumer(clock)
    first = hub_plan([acct(1)])
    tree = tree_for(first, assumer, clock)
    tree.credentials("ci>hub")
    second = hub_plan([acct(1), acct(2)])
    bigger = tree_for(second, assumer, clock)
    bigger.adopt(tree)
    for target in second.targets:
        bigger.for_target(target)
    assert assumer.calls["ci>hub"] == 1
    assert sum(assumer.calls.values()) == 3


def test_make_hop_labels() -> None:
    hop = make_hop("ci>hub", None, "111111111111", "hub", depth=1)
    assert hop.label == "ci -> hub"

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rolechain.aws.calls import call_with_retries
from rolechain.aws.credentials import HopCredentials, HopTree, refresh_windows
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import static_credentials
from rolechain.errors import AccessDeniedError, AwsError, CredentialsError, TransientAwsError

from .fakes import (
    ROOT_KEY,
    FakeAssumer,
    FakeClock,
    acct,
    chain_plan,
    fake_for,
    hub_plan,
    make_hop,
    trust_of,
)

ROOT = static_credentials(ROOT_KEY, "root-secret")


def tree_for(plan, assumer, clock, **kwargs) -> HopTree:  # type: ignore[no-untyped-def]
    return HopTree(plan, ROOT, assumer, clock=clock, **kwargs)


def test_refresh_windows_are_proportional() -> None:
    assert refresh_windows(900) == (225, 150)
    assert refresh_windows(3600) == (900, 600)
    assert refresh_windows(43200) == (900, 600)  # capped at botocore's windows


def test_fan_out_assumes_each_hop_once_under_concurrency() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(i) for i in range(1000)])
    assumer = fake_for(plan, clock)
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
    assumer = fake_for(plan, clock, deny={"ci>hub"})
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
    assumer = fake_for(plan, clock, faults={"ci>hub>audit@" + acct(1): [boom]})
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
    assumer = fake_for(plan, clock, deny={bad})
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
    assumer = fake_for(plan, clock)
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
    assumer = fake_for(plan, clock)
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
    assumer = fake_for(plan, clock, max_session={plan.hops[0].role_arn: 7200})
    stats = CallStats()
    tree = tree_for(plan, assumer, clock, stats=stats)
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
    assert stats.expired_token_refreshes == 1  # the run's summary says so


def test_expired_principal_is_a_clear_error() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    assumer = fake_for(plan, clock)
    assumer._expiry[ROOT.access_key] = clock.now
    tree = tree_for(plan, assumer, clock)
    with pytest.raises(CredentialsError, match="principal's credentials expired"):
        tree.for_target(plan.targets[0])


def test_mfa_hop_needs_a_token_provider() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    hub = dataclasses.replace(plan.hops[0], mfa_serial="arn:aws:iam::111111111111:mfa/ci")
    plan = dataclasses.replace(plan, hops=(hub, *plan.hops[1:]))
    tree = tree_for(plan, fake_for(plan, clock), clock)
    with pytest.raises(CredentialsError, match="MFA") as info:
        tree.for_target(plan.targets[0])
    assert "unattended" in str(info.value)

    asked = []
    tree = tree_for(
        plan,
        fake_for(plan, clock),
        clock,
        token_provider=lambda hop: asked.append(hop.id) or "123456",
    )
    tree.for_target(plan.targets[0])
    assert asked == ["ci>hub"]


def test_credentials_never_show_secrets() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1)])
    tree = tree_for(plan, fake_for(plan, clock), clock)
    creds = tree.for_target(plan.targets[0])
    assert isinstance(creds, HopCredentials)
    frozen = creds.get_frozen_credentials()
    for text in (repr(creds), str(creds)):
        assert frozen.secret_key not in text
        assert frozen.token not in text
        assert frozen.access_key not in text


def test_adopt_reuses_assumed_hops() -> None:
    clock = FakeClock()
    first = hub_plan([acct(1)])
    second = hub_plan([acct(1), acct(2)])
    assumer = FakeAssumer(clock, trust_of(first, second))
    tree = tree_for(first, assumer, clock)
    tree.credentials("ci>hub")
    bigger = tree_for(second, assumer, clock)
    bigger.adopt(tree)
    for target in second.targets:
        bigger.for_target(target)
    assert assumer.calls["ci>hub"] == 1
    assert sum(assumer.calls.values()) == 3


def test_make_hop_labels() -> None:
    hop = make_hop("ci>hub", None, "111111111111", "hub", depth=1)
    assert hop.label == "ci -> hub"


class Retrying:
    """An assumer that retries like StsAssumer does (the fake alone never retries)."""

    def __init__(self, inner: FakeAssumer, attempts: int = 5) -> None:
        self.inner = inner
        self.policy = RetryPolicy(attempts=attempts, initial_wait=0.0, max_wait=0.0)
        self.stats = inner.stats

    def assume(self, hop, caller, token_code=None):  # type: ignore[no-untyped-def]
        return call_with_retries(
            lambda: self.inner.assume(hop, caller, token_code),
            self.policy,
            sleep=lambda _: None,
        )


def throttled(n: int) -> list[AwsError]:
    return [TransientAwsError("Rate exceeded", code="Throttling") for _ in range(n)]


def unavailable(n: int) -> list[AwsError]:
    return [TransientAwsError("Service unavailable", code="ServiceUnavailable") for _ in range(n)]


def one_hour_hop_that_retries() -> tuple[FakeClock, FakeAssumer, HopCredentials, str]:
    """A one-hour hop assumed by a fake through retries, as StsAssumer would: (clock, the
    fake, the hop's credentials, its id)."""
    clock = FakeClock()
    plan = chain_plan(1, duration=3600)
    fake = fake_for(plan, clock)
    tree = tree_for(plan, Retrying(fake), clock)
    return clock, fake, tree.for_target(plan.targets[0]), plan.hops[0].id


def test_advisory_refresh_makes_one_attempt_keeps_the_keys_and_cools_down() -> None:
    clock, fake, creds, hop = one_hour_hop_that_retries()
    first = creds.get_frozen_credentials().access_key
    fake.faults[hop] = throttled(20)
    clock.advance(3600 - 800)  # advisory window (900 s), not mandatory (600 s)
    for _ in range(50):  # every signed request asks for a refresh in this window
        assert creds.get_frozen_credentials().access_key == first
    assert fake.calls[hop] == 2  # the first assumption and ONE advisory attempt
    assert creds.advisory_failures == 1
    assert creds.cooldown == 30
    clock.advance(29)
    creds.get_frozen_credentials()
    assert fake.calls[hop] == 2  # still cooling down
    clock.advance(1)
    assert creds.get_frozen_credentials().access_key == first
    assert fake.calls[hop] == 3  # one more attempt after the cool-down
    # In the mandatory window the full policy runs (5 attempts for errors other than
    # throttling, which have a time budget of their own), and a failure is raised.
    fake.faults[hop] = unavailable(20)
    clock.advance(250)  # 520 s left
    with pytest.raises(TransientAwsError):
        creds.get_frozen_credentials()
    assert fake.calls[hop] == 3 + 5
    # Others asking within the cool-down get the same failure, without calling STS again.
    with pytest.raises(TransientAwsError) as again:
        creds.get_frozen_credentials()
    assert fake.calls[hop] == 8
    assert again.value.code == "ServiceUnavailable"
    fake.faults[hop] = []
    clock.advance(30)
    assert creds.get_frozen_credentials().access_key != first
    assert fake.calls[hop] == 9
    assert creds.refreshes == 1


def test_a_mandatory_refresh_rides_out_more_throttles_than_attempts() -> None:
    # Throttles do not use up the 5 attempts: the refresh that must happen keeps trying
    # within the throttle budget, while an advisory one gives up at the first throttle.
    clock, fake, creds, hop = one_hour_hop_that_retries()
    first = creds.get_frozen_credentials().access_key
    fake.faults[hop] = throttled(12)
    clock.advance(3600 - 800)
    assert creds.get_frozen_credentials().access_key == first
    assert fake.calls[hop] == 2  # advisory: one attempt, throttled, keys kept
    clock.advance(300)  # 500 s left: mandatory
    assert creds.get_frozen_credentials().access_key != first
    assert fake.calls[hop] == 2 + 11 + 1  # the other 11 throttles, then success
    assert creds.refreshes == 1


def test_threads_in_the_mandatory_window_wait_for_one_refresh() -> None:
    clock = FakeClock()
    plan = chain_plan(1, duration=3600)
    fake = fake_for(plan, clock)
    tree = tree_for(plan, fake, clock)
    creds = tree.for_target(plan.targets[0])
    first = creds.get_frozen_credentials().access_key
    clock.advance(3600 - 300)
    start = threading.Barrier(16)

    def use() -> str:
        start.wait()
        return creds.get_frozen_credentials().access_key

    with ThreadPoolExecutor(16) as pool:
        keys = set(pool.map(lambda _: use(), range(16)))
    assert len(keys) == 1
    assert keys != {first}
    assert fake.calls[plan.hops[0].id] == 2


def test_a_kept_error_is_raised_as_a_new_object_each_time() -> None:
    clock = FakeClock()
    plan = hub_plan([acct(1), acct(2)])
    hub = dataclasses.replace(plan.hops[0], mfa_serial="arn:aws:iam::111111111111:mfa/ci")
    plan = dataclasses.replace(plan, hops=(hub, *plan.hops[1:]))
    tree = tree_for(plan, fake_for(plan, clock), clock)
    raised = []
    for target in plan.targets:
        with pytest.raises(CredentialsError) as info:
            tree.for_target(target)
        raised.append(info.value)
    assert raised[0] is not raised[1]
    assert raised[0].message == raised[1].message
    assert raised[1].hint == raised[0].hint

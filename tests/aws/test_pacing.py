"""The adaptive pacer and the throttle budget, on a fake clock (nothing here sleeps for real,
except one test of real threads that asserts order, not time)."""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from rolechain.aws.calls import ThrottleBudget, call_paced
from rolechain.aws.pacer import Pacer, PacingTimeout
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.errors import AccessDeniedError, TransientAwsError

from .pacing_sim import FakeTime, Service, simulate

HUB = "111111111111"


def pacer_on(now: Callable[[], float], **kwargs: Any) -> Pacer:
    return Pacer(clock=now, sleep=_no_sleep, **kwargs)


def _no_sleep(seconds: float) -> None:
    raise AssertionError("simulated pacers never sleep")


def throttling() -> TransientAwsError:
    return TransientAwsError("Rate exceeded", code="Throttling", status=400)


# -- the control law ------------------------------------------------------------------------


def test_unpaced_until_the_first_throttle_then_one_cut_per_round_trip() -> None:
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    tickets = [pacer.acquire(HUB) for _ in range(16)]  # 16 calls in flight at once
    assert t.slept == []
    assert pacer.rate(HUB) is None
    t.now = 0.2
    for ticket in tickets:  # all 16 come back throttled
        pacer.record(ticket, throttled=True)
    (report,) = pacer.report()
    assert report.cuts == 1  # not 16: they were all sent before the cut
    assert report.throttled == 16
    assert report.calls == 16
    # The rate is 0.7 of what was measured (16 calls in the first 0.2 s).
    assert report.rate == pytest.approx(0.7 * 16 / 0.2)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("workers", [4, 16, 64])
def test_converges_near_a_quota_with_few_throttles(seed: int, workers: int) -> None:
    # 1,000 calls against a 50/s per-account quota (burst 50), 20 ms a call.
    result, pacer = simulate(
        pacer_on, calls=1000, workers=workers, quota=50, burst=50, latency=0.02, seed=seed
    )
    after = 5.0  # "after the first seconds"
    assert result.ok_rate(after) >= 0.85 * 50
    assert result.throttled_share(after) < 0.05
    (report,) = pacer.report()
    assert report.rate is not None
    assert report.rate < 2 * 50
    assert report.undone == 0
    assert report.background == 0.0


def test_converges_far_below_where_it_started() -> None:
    # 10/s against callers that could do 800/s: a jump to the successful rate, not 12 cuts.
    result, _ = simulate(pacer_on, calls=300, workers=16, quota=10, burst=10, seed=4)
    assert result.ok_rate(5.0) >= 0.85 * 10
    assert result.throttled_share(5.0) < 0.1


def test_recovers_after_a_burst_of_throttles() -> None:
    # Everything is throttled for the first second (another tool's burst), then the
    # account has a 200/s quota: the rate comes back.
    def service(now: Callable[[], float]) -> Service:
        class Burst(Service):
            def throttles(self) -> bool:
                return now() < 1.0 or super().throttles()

        return Burst(now, quota=200, burst=200)

    result, pacer = simulate(
        pacer_on, calls=4000, workers=16, latency=0.01, service_factory=service
    )
    (report,) = pacer.report()
    assert report.lowest_rate is not None
    assert report.lowest_rate < 10
    assert result.ok_rate(12.0) >= 0.85 * 200  # and grew back to the quota
    assert result.throttled_share(12.0) < 0.05


def test_throttling_that_does_not_follow_the_rate_does_not_collapse_it() -> None:
    # 30% of calls throttled whatever the rate: cutting cannot help. Plain loss-based
    # control would ratchet down to the floor (about 2/s here); the cuts are undone.
    result, pacer = simulate(pacer_on, calls=1000, workers=16, random_share=0.3, seed=5)
    (report,) = pacer.report()
    assert report.undone >= 1
    assert 0.15 <= report.background <= 0.45
    assert report.lowest_rate is not None
    assert report.lowest_rate >= 50
    assert result.end < 20  # 1,000 calls at 30% throttled: seconds, not minutes


def test_ceiling_is_never_exceeded() -> None:
    result, pacer = simulate(lambda now: pacer_on(now, ceiling=20.0), calls=200, workers=16)
    sends = sorted(o.sent for o in result.outcomes)
    per_second = Counter(int(s) for s in sends)
    assert max(per_second.values()) <= 21
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert min(gaps) >= 1 / 20 - 1e-9  # evenly spaced: no burst either
    assert pacer.rate(HUB) == 20.0


def test_ceiling_bounds_growth_after_throttles() -> None:
    result, pacer = simulate(
        lambda now: pacer_on(now, ceiling=40.0), calls=600, workers=16, quota=60, burst=5
    )
    assert pacer.rate(HUB) is not None
    assert pacer.rate(HUB) <= 40.0
    assert result.ok_rate(2.0) <= 40.5


def test_rate_never_below_the_floor() -> None:
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep, min_rate=2.0, verify_calls=1)
    for _ in range(200):
        ticket = pacer.acquire(HUB)
        t.now += 0.5
        pacer.record(ticket, throttled=True)
    assert pacer.rate(HUB) == 2.0
    assert all(w <= 1 / 2.0 + 1e-9 for w in t.slept)  # one caller never waits over a slot


def test_slots_are_first_come_first_served_and_waits_are_bounded() -> None:
    t = FakeTime()
    pacer = Pacer(ceiling=10.0, clock=t.clock, sleep=t.sleep)
    waits = [pacer.reserve(HUB)[1] for _ in range(8)]  # 8 threads arrive together
    assert waits == pytest.approx([i / 10 for i in range(8)])  # in order, one slot apart


def test_deadline_refuses_a_slot_instead_of_waiting_past_it() -> None:
    t = FakeTime()
    pacer = Pacer(ceiling=1.0, clock=t.clock, sleep=t.sleep)
    pacer.acquire(HUB)
    pacer.acquire(HUB)  # the next slot is 1 s away: waits
    with pytest.raises(PacingTimeout, match="before the deadline"):
        pacer.acquire(HUB, deadline=t.now + 0.5)
    assert pacer.report()[0].calls == 2  # no slot was taken


def test_waiters_are_respaced_when_the_rate_changes() -> None:
    t = FakeTime()
    pacer = Pacer(ceiling=100.0, clock=t.clock, sleep=t.sleep)
    sent = pacer.acquire(HUB)
    waiting = [pacer.reserve(HUB)[0] for _ in range(10)]  # queued at 100/s
    t.now = 0.05
    pacer.record(sent, throttled=True)  # a cut: 0.7 of the measured rate
    rate = pacer.rate(HUB)
    assert rate is not None
    assert rate < 100.0
    waits = [pacer.commit(place) for place in waiting]
    assert all(isinstance(w, float) for w in waits)  # nobody goes at the old spacing
    # In order, 1/rate apart from the last send (at 0.0), never before now (0.05).
    assert waits == pytest.approx([(i + 1) / rate - 0.05 for i in range(10)])


def test_keys_are_paced_apart() -> None:
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    ticket = pacer.acquire("111111111111")
    t.now = 0.1
    pacer.record(ticket, throttled=True)
    assert pacer.rate("111111111111") is not None
    assert pacer.rate("222222222222") is None  # another calling account: untouched
    keys = [r.key for r in pacer.report()]
    assert keys == ["111111111111", "222222222222"]


def test_real_threads_share_slots_fairly() -> None:
    pacer = Pacer(ceiling=400.0)
    threads, per_thread = 8, 20
    order: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(n: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            ticket = pacer.acquire(HUB)
            with lock:
                order.append(n)
            pacer.record(ticket, throttled=False)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    assert len(order) == threads * per_thread
    first_half = Counter(order[: len(order) // 2])
    # Slots go in arrival order: every thread is served throughout, none starves.
    assert all(first_half[n] >= per_thread // 4 for n in range(threads)), first_half


# -- settings -------------------------------------------------------------------------------


# -- the throttle budget --------------------------------------------------------------------


class Flaky:
    """A call failing with ``errors`` in turn, then answering ``"ok"``; time passes per try."""

    def __init__(self, t: FakeTime, errors: list[Exception], took: float = 0.02) -> None:
        self.t = t
        self.errors = list(errors)
        self.took = took
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        self.t.now += self.took
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def paced(t: FakeTime, func: Flaky, **kwargs: Any) -> str:
    kwargs.setdefault("pacer", Pacer(clock=t.clock, sleep=t.sleep))
    return call_paced(
        func,
        key=HUB,
        policy=RetryPolicy(attempts=3, initial_wait=0.5, max_wait=4),
        sleep=t.sleep,
        rng=random.Random(7),
        **kwargs,
    )


def test_throttles_do_not_use_up_attempts() -> None:
    t = FakeTime()
    stats = CallStats()
    func = Flaky(t, [throttling() for _ in range(12)])
    assert paced(t, func, stats=stats, assume=True) == "ok"
    assert func.calls == 13  # far more than the 3 attempts of the policy
    assert stats.throttled == stats.assume_throttled == 12
    assert stats.retries == 0  # throttles are counted apart from retries


def test_other_transient_errors_still_use_the_attempts() -> None:
    t = FakeTime()
    stats = CallStats()
    func = Flaky(t, [TransientAwsError("boom", code="InternalFailure") for _ in range(5)])
    with pytest.raises(TransientAwsError, match="boom"):
        paced(t, func, stats=stats)
    assert func.calls == 3
    assert stats.retries == 2
    assert stats.throttled == 0


def test_mixed_errors_count_apart() -> None:
    t = FakeTime()
    stats = CallStats()
    errors: list[Exception] = [throttling(), TransientAwsError("x", code="ServiceUnavailable")]
    func = Flaky(t, errors * 2 + [throttling()] * 5)
    assert paced(t, func, stats=stats) == "ok"
    assert stats.retries == 2
    assert stats.throttled == 7


def test_throttle_budget_is_time_not_attempts() -> None:
    t = FakeTime()
    func = Flaky(t, [throttling() for _ in range(10_000)])
    with pytest.raises(TransientAwsError) as info:
        paced(t, func, budget=ThrottleBudget(per_call=30.0, max_wait=2.0))
    assert info.value.code == "Throttling"
    assert 30.0 <= t.now <= 30.0 + 2.0 + 0.1  # it kept trying for the budget, then stopped
    assert func.calls > 15


def test_run_deadline_wins_over_the_throttle_budget() -> None:
    t = FakeTime()
    func = Flaky(t, [throttling() for _ in range(10_000)])
    with pytest.raises(TransientAwsError):
        paced(t, func, deadline=5.0)
    assert t.now <= 5.0 + 0.1


def test_a_slot_past_the_budget_reports_the_throttle() -> None:
    # The pacer has slowed the key so much that the next slot is after the budget: the
    # call fails with the throttling error that cost it, not a pacing error.
    t = FakeTime()
    pacer = Pacer(ceiling=0.05, min_rate=0.05, clock=t.clock, sleep=t.sleep)  # 20 s a slot
    func = Flaky(t, [throttling()])
    with pytest.raises(TransientAwsError) as info:
        paced(t, func, pacer=pacer, budget=ThrottleBudget(per_call=5.0))
    assert info.value.code == "Throttling"


def test_permanent_errors_are_not_retried_and_feed_the_pacer_as_answers() -> None:
    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    func = Flaky(t, [AccessDeniedError("no", code="AccessDenied")])
    with pytest.raises(AccessDeniedError):
        paced(t, func, pacer=pacer)
    assert func.calls == 1
    (report,) = pacer.report()
    assert report.calls == 1
    assert report.throttled == 0


def test_without_a_pacer_the_budget_still_applies() -> None:
    t = FakeTime()
    func = Flaky(t, [throttling() for _ in range(8)])
    assert paced(t, func, pacer=None, clock=t.clock) == "ok"
    assert func.calls == 9


def test_an_advisory_refresh_takes_one_slot_and_has_no_throttle_budget() -> None:
    # Issue 8's advisory refresh (attempts_at_most(1)) goes through the pacer like any
    # AssumeRole, and a throttle ends it: the hop keeps its keys and cools down.
    from rolechain.aws.calls import attempts_at_most

    t = FakeTime()
    pacer = Pacer(clock=t.clock, sleep=t.sleep)
    stats = CallStats()
    func = Flaky(t, [throttling() for _ in range(5)])
    with attempts_at_most(1), pytest.raises(TransientAwsError, match="Rate exceeded"):
        paced(t, func, pacer=pacer, stats=stats, assume=True)
    assert func.calls == 1
    (report,) = pacer.report()
    assert (report.calls, report.throttled) == (1, 1)
    assert stats.assume_throttled == 1
    assert paced(t, func, pacer=pacer) == "ok"  # outside it: the full throttle budget
    assert func.calls == 6

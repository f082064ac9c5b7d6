from __future__ import annotations

import pytest

from rolechain.aws.calls import attempts_at_most, call_with_retries
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.errors import AccessDeniedError, ExpiredTokenError, TransientAwsError


def flaky(errors: list[Exception]):  # type: ignore[no-untyped-def]
    calls = []

    def func() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return func, calls


def test_transient_errors_are_retried_with_backoff() -> None:
    slept: list[float] = []
    stats = CallStats()
    func, calls = flaky([TransientAwsError("busy", code="ServiceUnavailable")] * 3)
    policy = RetryPolicy(attempts=5, max_wait=2.0, initial_wait=0.5)
    assert call_with_retries(func, policy, stats=stats, sleep=slept.append) == "ok"
    assert len(calls) == 4
    assert stats.retries == 3
    assert stats.assume_retries == 0
    assert stats.throttled == 0
    assert len(slept) == 3
    assert all(0 <= s <= 2.0 for s in slept)  # full jitter, capped at max_wait


def test_gives_up_after_attempts() -> None:
    func, calls = flaky([TransientAwsError("x", code="InternalFailure")] * 10)
    with pytest.raises(TransientAwsError):
        call_with_retries(func, RetryPolicy(attempts=3), sleep=lambda s: None)
    assert len(calls) == 3


def test_throttles_have_a_budget_of_their_own() -> None:
    # GetCallerIdentity, Organizations and IAM calls ride out throttling like AssumeRole:
    # 8 throttles do not use up 3 attempts (the budget is 2 minutes of trying).
    stats = CallStats()
    func, calls = flaky([TransientAwsError("slow down", code="Throttling")] * 8)
    assert call_with_retries(func, RetryPolicy(attempts=3), stats=stats, sleep=lambda s: None)
    assert len(calls) == 9
    assert stats.throttled == 8
    assert stats.retries == 0


def test_a_capped_call_has_no_throttle_budget() -> None:
    # Inside attempts_at_most(1) (an advisory refresh), one throttle ends the call.
    func, calls = flaky([TransientAwsError("slow down", code="Throttling")] * 8)
    with attempts_at_most(1), pytest.raises(TransientAwsError):
        call_with_retries(func, RetryPolicy(attempts=5), sleep=lambda s: None)
    assert len(calls) == 1


@pytest.mark.parametrize(
    "error",
    [AccessDeniedError("no", code="AccessDenied"), ExpiredTokenError("old", code="ExpiredToken")],
)
def test_permanent_and_expired_are_not_retried_here(error: Exception) -> None:
    func, calls = flaky([error])
    with pytest.raises(type(error)):
        call_with_retries(func, RetryPolicy(attempts=5), sleep=lambda s: None)
    assert len(calls) == 1

"""Calling AWS: pacing, retries and the throttle budget of one call.

:func:`call_paced` is the call site: it acquires a slot from a pacer
(:mod:`rolechain.aws.pacer`), makes the call, reports the outcome, and retries throttles
within a :class:`ThrottleBudget` (time, not attempts: ``per_call`` seconds, and never past
the run's deadline), separately from the generic attempt count of
:class:`~rolechain.aws.retry.RetryPolicy` that other transient errors use. The retries are
tenacity's loop with a stop and a wait strategy of rolechain's that share one
:class:`CallLedger` (what the call has been through). :func:`call_with_retries` is the
same loop without a pacer.

Only :class:`~rolechain.errors.TransientAwsError` is retried (throttling, 5xx, timeouts,
connection errors), with exponential backoff and full jitter. Permanent errors fail at
once and ExpiredToken is handled by the hop tree (refresh the parent, then retry).

:func:`attempts_at_most` caps the attempts of every retried call made inside it on this
thread (a context variable): an advisory credential refresh makes one attempt, whatever
the policy says, and a refresh that must happen sets the cap back to the full policy.
Inside it a paced call has no throttle budget: a throttle ends it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from rolechain.aws.errors import is_throttle
from rolechain.aws.pacer import Pacing, PacingTimeout, Ticket
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.errors import RolechainError, TransientAwsError

T = TypeVar("T")

_JITTER = random.Random()  # noqa: S311 - jitter, not crypto; seeding one per call costs 0.1 ms

_ATTEMPT_CAP: ContextVar[int | None] = ContextVar("rolechain_attempt_cap", default=None)


@contextmanager
def attempts_at_most(attempts: int | None) -> Iterator[None]:
    """Retried calls inside make at most ``attempts`` attempts (None: the full policy)."""
    token = _ATTEMPT_CAP.set(attempts)
    try:
        yield
    finally:
        _ATTEMPT_CAP.reset(token)


def attempt_cap() -> int | None:
    """The cap :func:`attempts_at_most` set on this thread (None: the full policy)."""
    return _ATTEMPT_CAP.get()


OPTIONAL_CALL_WAIT = 0.05
"""Seconds a capped call (an advisory refresh) may wait for a pacer slot: a slot that is
free now, not a place in the queue."""


@dataclass(frozen=True)
class ThrottleBudget:
    """How long one call may go on being throttled, apart from the generic attempt count.

    A throttled call is tried again (through the pacer, which has slowed the whole key
    down) for up to ``per_call`` seconds after its first throttle, never past the run's
    deadline, with a short jittered wait (``initial_wait`` doubling up to ``max_wait``)
    on top of the pacing. Throttles do not use up :attr:`RetryPolicy.attempts`: with 30%
    of calls throttled at random, 5 attempts lose a call with probability 0.3**5 (one hop
    in 400), while 2 minutes of tries at the paced rate lose none in practice.
    """

    per_call: float = 120.0
    initial_wait: float = 0.05
    max_wait: float = 5.0


@dataclass
class CallLedger:
    """What one paced call has been through: shared by its stop and wait strategies."""

    budget: ThrottleBudget
    policy: RetryPolicy
    deadline: float | None
    clock: Callable[[], float]
    other_failures: int = 0
    throttles: int = 0
    first_throttle: float | None = None
    last_throttle: RolechainError | None = None

    def slot_deadline(self) -> float | None:
        """The latest a slot may be for this call's next attempt."""
        ends = [d for d in (self.deadline, self._budget_end()) if d is not None]
        return min(ends) if ends else None

    def _budget_end(self) -> float | None:
        if self.first_throttle is None:
            return None
        return self.first_throttle + self.budget.per_call


class stop_after_budget(stop_base):
    """Tenacity stop: throttles by time (:class:`ThrottleBudget`), other transient errors by
    :attr:`RetryPolicy.attempts`; nothing past the deadline."""

    def __init__(self, ledger: CallLedger) -> None:
        self.ledger = ledger

    def __call__(self, retry_state: RetryCallState) -> bool:
        ledger = self.ledger
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        end = ledger.slot_deadline()
        if end is not None and ledger.clock() >= end:
            return True
        if is_throttle(exc):
            return False
        ledger.other_failures += 1
        return ledger.other_failures >= max(1, ledger.policy.attempts)


class wait_for_budget(wait_base):
    """Tenacity wait: full jitter, on the throttle scale after a throttle and on the retry
    policy's scale after other transient errors; never past the deadline."""

    def __init__(self, ledger: CallLedger, rng: random.Random | None = None) -> None:
        self.ledger = ledger
        self.rng = rng or _JITTER

    def __call__(self, retry_state: RetryCallState) -> float:
        ledger = self.ledger
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if is_throttle(exc):
            budget = ledger.budget
            cap = min(budget.max_wait, budget.initial_wait * 2 ** min(ledger.throttles - 1, 30))
        else:
            policy = ledger.policy
            exp = min(ledger.other_failures - 1, 30)
            cap = min(policy.max_wait, policy.initial_wait * 2**exp)
        wait = self.rng.uniform(0, max(cap, 0.0))
        end = ledger.slot_deadline()
        if end is not None:
            wait = max(0.0, min(wait, end - ledger.clock()))
        return wait


def call_paced(
    func: Callable[[], T],
    *,
    pacer: Pacing | None,
    key: Hashable,
    policy: RetryPolicy,
    budget: ThrottleBudget | None = None,
    deadline: float | None = None,
    stats: CallStats | None = None,
    assume: bool = False,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """``func()`` paced under ``key``; throttles retried within ``budget``, other transient
    errors within ``policy``; the last error is re-raised.

    ``deadline`` is the run's, in the pacer's clock (``time.monotonic`` by default).
    ``stats`` counts throttled attempts (``throttled``) apart from other retries
    (``retries``); with ``assume`` also the AssumeRole-specific counters. Without a pacer
    the throttle budget still applies (the key is just not slowed down). Inside
    :func:`attempts_at_most` the cap bounds every attempt, throttled
    or not, there is no throttle budget, and the call does not wait for a pacer slot: it
    raises :class:`PacingTimeout` when the key's next slot is not free now.
    """
    budget = budget or ThrottleBudget()
    cap = attempt_cap()
    if cap is not None:
        policy = RetryPolicy(
            attempts=max(1, min(policy.attempts, cap)),
            max_wait=policy.max_wait,
            initial_wait=policy.initial_wait,
        )
        budget = ThrottleBudget(per_call=0.0, initial_wait=budget.initial_wait, max_wait=0.0)
    now = clock or getattr(pacer, "clock", None) or time.monotonic
    if cap is not None:
        # A capped call (an advisory refresh) is optional work: it takes a slot only if one
        # is free now, and never queues behind the calls the run needs.
        free_now = now() + OPTIONAL_CALL_WAIT
        deadline = free_now if deadline is None else min(deadline, free_now)
    ledger = CallLedger(budget=budget, policy=policy, deadline=deadline, clock=now)

    def attempt() -> T:
        ticket: Ticket | None = None
        if pacer is not None:
            try:
                ticket = pacer.acquire(key, deadline=ledger.slot_deadline())
            except PacingTimeout:
                if ledger.last_throttle is not None:
                    raise _fresh(ledger.last_throttle) from None
                raise
        try:
            result = func()
        except BaseException as exc:
            throttled = is_throttle(exc)
            if ticket is not None and pacer is not None:
                pacer.record(ticket, throttled=throttled)
            if throttled and isinstance(exc, RolechainError):
                ledger.throttles += 1
                ledger.last_throttle = exc
                if ledger.first_throttle is None:
                    ledger.first_throttle = now()
                if stats is not None:
                    stats.add_throttle(assume=assume)
            raise
        if ticket is not None and pacer is not None:
            pacer.record(ticket, throttled=False)
        return result

    def count(state: RetryCallState) -> None:
        outcome = state.outcome
        if stats is not None and not is_throttle(outcome.exception() if outcome else None):
            stats.add_retry(assume=assume)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientAwsError),
        stop=stop_after_budget(ledger),
        wait=wait_for_budget(ledger, rng),
        before_sleep=count,
        sleep=sleep,
        reraise=True,
    )
    return retrying(attempt)


def _fresh(error: RolechainError) -> RolechainError:
    """A new instance of a kept error (one exception object is not raised twice)."""
    if isinstance(error, TransientAwsError):
        return error.with_context(error.context)
    return error


def call_with_retries(
    func: Callable[[], T],
    policy: RetryPolicy,
    *,
    stats: CallStats | None = None,
    assume: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    deadline: float | None = None,
) -> T:
    """``func()``, retried on transient errors; the last error is re-raised.

    Throttles are retried within the default throttle budget (time, not attempts) and
    other transient errors within ``policy.attempts``: the loop of :func:`call_paced`,
    without a pacer. ``deadline``: the run's, on ``time.monotonic``'s clock.
    """
    return call_paced(
        func,
        pacer=None,
        key=None,
        policy=policy,
        deadline=deadline,
        stats=stats,
        assume=assume,
        sleep=sleep,
    )

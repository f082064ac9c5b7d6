"""Retries of transient AWS errors: how many, how long, and what they cost.

Only :class:`~rolechain.errors.TransientAwsError` is retried (throttling, 5xx, timeouts,
connection errors), with exponential backoff and full jitter (tenacity, in
:func:`rolechain.aws.pacing.call_paced`); throttles are retried within a time budget
instead of :attr:`RetryPolicy.attempts`. Permanent errors fail at once and ExpiredToken is
handled by the hop tree (refresh the parent, then retry). botocore's own retries are off on
rolechain's clients (:mod:`rolechain.aws.session`) so the two never stack.

:func:`attempts_at_most` caps the attempts of every retried call made inside it on this
thread (a context variable): an advisory credential refresh makes one attempt, whatever
the policy says, and a refresh that must happen sets the cap back to the full policy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (the chain file's ``retry`` settings)."""

    attempts: int = 5
    max_wait: float = 20.0
    initial_wait: float = 0.5

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> RetryPolicy:
        """From a plan's ``settings``: ``retry_attempts``, ``retry_max_wait``,
        ``retry_initial_wait`` (or a ``retry`` mapping with the unprefixed keys)."""
        settings = settings or {}
        nested = settings.get("retry")
        values: dict[str, Any] = dict(nested) if isinstance(nested, Mapping) else {}
        for key in ("attempts", "max_wait", "initial_wait"):
            if f"retry_{key}" in settings:
                values[key] = settings[f"retry_{key}"]
        defaults = cls()
        return cls(
            attempts=int(values.get("attempts", defaults.attempts)),
            max_wait=float(values.get("max_wait", defaults.max_wait)),
            initial_wait=float(values.get("initial_wait", defaults.initial_wait)),
        )


class CallStats:
    """Thread-safe counters of AssumeRole calls, retries and throttles for a run's summary.

    ``retries`` counts retries after transient errors other than throttling; ``throttled``
    counts attempts answered with a throttling error (see :mod:`rolechain.aws.pacing`);
    ``expired_token_refreshes`` counts ``ExpiredToken`` answers recovered from by refreshing
    the caller's credentials and trying again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.assume_calls = 0
        self.retries = 0
        self.assume_retries = 0
        self.throttled = 0
        self.assume_throttled = 0
        self.expired_token_refreshes = 0

    def add_assume_call(self) -> None:
        with self._lock:
            self.assume_calls += 1

    def add_retry(self, *, assume: bool = False) -> None:
        with self._lock:
            self.retries += 1
            if assume:
                self.assume_retries += 1

    def add_throttle(self, *, assume: bool = False) -> None:
        with self._lock:
            self.throttled += 1
            if assume:
                self.assume_throttled += 1

    def add_expired_token_refresh(self) -> None:
        with self._lock:
            self.expired_token_refreshes += 1

    def counts(self) -> dict[str, int]:
        """Every counter by name (a distributed run adds up its workers')."""
        with self._lock:
            return {
                name: value
                for name, value in vars(self).items()
                if not name.startswith("_") and isinstance(value, int)
            }


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
    other transient errors within ``policy.attempts``: the same loop as
    :func:`rolechain.aws.pacing.call_paced`, without a pacer. ``deadline``: the run's, on
    ``time.monotonic``'s clock.
    """
    from rolechain.aws.pacing import call_paced  # pacing builds on this module

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

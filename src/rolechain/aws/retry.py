"""Retries of transient AWS errors as plain data: how many, how long (:class:`RetryPolicy`),
and what they cost (:class:`CallStats`, the run's counters).

The retrying itself is :mod:`rolechain.aws.calls`; throttles are retried there within a
time budget instead of :attr:`RetryPolicy.attempts`. botocore's own retries are off on
rolechain's clients (:mod:`rolechain.aws.session`) so the two never stack.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (built from the plan's typed ``RunSettings``)."""

    attempts: int = 5
    max_wait: float = 20.0
    initial_wait: float = 0.5


class CallStats:
    """Thread-safe counters of AssumeRole calls, retries and throttles for a run's summary.

    ``retries`` counts retries after transient errors other than throttling; ``throttled``
    counts attempts answered with a throttling error (see :mod:`rolechain.aws.calls`);
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

"""A thread-safe token bucket shared by every AssumeRole call of a run.

STS counts AssumeRole calls against a per-account rate quota that cannot be raised, and AWS
publishes no number for it (../shared/aws-facts.md). rolechain shares hops so it makes few
calls, and paces the ones it makes with this bucket: ``rate`` tokens per second, up to
``burst`` saved up. ``assume_rate`` in the chain file's settings sets the rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class AssumeLimiter(Protocol):
    """Paces AssumeRole calls: :meth:`acquire` returns when the next call may go."""

    def acquire(self) -> None: ...


class RateLimiter:
    """Token bucket: :meth:`acquire` blocks until a token is free."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # total seconds callers spent waiting

    def _take(self) -> float:
        """Take a token if one is free (0.0), else the seconds until one will be."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0 - 1e-9:  # tolerate float rounding of refills
                self._tokens = max(0.0, self._tokens - 1.0)
                return 0.0
            return max((1.0 - self._tokens) / self.rate, 1e-6)

    def try_acquire(self) -> bool:
        """Take a token if one is free, without waiting (a quota that refuses, not delays)."""
        return self._take() <= 0.0

    def acquire(self) -> None:
        while True:
            wait = self._take()
            if wait <= 0.0:
                return
            with self._lock:
                self.waited += wait
            self._sleep(wait)

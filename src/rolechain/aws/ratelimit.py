"""A thread-safe token bucket (:class:`RateLimiter`), and the :class:`AssumeLimiter`
protocol of a plain limiter.

rolechain's runs pace AssumeRole with the adaptive pacer (:mod:`rolechain.aws.pacer`);
``assume_rate`` in the chain file's settings sets that pacer's ceiling, not a bucket. This
bucket is the sandbox's STS quota (``--sts-rate``: ``rate`` tokens per second, up to
``burst`` saved up, refusing calls beyond it), and any :class:`AssumeLimiter` a caller
passes as ``limiter=`` still paces a run, without learning (through
:func:`rolechain.aws.pacer.as_pacing`).
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

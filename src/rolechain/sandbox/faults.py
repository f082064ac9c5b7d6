"""Faults the sandbox can inject: throttling (random, or an STS rate quota per calling
account), latency (per request, and per new connection), denied accounts, dropped
connections."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, field

from rolechain.aws.ratelimit import RateLimiter


@dataclass(frozen=True)
class Faults:
    """What should go wrong in the sandbox, and how often.

    ``throttle``: the fraction (0..1) of STS calls answered ``Throttling`` "Rate exceeded";
    ``throttle_first``: the first N STS calls are throttled (a burst at start-up);
    ``sts_rate``: STS calls per second each calling account may make (a token bucket of
    ``sts_burst`` calls, default one second's worth), above which calls are answered
    ``Throttling`` "Rate exceeded", like STS's per-account quota; ``latency``: seconds
    added to every request; ``connect_latency``: seconds added to the first request of
    every new TCP connection (a TLS handshake); ``deny_accounts``: AssumeRole into these
    accounts is refused with ``AccessDenied``; ``drop``: the fraction (0..1) of requests
    whose connection is closed before a full response; ``seed``: makes the random faults
    repeatable.
    """

    throttle: float = 0.0
    throttle_first: int = 0
    sts_rate: float | None = None
    sts_burst: float | None = None
    latency: float = 0.0
    connect_latency: float = 0.0
    deny_accounts: frozenset[str] = field(default_factory=frozenset)
    drop: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("throttle", "drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, not {value}")
        for name in ("latency", "connect_latency"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 seconds, not {getattr(self, name)}")
        if self.sts_rate is not None and not self.sts_rate > 0:
            raise ValueError(f"sts_rate must be > 0 calls per second, not {self.sts_rate}")
        if self.sts_burst is not None and not self.sts_burst >= 1:
            raise ValueError(f"sts_burst must be >= 1 call, not {self.sts_burst}")
        if self.throttle_first < 0:
            raise ValueError(f"throttle_first must be >= 0, not {self.throttle_first}")
        object.__setattr__(self, "deny_accounts", frozenset(self.deny_accounts))

    @property
    def active(self) -> bool:
        return bool(
            self.throttle
            or self.throttle_first
            or self.sts_rate
            or self.latency
            or self.connect_latency
            or self.deny_accounts
            or self.drop
        )


def parse_rate(text: str) -> tuple[float, float | None]:
    """``"R"`` or ``"R:BURST"`` (calls per second, and calls saved up) as numbers."""
    rate_text, _, burst_text = text.partition(":")
    try:
        rate = float(rate_text)
        burst = float(burst_text) if burst_text else None
    except ValueError:
        raise ValueError(f"{text!r} is not RATE or RATE:BURST (for example 50 or 50:10)") from None
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"the rate in {text!r} must be a positive number of calls per second")
    if burst is not None and not 1 <= burst < math.inf:
        raise ValueError(f"the burst in {text!r} must be at least 1 call")
    return rate, burst


class StsQuota:
    """A token bucket per calling account, like STS's per-account request quota."""

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def exceeded(self, account: str) -> bool:
        """Take one call from ``account``'s bucket: True if there was none to take."""
        if self.rate is None:
            return False
        with self._lock:
            bucket = self._buckets.get(account)
            if bucket is None:
                bucket = self._buckets[account] = RateLimiter(self.rate, self.burst)
        return not bucket.try_acquire()


class FaultDice:
    """Thread-safe draws for one sandbox's faults."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._random = random.Random(faults.seed)  # noqa: S311 - fault injection, not crypto
        self._lock = threading.Lock()
        self._sts_calls = 0

    def throttle_sts(self) -> bool:
        with self._lock:
            self._sts_calls += 1
            if self._sts_calls <= self.faults.throttle_first:
                return True
            return self.faults.throttle > 0 and self._random.random() < self.faults.throttle

    def drop(self) -> bool:
        if not self.faults.drop:
            return False
        with self._lock:
            return self._random.random() < self.faults.drop

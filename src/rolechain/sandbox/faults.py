"""Faults the sandbox can inject: throttling, latency, denied accounts, dropped connections."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Faults:
    """What should go wrong in the sandbox, and how often.

    ``throttle``: the fraction (0..1) of STS calls answered ``Throttling`` "Rate exceeded";
    ``throttle_first``: the first N STS calls are throttled (a burst at start-up);
    ``latency``: seconds added to every request; ``deny_accounts``: AssumeRole into these
    accounts is refused with ``AccessDenied``; ``drop``: the fraction (0..1) of requests
    whose connection is closed before a full response; ``seed``: makes the random faults
    repeatable.
    """

    throttle: float = 0.0
    throttle_first: int = 0
    latency: float = 0.0
    deny_accounts: frozenset[str] = field(default_factory=frozenset)
    drop: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("throttle", "drop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, not {value}")
        if self.latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, not {self.latency}")
        if self.throttle_first < 0:
            raise ValueError(f"throttle_first must be >= 0, not {self.throttle_first}")
        object.__setattr__(self, "deny_accounts", frozenset(self.deny_accounts))

    @property
    def active(self) -> bool:
        return bool(
            self.throttle or self.throttle_first or self.latency or self.deny_accounts or self.drop
        )


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

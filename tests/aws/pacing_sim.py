"""A discrete-event simulation of paced callers against a throttling service, on a fake clock.

``workers`` callers each make calls one after another (a throttled call is made again,
like a retry) until ``calls`` calls have succeeded in all. Each call takes ``latency``
seconds (+- ``jitter``) and the service decides at send time whether it is throttled: a
token bucket of ``quota`` calls/s with ``burst`` (STS's per-account quota, as the sandbox's
``--sts-rate``), a fixed share throttled at random, or both. Nothing sleeps: the pacer's
clock is the simulation's, and its waits become events.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rolechain.aws.pacer import Pacer, Pending, Ticket
from rolechain.aws.ratelimit import RateLimiter


class FakeTime:
    """Monotonic seconds that tests move, and a sleep that moves them (never really waits)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


@dataclass
class Outcome:
    sent: float
    throttled: bool
    key: str


@dataclass
class SimResult:
    outcomes: list[Outcome] = field(default_factory=list)
    end: float = 0.0
    max_wait: float = 0.0

    def window(self, start: float, end: float | None = None) -> list[Outcome]:
        stop = self.end if end is None else end
        return [o for o in self.outcomes if start <= o.sent < stop]

    def ok_rate(self, start: float, end: float | None = None) -> float:
        stop = self.end if end is None else end
        ok = sum(1 for o in self.window(start, stop) if not o.throttled)
        return ok / max(stop - start, 1e-9)

    def throttled_share(self, start: float, end: float | None = None) -> float:
        seen = self.window(start, end)
        return sum(o.throttled for o in seen) / max(len(seen), 1)


class Service:
    """Decides, at send time, whether a call is throttled."""

    def __init__(
        self,
        now: Callable[[], float],
        *,
        quota: float | None = None,
        burst: float | None = None,
        random_share: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.bucket = (
            RateLimiter(quota, burst, clock=now, sleep=_never) if quota is not None else None
        )
        self.random_share = random_share
        self.rng = random.Random(seed)

    def throttles(self) -> bool:
        if self.random_share and self.rng.random() < self.random_share:
            return True
        return self.bucket is not None and not self.bucket.try_acquire()


def _never(seconds: float) -> None:
    raise AssertionError("the simulation never sleeps")


def simulate(
    pacer_factory: Callable[[Callable[[], float]], Pacer],
    *,
    calls: int,
    workers: int = 16,
    latency: float = 0.02,
    jitter: float = 0.005,
    quota: float | None = None,
    burst: float | None = None,
    random_share: float = 0.0,
    seed: int = 1,
    key: str = "111111111111",
    service_factory: Callable[[Callable[[], float]], Service] | None = None,
) -> tuple[SimResult, Pacer]:
    clock = {"now": 0.0}

    def now() -> float:
        return clock["now"]

    pacer = pacer_factory(now)
    service = (
        service_factory(now)
        if service_factory is not None
        else Service(now, quota=quota, burst=burst, random_share=random_share, seed=seed)
    )
    rng = random.Random(seed + 1)
    result = SimResult()
    events: list[tuple[float, int, str, int, Any, bool]] = []
    order = 0

    def push(at: float, kind: str, worker: int, ticket: Any, throttled: bool) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, kind, worker, ticket, throttled))

    for worker in range(workers):
        push(0.0, "want", worker, None, False)
    succeeded = 0
    started = 0  # calls begun (a throttled call is retried, not counted again)
    busy: dict[int, bool] = {}
    while events and succeeded < calls:
        at, _, kind, worker, ticket, throttled = heapq.heappop(events)
        clock["now"] = at
        if kind == "want":
            if not busy.get(worker):
                if started >= calls:
                    continue
                started += 1
                busy[worker] = True
            pending, wait = pacer.reserve(key)
            result.max_wait = max(result.max_wait, wait)
            push(at + min(wait, pacer.horizon), "send", worker, pending, False)
        elif kind == "send":
            assert isinstance(ticket, Pending)
            outcome = pacer.commit(ticket)
            if not isinstance(outcome, Ticket):  # not its time yet (the rate changed)
                push(at + min(outcome, pacer.horizon), "send", worker, ticket, False)
                continue
            ticket = outcome
            decided = service.throttles()
            result.outcomes.append(Outcome(at, decided, key))
            took = max(0.0005, latency + rng.uniform(-jitter, jitter))
            push(at + took, "done", worker, ticket, decided)
        else:
            assert isinstance(ticket, Ticket)
            pacer.record(ticket, throttled=throttled)
            if not throttled:
                succeeded += 1
                busy[worker] = False
            push(at, "want", worker, None, False)
    result.end = clock["now"]
    return result, pacer

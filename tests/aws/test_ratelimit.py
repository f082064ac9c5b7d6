from __future__ import annotations

import threading

from rolechain.aws.ratelimit import RateLimiter

from .pacing_sim import FakeTime as Time


def test_burst_then_paced_at_rate() -> None:
    t = Time()
    limiter = RateLimiter(5, burst=5, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        limiter.acquire()
    assert t.now == 0.0  # the burst is free
    for _ in range(10):
        limiter.acquire()
    assert abs(t.now - 2.0) < 1e-9  # 10 more at 5/s
    assert abs(limiter.waited - 2.0) < 1e-9


def test_tokens_refill_over_idle_time_up_to_burst() -> None:
    t = Time()
    limiter = RateLimiter(2, burst=2, clock=t.clock, sleep=t.sleep)
    limiter.acquire()
    limiter.acquire()
    t.now += 100.0  # idle: refills to the burst only
    limiter.acquire()
    limiter.acquire()
    assert t.now == 100.0
    limiter.acquire()
    assert abs(t.now - 100.5) < 1e-9


def test_shared_between_threads_never_exceeds_rate() -> None:
    t = Time()
    limiter = RateLimiter(10, burst=1, clock=t.clock, sleep=t.sleep)
    threads = [
        threading.Thread(target=lambda: [limiter.acquire() for _ in range(10)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 80 tokens at 10/s with a burst of 1: at least 7.9 simulated seconds passed.
    assert t.now >= 7.9 - 1e-9

"""A run's time: the clock its deadline, grace period and task timeouts are measured on.

The executor never reads ``time.monotonic`` for these itself: it asks the run's
:class:`RunClock` (``rolechain.run(..., run_clock=...)``), real time unless told
otherwise. Tests (and anyone rehearsing hours of run time) pass a :class:`ManualClock`,
which moves only when told, so "the deadline passes while this task is running" is an
event a test causes, not a race it waits for.

``real_seconds`` is the scheduler's word too (:mod:`rolechain.scheduler.clock`): how many
real seconds a wait of ``seconds`` on this clock takes. The scheduler's clocks tell
*calendar* time (a rehearsal compresses a day of schedule); this one tells how long a run
has been going, which a rehearsal leaves real, since the run's AWS calls take real time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class RunClock(Protocol):
    """Seconds on a monotonic scale, and how long a wait on it really takes."""

    def monotonic(self) -> float:
        """Now, in seconds (only differences mean anything)."""

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds to wait for ``seconds`` of this clock to pass (a clock
        that moves by itself some other way may answer less, and be asked again)."""


class SystemClock:
    """Real time: ``time.monotonic``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def real_seconds(self, seconds: float) -> float:
        return seconds


SYSTEM_CLOCK = SystemClock()

POLL = 0.02  # real seconds a wait on a manual clock lasts before looking at it again


class ManualClock:
    """Time that stands still until :meth:`advance` moves it (tests, rehearsals).

    Thread-safe: a task running on a worker thread may advance it ("this task took two
    hours"), and the run loop, which waits in short real slices (:data:`POLL`), sees it.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds

    def real_seconds(self, seconds: float) -> float:
        return min(seconds, POLL) if seconds > 0 else 0.0


__all__ = ["POLL", "SYSTEM_CLOCK", "ManualClock", "RunClock", "SystemClock"]

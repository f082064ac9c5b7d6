"""Clocks for the scheduler: the real one, a scaled one for sandbox rehearsals, and a
virtual one that jumps straight to the next event (tests, benchmarks)."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

# The real clock never sleeps longer than this at once, so a wall-clock jump (NTP, a
# suspended laptop) is noticed within a minute.
MAX_SLEEP = 60.0


class RealClock:
    """Wall-clock time, optionally running ``scale`` times faster from now on.

    At scale 1 ``now()`` is the system's UTC time; scaled, it starts at the real time and
    advances ``scale`` seconds per real (monotonic) second, so a day of schedule passes in
    ``86400 / scale`` seconds (``rolechain schedule --sandbox --time-scale N``).


    With ``origin`` (a real moment, past or future) the scaled time is
    ``origin + scale * (real now - origin)``, read from the system clock: replicas of one
    rehearsal on several processes (``--time-origin``) agree on the time, whenever each
    started.
    """

    def __init__(self, scale: float = 1.0, origin: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError("scale must be > 0")
        self.scale = scale
        self._origin = origin.astimezone(UTC) if origin is not None else datetime.now(UTC)
        self._shared = origin is not None
        self._mono = time.monotonic()

    def now(self) -> datetime:
        if self.scale == 1.0:
            return datetime.now(UTC)
        if self._shared:
            elapsed = (time.time() - self._origin.timestamp()) * self.scale
        else:
            elapsed = (time.monotonic() - self._mono) * self.scale
        return self._origin + timedelta(seconds=elapsed)

    def wait(self, until: datetime, wake: threading.Event) -> None:
        seconds = (until - self.now()).total_seconds() / self.scale
        if seconds > 0:
            wake.wait(min(seconds, MAX_SLEEP))

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.scale


class VirtualClock:
    """Simulated time: ``wait`` jumps to the next timer or ``until`` at once.

    Fakes schedule their own events with :meth:`call_at` (a fake run that ends after two
    simulated hours), so a week of scheduling runs on one thread, deterministically.
    """

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._timers: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    def call_at(self, when: datetime, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), action))

    def advance(self, until: datetime) -> None:
        """Move to ``until``, running every timer due on the way."""
        while self._timers and self._timers[0][0] <= until:
            when, _, action = heapq.heappop(self._timers)
            self._now = max(self._now, when)
            action()
        self._now = max(self._now, until)

    def wait(self, until: datetime, wake: threading.Event) -> None:
        if wake.is_set():
            return
        if self._timers and self._timers[0][0] < until:
            until = self._timers[0][0]
        self.advance(until)

    def real_seconds(self, seconds: float) -> float:
        return 0.0

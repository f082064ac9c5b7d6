"""Adaptive pacing of calls per calling account: the pacer's control law.

STS counts AssumeRole calls against a per-account rate quota that cannot be raised and whose
size AWS does not publish (docs/aws-rules.md); the quota is charged to the account
whose credentials call STS, so in a hub fan-out every call is charged to the hub's account.
A fixed client-side rate is therefore either too slow (a floor on every run) or too fast
(throttling). :class:`Pacer` learns the rate instead, per *key* (the calling account), the
way TCP congestion control and botocore's ``adaptive`` retry mode do:

* **Start fast.** A key is not paced at all until its first throttle (or is paced at the
  fixed ``ceiling`` when one is given).
* **Multiplicative decrease.** A throttle (``Throttling``, ``ThrottlingException``,
  ``RequestLimitExceeded``...) cuts the key's rate to ``beta`` (0.7) times the rate it was
  sending at, measured. Like TCP, at most once per round trip: throttles of calls that were
  sent *before* the last cut say nothing about the new rate and do not cut again. Without
  that, 16 threads whose calls were all in flight when the quota ran out would cut the rate
  16 times (0.7**16: a thousandth), which is what botocore's adaptive mode does.
* **CUBIC growth.** After a cut, the rate grows back along CUBIC's curve (RFC 8312, the
  constants botocore uses: C = 0.4, beta = 0.7): quickly back towards the rate that was
  throttled, flat near it, then probing above it. A fixed quota is exactly what CUBIC is
  built for: the concave approach keeps the rate near the last known limit for most of each
  cycle, so the time-average is about 0.9 of the quota with rare throttles. AIMD's linear
  sawtooth averages (1 + beta) / 2 = 0.85 of the limit and, with an additive step small
  enough not to overshoot a 50/s quota, takes tens of seconds to climb back from a burst.
  Growth is capped at twice the measured send rate (as botocore does), so a key that is
  limited by its callers, not by the pacer, does not accumulate an unearned rate.
* **Throttling that is not ours.** Loss-based control collapses when throttles do not
  depend on the sending rate (another tool using the account's quota at a fixed share, or
  the sandbox's ``--throttle`` fault): every cut is followed by more throttles and more cuts.
  So each cut is *verified* (the idea of TCP's undo of spurious cuts): once enough calls sent
  after the cut have returned (at least ``verify_calls`` over ``verify_seconds``), if the
  share throttled did not fall and the successful rate fell with the sending rate, the
  throttling did not come from our rate: the cut is undone and that share becomes the
  key's background level. Later throttles cut only when the recent share rises clearly above
  the background. Against a real quota the successful rate stays at the quota while the
  sending rate falls (or the throttled share drops to nothing), and cuts stand.
* **Never above the ceiling** (``assume_rate: N``), never below ``min_rate``.

Two refinements found on the simulation (``tests/aws/pacing_sim.py``): when most calls of
an epoch are throttled the limit is far below, so the cut goes straight to the rate that
succeeded (TCP Westwood's estimate) instead of 0.7 per round trip; and the rate does not
grow while a cut is on trial (as TCP does not in recovery), or it overshoots again at once.

Pacing is a queue per key: each :meth:`Pacer.acquire` takes the next place, whose slot is
``1 / rate`` after the previous one, and waits for it. Places are served in arrival order,
so no thread starves, and there is no burst after an idle time: callers are spread evenly,
which is what a token-bucket quota on the other side rewards. When the rate changes, the
places still waiting are spaced at the new rate (waiters look again at least every
``horizon`` seconds), so a cut holds back callers that were already queued.

What :mod:`rolechain.aws.calls` needs of a pacer is the :class:`Pacing` protocol
(``acquire(key, *, deadline) -> ticket`` and ``record(ticket, *, throttled)``), so a pacer
shared by several processes (a distributed engine's) can stand in for :class:`Pacer`; a
plain :class:`~rolechain.aws.ratelimit.AssumeLimiter` (``acquire()``) still works through
:func:`as_pacing`, pacing without learning.

Clock and sleep are injectable (tests run whole convergences on a fake clock).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rolechain.aws.ratelimit import AssumeLimiter
from rolechain.errors import RolechainError

BETA = 0.7  # multiplicative decrease (CUBIC's and botocore's)
CUBIC_C = 0.4  # CUBIC's scaling constant, in (calls/s) / s**3
MIN_RATE = 1.0  # calls per second: the slowest a key is ever paced
RATE_WINDOW = 1.0  # seconds over which the send rate is measured
HORIZON = 0.25  # longest a waiter sleeps before looking at its slot again
RECENT_CALLS = 32  # outcomes kept to judge the recent throttled share against background
VERIFY_CALLS = 24  # calls sent after a cut that must return before it is judged
VERIFY_SECONDS = 0.1  # ... over at least this long
VERIFY_MAX_SECONDS = 2.0  # ... and at most this long (the rate does not grow meanwhile)
MIN_EVIDENCE = 12  # successful calls on each side of a cut before it may be undone
MOSTLY_THROTTLED = 0.5  # a share of an epoch's calls throttled that says "far above the limit"
MOSTLY_THROTTLED_CALLS = 8  # ... once the epoch has this many calls
HOPELESS = 0.65  # a share throttled after a cut that ends its trial at once
HOPELESS_CALLS = 16  # ... over this many calls (30% random throttling: 1 chance in 200)


class PacingTimeout(RolechainError):
    """A paced call could not get a slot before its deadline."""


@runtime_checkable
class Pacing(Protocol):
    r"""What :func:`call_paced` needs of a pacer (:class:`Pacer` is the one rolechain builds).

    :meth:`acquire` waits for ``key``'s next slot (``key``: the calling account) and returns
    a ticket, or raises :class:`PacingTimeout`, without waiting, as soon as the slot is known
    to be later than ``deadline`` (seconds on ``time.monotonic``'s clock, or on the pacer's
    ``clock`` attribute when it has one). :meth:`record` is then called once per ticket with
    how the call went: throttled, or anything else. A pacer may also have ``report()``,
    returning :class:`LaneReport`\ s for the run's summary.
    """

    def acquire(self, key: Hashable, *, deadline: float | None = None) -> Any: ...

    def record(self, ticket: Any, *, throttled: bool) -> None: ...


class LimiterPacing:
    """:class:`Pacing` over a plain :class:`~rolechain.aws.ratelimit.AssumeLimiter`: every
    key shares the limiter's pace and nothing is learned from outcomes."""

    def __init__(self, limiter: AssumeLimiter) -> None:
        self.limiter = limiter

    def acquire(self, key: Hashable, *, deadline: float | None = None) -> None:
        self.limiter.acquire()

    def record(self, ticket: Any, *, throttled: bool) -> None:
        return None


def as_pacing(pacer: Pacing | AssumeLimiter) -> Pacing:
    """``pacer`` as :class:`Pacing`: itself, or a plain limiter wrapped in
    :class:`LimiterPacing`."""
    if isinstance(pacer, Pacing):
        return pacer
    return LimiterPacing(pacer)


@dataclass(frozen=True)
class Pending:
    """A place in a key's queue of callers, not yet sent. Its time follows the key's rate."""

    key: Hashable
    position: int
    since: float


@dataclass(frozen=True)
class Ticket:
    """A slot used: the key it was paced under, its place in the key's sequence, when."""

    key: Hashable
    seq: int
    at: float


@dataclass(frozen=True)
class LaneReport:
    """What the summary reports for one key (one calling account)."""

    key: Hashable
    calls: int  # slots granted (attempts sent)
    throttled: int  # attempts answered with a throttling error
    rate: float | None  # calls/s the key is paced at now; None: not paced (never throttled)
    lowest_rate: float | None  # the lowest rate it was paced at
    cuts: int  # multiplicative decreases that stood
    undone: int  # cuts undone because the throttling did not follow our rate
    background: float  # share of calls throttled whatever the rate (0 when none was seen)
    waited: float  # seconds callers spent waiting for slots

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": str(self.key),
            "calls": self.calls,
            "throttled": self.throttled,
            "rate": None if self.rate is None else round(self.rate, 2),
            "lowest_rate": None if self.lowest_rate is None else round(self.lowest_rate, 2),
            "cuts": self.cuts,
            "undone": self.undone,
            "background": round(self.background, 3),
            "waited": round(self.waited, 3),
        }


@dataclass
class _Epoch:
    """Outcomes of the calls sent since the last cut."""

    calls: int = 0
    throttled: int = 0
    first_at: float = math.inf
    last_at: float = -math.inf

    def add(self, at: float, throttled: bool) -> None:
        self.calls += 1
        self.throttled += throttled
        self.first_at = min(self.first_at, at)
        self.last_at = max(self.last_at, at)

    @property
    def ok(self) -> int:
        return self.calls - self.throttled

    @property
    def share(self) -> float:
        return self.throttled / self.calls if self.calls else 0.0

    @property
    def span(self) -> float:
        return max(self.last_at - self.first_at, 1e-3)

    @property
    def goodput(self) -> float:
        """Successful calls per second of sending time."""
        return self.ok / self.span

    @property
    def send_rate(self) -> float:
        return self.calls / self.span


@dataclass
class _Verify:
    """A cut on trial: the state an undo restores, and the epoch before the cut."""

    cut_at: float
    rate: float | None
    w_max: float
    k: float
    t_cut: float
    before: _Epoch


@dataclass
class _Lane:
    """The pacing state of one key. Guarded by ``lock``."""

    key: Hashable
    lock: threading.Lock = field(default_factory=threading.Lock)
    rate: float | None = None
    w_max: float = 0.0  # CUBIC: the rate of the last cut, where the curve flattens
    k: float = 0.0  # CUBIC: seconds from a cut until the curve is back at w_max
    t_cut: float = 0.0
    seq: int = 0
    issued: int = 0  # places handed out in the queue
    gone: int = 0  # places that were sent (or abandoned)
    anchor: int = 0  # the place whose slot is at anchor_at; later ones 1/rate apart
    anchor_at: float = 0.0
    epoch: int = 0  # first seq sent after the last cut
    current: _Epoch = field(default_factory=_Epoch)
    sends: deque[float] = field(default_factory=deque)
    first_send: float | None = None
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT_CALLS))
    verify: _Verify | None = None
    background: float = 0.0
    throttled: int = 0
    cuts: int = 0
    undone: int = 0
    waited: float = 0.0
    lowest: float | None = None


class Pacer:
    """Adaptive pacing per key (the calling account). Thread-safe.

    ``ceiling``: a fixed upper bound in calls per second (``assume_rate: N``); keys start
    paced at it. None (``assume_rate: auto``, the default): keys start unpaced.
    """

    def __init__(
        self,
        *,
        ceiling: float | None = None,
        min_rate: float = MIN_RATE,
        beta: float = BETA,
        cubic_c: float = CUBIC_C,
        verify_calls: int = VERIFY_CALLS,
        verify_seconds: float = VERIFY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if ceiling is not None and not ceiling > 0:
            raise ValueError("ceiling must be positive")
        if not 0 < beta < 1:
            raise ValueError("beta must be between 0 and 1")
        if not min_rate > 0:
            raise ValueError("min_rate must be positive")
        self.ceiling = ceiling
        self.min_rate = min(min_rate, ceiling) if ceiling is not None else min_rate
        self.beta = beta
        self.cubic_c = cubic_c
        self.verify_calls = verify_calls
        self.verify_seconds = verify_seconds
        self.clock = clock
        self._sleep = sleep
        self.horizon = HORIZON
        self._lanes: dict[Hashable, _Lane] = {}
        self._lock = threading.Lock()

    # -- public ----------------------------------------------------------------------------

    def acquire(self, key: Hashable, *, deadline: float | None = None) -> Ticket:
        """Wait for ``key``'s next slot and return its ticket.

        ``deadline`` (in the pacer's clock): raise :class:`PacingTimeout`, without taking a
        slot, as soon as the caller's slot is known to be later than that.
        """
        pending, wait = self.reserve(key, deadline=deadline)
        try:
            while True:
                if deadline is not None and self.clock() + wait > deadline:
                    raise self._timeout(key, wait)
                if wait > 0:
                    self._sleep(min(wait, self.horizon))
                outcome = self.commit(pending)
                if isinstance(outcome, Ticket):
                    return outcome
                wait = outcome
        except BaseException:  # a deadline, or an interrupt while waiting: free the place
            self.abandon(pending)
            raise

    def reserve(self, key: Hashable, *, deadline: float | None = None) -> tuple[Pending, float]:
        """Queue for ``key``'s next slot without waiting: (place, seconds until its slot).

        Then :meth:`commit` when the time comes (that is what :meth:`acquire` does). Slots
        go in queue order, ``1 / rate`` apart; when the rate changes, the places still
        waiting are spaced at the new rate, so waiters wake at most :attr:`horizon` seconds
        apart to look again.
        """
        lane = self._lane(key)
        with lane.lock:
            now = self.clock()
            position = lane.issued
            slot = self._slot(lane, position, now)
            if deadline is not None and slot > deadline:
                raise self._timeout(key, slot - now)
            lane.issued += 1
            return Pending(key, position, now), slot - now

    def commit(self, pending: Pending) -> Ticket | float:
        """Send now if the slot of ``pending`` has come: its ticket; else the seconds left."""
        lane = self._lane(pending.key)
        with lane.lock:
            now = self.clock()
            left = self._slot(lane, pending.position, now) - now
            if left > 1e-9:
                return left
            lane.gone += 1
            lane.seq += 1
            while lane.sends and lane.sends[0] < now - RATE_WINDOW:
                lane.sends.popleft()  # only the last RATE_WINDOW is ever measured
            lane.sends.append(now)
            if lane.first_send is None:
                lane.first_send = now
            lane.waited += now - pending.since
            return Ticket(pending.key, lane.seq, now)

    def abandon(self, pending: Pending) -> None:
        """Give up a place in the queue (its caller stopped waiting)."""
        lane = self._lane(pending.key)
        with lane.lock:
            lane.gone += 1
            self._respace(lane, self.clock())

    def _timeout(self, key: Hashable, wait: float) -> PacingTimeout:
        return PacingTimeout(
            f"no pacing slot for {key} before the deadline ({wait:.1f}s away)",
            hint="the calling account is throttled: allow more time (deadline, throttle "
            "budget) or run fewer jobs against it at once",
        )

    def record(self, ticket: Ticket, *, throttled: bool) -> None:
        """Report how the call of ``ticket`` went: throttled, or not (any other outcome)."""
        lane = self._lane(ticket.key)
        with lane.lock:
            now = self.clock()
            lane.recent.append(throttled)
            if ticket.seq >= lane.epoch:
                lane.current.add(ticket.at, throttled)
            verify = lane.verify
            if verify is not None and self._judgeable(lane.current, now - verify.cut_at):
                self._judge(lane, verify)
            if throttled:
                lane.throttled += 1
                if ticket.seq < lane.epoch or lane.verify is not None:
                    return  # sent before the last cut, or that cut is still on trial
                if lane.background and not self._above_background(lane):
                    return  # the usual share of throttling that does not follow our rate
                self._cut(lane, now)
            elif lane.rate is not None and lane.verify is None:
                self._grow(lane, now)  # (not while a cut is on trial, as TCP in recovery)

    def report(self) -> list[LaneReport]:
        """One :class:`LaneReport` per key seen, in the order keys were first seen."""
        with self._lock:
            lanes = list(self._lanes.values())
        reports = []
        for lane in lanes:
            with lane.lock:
                reports.append(
                    LaneReport(
                        key=lane.key,
                        calls=lane.seq,
                        throttled=lane.throttled,
                        rate=lane.rate,
                        lowest_rate=lane.lowest,
                        cuts=lane.cuts,
                        undone=lane.undone,
                        background=lane.background,
                        waited=lane.waited,
                    )
                )
        return reports

    def rate(self, key: Hashable) -> float | None:
        """The rate ``key`` is paced at now (None: not paced)."""
        lane = self._lane(key)
        with lane.lock:
            return lane.rate

    # -- the control law -------------------------------------------------------------------

    def _lane(self, key: Hashable) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            with self._lock:
                lane = self._lanes.get(key)
                if lane is None:
                    lane = _Lane(key, rate=self.ceiling, w_max=self.ceiling or 0.0)
                    lane.lowest = self.ceiling
                    self._lanes[key] = lane
        return lane

    def _send_rate(self, lane: _Lane, now: float) -> float:
        """Calls per second the key sent over the last RATE_WINDOW (or since it started)."""
        sends = lane.sends
        while sends and sends[0] < now - RATE_WINDOW:
            sends.popleft()
        start = lane.first_send if lane.first_send is not None else now
        span = min(RATE_WINDOW, max(now - start, 0.05))
        return len(sends) / span

    def _set_rate(self, lane: _Lane, rate: float, now: float) -> None:
        if self.ceiling is not None:
            rate = min(rate, self.ceiling)
        rate = max(rate, self.min_rate)
        lane.rate = rate
        lane.lowest = rate if lane.lowest is None else min(lane.lowest, rate)
        self._respace(lane, now)

    def _slot(self, lane: _Lane, position: int, now: float) -> float:
        """When the place ``position`` may send (never earlier than ``now`` for a new
        place: an idle key does not save up a burst)."""
        if lane.rate is None:
            return now
        slot = lane.anchor_at + (position - lane.anchor) / lane.rate
        if position >= lane.issued and slot < now:  # the queue is empty and behind
            lane.anchor, lane.anchor_at = position, now
            slot = now
        return slot

    def _respace(self, lane: _Lane, now: float) -> None:
        """Space the places still waiting at the current rate, from the last send."""
        if lane.rate is None:
            return
        last = lane.sends[-1] if lane.sends else now - 1.0 / lane.rate
        lane.anchor = lane.gone
        lane.anchor_at = max(now, last + 1.0 / lane.rate)

    def _cut(self, lane: _Lane, now: float) -> None:
        measured = self._send_rate(lane, now)
        base = measured if lane.rate is None else min(measured, lane.rate)
        epoch = lane.current
        if epoch.calls >= MOSTLY_THROTTLED_CALLS and epoch.share >= MOSTLY_THROTTLED:
            # Most calls throttled: the limit is far below. The successful rate is the
            # best estimate of it (TCP Westwood's idea); 0.7 per cut would take many cuts.
            base = min(base, epoch.goodput)
        base = max(base, self.min_rate)
        lane.verify = _Verify(
            cut_at=now,
            rate=lane.rate,
            w_max=lane.w_max,
            k=lane.k,
            t_cut=lane.t_cut,
            before=lane.current,
        )
        lane.w_max = base
        lane.k = (base * (1 - self.beta) / self.cubic_c) ** (1 / 3)
        lane.t_cut = now
        lane.epoch = lane.seq + 1
        lane.current = _Epoch()
        lane.cuts += 1
        self._set_rate(lane, base * self.beta, now)

    def _grow(self, lane: _Lane, now: float) -> None:
        target = self.cubic_c * (now - lane.t_cut - lane.k) ** 3 + lane.w_max
        target = min(target, 2.0 * self._send_rate(lane, now))
        if lane.rate is not None and target > lane.rate:
            self._set_rate(lane, target, now)

    def _above_background(self, lane: _Lane) -> bool:
        """Whether the recent throttled share is clearly above the background level."""
        n = len(lane.recent)
        share = sum(lane.recent) / n if n else 0.0
        bg = lane.background
        return share > bg + max(0.1, 2 * math.sqrt(bg * (1 - bg) / max(n, 1)))

    def _judgeable(self, after: _Epoch, elapsed: float) -> bool:
        """Whether enough calls sent after a cut have returned to judge it.

        Enough successes to compare rates, or so many calls that few succeeding says it
        all (far above a quota: the cut stands), or most calls since the cut throttled
        (still far above: the cut stands and the next throttle cuts again, to the rate
        that succeeded), or long enough.
        """
        if elapsed < self.verify_seconds:
            return False
        if elapsed >= VERIFY_MAX_SECONDS:
            return True  # slow calls, or a rate near the floor: judge with what there is
        if after.calls >= HOPELESS_CALLS and after.share >= HOPELESS:
            return True
        return after.calls >= 4 * self.verify_calls or (
            after.calls >= self.verify_calls and after.ok >= MIN_EVIDENCE
        )

    def _judge(self, lane: _Lane, verify: _Verify) -> None:
        """Undo the cut if the throttling did not follow the rate (see the module doc)."""
        lane.verify = None
        before, after = verify.before, lane.current
        if before.ok < MIN_EVIDENCE or after.ok < MIN_EVIDENCE or before.share < 0.1:
            return  # too little to go on: the cut stands
        # The difference of two throttled shares that a fixed share would make by chance.
        pooled = (before.throttled + after.throttled) / (before.calls + after.calls)
        noise = math.sqrt(pooled * (1 - pooled) * (1 / before.calls + 1 / after.calls))
        if after.share < before.share - 2 * noise:
            # The throttling followed the rate down: it was ours. Trust throttles more.
            lane.background = lane.background / 2 if lane.background >= 0.04 else 0.0
            return
        # Against a quota we are above, the successful rate stays at the quota while the
        # sending rate falls; throttling that is not ours takes the same share at any
        # rate, so the successful rate falls with the sending rate. (A share that rose
        # means a quota started to bind: the cut stands.)
        slowed = after.send_rate / before.send_rate
        kept = after.goodput / before.goodput
        not_ours = (
            verify.rate is not None  # a cut from unpaced (start-up) always stands
            and before.share - noise <= after.share <= before.share + 2 * noise
            and slowed <= 0.9
            and kept <= (1 + slowed) / 2
        )
        if not_ours:
            lane.cuts -= 1
            lane.undone += 1
            lane.rate, lane.w_max, lane.k, lane.t_cut = (
                verify.rate,
                verify.w_max,
                verify.k,
                verify.t_cut,
            )
            self._respace(lane, self.clock())
            share = after.share
            lane.background = share if not lane.background else (lane.background + share) / 2

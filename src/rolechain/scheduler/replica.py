"""One of several ``rolechain schedule`` replicas on one store: a standby until it holds the
lease (:mod:`rolechain.scheduler.lease`), then a :class:`~rolechain.scheduler.engine.
Scheduler` for as long as it leads.

Each term as leader starts a new scheduler on a store opened for the term, which does what
a scheduler does when it starts: runs left by a replica that died are marked ``crashed``
(:meth:`Store.reap`), the undecided ones are retried or alerted (``retry_failed``), and the
catch-up rules decide what to run of the fires missed while nobody led. When the lease is
lost the scheduler stops at once -- no new fire, retry or alert, no retention -- and its
runs in flight are stopped as on SIGTERM (``--grace``, then ``interrupted``); the replica
is a standby again, and sits out one more lease before it competes for the lease again.

It answers the signal handlers as a scheduler does (:meth:`request_stop`,
:meth:`request_reload`, :attr:`running`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from rolechain.scheduler.engine import Scheduler
from rolechain.scheduler.lease import Lease
from rolechain.scheduler.logs import EventLog
from rolechain.scheduler.types import Clock, Metrics, RunHandle


class Replica:
    def __init__(
        self,
        lease: Lease,
        make: Callable[[], Scheduler],
        *,
        clock: Clock,
        log: EventLog,
        metrics: Metrics,
    ) -> None:
        self.lease = lease
        self.make = make
        self.clock = clock
        self.log = log
        self.metrics = metrics
        self.terms = 0
        self._current: Scheduler | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._stop_why: str | None = None
        self._reload_why: str | None = None
        lease.on_elected = self._wake.set
        lease.on_lost = self._lost

    # -- what the signal handlers call (flags only) --------------------------------------

    def request_stop(self, why: str | None = None) -> None:
        self._stopping = True
        self._stop_why = self._stop_why or why
        current = self._current
        if current is not None:
            current.request_stop(why)
        self._wake.set()

    def request_reload(self, why: str | None = None) -> None:
        current = self._current
        if current is not None:
            current.request_reload(why)
        else:
            self._reload_why = why  # a standby loads the chain again when it leads

    @property
    def running(self) -> list[RunHandle]:
        current = self._current
        return current.running if current is not None else []

    def _lost(self, reason: str) -> None:
        current = self._current
        if current is not None:
            current.request_stop(f"lease lost: {reason}")
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    def run(self, *, until: datetime | None = None, grace: float = 30.0) -> None:
        self.lease.start()
        try:
            while not self._stopping:
                if not self._standby(until):
                    break
                self._lead(until, grace)
                if until is not None and self.clock.now() >= until:
                    break
        finally:
            if self._stop_why:
                self.log.emit("stop_requested", by=self._stop_why)
            self.lease.stop()  # gives the lease up, so a standby takes over at once
            self.metrics.role(None)
            self.log.emit("replica_stopped", holder=self.lease.holder, terms=self.terms)

    def _standby(self, until: datetime | None) -> bool:
        """Wait for the lease; False if stopped (or ``until`` passed) first."""
        self.metrics.role("standby")
        self.log.emit("standby", holder=self.lease.holder)
        while not self._stopping:
            if self.lease.leading():
                return True
            if until is not None and self.clock.now() >= until:
                return False
            self.metrics.beat()
            self._wake.wait(self.lease.timing.retry)
            self._wake.clear()
        return False

    def _lead(self, until: datetime | None, grace: float) -> None:
        self.terms += 1
        self.metrics.role("leader")
        self.log.emit("leader", holder=self.lease.holder, term=self.terms)
        # A new scheduler on a new connection to the store, which marks the runs of
        # replicas that died crashed before the scheduler's recovery reads them.
        scheduler = self.make()
        self._current = scheduler
        if self._reload_why is not None:
            scheduler.request_reload(self._reload_why)
            self._reload_why = None
        if self._stopping:
            scheduler.request_stop(self._stop_why)
        elif not self.lease.leading():
            scheduler.request_stop("lease lost before the scheduler started")
        try:
            scheduler.run(until=until, grace=grace)
        finally:
            self._current = None
            close = getattr(scheduler.history, "close", None)
            if close is not None:  # each term opens the store afresh (see make)
                close()

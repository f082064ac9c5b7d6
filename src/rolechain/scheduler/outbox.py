"""The alert outbox: every alert the scheduler decides to send is written to the store
first, then delivered, and retried with back-off until it is.

An alert is a row of the store's ``alerts`` table (run, job, ``kind``, payload, state,
attempts, last error). It is written when the scheduler decides it (``pending``), and
marked ``sent`` once its command and webhook have all succeeded; a failed delivery stays
``pending`` with the time of its next attempt (back-off doubling from
:data:`FIRST_BACKOFF` to :data:`MAX_BACKOFF` real seconds) and is given up (``failed``)
after :data:`MAX_ATTEMPTS`. A scheduler that stops, or is killed, with alerts pending
delivers them when it starts again. Delivery is at least once: a process killed after an
alert went out but before it was marked sent sends it again.

``kind`` is the alert's key without ``on_``: ``failure``, ``success``, ``recovery`` (and any
other kind a job declares as ``on_<kind>``): the outbox looks the alert up by kind when it
delivers (so secrets in its headers are never stored), and anything that decides alerts
reuses it through :meth:`AlertOutbox.enqueue`.

A store that cannot be written (disk full) does not lose an alert: it is kept in memory
and delivered the same way, for as long as the scheduler runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rolechain.model.schema import Alert
from rolechain.scheduler.logs import EventLog
from rolechain.scheduler.types import Metrics

FIRST_BACKOFF = 1.0  # real seconds before the second attempt
MAX_BACKOFF = 300.0
MAX_ATTEMPTS = 20  # about 1h20m of trying at the longest back-off


class AlertStore(Protocol):
    """Where pending alerts are kept (the store implements it)."""

    def add_alert(self, run_id: str, job: str, kind: str, payload: dict[str, Any]) -> int | None:
        """A new pending alert; its id, or None if it could not be written."""

    def pending_alerts(self) -> list[dict[str, Any]]:
        """Alerts not yet delivered: id, run_id, job, kind, attempts, payload."""

    def alert_attempted(
        self, alert_id: int, *, state: str, error: str | None, next_at: datetime | None
    ) -> None:
        """A delivery attempt: ``sent``, ``pending`` (try again at ``next_at``), ``failed``."""


Deliver = Callable[[str, Alert, Mapping[str, Any]], "str | None"]
AlertFor = Callable[[str, str], "Alert | None"]  # (job, kind) -> the job's alert, if any


@dataclass
class _Pending:
    run_id: str
    job: str
    kind: str
    payload: dict[str, Any]
    id: int | None = None  # the store's row; None when it could not be written
    attempts: int = 0
    due: float = 0.0  # the outbox clock's time of the next attempt (0: now)


def backoff(attempts: int) -> float:
    """Real seconds to wait after ``attempts`` failed deliveries."""
    return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, attempts - 1)))


class AlertOutbox:
    """Delivers alerts through ``deliver`` (``AlertSender.deliver``) until each is sent.

    ``synchronous`` delivers on the caller's thread when enqueued and when :meth:`retry_due`
    is called (tests); otherwise a daemon thread delivers.
    """

    def __init__(
        self,
        store: AlertStore | None,
        deliver: Deliver,
        alert_for: AlertFor,
        log: EventLog,
        *,
        metrics: Metrics | None = None,
        synchronous: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._deliver = deliver
        self._alert_for = alert_for
        self.log = log
        self.metrics = metrics or Metrics()
        self._synchronous = synchronous
        self._clock = clock
        self._queue: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = 0
        self._thread: threading.Thread | None = None

    # -- queueing ----------------------------------------------------------------------

    def load(self) -> int:
        """Alerts left pending by an earlier scheduler (stopped or killed): due now."""
        if self.store is None:
            return 0
        rows = self.store.pending_alerts()
        with self._lock:
            known = {p.id for p in self._queue}
            for row in rows:
                if row["id"] in known:
                    continue
                self._queue.append(
                    _Pending(row["run_id"], row["job"], row["kind"], dict(row["payload"]),
                             id=int(row["id"]), attempts=int(row["attempts"] or 0))
                )  # fmt: skip
        if rows:
            self.log.emit("alerts_pending", count=len(rows), reason="left by the last scheduler")
        self._changed()
        return len(rows)

    def enqueue(self, run_id: str, job: str, kind: str, payload: Mapping[str, Any]) -> None:
        """An alert to deliver (written to the store first)."""
        body = dict(payload)
        alert_id = None
        if self.store is not None:
            with contextlib.suppress(Exception):  # a full disk must not lose the alert
                alert_id = self.store.add_alert(run_id, job, kind, body)
        with self._lock:
            self._queue.append(_Pending(run_id, job, kind, body, id=alert_id))
        self._changed()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue) + self._busy

    # -- delivering --------------------------------------------------------------------

    def retry_due(self) -> None:
        """Deliver what is due now (synchronous mode: the scheduler calls it each step)."""
        if self._synchronous():
            self._deliver_due()

    def _changed(self) -> None:
        self.metrics.alerts_pending(self.pending())
        if self._synchronous():
            self._deliver_due()
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="rolechain-alerts", daemon=True)
            self._thread.start()
        self._wake.set()

    def _take_due(self) -> _Pending | None:
        now = self._clock()
        with self._lock:
            for item in self._queue:
                if item.due <= now:
                    self._queue.remove(item)
                    self._busy += 1
                    return item
        return None

    def _next_due(self) -> float | None:
        with self._lock:
            return min((p.due for p in self._queue), default=None)

    def _deliver_due(self) -> None:
        while (item := self._take_due()) is not None:
            try:
                self._attempt(item)
            finally:
                with self._lock:
                    self._busy -= 1
            self.metrics.alerts_pending(self.pending())

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._deliver_due()
            nxt = self._next_due()
            wait = None if nxt is None else max(0.0, nxt - self._clock())
            self._wake.wait(wait)
            self._wake.clear()

    def _attempt(self, item: _Pending) -> None:
        alert = self._alert_for(item.job, item.kind)
        fields = {"alert": item.kind, "job": item.job, "run_id": item.run_id}
        if alert is None:  # the job, or its alert, was removed from the chain file
            self.log.warning("alert_dropped", **fields, reason=f"the job has no on_{item.kind}")
            self._record(item, "failed", f"the job has no on_{item.kind}", None)
            return
        try:
            error = self._deliver(item.kind, alert, item.payload)
        except Exception as exc:  # a bug in delivery must not stop the outbox
            error = f"{type(exc).__name__}: {exc}"
        item.attempts += 1
        if error is None:
            self.metrics.alert_attempt(item.job, item.kind, "sent")
            self._record(item, "sent", None, None)
            return
        if item.attempts >= MAX_ATTEMPTS:
            self.metrics.alert_attempt(item.job, item.kind, "given-up")
            self.log.error("alert_given_up", **fields, attempts=item.attempts, reason=error)
            self._record(item, "failed", error, None)
            return
        self.metrics.alert_attempt(item.job, item.kind, "failed")
        wait = backoff(item.attempts)
        item.due = self._clock() + wait
        self.log.warning("alert_retry", **fields, attempt=item.attempts,
                         in_seconds=round(wait, 3), reason=error)  # fmt: skip
        self._record(item, "pending", error, datetime.now(UTC) + timedelta(seconds=wait))
        with self._lock:
            self._queue.append(item)

    def _record(self, item: _Pending, state: str, error: str | None, at: datetime | None) -> None:
        if self.store is None or item.id is None:
            return
        with contextlib.suppress(Exception):
            self.store.alert_attempted(item.id, state=state, error=error, next_at=at)

    def close(self, timeout: float = 30.0) -> None:
        """Give pending deliveries up to ``timeout`` seconds; what is left stays pending
        in the store for the next scheduler."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                due_now = any(p.due <= self._clock() for p in self._queue) or self._busy
            if not due_now:
                break
            if self._synchronous():
                self._deliver_due()
            else:
                self._wake.set()
                time.sleep(0.05)
        self._stop.set()
        self._wake.set()

"""Leader election for several ``rolechain schedule`` replicas on one store: a lease row.

One row of table ``scheduler_lease`` names the leader (``holder``: host, pid and a random
suffix, so a restarted process is a new holder) and a ``version`` the leader bumps at every
renewal. Every update is a compare-and-set on that version, so two replicas never both
take or renew the same lease.

Time is each replica's own monotonic clock, never a time written by another host, so the
hosts' clocks need not agree (Kubernetes' leader election works the same way):

- the leader renews every ``retry`` seconds; if no renewal has succeeded for
  ``renew_deadline`` seconds, measured from the *start* of the last one that did, it stops
  leading (stops firing) at once; it stops at once, too, when its connection is lost
  (the server ended it, or the network did);
- a standby watches the row; when it has seen the same (holder, version) for ``lease``
  seconds of its own time, the leader has stopped renewing, and it takes the lease (a
  compare-and-set on the version it saw). A released lease (``holder`` NULL: the leader
  stopped cleanly) is taken at the standby's next look.

A renewal that succeeded was committed after it started, and a standby sees it only after
that, so the old leader stops at least ``lease - renew_deadline`` seconds before any
standby can take over: leadership never overlaps, whatever the network does. That margin
is why ``renew_deadline`` < ``lease`` (15 s and 10 s by default, renewing every 2 s: the
defaults of Kubernetes' leader election).

The lease is real time, also in a rehearsal (``--time-scale``): it bounds how long a dead
or cut-off leader can hold the schedule up, which is a matter of processes, connections
and networks, whose time is not compressed.

:class:`Database` is the small connection these tables need (PostgreSQL through psycopg,
or SQLite), opened with ``application_name`` set so a leader's connections can be found
(and, in the tests, cut) from the server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rolechain.locations import is_url
from rolechain.scheduler.logs import EventLog

LEASE_NAME = "scheduler"
DEFAULT_LEASE = 15.0


def _wall() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Database:
    """One connection to the store for the lease or the claims, reopened after an error.

    SQL is written with ``?`` placeholders (psycopg's ``%s`` are put in for PostgreSQL).
    """

    def __init__(self, store: str, *, application_name: str = "rolechain-scheduler",
                 timeout: float = 10.0) -> None:  # fmt: skip
        self.store = store
        self.postgres = is_url(store)
        self.application_name = application_name
        self.timeout = timeout
        self._conn: Any = None
        self._lock = threading.RLock()
        # Set when an error dropped a broken connection (the server ended it, the network
        # failed); cleared by the next call that succeeds.
        self.lost = False

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            from rolechain.results.backend import expand

            seconds = max(1, int(self.timeout))
            return psycopg.connect(
                expand(self.store), autocommit=True, application_name=self.application_name,
                connect_timeout=seconds, tcp_user_timeout=seconds * 1000,
                keepalives=1, keepalives_idle=seconds, keepalives_interval=1,
                keepalives_count=3, options=f"-c statement_timeout={seconds * 1000}",
            )  # fmt: skip
        conn = sqlite3.connect(self.store, timeout=30, isolation_level=None,
                               check_same_thread=False)  # fmt: skip
        return conn

    def _sql(self, sql: str) -> str:
        if not self.postgres:
            return sql
        from rolechain.results.backend import to_format

        return to_format(sql)

    @property
    def conn(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
        """Rows (if any) and the row count; on an error the connection is dropped (the
        next call opens a new one) and the error raised."""
        with self._lock:
            try:
                cursor = self.conn.execute(self._sql(sql), tuple(args))
                rows = list(cursor.fetchall()) if cursor.description else []
                self.lost = False
                return rows, int(cursor.rowcount if cursor.rowcount is not None else -1)
            except Exception:
                self._drop_if_broken()
                raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            try:
                if self.postgres:
                    with self.conn.transaction():
                        yield
                else:
                    self.conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield
                    except BaseException:
                        self.conn.execute("ROLLBACK")
                        raise
                    self.conn.execute("COMMIT")
            except Exception:
                self._drop_if_broken()
                raise

    def _drop_if_broken(self) -> None:
        """After an error: a PostgreSQL connection that is closed or broken (the server
        ended it, the network failed) is dropped, and the next call opens a new one."""
        conn = self._conn
        if conn is not None and self.postgres and (conn.closed or conn.broken):
            self.lost = True
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


@dataclass(frozen=True)
class Timing:
    """The lease's three durations, real seconds (see the module docs)."""

    lease: float = DEFAULT_LEASE
    renew_deadline: float = DEFAULT_LEASE * 2 / 3
    retry: float = DEFAULT_LEASE * 2 / 15

    @classmethod
    def of(cls, lease: float) -> Timing:
        """Kubernetes' proportions: renew deadline 2/3 of the lease, a try every 2/15."""
        if lease <= 0:
            raise ValueError("the lease must be longer than 0s")
        return cls(lease, lease * 2 / 3, lease * 2 / 15)


@dataclass(frozen=True)
class Leader:
    """The lease row as ``schedule --list`` shows it."""

    holder: str | None
    host: str | None
    pid: int | None
    version: int
    lease_seconds: float
    acquired_at: str | None
    renewed_at: str | None

    @property
    def expires_at(self) -> str | None:
        """When the lease runs out if it is not renewed (by the leader's clock)."""
        if not self.renewed_at:
            return None
        renewed = datetime.fromisoformat(self.renewed_at.replace("Z", "+00:00"))
        moment = renewed + timedelta(seconds=self.lease_seconds)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


_COLUMNS = "holder, host, pid, version, lease_seconds, acquired_at, renewed_at"


def read_leader(db: Database) -> Leader | None:
    rows, _ = db.execute(
        f"SELECT {_COLUMNS} FROM scheduler_lease WHERE name=?",  # noqa: S608
        (LEASE_NAME,),
    )
    if not rows:
        return None
    holder, host, pid, version, seconds, acquired, renewed = rows[0]
    return Leader(holder, host, pid, int(version), float(seconds), acquired, renewed)


def new_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Lease:
    """This replica's side of the lease. :meth:`tick` does one round (take, renew or
    watch); :meth:`start` runs it every ``timing.retry`` seconds on a thread, with a
    watchdog that demotes the leader at its renew deadline even while a renewal hangs.

    ``on_elected()`` and ``on_lost(reason)`` are called on those threads. ``monotonic`` is
    the clock (injectable for tests); ``wall`` only stamps the row for people to read.
    """

    def __init__(
        self,
        db: Database,
        *,
        timing: Timing = Timing(),
        holder: str | None = None,
        log: EventLog | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], str] = _wall,
        on_elected: Callable[[], None] = lambda: None,
        on_lost: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.db = db
        self.timing = timing
        self.holder = holder or new_holder()
        self.log = log
        self._mono = monotonic
        self._wall = wall
        self.on_elected = on_elected
        self.on_lost = on_lost
        self._lock = threading.RLock()
        self._leader = False
        self._version = 0
        self._valid_until = 0.0  # leading until then (the renew deadline)
        self._renewed = 0.0  # start of the last renewal that succeeded
        self._seen: tuple[str | None, int] | None = None
        self._seen_at = 0.0
        self._not_before = 0.0  # a leader that lost the lease sits out one more lease
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._said_error: str | None = None

    # -- state -------------------------------------------------------------------------

    def leading(self) -> bool:
        """Whether this replica may fire now: it holds the lease and its last renewal is
        within the renew deadline."""
        with self._lock:
            return self._leader and self._mono() < self._valid_until

    @property
    def role(self) -> str:
        return "leader" if self.leading() else "standby"

    def lease_left(self) -> float:
        """Seconds until the lease could be taken by another replica, at the earliest."""
        with self._lock:
            return self._renewed + self.timing.lease - self._mono() if self._leader else 0.0

    # -- one round -----------------------------------------------------------------------

    def tick(self) -> None:
        self.check()  # past its renew deadline a leader stops, and renews no more
        with self._lock:
            leader = self._leader
        try:
            if leader:
                self._renew()
            else:
                self._watch()
            self._said_error = None
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}".strip()
            if self.log is not None and text != self._said_error:
                self.log.warning("lease_error", holder=self.holder,
                                 reason=text.splitlines()[0][:300])  # fmt: skip
            self._said_error = text
            if leader and self.db.lost:
                # The leader's own connection ended: it cannot tell a restarted server from
                # a network cut, so it stops leading now rather than at its deadline.
                self._lose("its connection to the store was lost")
        self.check()

    def check(self) -> None:
        """Demote this replica if its renew deadline has passed."""
        with self._lock:
            expired = self._leader and self._mono() >= self._valid_until
        if expired:
            self._lose(f"no renewal succeeded within the renew deadline "
                       f"({self.timing.renew_deadline:g}s)")  # fmt: skip

    def _renew(self) -> None:
        start = self._mono()
        with self._lock:
            version = self._version
        _, count = self.db.execute(
            "UPDATE scheduler_lease SET version=version+1, renewed_at=? "
            "WHERE name=? AND holder=? AND version=?",
            (self._wall(), LEASE_NAME, self.holder, version),
        )
        if count == 1:
            with self._lock:
                if self._leader and self._version == version:
                    self._version = version + 1
                    self._renewed = start
                    self._valid_until = start + self.timing.renew_deadline
            return
        self._lose("another replica holds the lease")

    def _watch(self) -> None:
        now = self._mono()
        if now < self._not_before:
            return  # it just lost the lease: it starts watching again after one lease
        found = read_leader(self.db)
        if found is None:
            self._take(None, now)
            return
        key = (found.holder, found.version)
        if key != self._seen:
            self._seen, self._seen_at = key, now
        wait = max(self.timing.lease, found.lease_seconds)
        if found.holder is None or now - self._seen_at >= wait:
            self._take(found.version, now)

    def _take(self, version: int | None, start: float) -> None:
        stamp = self._wall()
        host, pid = socket.gethostname(), os.getpid()
        if version is None:
            _, count = self.db.execute(
                "INSERT INTO scheduler_lease (name, holder, host, pid, version, lease_seconds, "
                "acquired_at, renewed_at) VALUES (?, ?, ?, ?, 1, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (LEASE_NAME, self.holder, host, pid, self.timing.lease, stamp, stamp),
            )
            new_version = 1
        else:
            _, count = self.db.execute(
                "UPDATE scheduler_lease SET holder=?, host=?, pid=?, version=version+1, "
                "lease_seconds=?, acquired_at=?, renewed_at=? WHERE name=? AND version=?",
                (self.holder, host, pid, self.timing.lease, stamp, stamp, LEASE_NAME, version),
            )
            new_version = version + 1
        if count != 1:
            return  # another standby took it first
        with self._lock:
            self._leader = True
            self._version = new_version
            self._renewed = start
            self._valid_until = start + self.timing.renew_deadline
        if self.log is not None:
            self.log.emit("lease_acquired", holder=self.holder, lease_seconds=self.timing.lease,
                          renew_deadline=round(self.timing.renew_deadline, 3))  # fmt: skip
        self.on_elected()

    def _lose(self, reason: str) -> None:
        with self._lock:
            if not self._leader:
                return
            self._leader = False
            left = self._renewed + self.timing.lease - self._mono()
            self._not_before = self._mono() + self.timing.lease
            self._seen = None
        if self.log is not None:
            # lease_left_seconds: how long before any other replica could take over.
            self.log.warning("lease_lost", holder=self.holder, reason=reason,
                             lease_left_seconds=round(left, 3))  # fmt: skip
        self.on_lost(reason)

    def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes it at its next look."""
        with self._lock:
            was = self._leader
            self._leader = False
        if not was:
            return
        with contextlib.suppress(Exception):
            self.db.execute(
                "UPDATE scheduler_lease SET holder=NULL, version=version+1, renewed_at=? "
                "WHERE name=? AND holder=?",
                (self._wall(), LEASE_NAME, self.holder),
            )
            if self.log is not None:
                self.log.emit("lease_released", holder=self.holder)

    # -- threads -------------------------------------------------------------------------

    def start(self) -> Lease:
        for name, target in (("rolechain-lease", self._loop), ("rolechain-lease-watch",
                                                                  self._watchdog)):  # fmt: skip
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.timing.retry)

    def _watchdog(self) -> None:
        """Demote at the renew deadline even while the renewing thread hangs on a dead
        connection."""
        while not self._stop.is_set():
            with self._lock:
                wait = self._valid_until - self._mono() if self._leader else self.timing.retry
            self._stop.wait(min(max(wait, 0.01), self.timing.retry))
            self.check()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(self.db.timeout + 5)
        self.release()
        self.db.close()

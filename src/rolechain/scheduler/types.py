"""The scheduler's seams, as plain types: what it asks a launcher, a history and a clock.

The scheduler (:mod:`rolechain.scheduler.engine`) depends only on these protocols, so it is
tested with a virtual clock and a fake launcher that "run" for simulated hours in
microseconds. :mod:`rolechain.scheduler.launcher` is the one implementation that starts
real runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from rolechain.model.chain import Chain

TriggerKind = Literal["schedule", "catch-up", "retry"]

# Final statuses of a scheduled run, as recorded in the store's runs.status. The first four
# are the run's own (rolechain.executor's Summary.status, spelled the same, checked by a
# test); the scheduler adds the last two.
OK = "ok"
FAILED = "failed"  # some target failed (or did not finish)
INTERRUPTED = "interrupted"  # stopped: shutdown, or replaced by a newer run
DEADLINE_EXCEEDED = "deadline-exceeded"  # the job's runtime was reached
ERROR = "error"  # the run could not start (plan, credentials, identity)
SKIPPED = "skipped"  # the fire was skipped: the previous run was still going
CRASHED = "crashed"  # its process died; found when the store was next opened
STATUSES = (OK, FAILED, INTERRUPTED, DEADLINE_EXCEEDED, ERROR, SKIPPED, CRASHED)


def iso(moment: datetime) -> str:
    """UTC, second precision, with Z: how the scheduler writes every time."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Trigger:
    """Why a run starts: a cron fire (on time, or caught up after downtime), or a retry."""

    kind: TriggerKind
    scheduled_for: datetime  # the cron time (UTC) this run is for
    due: datetime  # scheduled_for plus the job's jitter
    attempt: int = 0  # 0 for the first run of a fire; n for its n-th retry
    retry_of: str | None = None  # the run_id this one retries


@dataclass(frozen=True)
class LaunchRequest:
    """One run to start: the job, its trigger, and what it is limited to."""

    job: str
    run_id: str
    trigger: Trigger
    targets: tuple[str, ...] | None = None  # only these (a retry of failed targets)
    deadline: float | None = None  # seconds of scheduler time the run may take
    changes: bool = False  # compare the run's rows with the previous run's (on_change)


@dataclass(frozen=True)
class RunResult:
    """How a run ended, as the scheduler needs it for retries, alerts and logs."""

    run_id: str
    job: str
    status: str
    targets: int = 0
    targets_ok: int = 0
    targets_failed: int = 0
    targets_unfinished: int = 0  # the run stopped before they were done
    failed_targets: tuple[str, ...] = ()  # failed, or never finished (to retry)
    records: int = 0
    records_failed: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    reason: str | None = None
    abandoned: int = 0  # tasks the run gave up on (past their timeout, or at its end)
    still_running: int = 0  # of those, still running when the run ended (their threads live on)
    # with LaunchRequest.changes: the diff against the job's previous complete run (its
    # summary counts, and the first changes), None when there was nothing to compare
    changes: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_targets"] = list(self.failed_targets)
        return data


class RunHandle(Protocol):
    """A started run."""

    @property
    def request(self) -> LaunchRequest: ...

    @property
    def done(self) -> bool: ...

    @property
    def result(self) -> RunResult | None: ...

    def cancel(self, reason: str, grace: float | None = None) -> None:
        """Stop the run gracefully: no new work; what finished is kept; work in flight
        gets ``grace`` real seconds (None: the launcher's default; 0: none)."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` real seconds; True when the run is done."""


class Launcher(Protocol):
    """Starts runs. ``on_done`` is called (from any thread) when the run has ended."""

    def launch(
        self, chain: Chain, request: LaunchRequest, on_done: Callable[[], None]
    ) -> RunHandle: ...


class History(Protocol):
    """The store, as the scheduler reads and writes it."""

    def last_fire(self, job: str) -> datetime | None:
        """The newest scheduled_for of the job's scheduled runs (any status)."""

    def last_outcome(self, job: str, *, decided: bool = False) -> str | None:
        """The status of the job's newest finished scheduled run (skips excluded, and runs
        a retry covered); ``decided``: only among runs whose alerts were decided."""

    def record_skipped(self, job: str, run_id: str, trigger: Trigger, reason: str) -> None:
        """A fire that started no run (overlap: skip)."""

    def prune(self, job: str, keep_runs: int, older_than: datetime) -> int:
        """Delete the job's scheduled runs beyond the newest ``keep_runs`` or finished
        before ``older_than`` (always keeping the newest); the number deleted."""

    def set_alert(self, run_id: str, decision: str) -> None:
        """The alert decision for a run: ``held`` (a retry may cover it), ``covered`` (a
        retry did), ``alerted`` (its alerts are in the outbox), ``none``."""

    def undecided(self, job: str) -> list[dict[str, Any]]:
        """The job's scheduled runs that ended with no alert decision, or ``held`` (the
        scheduler stopped or was killed before deciding), oldest first."""

    def retry_targets(self, run_id: str) -> tuple[str, ...] | None:
        """Targets of the run with a unit that failed or has no record (None: all)."""


class Clock(Protocol):
    """The scheduler's time. Real, scaled (sandbox rehearsals) or virtual (tests)."""

    def now(self) -> datetime: ...

    def wait(self, until: datetime, wake: threading.Event) -> None:
        """Return at ``until`` or as soon as ``wake`` is set, whichever is first."""

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds ``seconds`` of this clock's time take."""


@dataclass
class Metrics:
    """What the scheduler reports; the base class records nothing (see metrics.py)."""

    up: bool = field(default=False)
    # With several replicas (issue 22): "leader" or "standby"; None for a lone scheduler.
    replica_role: str | None = field(default=None)

    def started(self, jobs: list[str]) -> None:
        self.up = True

    def role(self, role: str | None) -> None:
        """This replica's role now (``leader``, ``standby``; None: it stopped). A standby
        is up: it watches the lease, ready to lead."""
        self.replica_role = role
        self.up = role is not None

    def stopped(self) -> None:
        self.up = False

    def next_fire(self, job: str, when: datetime | None) -> None:
        pass

    def fired(self, job: str, lateness: float) -> None:
        pass

    def skipped(self, job: str, reason: str) -> None:
        pass

    def finished(self, result: RunResult, seconds: float) -> None:
        pass

    def beat(self) -> None:
        """The loop is alive (for /healthz)."""

    def alert_attempt(self, job: str, kind: str, result: str) -> None:
        """An alert delivery was tried: ``sent``, ``failed`` (to retry) or ``given-up``."""

    def alerts_pending(self, count: int) -> None:
        """Alerts waiting to be delivered now."""


@dataclass(frozen=True)
class Claim:
    """A fire to claim before it runs (:mod:`rolechain.scheduler.claims`): the run that
    will carry it and its first row."""

    job: str
    run_id: str
    trigger: Trigger
    status: str = "starting"
    reason: str | None = None
    started_at: datetime | None = None


class FireClaims(Protocol):
    """Where fires are claimed (the store's ``fires`` table, through
    :class:`rolechain.scheduler.claims.Claims`)."""

    def claim(self, claim: Claim) -> bool:
        """True if this scheduler now owns the fire."""

    def leading(self) -> bool:
        """Whether this scheduler may fire (and prune) now."""

    def prune(self, job: str) -> int:
        """Forget claims no fire can need again."""

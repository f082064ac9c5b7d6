"""Fakes for the scheduler's seams: a launcher whose runs take simulated time on a
:class:`~rolechain.scheduler.clock.VirtualClock` and write the store as the real one does."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rolechain.model.chain import Chain
from rolechain.model.loader import loads
from rolechain.results.store import Store
from rolechain.scheduler.clock import VirtualClock
from rolechain.scheduler.engine import Scheduler
from rolechain.scheduler.logs import EventLog
from rolechain.scheduler.policy import ScheduleSpec, schedule_specs
from rolechain.scheduler.types import DEADLINE_EXCEEDED, INTERRUPTED, OK, LaunchRequest, RunResult

TARGETS = ("audit@333333333333", "audit@444444444444", "audit@555555555555")


def chain_with(job_keys: str, settings: str = "", jobs: str = "") -> Chain:
    """A small valid chain whose job ``j`` has the given (YAML flow) keys."""
    return loads(
        f"""
version: 1
settings: {{{settings}}}
principals:
  bot: {{kind: user, account: "111111111111"}}
role_sets:
  audit:
    role_name: Audit
    trusts: [bot]
    accounts: ["333333333333", "444444444444", "555555555555"]
jobs:
  j: {{from: bot, to: audit, tasks: [s3.list_buckets], {job_keys}}}
{jobs}
""",
        file="chain.yaml",
    )


@dataclass
class Outcome:
    seconds: float = 60.0
    status: str = OK
    failed: tuple[str, ...] = ()
    still_running: int = 0  # tasks given up on and still running at the end
    changes: dict[str, Any] | None = None  # the diff a real launcher would compute


class FakeHandle:
    def __init__(
        self,
        launcher: FakeLauncher,
        request: LaunchRequest,
        on_done: Callable[[], None],
        outcome: Outcome,
    ) -> None:
        self._launcher = launcher
        self._request = request
        self._on_done = on_done
        self._outcome = outcome
        self._result: RunResult | None = None
        clock = launcher.clock
        self.started = clock.now()
        seconds = outcome.seconds
        status = outcome.status
        if request.deadline is not None and seconds > request.deadline:
            seconds, status = request.deadline, DEADLINE_EXCEEDED
        self.ends = self.started + timedelta(seconds=seconds)
        self.cancel_reason: str | None = None
        self.cancel_grace: float | None = None
        clock.call_at(self.ends, lambda: self._finish(status, None))

    @property
    def request(self) -> LaunchRequest:
        return self._request

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> RunResult | None:
        return self._result

    def cancel(self, reason: str, grace: float | None = None) -> None:
        self.cancel_reason = reason
        self.cancel_grace = grace
        # a cancelled run winds down in a simulated second
        self._launcher.clock.call_at(
            self._launcher.clock.now() + timedelta(seconds=1),
            lambda: self._finish(INTERRUPTED, reason),
        )

    def wait(self, timeout: float | None = None) -> bool:
        clock = self._launcher.clock
        if not self.done:
            until = (
                self.ends
                if timeout is None
                else min(self.ends, clock.now() + timedelta(seconds=timeout))
            )
            if self.cancel_reason is not None:
                until = min(until, clock.now() + timedelta(seconds=1))
            clock.advance(until)
        return self.done

    def _finish(self, status: str, reason: str | None) -> None:
        if self._result is not None:
            return
        request = self._request
        targets = request.targets or TARGETS
        failed = tuple(t for t in self._outcome.failed if t in targets)
        if status == OK and failed:
            status = "failed"
        self._result = RunResult(
            request.run_id,
            request.job,
            status,
            targets=len(targets),
            targets_ok=len(targets) - len(failed),
            targets_failed=len(failed),
            failed_targets=failed,
            reason=reason,
            abandoned=self._outcome.still_running,
            still_running=self._outcome.still_running,
            changes=self._outcome.changes if request.changes else None,
        )
        store = self._launcher.store
        if store is not None:
            store.end_scheduled(
                request.run_id,
                status=status,
                reason=reason,
                targets=len(targets),
                targets_failed=len(failed),
            )
        self._on_done()


@dataclass
class FakeLauncher:
    clock: VirtualClock
    store: Store | None = None
    outcome: Callable[[LaunchRequest], Outcome] = lambda request: Outcome()
    launched: list[LaunchRequest] = field(default_factory=list)
    handles: list[FakeHandle] = field(default_factory=list)

    def launch(
        self, chain: Chain, request: LaunchRequest, on_done: Callable[[], None]
    ) -> FakeHandle:
        self.launched.append(request)
        if self.store is not None:
            t = request.trigger
            self.store.begin_scheduled(
                request.run_id,
                request.job,
                trigger=t.kind,
                scheduled_for=t.scheduled_for,
                attempt=t.attempt,
                retry_of=t.retry_of,
                started_at=self.clock.now(),
            )
        handle = FakeHandle(self, request, on_done, self.outcome(request))
        self.handles.append(handle)
        return handle


def record_codes(store: Path | str, run_id: str) -> list[str]:
    """Each stored record of the run, by target: ``ok``, or its error code."""
    with Store(store, reap=False) as db:
        found = db.tuples(
            "SELECT coalesce(error_code, status) FROM records WHERE run_id=? ORDER BY target",
            (run_id,),
        )
        return [code for (code,) in found]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class Rig:
    scheduler: Scheduler
    launcher: FakeLauncher
    clock: VirtualClock
    store: Store
    log: EventLog
    specs: dict[str, ScheduleSpec]

    def events(self, name: str) -> list[dict[str, Any]]:
        assert self.log.lines is not None
        return [e for e in self.log.lines if e["event"] == name]


def rig(
    chain: Chain,
    store: Store,
    start: str,
    outcome: Callable[[LaunchRequest], Outcome] | None = None,
    **kwargs: Any,
) -> Rig:
    clock = VirtualClock(at(start))
    log = EventLog(io.StringIO(), "json", clock.now)
    log.lines = []
    launcher = FakeLauncher(clock, store, outcome or (lambda request: Outcome()))
    specs = schedule_specs(chain)
    from rolechain.scheduler.alerts import AlertSender

    scheduler = Scheduler(
        chain,
        specs,
        launcher=launcher,
        history=store,
        clock=clock,
        log=log,
        alerts=kwargs.pop("alerts", None) or AlertSender(log, synchronous=True),
        **kwargs,
    )
    return Rig(scheduler, launcher, clock, store, log, specs)

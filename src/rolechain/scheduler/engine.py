"""The scheduler: fires each job's runs on time, by its keys, until stopped.

It is a loop over one deterministic step. :meth:`Scheduler.step` takes the current time,
collects runs that ended (retries, alerts, retention), starts queued runs, retries that are
due and fires that are due (overlap policy, starting deadline), and returns when it next
has something to do; the loop waits on its :class:`~rolechain.scheduler.types.Clock` until
then or until woken (a run ended, a reload or a stop was asked for). Runs are started only
through a :class:`~rolechain.scheduler.types.Launcher`, history is read and written only
through a :class:`~rolechain.scheduler.types.History`: with a virtual clock and a fake
launcher, a simulated week runs in well under a second.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rolechain.errors import ChainFileError, PlanError, RolechainError
from rolechain.model.chain import Chain
from rolechain.scheduler.alerts import AlertSender
from rolechain.scheduler.logs import EventLog
from rolechain.scheduler.outbox import AlertOutbox
from rolechain.scheduler.policy import Fire, ScheduleSpec, catch_up, retention_cutoff
from rolechain.scheduler.types import (
    CRASHED,
    DEADLINE_EXCEEDED,
    ERROR,
    FAILED,
    INTERRUPTED,
    OK,
    Claim,
    Clock,
    FireClaims,
    History,
    Launcher,
    LaunchRequest,
    Metrics,
    RunHandle,
    RunResult,
    Trigger,
    iso,
)

# With nothing scheduled the loop still wakes this often (scheduler time).
IDLE_WAKE = timedelta(hours=1)
RETRYABLE = frozenset({FAILED, DEADLINE_EXCEEDED, ERROR, CRASHED})

Reloader = Callable[[], tuple[Chain, Mapping[str, ScheduleSpec]]]


@dataclass
class _Retry:
    due: datetime
    trigger: Trigger
    targets: tuple[str, ...] | None
    # The run it retries, whose alert waits for the retry: sent if the retry is dropped.
    held: tuple[LaunchRequest, RunResult] | None = None


@dataclass
class _JobState:
    spec: ScheduleSpec
    fires: Iterator[Fire]
    next_fire: Fire | None
    handle: RunHandle | None = None
    started_mono: float = 0.0
    started_at: datetime | None = None
    queue: deque[Trigger] = field(default_factory=deque)
    retry: _Retry | None = None
    replacing: bool = False
    last_outcome: str | None = None


class Scheduler:
    """Runs the scheduled jobs of a chain. See the module docs."""

    def __init__(
        self,
        chain: Chain,
        specs: Mapping[str, ScheduleSpec],
        *,
        launcher: Launcher,
        history: History,
        clock: Clock,
        log: EventLog,
        alerts: AlertSender | None = None,
        metrics: Metrics | None = None,
        reloader: Reloader | None = None,
        dry_run: bool = False,
        store_name: str | None = None,
        outbox: AlertOutbox | None = None,
        claims: FireClaims | None = None,
    ) -> None:
        self.chain = chain
        self.launcher = launcher
        self.history = history
        self.clock = clock
        self.log = log
        self.alerts = alerts or AlertSender(log)
        self.metrics = metrics or Metrics()
        self.reloader = reloader
        self.dry_run = dry_run
        self.store_name = store_name
        # Each fire claimed in the store before it runs (None: a dry run, no store).
        self.claims = claims
        self.jobs: dict[str, _JobState] = {}
        self._specs = dict(specs)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._stopping = False
        self._started = False
        self._stop_why: str | None = None
        self._reload_why: str | None = None
        self._host = socket.gethostname()
        # Runs of jobs a reload removed, still going: collected when they end.
        self._orphans: list[tuple[str, _JobState]] = []
        self._ids: set[str] = set()
        self._id_second = ""
        # The latest finished runs (bounded: the scheduler runs for months), and a count.
        self.finished: deque[RunResult] = deque(maxlen=1000)
        self.runs_finished = 0
        self.outbox = outbox or AlertOutbox(
            history if hasattr(history, "add_alert") else None,  # type: ignore[arg-type]
            lambda kind, alert, payload: self.alerts.deliver(kind, alert, payload),
            self._alert_for,
            log,
            metrics=self.metrics,
            synchronous=lambda: self.alerts.synchronous,
        )
        self._store_said = False

    # -- requests from other threads (signal handlers, the file watcher, finished runs) --

    def wake(self) -> None:
        self._wake.set()

    # These only set flags: they are called from signal handlers, which must not take a
    # lock the interrupted code may hold (the log's).

    def request_stop(self, why: str | None = None) -> None:
        self._stop_why = self._stop_why or why
        self._stop.set()
        self._wake.set()

    def request_reload(self, why: str | None = None) -> None:
        self._reload_why = why
        self._reload.set()
        self._wake.set()

    def new_run_id(self, now: datetime) -> str:
        """``20261201T030000Z-3f9a``: the scheduler's time and 16 random bits, never one
        this scheduler already gave out in the same second (100 jobs firing in one second
        would otherwise share an id about once in 13 such seconds)."""
        second = f"{now:%Y%m%dT%H%M%SZ}"
        if second != self._id_second:
            self._id_second = second
            self._ids.clear()
        while True:
            run_id = f"{second}-{secrets.token_hex(2)}"
            if run_id not in self._ids:
                break
        self._ids.add(run_id)
        return run_id

    @property
    def running(self) -> list[RunHandle]:
        return [s.handle for s in self.jobs.values() if s.handle is not None]

    # -- the loop ---------------------------------------------------------------------

    def run(self, *, until: datetime | None = None, grace: float = 30.0) -> None:
        """Schedule until :meth:`request_stop` (or ``until``, scheduler time), then stop
        within ``grace`` real seconds (see :meth:`shutdown`)."""
        self.start()
        try:
            while not self._stop.is_set():
                self._wake.clear()
                if self._reload.is_set():
                    self._reload.clear()
                    if self._reload_why:
                        self.log.emit("reload_requested", by=self._reload_why)
                    self.reload()
                now = self.clock.now()
                wake_at = self.step(now)
                self.metrics.beat()
                if until is not None:
                    if now >= until:
                        break
                    wake_at = min(wake_at, until)
                if self._stop.is_set():
                    break
                self.clock.wait(wake_at, self._wake)
        finally:
            self.shutdown(grace)

    def start(self) -> None:
        """Load history and catch up on fires missed while the scheduler was down."""
        if self._started:
            return
        self._started = True
        now = self.clock.now()
        self.log.emit("scheduler_started", jobs=list(self._specs), dry_run=self.dry_run or None,
                      store=self.store_name, pid=_pid(), host=self._host)  # fmt: skip
        self.metrics.started(list(self._specs))
        for name, spec in self._specs.items():
            self._add_job(name, spec, now, catching_up=True)
        if not self.dry_run:
            self.outbox.load()

    def _add_job(self, name: str, spec: ScheduleSpec, now: datetime, *, catching_up: bool) -> None:
        fires = spec.fires(now)
        state = _JobState(spec, fires, next(fires, None))
        state.last_outcome = self.history.last_outcome(name)
        self.jobs[name] = state
        if catching_up and not self.dry_run:
            self._recover(name, state, now)
        if catching_up:
            decision = catch_up(spec, self.history.last_fire(name), now)
            if decision.missed:
                self.log.warning("missed", job=name, count=decision.missed,
                                 more=decision.more or None, first=decision.first_missed,
                                 last=decision.last_missed, catch_up=spec.catch_up,
                                 starting_deadline=spec.starting_deadline)  # fmt: skip
            for fire in decision.run:
                # One after the other, whatever the overlap policy: each is a distinct fire.
                self.log.emit("catch_up", job=name, scheduled_for=fire.scheduled_for)
                state.queue.append(Trigger("catch-up", fire.scheduled_for, fire.due))
            self._start_queued(state, now)
        nxt = state.next_fire
        self.log.emit("scheduled", job=name, schedule=spec.cron.expression,
                      timezone=spec.cron.timezone, next=nxt.due if nxt else None,
                      jitter_offset=spec.offset or None)  # fmt: skip
        self.metrics.next_fire(name, nxt.due if nxt else None)

    def step(self, now: datetime) -> datetime:
        """Do everything due at ``now``; return when something is next due."""
        self.outbox.retry_due()
        for name, state in list(self._orphans):
            if state.handle is not None and state.handle.done:
                self._orphans.remove((name, state))
                self._finished(name, state, now)
        for name, state in list(self.jobs.items()):
            if state.handle is not None and state.handle.done:
                self._finished(name, state, now)
            if self._stopping:
                continue
            if state.handle is None:
                self._start_queued(state, now)
            if state.retry is not None and state.retry.due <= now and state.handle is None:
                retry, state.retry = state.retry, None
                self._launch(state, retry.trigger, now, targets=retry.targets)
            while state.next_fire is not None and state.next_fire.due <= now:
                fire = state.next_fire
                state.next_fire = next(state.fires, None)
                self._fire(state, Trigger("schedule", fire.scheduled_for, fire.due), now)
                self.metrics.next_fire(name, state.next_fire.due if state.next_fire else None)
        return self._next_wake(now)

    def _next_wake(self, now: datetime) -> datetime:
        wake = now + IDLE_WAKE
        for state in self.jobs.values():
            if state.next_fire is not None:
                wake = min(wake, state.next_fire.due)
            if state.retry is not None:
                wake = min(wake, state.retry.due)
        return max(wake, now)

    # -- fires ------------------------------------------------------------------------

    def _fire(self, state: _JobState, trigger: Trigger, now: datetime) -> None:
        spec = state.spec
        late = (now - trigger.due).total_seconds()
        if late > spec.starting_deadline:
            self.log.warning("missed", job=spec.job, scheduled_for=trigger.scheduled_for,
                             late_seconds=round(late, 3),
                             starting_deadline=spec.starting_deadline)  # fmt: skip
            self.metrics.skipped(spec.job, "missed")
            return
        if self.dry_run:
            self.log.emit("would_fire", job=spec.job, scheduled_for=trigger.scheduled_for,
                          trigger=trigger.kind)  # fmt: skip
            return
        if state.handle is None and not state.queue:
            self._launch(state, trigger, now)
            return
        running = state.handle.request.run_id if state.handle is not None else None
        if spec.overlap == "skip":
            reason = f"run {running} is still going (overlap: skip)"
            run_id = self.new_run_id(now)
            if not self._claim(Claim(spec.job, run_id, trigger, "skipped", reason, trigger.due)):
                return
            self.log.emit("skipped", job=spec.job, scheduled_for=trigger.scheduled_for,
                          running=running, overlap="skip")  # fmt: skip
            self.history.record_skipped(spec.job, run_id, trigger, reason)
            self.metrics.skipped(spec.job, "overlap")
        elif spec.overlap == "queue":
            state.queue.append(trigger)
            self.log.emit("queued", job=spec.job, scheduled_for=trigger.scheduled_for,
                          running=running, waiting=len(state.queue))  # fmt: skip
        else:  # replace
            dropped = len(state.queue)
            state.queue.clear()
            state.queue.append(trigger)
            self.log.emit("replacing", job=spec.job, scheduled_for=trigger.scheduled_for,
                          running=running, dropped=dropped or None)  # fmt: skip
            if state.handle is not None and not state.replacing:
                state.replacing = True
                state.handle.cancel(
                    f"replaced by the run scheduled for {iso(trigger.scheduled_for)}"
                )

    def _start_queued(self, state: _JobState, now: datetime) -> None:
        while state.queue and state.handle is None:
            trigger = state.queue.popleft()
            if (now - trigger.due).total_seconds() > state.spec.starting_deadline:
                self.log.warning("missed", job=state.spec.job, scheduled_for=trigger.scheduled_for,
                                 reason="waited in the queue past starting_deadline")  # fmt: skip
                self.metrics.skipped(state.spec.job, "missed")
                continue
            self._launch(state, trigger, now)

    def _launch(
        self,
        state: _JobState,
        trigger: Trigger,
        now: datetime,
        targets: tuple[str, ...] | None = None,
    ) -> None:
        spec = state.spec
        request = LaunchRequest(
            job=spec.job,
            run_id=self.new_run_id(now),
            trigger=trigger,
            targets=targets,
            deadline=float(spec.runtime) if spec.runtime else None,
            changes=spec.on_change is not None,
        )
        if not self._claim(Claim(spec.job, request.run_id, trigger)):
            return
        if trigger.kind != "retry" and state.retry is not None:
            self._release(state, "a new scheduled run covers every target", now)
        late = max(0.0, (now - trigger.due).total_seconds())
        self.log.emit("fire", job=spec.job, run_id=request.run_id, trigger=trigger.kind,
                      scheduled_for=trigger.scheduled_for, late_ms=round(late * 1000),
                      attempt=trigger.attempt or None, retry_of=trigger.retry_of,
                      targets=len(targets) if targets is not None else None)  # fmt: skip
        self.metrics.fired(spec.job, late)
        state.started_mono = time.monotonic()
        state.started_at = now
        try:
            state.handle = self.launcher.launch(self.chain, request, self.wake)
        except Exception as exc:  # a launcher that cannot start a run must not stop the rest
            self.log.error("launch_failed", job=spec.job, run_id=request.run_id,
                           reason=f"{type(exc).__name__}: {exc}")  # fmt: skip
            result = RunResult(request.run_id, spec.job, ERROR, reason=str(exc))
            self.metrics.finished(result, 0.0)
            self._after_run(spec.job, state, request, result, now)

    # -- runs that ended ----------------------------------------------------------------

    def _finished(self, name: str, state: _JobState, now: datetime) -> None:
        handle = state.handle
        assert handle is not None
        state.handle = None
        state.replacing = False
        request = handle.request
        result = handle.result or RunResult(request.run_id, name, ERROR, reason="no result")
        self.finished.append(result)
        self.runs_finished += 1
        seconds = run_seconds(result)
        if seconds is None:
            seconds = (now - state.started_at).total_seconds() if state.started_at else 0.0
        level = "info" if result.status == OK else "warning"
        self.log.emit("run_finished", level, job=name, run_id=result.run_id,
                      status=result.status, targets=result.targets,
                      targets_ok=result.targets_ok, targets_failed=result.targets_failed,
                      targets_unfinished=result.targets_unfinished or None,
                      seconds=round(seconds, 3), reason=result.reason)  # fmt: skip
        if result.still_running:
            # Their threads cannot be stopped: each lives on until its task returns (one
            # that never returns holds a thread for the life of the scheduler).
            self.log.warning("tasks_still_running", job=name, run_id=result.run_id,
                             tasks=result.still_running, abandoned=result.abandoned,
                             threads=threading.active_count())  # fmt: skip
        self.metrics.finished(result, seconds)
        spec = state.spec
        if not self._stopping and not (result.status == INTERRUPTED and state.queue):
            self._after_run(name, state, request, result, now)
        else:  # stopped by shutdown, or replaced by a newer run: no alert
            self._decide(result.run_id, "none")
        removed = None
        if self.claims is None or self.claims.leading():  # retention: the leader's alone
            removed = self._safely(
                "prune",
                lambda: self.history.prune(name, spec.keep_runs, retention_cutoff(spec, now)),
            )
            if self.claims is not None:
                self._safely("prune", lambda: self.claims.prune(name))  # type: ignore[union-attr]
        if removed:
            self.log.emit("pruned", job=name, runs=removed, keep_runs=spec.keep_runs,
                          keep_days=spec.keep_days)  # fmt: skip

    def _after_run(
        self, name: str, state: _JobState, request: LaunchRequest, result: RunResult, now: datetime
    ) -> None:
        spec = state.spec
        trigger = request.trigger
        if trigger.kind == "retry" and trigger.retry_of:
            self._decide(trigger.retry_of, "covered")  # this run's outcome is the fire's
        if result.status in RETRYABLE and trigger.attempt < spec.retry_times:
            targets = result.failed_targets or request.targets
            if result.status == ERROR:
                targets = request.targets
            due = now + timedelta(seconds=spec.retry_after)
            state.retry = _Retry(
                due,
                Trigger("retry", trigger.scheduled_for, due, trigger.attempt + 1, result.run_id),
                tuple(targets) if targets else None,
                held=(request, result),
            )
            self._decide(result.run_id, "held")
            self.log.emit("retry_scheduled", job=name, retry_of=result.run_id, at=due,
                          attempt=trigger.attempt + 1, of=spec.retry_times,
                          targets=len(targets) if targets else "all")  # fmt: skip
            return
        self._final(name, state, request, result)

    def _final(
        self,
        name: str,
        state: _JobState,
        request: LaunchRequest,
        result: RunResult,
        why: str | None = None,
    ) -> None:
        """The fire's outcome is final (no retry will cover it): its alerts go out."""
        spec = state.spec
        previous = state.last_outcome
        state.last_outcome = result.status
        payload = self._payload(request, result, previous)
        if why:
            payload["final_because"] = why
        if result.status == OK:
            kinds = ["success"] + (["recovery"] if previous is not None and previous != OK else [])
        else:
            kinds = ["failure"]
        if result.changes and result.changes.get("changed"):
            kinds.append("change")  # the run's rows differ from the last run's (issue 21)
        kinds = [k for k in kinds if spec.alert(k) is not None]
        for kind in kinds:  # each alert is written with the decision (Store.add_alert)
            self.outbox.enqueue(result.run_id, name, kind, payload)
        self._decide(result.run_id, "alerted" if kinds else "none")

    def _release(self, state: _JobState, why: str, now: datetime) -> None:
        """A pending retry that will not run: the run it was to retry is final."""
        retry, state.retry = state.retry, None
        assert retry is not None
        self.log.emit("retry_dropped", job=state.spec.job, retry_of=retry.trigger.retry_of,
                      reason=why)  # fmt: skip
        if retry.held is not None:
            request, result = retry.held
            self._final(state.spec.job, state, request, result, why=f"its retry was dropped: {why}")

    def _recover(self, name: str, state: _JobState, now: datetime) -> None:
        """Runs the last scheduler left without an alert decision (it stopped or was killed
        after they ended, or they crashed with it): the newest gets its retry again, if it
        has one left; the others' outcomes are final."""
        rows = self._safely("undecided", lambda: self.history.undecided(name)) or []
        if not rows:
            return
        state.last_outcome = self.history.last_outcome(name, decided=True)
        newest = self.history.last_fire(name)
        # A run whose retry is among them was covered by it (the retry started, then the
        # scheduler died): the retry's outcome is the fire's.
        retried = {str(row["retry_of"]) for row in rows if row.get("retry_of")}
        for index, row in enumerate(rows):
            if str(row["run_id"]) in retried and index < len(rows) - 1:
                self.log.emit("recovered", job=name, run_id=row["run_id"], status=row["status"],
                              alert="covered")  # fmt: skip
                self._decide(str(row["run_id"]), "covered")
                continue
            request, result = self._rebuild(row)
            latest = index == len(rows) - 1 and request.trigger.scheduled_for == newest
            self.log.emit("recovered", job=name, run_id=result.run_id, status=result.status,
                          alert=row.get("alert"))  # fmt: skip
            if result.status == INTERRUPTED:
                self._decide(result.run_id, "none")
            elif latest:
                self._after_run(name, state, request, result, now)
            else:
                self._final(name, state, request, result, why="a newer fire followed it")

    def _rebuild(self, row: dict[str, Any]) -> tuple[LaunchRequest, RunResult]:
        """The request and result of a stored run (for :meth:`_recover`)."""
        run_id, status = str(row["run_id"]), str(row["status"])
        scheduled = _parse(row.get("scheduled_for")) or self.clock.now()
        trigger = Trigger(row.get("trigger") or "schedule", scheduled, scheduled,
                          int(row.get("attempt") or 0), row.get("retry_of"))  # fmt: skip
        retry = self._safely("retry_targets", lambda: self.history.retry_targets(run_id))
        result = RunResult(
            run_id=run_id, job=str(row["job"]), status=status,
            targets=int(row.get("targets") or 0), targets_ok=int(row.get("targets_ok") or 0),
            targets_failed=int(row.get("targets_failed") or 0),
            targets_unfinished=int(row.get("unfinished") or 0),
            failed_targets=tuple(retry or ()), records=int(row.get("records") or 0),
            records_failed=int(row.get("records_failed") or 0),
            started_at=row.get("started_at"), finished_at=row.get("finished_at"),
            reason=row.get("reason"),
        )  # fmt: skip
        return LaunchRequest(job=str(row["job"]), run_id=run_id, trigger=trigger), result

    def _claim(self, claim: Claim) -> bool:
        """Claim the fire in the store (see :mod:`rolechain.scheduler.claims`); False,
        said in the log, if another replica has it or this one no longer leads."""
        if self.claims is None:
            return True
        fields = {"job": claim.job, "scheduled_for": claim.trigger.scheduled_for,
                  "attempt": claim.trigger.attempt or None}  # fmt: skip
        try:
            if self.claims.claim(claim):
                return True
        except Exception as exc:  # the store cannot be reached: the next leader catches up
            self.log.error("claim_failed", **fields, reason=f"{type(exc).__name__}: {exc}")
            return False
        why = "not the leader" if not self.claims.leading() else "claimed by another scheduler"
        self.log.warning("not_fired", **fields, reason=why)
        self.metrics.skipped(claim.job, "claimed")
        return False

    def _decide(self, run_id: str, decision: str) -> None:
        self._safely("set_alert", lambda: self.history.set_alert(run_id, decision))

    def _safely(self, what: str, work: Callable[[], Any]) -> Any:
        """A history call that must not stop the scheduler (a store that cannot be
        written: disk full, read-only); said once."""
        try:
            return work()
        except Exception as exc:
            if not self._store_said:
                self._store_said = True
                self.log.error("store_failed", operation=what,
                               reason=f"{type(exc).__name__}: {exc}",
                               fix="free space on its disk or make it writable; alerts "
                               "are still delivered")  # fmt: skip
            return None

    def _alert_for(self, job: str, kind: str) -> Any:
        state = self.jobs.get(job)
        return state.spec.alert(kind) if state is not None else None

    def _payload(
        self, request: LaunchRequest, result: RunResult, previous: str | None
    ) -> dict[str, Any]:
        trigger = request.trigger
        data = result.to_dict()
        data["failed_targets"] = data["failed_targets"][:1000]
        data.update(
            trigger=trigger.kind,
            scheduled_for=iso(trigger.scheduled_for),
            attempt=trigger.attempt,
            retry_of=trigger.retry_of,
            previous_status=previous,
            host=self._host,
            store=self.store_name,
        )
        return data

    # -- reload and shutdown ------------------------------------------------------------

    def reload(self) -> bool:
        """Load the chain again; on any error keep the current schedule and log why."""
        if self.reloader is None:
            return False
        try:
            chain, specs = self.reloader()
        except (ChainFileError, PlanError) as exc:
            problems = [str(p) for p in getattr(exc, "problems", [])] or [
                str(v).splitlines()[0] for v in getattr(exc, "violations", [])
            ]
            for problem in problems or [str(exc)]:
                self.log.error("reload_failed", problem=problem)
            self.log.error("reload_failed", reason="kept the schedule loaded before",
                           problems=len(problems))  # fmt: skip
            return False
        except RolechainError as exc:
            self.log.error(
                "reload_failed", problem=str(exc), reason="kept the schedule loaded before"
            )
            return False
        except Exception as exc:  # a reload must never stop the scheduler
            self.log.error("reload_failed", problem=f"{type(exc).__name__}: {exc}",
                           reason="kept the schedule loaded before")  # fmt: skip
            return False
        now = self.clock.now()
        self.chain = chain
        added = [n for n in specs if n not in self.jobs]
        removed = [n for n in self.jobs if n not in specs]
        changed = [n for n in specs if n in self.jobs and self.jobs[n].spec != specs[n]]
        for name in removed:
            state = self.jobs[name]
            if state.handle is not None:
                # Let it finish; it is collected when it ends, then forgotten.
                state.next_fire = None
                state.queue.clear()
                if state.retry is not None:
                    self._release(state, "the job was removed from the chain file", now)
                state.fires = iter(())
                self._orphans.append((name, state))
            elif state.retry is not None:
                self._release(state, "the job was removed from the chain file", now)
            del self.jobs[name]
            self.metrics.next_fire(name, None)
        for name in changed:
            old = self.jobs[name]
            fires = specs[name].fires(now)
            old.spec, old.fires, old.next_fire = specs[name], fires, next(fires, None)
            self.metrics.next_fire(name, old.next_fire.due if old.next_fire else None)
        for name in added:
            self._add_job(name, specs[name], now, catching_up=False)
        self._specs = dict(specs)
        self.log.emit("reloaded", jobs=list(specs), added=added or None,
                      removed=removed or None, changed=changed or None)  # fmt: skip
        return True

    def shutdown(self, grace: float) -> None:
        """Stop scheduling; let running runs go on for ``grace`` real seconds, then stop
        them at once: tasks still running, and those not started, are recorded
        ``Interrupted`` (what finished is kept)."""
        if self._stopping:
            return
        self._stopping = True
        if self._stop_why:
            self.log.emit("stop_requested", by=self._stop_why)
        states = [(n, s) for n, s in self.jobs.items() if s.handle is not None]
        states += [(n, s) for n, s in self._orphans if s.handle is not None]
        self._orphans.clear()
        self.log.emit("stopping", running=len(states), grace_seconds=grace)
        end = time.monotonic() + grace
        for _, state in states:
            assert state.handle is not None
            state.handle.wait(max(0.0, end - time.monotonic()))
        for name, state in states:
            assert state.handle is not None
            if not state.handle.done:
                self.log.warning("cancelling", job=name, run_id=state.handle.request.run_id,
                                 reason="still running after the grace period")  # fmt: skip
                state.handle.cancel("the scheduler is stopping", grace=0)
        for name, state in states:
            assert state.handle is not None
            state.handle.wait(None)
            self._finished(name, state, self.clock.now())
        self.outbox.close()
        self.alerts.close()
        self.metrics.stopped()
        self.log.emit("stopped", runs=self.runs_finished)


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _pid() -> int:
    import os

    return os.getpid()


class MemoryHistory:
    """A History kept in memory (``--dry-run`` without a store; tests)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def last_fire(self, job: str) -> datetime | None:
        fires = [r["scheduled_for"] for r in self.rows if r["job"] == job]
        return max(fires) if fires else None

    def last_outcome(self, job: str, *, decided: bool = False) -> str | None:
        done = [r for r in self.rows if r["job"] == job and r["status"] != "skipped"]
        return str(done[-1]["status"]) if done else None

    def record_skipped(self, job: str, run_id: str, trigger: Trigger, reason: str) -> None:
        self.rows.append({"job": job, "run_id": run_id, "status": "skipped",
                          "scheduled_for": trigger.scheduled_for, "reason": reason})  # fmt: skip

    def record(self, job: str, run_id: str, scheduled_for: datetime, status: str) -> None:
        self.rows.append({"job": job, "run_id": run_id, "status": status,
                          "scheduled_for": scheduled_for})  # fmt: skip

    def set_alert(self, run_id: str, decision: str) -> None:
        for row in self.rows:
            if row["run_id"] == run_id:
                row["alert"] = decision

    def undecided(self, job: str) -> list[dict[str, Any]]:
        return []  # nothing outlives the process

    def retry_targets(self, run_id: str) -> tuple[str, ...] | None:
        return None

    def prune(self, job: str, keep_runs: int, older_than: datetime) -> int:
        mine = [r for r in self.rows if r["job"] == job]
        mine.sort(key=lambda r: r["scheduled_for"])
        newest = mine[-1] if mine else None
        first_kept = len(mine) - keep_runs
        drop = [
            r
            for i, r in enumerate(mine)
            if r is not newest and (i < first_kept or r["scheduled_for"] < older_than)
        ]
        for r in drop:
            self.rows.remove(r)
        return len(drop)


def run_seconds(result: RunResult) -> float | None:
    """How long the run took in real seconds, from its own start and end times (a
    rehearsal's clock runs faster, but a run's work does not); None if it has neither."""
    if not result.started_at or not result.finished_at:
        return None
    try:
        start = datetime.fromisoformat(result.started_at)
        end = datetime.fromisoformat(result.finished_at)
    except ValueError:
        return None
    return max(0.0, (end - start).total_seconds())

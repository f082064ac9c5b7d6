"""The runner: a bounded thread pool over targets, streaming records as units finish.

For each target (pulled lazily from the plan) a *prepare* step gets the target's
credentials from the hop tree (assuming hops the first time they are needed) and expands
the target into work units, one per (region, task); ``all`` regions are looked up in the
target account. Units then run on the same pool. At most ``concurrency`` futures are in
flight and no result is kept after it is yielded, so memory stays flat as targets grow.

Failures stay with their target: a hop that fails gives every target below it one error
record (with the hop), a task that fails gives one error record, and the run goes on.
Per-task timeouts: ``exec`` kills its process; other tasks are abandoned (the pool thread
finishes in the background, bounded by botocore's read timeout) and reported as
``TaskTimeout``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rolechain.aws.credentials import HopCredentials, HopTree
from rolechain.aws.errors import describe_foreign
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import AwsSessions
from rolechain.errors import AwsError, ExpiredTokenError, RolechainError, TaskError
from rolechain.executor.records import Record, RecordError, Summary
from rolechain.executor.tasks import TASK_FUNCTIONS, TaskEnv, TaskFailed, enabled_regions
from rolechain.executor.units import WorkUnit, task_regions, units_for
from rolechain.planner.plan import Plan, Target

ProgressCallback = Callable[[str, bool, int, int], None]  # target, ok, done, total


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _unit_record(
    unit: WorkUnit, data: Any, error: RecordError | None, started_at: str, duration_ms: int
) -> Record:
    """The record of one unit: ok with ``data``, or an error."""
    return Record(
        job=unit.job,
        run_id=unit.run_id,
        target=unit.target,
        account_id=unit.account_id,
        role_arn=unit.role_arn,
        region=unit.region,
        task=unit.task.id,
        status="error" if error else "ok",
        data=data,
        error=error,
        started_at=started_at,
        duration_ms=duration_ms,
    )


def services_of(plan: Plan, regions_override: tuple[str, ...] | None = None) -> list[str]:
    """The AWS services a run of ``plan`` will use, as far as the plan says."""
    services = ["sts"]
    regions = [*plan.regions, *(regions_override or ())]
    for task in plan.tasks:
        if task.task == "call":
            services.append(str(task.params_dict.get("service", "")))
        elif task.task in ("s3.list_buckets", "sts.get_caller_identity"):
            services.append(task.task.split(".")[0])
        regions.extend(task.regions or ())
    if "all" in regions:
        services.append("ec2")  # DescribeRegions lists the enabled regions
    return services


def error_of(exc: BaseException) -> RecordError:
    """The record's error for an exception (never includes a credential)."""
    if isinstance(exc, AwsError):
        return RecordError(code=exc.code, message=exc.aws_message, hop=exc.context.hop)
    if isinstance(exc, TaskError):
        return RecordError(code=exc.code, message=exc.message)
    if isinstance(exc, RolechainError):
        return RecordError(code=type(exc).__name__, message=exc.message)
    return RecordError(code=type(exc).__name__, message=str(exc) or type(exc).__name__)


@dataclass
class _Flight:
    kind: str  # "prepare" | "unit"
    target: Target
    unit: WorkUnit | None = None
    started: float | None = None
    started_at: datetime | None = None
    timeout: float | None = None


class Runner:
    """Runs a plan's tasks in every target and region; iterate it for records."""

    def __init__(
        self,
        plan: Plan,
        tree: HopTree,
        sessions: AwsSessions,
        *,
        concurrency: int | None = None,
        policy: RetryPolicy | None = None,
        stats: CallStats | None = None,
        regions: tuple[str, ...] | None = None,
        progress: ProgressCallback | None = None,
        summary: Summary | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.plan = plan
        self.tree = tree
        self.sessions = sessions
        self.concurrency = max(1, concurrency or plan.concurrency or 16)
        self.policy = policy or RetryPolicy.from_settings(plan.settings_dict)
        self.stats = stats
        self.regions_override = regions
        self.progress = progress
        self.summary = summary or Summary(job=plan.job, run_id=plan.run_id)
        self._now = now
        self._lock = threading.Lock()
        self._timeouts = {t.id: t.timeout_seconds for t in plan.tasks}
        self._any_timeout = any(t.timeout_seconds and t.task != "exec" for t in plan.tasks)

    # -- work done on pool threads -------------------------------------------------------

    def _target_record(self, target: Target, exc: BaseException, started: datetime) -> Record:
        return Record(
            job=self.plan.job,
            run_id=self.plan.run_id,
            target=target.name,
            account_id=target.account_id,
            role_arn=target.role_arn,
            region=None,
            task=None,
            status="error",
            error=error_of(exc),
            started_at=_iso(started),
            duration_ms=int((self._now() - started).total_seconds() * 1000),
        )

    def _prepare(self, flight: _Flight) -> list[WorkUnit] | Record:
        flight.started = time.monotonic()
        target = flight.target
        started = self._now()
        try:
            creds = self.tree.for_target(target)
            units: list[WorkUnit] = []
            enabled: tuple[str, ...] | None = None
            for task in self.plan.tasks:
                regions = task_regions(self.plan, target, task, self.regions_override)
                if "all" in regions:
                    if enabled is None:
                        env = TaskEnv(creds, self.sessions, self.policy, self.stats)
                        enabled = enabled_regions(env, self.plan.region)
                    regions = enabled
                units.extend(units_for(self.plan, target, task, regions))
        except RolechainError as exc:
            return self._target_record(target, exc, started)
        if len(units) == 1:
            # The common case (one task, one region): run it here rather than going back
            # through the scheduler and the pool's queue. The flight becomes a unit flight
            # first, so its timeout is watched like any other.
            flight.unit = units[0]
            flight.timeout = self._timeouts.get(units[0].task.id)
            flight.kind = "unit"
            record = self._execute(flight)
            self.sessions.release(creds)
            return record
        return units

    def _execute(self, flight: _Flight) -> Record:
        flight.started = time.monotonic()
        unit = flight.unit
        assert unit is not None
        started = flight.started_at = self._now()
        t0 = time.perf_counter()
        data: Any = None
        error: RecordError | None = None
        try:
            data = self._run_task(unit, flight.timeout)
        except TaskFailed as exc:
            data, error = exc.data, error_of(exc)
        except RolechainError as exc:
            error = error_of(exc)
        except Exception as exc:  # a python task's own code failed
            foreign = describe_foreign(exc)
            error = error_of(foreign if foreign is not None else exc)
        return _unit_record(
            unit, data, error, _iso(started), int((time.perf_counter() - t0) * 1000)
        )

    def _run_task(self, unit: WorkUnit, timeout: float | None) -> Any:
        func = TASK_FUNCTIONS.get(unit.task.task)
        if func is None:
            raise TaskError(f"unknown task {unit.task.task!r}", code="UnknownTask")
        creds: HopCredentials = self.tree.credentials(unit.hop_id)
        env = TaskEnv(creds, self.sessions, self.policy, self.stats, timeout)
        used = creds.get_frozen_credentials().access_key
        try:
            return func(unit, env)
        except ExpiredTokenError:
            # The target's session expired under us (clock skew, a revoked session):
            # re-assume it from its parent and try once more.
            creds.force_refresh(stale_access_key=used)
            return func(unit, env)

    # -- the scheduler, on the caller's thread -------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self) -> Iterator[Record]:
        summary = self.summary
        summary.targets = len(self.plan.targets)
        summary.planned_assume_calls = self.plan.assume_calls
        started_at = self._now()
        summary.started_at = _iso(started_at)
        clock0 = time.monotonic()
        targets = iter(self.plan.targets)
        ready: deque[_Flight] = deque()
        inflight: dict[Future[Any], _Flight] = {}
        remaining: dict[str, int] = {}
        failed: set[str] = set()
        done_targets = 0
        self.sessions.warm(services_of(self.plan, self.regions_override), self.plan.region)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="rolechain")
        abandoned = 0

        def finish_target(target: Target, ok: bool) -> None:
            nonlocal done_targets
            done_targets += 1
            creds = self.tree.peek(target.hop_id)
            if creds is not None:
                self.sessions.release(creds)
            if ok:
                summary.targets_ok += 1
            else:
                summary.targets_failed += 1
                summary.failed_targets.append(target.name)
            if self.progress is not None:
                self.progress(target.name, ok, done_targets, summary.targets)

        def account(record: Record, target: Target) -> None:
            summary.records += 1
            if not record.ok:
                summary.records_failed += 1
                failed.add(target.name)
            left = remaining.get(target.name, 1) - 1
            if left <= 0:
                remaining.pop(target.name, None)
                finish_target(target, target.name not in failed)
                failed.discard(target.name)
            else:
                remaining[target.name] = left

        try:
            exhausted = False
            while True:
                while len(inflight) < self.concurrency + abandoned and not (
                    exhausted and not ready
                ):
                    if ready:
                        flight = ready.popleft()
                        inflight[pool.submit(self._execute, flight)] = flight
                        continue
                    nxt = next(targets, None)
                    if nxt is None:
                        exhausted = True
                        break
                    flight = _Flight("prepare", nxt)
                    inflight[pool.submit(self._prepare, flight)] = flight
                if len(inflight) == abandoned:
                    # Nothing left but timed-out work still running in the background:
                    # its records were given; do not wait for it.
                    break
                done, _ = wait(list(inflight), timeout=self._next_deadline(inflight),
                               return_when=FIRST_COMPLETED)  # fmt: skip
                for future in done:
                    flight = inflight.pop(future)
                    if flight.kind == "abandoned":
                        abandoned -= 1
                        continue
                    result = future.result()
                    if isinstance(result, Record):
                        account(result, flight.target)
                        yield result
                    else:  # a prepared target: its units
                        if not result:
                            finish_target(flight.target, True)
                            continue
                        remaining[flight.target.name] = len(result)
                        # Finish started targets first: their units go to the front.
                        for unit in reversed(result):
                            ready.appendleft(
                                _Flight("unit", flight.target, unit,
                                        timeout=self._timeouts.get(unit.task.id))
                            )  # fmt: skip
                for flight in list(inflight.values()):
                    record = self._timed_out(flight)
                    if record is not None:
                        flight.kind = "abandoned"
                        abandoned += 1
                        account(record, flight.target)
                        yield record
        except BaseException:
            summary.interrupted = True
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            summary.elapsed_seconds = round(time.monotonic() - clock0, 3)
            summary.finished_at = _iso(self._now())
            if self.stats is not None:
                summary.assume_calls = self.stats.assume_calls
                summary.retries = self.stats.retries

    def _next_deadline(self, inflight: dict[Future[Any], _Flight]) -> float | None:
        now = time.monotonic()
        waits = [
            f.started + f.timeout - now
            for f in inflight.values()
            if f.kind == "unit" and f.timeout and f.started is not None
            and f.unit is not None and f.unit.task.task != "exec"
        ]  # fmt: skip
        if waits:
            return max(0.0, min(waits)) + 0.01
        # Work not started yet (or a target still being prepared, whose single unit runs
        # in place) may have a timeout: look again soon.
        return 0.25 if self._any_timeout else None

    def _timed_out(self, flight: _Flight) -> Record | None:
        if flight.kind != "unit" or not flight.timeout or flight.started is None:
            return None
        unit = flight.unit
        assert unit is not None
        if unit.task.task == "exec":  # exec enforces its own timeout and kills the process
            return None
        if time.monotonic() - flight.started < flight.timeout:
            return None
        timeout = RecordError(
            code="TaskTimeout", message=f"task did not finish within {flight.timeout:g}s"
        )
        started_at = _iso(flight.started_at) if flight.started_at else ""
        return _unit_record(unit, None, timeout, started_at, int(flight.timeout * 1000))

"""What a scheduled job's keys mean, as pure decisions: fire times with jitter, catch-up.

Nothing here touches AWS, the store or a clock: every function takes the times it needs,
so a week of fires is computed (and tested) in milliseconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rolechain.cron import CronSchedule
from rolechain.errors import UsageError
from rolechain.model.chain import Chain
from rolechain.model.schema import Alert, Job, ScheduleSettings, closest

# Counting missed fires stops here ("more than 10000"): a per-minute job down for a year
# would otherwise cost half a million steps for a number in a log line.
MISSED_COUNT_CAP = 10_000


def jitter_offset(job: str, jitter: int) -> int:
    """The job's fixed delay in seconds, in ``[0, jitter)``: a hash of its name, so every
    restart (and every machine) computes the same one, and jobs with the same cron spread
    out instead of starting together."""
    if jitter <= 0:
        return 0
    digest = hashlib.sha256(job.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % jitter


@dataclass(frozen=True)
class Fire:
    """One fire of a schedule: its nominal cron time and when it is due (plus jitter)."""

    scheduled_for: datetime
    due: datetime


@dataclass(frozen=True)
class ScheduleSpec:
    """A scheduled job with every key resolved (job value, else ``settings.schedule``)."""

    job: str
    cron: CronSchedule
    overlap: str
    catch_up: str
    starting_deadline: int
    jitter: int
    offset: int
    retry_after: int
    retry_times: int
    keep_runs: int
    keep_days: int
    runtime: int | None
    on_failure: Alert | None = None
    on_success: Alert | None = None
    on_recovery: Alert | None = None
    on_change: Alert | None = None

    @classmethod
    def of(cls, name: str, job: Job, defaults: ScheduleSettings) -> ScheduleSpec:
        assert job.schedule is not None

        def pick(key: str) -> object:
            value = getattr(job, key)
            return getattr(defaults, key) if value is None else value

        jitter = int(pick("jitter"))  # type: ignore[call-overload]
        retry = job.retry_failed or defaults.retry_failed
        keep = job.keep or defaults.keep
        return cls(
            job=name,
            cron=CronSchedule(job.schedule, str(pick("timezone"))),
            overlap=str(pick("overlap")),
            catch_up=str(pick("catch_up")),
            starting_deadline=int(pick("starting_deadline")),  # type: ignore[call-overload]
            jitter=jitter,
            offset=jitter_offset(name, jitter),
            retry_after=retry.after,
            retry_times=retry.times,
            keep_runs=keep.runs,
            keep_days=keep.days,
            runtime=job.runtime,
            on_failure=job.on_failure or defaults.on_failure,
            on_success=job.on_success or defaults.on_success,
            on_recovery=job.on_recovery or defaults.on_recovery,
            on_change=job.on_change or defaults.on_change,
        )

    def due(self, scheduled_for: datetime) -> datetime:
        return scheduled_for + timedelta(seconds=self.offset)

    def fires(self, after: datetime) -> Iterator[Fire]:
        """Fires due strictly after ``after``, in order."""
        for moment in self.cron.fires(after - timedelta(seconds=self.offset)):
            yield Fire(moment, self.due(moment))

    def next_fires(self, after: datetime, count: int) -> list[Fire]:
        out: list[Fire] = []
        for fire in self.fires(after):
            out.append(fire)
            if len(out) >= count:
                break
        return out

    def alert(self, event: str) -> Alert | None:
        found: Alert | None = getattr(self, f"on_{event}", None)
        return found


def schedule_specs(chain: Chain, jobs: Sequence[str] = ()) -> dict[str, ScheduleSpec]:
    """The scheduled jobs of ``chain`` (or the named ones), resolved.

    Raises UsageError for a named job that does not exist or has no ``schedule``.
    """
    model = chain.model
    defaults = model.settings.schedule
    scheduled = [name for name, job in model.jobs.items() if job.schedule is not None]
    for name in jobs:
        if name not in model.jobs:
            guess = closest(name, list(model.jobs))
            raise UsageError(
                f"no job {name!r} in {', '.join(chain.files) or 'the chain'}",
                hint=f"did you mean {guess!r}?"
                if guess
                else "scheduled jobs: " + (", ".join(scheduled) or "(none)"),
            )
        if model.jobs[name].schedule is None:
            where = chain.locate("jobs", name)
            raise UsageError(
                f"{where}: job {name!r} has no 'schedule'"
                if where
                else f"job {name!r} has no 'schedule'",
                hint="add a cron expression under 'schedule', or run it with 'rolechain run'",
            )
    names = list(jobs) or scheduled
    return {name: ScheduleSpec.of(name, model.jobs[name], defaults) for name in names}


@dataclass(frozen=True)
class CatchUp:
    """What to do about fires that were due while the scheduler was not running."""

    run: tuple[Fire, ...] = ()  # to start now, oldest first
    missed: int = 0  # due while down and not run (policy or starting_deadline)
    first_missed: datetime | None = None
    last_missed: datetime | None = None
    more: bool = False  # counting stopped at MISSED_COUNT_CAP


def catch_up(spec: ScheduleSpec, last_fire: datetime | None, now: datetime) -> CatchUp:
    """Fires of ``spec`` due after ``last_fire`` (the newest one in the store) and up to
    ``now``: which to run (``catch_up`` within ``starting_deadline``) and how many are
    missed. A job with no history has nothing to catch up: it starts from now."""
    if last_fire is None:
        return CatchUp()
    window = timedelta(seconds=spec.starting_deadline)
    in_time: list[Fire] = []
    missed = 0
    first: datetime | None = None
    last: datetime | None = None
    more = False
    for fire in spec.fires(spec.due(last_fire)):
        if fire.due > now:
            break
        if now - fire.due <= window:
            in_time.append(fire)
            continue
        missed += 1
        first = first or fire.scheduled_for
        last = fire.scheduled_for
        if missed >= MISSED_COUNT_CAP:
            more = True
            # Skip ahead to the fires still within the deadline.
            for late in spec.fires(now - window - timedelta(microseconds=1)):
                if late.due > now:
                    break
                in_time.append(late)
            break
    if spec.catch_up == "none":
        run: list[Fire] = []
    elif spec.catch_up == "latest":
        run = in_time[-1:]
    else:
        run = in_time
    dropped = [f for f in in_time if f not in run]
    if dropped:
        missed += len(dropped)
        first = first or dropped[0].scheduled_for
        last = max(last or dropped[-1].scheduled_for, dropped[-1].scheduled_for)
    return CatchUp(tuple(run), missed, first, last, more)


def retention_cutoff(spec: ScheduleSpec, now: datetime) -> datetime:
    """Scheduled runs that finished before this are deleted (the newest always stays)."""
    return now - timedelta(days=spec.keep_days)

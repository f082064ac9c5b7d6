"""Running one unit of work: what the thread engine does on its workers, and what a Dask
worker does for each unit of its batch.

:func:`expand_target` gets a target's credentials from the hop tree (assuming hops the
first time they are needed) and expands it into units, one per (region, task); ``all``
regions are looked up in the target account. :func:`execute_unit` runs one unit with the
context's hop tree and always returns its record: whatever the task raises (``SystemExit``
from ``sys.exit``, ``KeyboardInterrupt``, any ``BaseException``) becomes that unit's error
record, so failures stay with their target.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rolechain.aws.credentials import HopCredentials
from rolechain.errors import ExpiredTokenError, TaskError
from rolechain.executor.context import RunContext
from rolechain.executor.records import (
    Record,
    RecordError,
    error_of,
    iso,
    now,
    task_error,
    unit_record,
)
from rolechain.executor.tasks import TASK_FUNCTIONS, TaskEnv, TaskFailed, enabled_regions
from rolechain.executor.units import WorkUnit, task_regions, units_for
from rolechain.planner.plan import Target


def execute_unit(
    context: RunContext,
    unit: WorkUnit,
    *,
    timeout: float | None = None,
    on_abandon: Callable[[Callable[[], None]], None] | None = None,
    started: datetime | None = None,
) -> Record:
    """Run one unit with the context's hop tree; always returns its record.

    Whatever the task raises, ``BaseException`` included, becomes an error record.
    ``timeout`` is passed to the task (``exec`` enforces it); ``on_abandon`` registers
    what to stop if the caller gives up on the task.
    """
    started = started or now()
    t0 = time.perf_counter()
    data: Any = None
    error: RecordError | None = None
    try:
        data = _run_task(context, unit, timeout, on_abandon)
    except TaskFailed as exc:
        data, error = exc.data, error_of(exc)
    except BaseException as exc:
        error = task_error(exc)
    return unit_record(unit, data, error, iso(started), int((time.perf_counter() - t0) * 1000))


def _run_task(
    context: RunContext,
    unit: WorkUnit,
    timeout: float | None,
    on_abandon: Callable[[Callable[[], None]], None] | None,
) -> Any:
    func = TASK_FUNCTIONS.get(unit.task.task)
    if func is None:
        raise TaskError(f"unknown task {unit.task.task!r}", code="UnknownTask")
    creds: HopCredentials = context.tree.credentials(unit.hop_id)
    env = task_env(context, creds, timeout, on_abandon)
    used = creds.get_frozen_credentials().access_key
    try:
        return func(unit, env)
    except ExpiredTokenError:
        # The target's session expired under us (clock skew, a revoked session):
        # re-assume it from its parent and try once more.
        creds.force_refresh(stale_access_key=used)
        context.stats.add_expired_token_refresh()
        return func(unit, env)
    finally:
        env.close()  # its clients go back to be lent to the next task


def task_env(
    context: RunContext,
    creds: HopCredentials,
    timeout: float | None = None,
    on_abandon: Callable[[Callable[[], None]], None] | None = None,
) -> TaskEnv:
    """What a task gets from the run: credentials, clients, retries, the throttle budget
    and the run's deadline."""
    return TaskEnv(
        creds,
        context.sessions,
        context.policy,
        context.stats,
        timeout,
        on_abandon,
        budget=context.budget,
        deadline=context.calls_deadline(),
    )


def expand_target(
    context: RunContext, target: Target, regions: tuple[str, ...] | None = None
) -> list[WorkUnit]:
    """The target's units, one per (region, task); assumes its hops if needed.

    ``all`` regions are looked up in the target account (ec2:DescribeRegions).
    """
    plan = context.plan
    creds = context.tree.for_target(target)
    units: list[WorkUnit] = []
    enabled: tuple[str, ...] | None = None
    for task in plan.tasks:
        chosen = task_regions(plan, target, task, regions)
        if "all" in chosen:
            if enabled is None:
                env = task_env(context, creds)
                try:
                    enabled = enabled_regions(env, plan.region)
                finally:
                    env.close()
            chosen = enabled
        units.extend(units_for(plan, target, task, chosen))
    skip = context.options.skip
    if skip:  # a resumed run: what the run it resumes finished is not run again
        units = [u for u in units if (u.target, u.region, u.task.id) not in skip]
    return units


__all__ = ["execute_unit", "expand_target", "task_env"]

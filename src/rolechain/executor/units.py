"""Units of work: plain, picklable data. A unit never holds a session or a client.

A :class:`WorkUnit` names a target, the hop path that reaches it, one region and one task;
whoever executes it looks the credentials up in its own hop tree. So a unit can be shipped
to another process or a Dask worker as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from rolechain.planner.plan import Plan, Target, TaskRef


@dataclass(frozen=True)
class WorkUnit:
    job: str
    run_id: str
    target: str
    account_id: str
    role_arn: str
    path: tuple[str, ...]
    region: str
    task: TaskRef

    @property
    def hop_id(self) -> str:
        return self.path[-1]


def task_regions(
    plan: Plan, target: Target, task: TaskRef, override: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """Regions a task runs in for a target; ``("all",)`` means every enabled region.

    A task's own ``regions`` win, then ``override`` (``--region``), then the target's, then
    the job's, then the default region.
    """
    if task.regions is not None:
        return task.regions
    if override:
        return override
    if target.regions:
        return target.regions
    if plan.regions:
        return plan.regions
    return (plan.region,)


def units_for(
    plan: Plan, target: Target, task: TaskRef, regions: tuple[str, ...]
) -> list[WorkUnit]:
    return [
        WorkUnit(
            job=plan.job,
            run_id=plan.run_id,
            target=target.name,
            account_id=target.account_id,
            role_arn=target.role_arn,
            path=target.path,
            region=region,
            task=task,
        )
        for region in regions
    ]

from __future__ import annotations

import dataclasses
import pickle

from aws.fakes import acct, hub_plan
from rolechain.executor.units import WorkUnit, task_regions, units_for
from rolechain.planner.plan import TaskRef


def test_units_are_plain_picklable_data() -> None:
    plan = hub_plan([acct(1)], regions=("us-east-1", "eu-west-1"))
    target = plan.targets[0]
    units = units_for(plan, target, plan.tasks[0], ("us-east-1", "eu-west-1"))
    assert [u.region for u in units] == ["us-east-1", "eu-west-1"]
    for unit in units:
        assert isinstance(unit, WorkUnit)
        assert pickle.loads(pickle.dumps(unit)) == unit
        assert unit.hop_id == target.path[-1]
        assert unit.path == target.path


def test_region_precedence() -> None:
    plan = hub_plan([acct(1)], regions=("us-east-1",))
    target = plan.targets[0]
    job_task = TaskRef("a", "sts.get_caller_identity")
    own = TaskRef("b", "sts.get_caller_identity", regions=("eu-west-1",))
    assert task_regions(plan, target, job_task) == ("us-east-1",)
    assert task_regions(plan, target, own) == ("eu-west-1",)
    assert task_regions(plan, target, job_task, ("ap-south-1",)) == ("ap-south-1",)
    assert task_regions(plan, target, own, ("ap-south-1",)) == ("eu-west-1",)
    everywhere = dataclasses.replace(plan, regions=("all",))
    all_target = dataclasses.replace(target, regions=())
    assert task_regions(everywhere, all_target, job_task) == ("all",)
    nowhere = dataclasses.replace(plan, regions=(), region="sa-east-1")
    assert task_regions(nowhere, all_target, job_task) == ("sa-east-1",)

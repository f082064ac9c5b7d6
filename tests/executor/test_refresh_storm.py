"""Refresh without storms, end to end against moto: STS throttles half the AssumeRole calls
while every session of a 200-target run sits in its advisory refresh window."""

from __future__ import annotations

import random
import sys
import threading
import types
from datetime import UTC, datetime
from typing import Any

import pytest

from aws.fakes import FakeClock, acct, hub_plan
from rolechain.executor import Run, RunContext, RunOptions
from rolechain.planner.plan import TaskRef

from .moto_helpers import ROOT, Faults, private_sessions

pytestmark = pytest.mark.slow


def three_calls(session: Any, context: Any) -> int:
    s3 = session.client("s3")
    for _ in range(2):  # each signed request asks the credentials whether to refresh
        s3.list_buckets()
    return 2


def test_throttled_advisory_refresh_costs_one_attempt_per_hop(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    module = types.ModuleType("rc_test_refresh")
    module.three_calls = three_calls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rc_test_refresh", module)
    plan = hub_plan(
        [acct(i) for i in range(200)],
        concurrency=16,
        tasks=(TaskRef("calls", "python", (("function", "rc_test_refresh:three_calls"),)),),
    )
    lock = threading.Lock()
    dice = random.Random(8)
    throttling = threading.Event()

    def half_throttled(operation: str, request: Any) -> Any:
        if operation == "AssumeRole" and throttling.is_set():
            with lock:
                if dice.random() < 0.5:
                    return ("Throttling", "Rate exceeded", 400)
        return None

    faults = Faults(half_throttled)
    clock = FakeClock(datetime.now(UTC))
    context = RunContext(
        plan,
        None,
        RunOptions(concurrency=16, check_identity=False),
        credentials=ROOT,
        clock=clock,
        aws_sessions=private_sessions(faults, concurrency=16),
    ).prepare()
    for target in plan.targets:  # every hop assumed once, before STS starts throttling
        context.credentials_for(target)
    assert faults.seen["AssumeRole"] == plan.assume_calls == 201

    clock.advance(3600 - 800)  # 800 s left: inside the advisory window, not the mandatory
    throttling.set()
    execution = Run(context)
    records = list(execution)

    assert len(records) == 200
    assert [r.error for r in records if not r.ok] == []
    assert execution.summary.targets_ok == 200
    attempts = faults.seen["AssumeRole"] - 201
    # One attempt per hop in the window (the clock stands still, so a hop whose attempt was
    # throttled stays in its cool-down); 400 signed requests did not each add attempts.
    assert attempts <= plan.assume_calls
    assert faults.injected["AssumeRole"] >= 10  # STS did throttle (then the pacer slowed)
    tree = context.tree
    failed = sum(tree.credentials(hop.id).advisory_failures for hop in plan.hops)
    refreshed = sum(tree.credentials(hop.id).refreshes for hop in plan.hops)
    deferred = sum(tree.credentials(hop.id).advisory_deferred for hop in plan.hops)
    assert failed + refreshed == attempts  # a refresh put off for want of a slot made no call
    assert failed == faults.injected["AssumeRole"]
    # Every hop tried once in its window: refreshed, failed, or put off while the pacer,
    # slowed by the throttles, had no free slot (an advisory refresh never waits for one).
    assert refreshed + failed + deferred == plan.assume_calls

"""The runner end to end against moto: fan-out, hop sharing, faults, streaming."""

from __future__ import annotations

import dataclasses
import sys
import threading
import types
from typing import Any

import pytest

from aws.fakes import FakeClock, acct, assume_role_arn, chain_plan, fake_for, hub_plan
from rolechain.executor import run
from rolechain.planner.plan import TaskRef

from .moto_helpers import ROOT, Faults, create_buckets, private_sessions

ACCOUNTS = [acct(i) for i in range(55)]


def by_target(records: list[Any]) -> dict[str, Any]:
    return {r.target: r for r in records}


def test_fan_out_lists_exactly_each_accounts_buckets(aws) -> None:  # type: ignore[no-untyped-def]
    made = create_buckets(ACCOUNTS, lambda i: i % 3)
    plan = hub_plan(ACCOUNTS, concurrency=8)
    faults = Faults(lambda op, request: None)
    execution = run(plan, credentials=ROOT, aws_sessions=private_sessions(faults))
    records = list(execution)
    assert len(records) == 55
    for record in records:
        assert record.status == "ok", record
        assert record.region == "us-east-1"
        assert record.task == "s3.list_buckets"
        assert [b["name"] for b in record.data["buckets"]] == made[record.account_id]
        assert record.data["count"] == len(made[record.account_id])
        assert record.role_arn == f"arn:aws:iam::{record.account_id}:role/audit"
        assert record.job == "inventory"
        assert record.run_id == "run-test"
        assert record.started_at.endswith("Z")
    summary = execution.summary
    assert faults.seen["AssumeRole"] == plan.assume_calls == 56
    assert summary.assume_calls == 56
    assert summary.planned_assume_calls == 56
    assert (summary.targets, summary.targets_ok, summary.targets_failed) == (55, 55, 0)
    assert summary.retries == 0
    assert faults.seen["GetCallerIdentity"] == 1  # identity checked once, first


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_chains_of_one_to_four_hops(aws, depth: int) -> None:  # type: ignore[no-untyped-def]
    plan = chain_plan(depth, tasks=(TaskRef("whoami", "sts.get_caller_identity"),))
    faults = Faults(lambda op, request: None)
    records = list(run(plan, credentials=ROOT, aws_sessions=private_sessions(faults)))
    assert len(records) == 1
    record = records[0]
    assert record.status == "ok"
    last = plan.hops[-1]
    assert record.data["account"] == last.account_id
    assert (
        record.data["arn"] == f"arn:aws:sts::{last.account_id}:assumed-role/r{depth}/rolechain-test"
    )
    assert faults.seen["AssumeRole"] == depth


def test_throttling_burst_is_absorbed(aws) -> None:  # type: ignore[no-untyped-def]
    lock = threading.Lock()
    hub_left = [3]  # the hub's first three attempts (attempts: 4)
    leaves = {ACCOUNTS[i] for i in range(5)}  # and the first attempt of five leaves

    def throttle(op: str, request: Any) -> Any:
        if op != "AssumeRole":
            return None
        account = assume_role_arn(request).split(":")[4]
        with lock:
            if account == "111111111111" and hub_left[0] > 0:
                hub_left[0] -= 1
                return ("Throttling", "Rate exceeded", 400)
            if account in leaves:
                leaves.discard(account)
                return ("ThrottlingException", "Rate exceeded", 400)
        return None

    plan = hub_plan(ACCOUNTS[:20])
    faults = Faults(throttle)
    execution = run(plan, credentials=ROOT, aws_sessions=private_sessions(faults))
    records = list(execution)
    assert len(records) == 20
    assert all(r.status == "ok" for r in records)
    assert faults.injected["AssumeRole"] == 8
    assert execution.summary.assume_calls == 21 + 8
    assert execution.summary.throttled == 8  # counted apart from retries
    assert execution.summary.retries == 0
    paced = {lane["key"]: lane for lane in execution.summary.pacing}
    assert paced["111111111111"]["throttled"] == 5  # the hub's account called for the leaves
    assert sum(lane["throttled"] for lane in paced.values()) == 8


def test_access_denied_in_some_accounts(aws) -> None:  # type: ignore[no-untyped-def]
    denied = {ACCOUNTS[3], ACCOUNTS[17], ACCOUNTS[40]}

    def deny(op: str, request: Any) -> Any:
        if op == "AssumeRole" and assume_role_arn(request).split(":")[4] in denied:
            return ("AccessDenied", "User is not authorized to perform: sts:AssumeRole", 403)
        return None

    plan = hub_plan(ACCOUNTS)
    faults = Faults(deny)
    execution = run(plan, credentials=ROOT, aws_sessions=private_sessions(faults))
    records = by_target(list(execution))
    assert len(records) == 55
    for account in ACCOUNTS:
        record = records[f"audit@{account}"]
        if account in denied:
            assert record.status == "error"
            assert record.error.code == "AccessDenied"
            assert record.error.hop == f"hub -> audit@{account}"
            assert record.region is None
            assert record.task is None
        else:
            assert record.status == "ok"
    assert faults.seen["AssumeRole"] == 56  # a permanent error is never retried
    assert execution.summary.targets_failed == 3
    assert sorted(execution.summary.failed_targets) == sorted(f"audit@{a}" for a in denied)


def test_failed_hub_gives_one_record_per_target_and_one_call(aws) -> None:  # type: ignore[no-untyped-def]
    def deny_hub(op: str, request: Any) -> Any:
        if op == "AssumeRole" and assume_role_arn(request).endswith(":role/hub"):
            return ("AccessDenied", "not authorized", 403)
        return None

    faults = Faults(deny_hub)
    execution = run(hub_plan(ACCOUNTS), credentials=ROOT, aws_sessions=private_sessions(faults))
    records = list(execution)
    assert len(records) == 55
    assert {(r.status, r.error.code, r.error.hop) for r in records} == {
        ("error", "AccessDenied", "ci -> hub")
    }
    assert faults.seen["AssumeRole"] == 1
    assert execution.summary.targets_failed == 55


def test_connection_errors_are_retried(aws) -> None:  # type: ignore[no-untyped-def]
    lock = threading.Lock()
    left = {"ListBuckets": 3, "AssumeRole": 2}

    def drop(op: str, request: Any) -> Any:
        with lock:
            if left.get(op, 0) > 0:
                left[op] -= 1
                return "connection"
        return None

    faults = Faults(drop)
    execution = run(
        hub_plan(ACCOUNTS[:10]), credentials=ROOT, aws_sessions=private_sessions(faults)
    )
    records = list(execution)
    assert all(r.status == "ok" for r in records)
    assert execution.summary.retries == 5
    assert execution.summary.assume_calls == 11 + 2
    assert faults.seen["ListBuckets"] == 10 + 3


def test_expired_token_mid_run_refreshes_the_parent(aws) -> None:  # type: ignore[no-untyped-def]
    victim = ACCOUNTS[5]
    fired = threading.Event()

    def expire_once(op: str, request: Any) -> Any:
        if (
            op == "AssumeRole"
            and assume_role_arn(request).split(":")[4] == victim
            and not fired.is_set()
        ):
            fired.set()
            return ("ExpiredToken", "The security token included in the request is expired", 400)
        return None

    faults = Faults(expire_once)
    execution = run(
        hub_plan(ACCOUNTS[:10]), credentials=ROOT, aws_sessions=private_sessions(faults)
    )
    records = list(execution)
    assert all(r.status == "ok" for r in records)
    # 11 planned + the refused leaf attempt + the hub refreshed once
    assert faults.seen["AssumeRole"] == 13
    assert execution.summary.assume_calls == 13
    assert execution.tree is not None
    assert execution.tree.credentials("ci>hub").refreshes == 1


def test_expired_token_in_a_task_refreshes_the_target(aws) -> None:  # type: ignore[no-untyped-def]
    fired = threading.Event()

    def expire_once(op: str, request: Any) -> Any:
        if op == "ListBuckets" and not fired.is_set():
            fired.set()
            return ("ExpiredToken", "The provided token has expired.", 400)
        return None

    faults = Faults(expire_once)
    execution = run(hub_plan(ACCOUNTS[:4]), credentials=ROOT, aws_sessions=private_sessions(faults))
    assert all(r.status == "ok" for r in execution)
    assert faults.seen["AssumeRole"] == 5 + 1
    assert faults.seen["ListBuckets"] == 4 + 1


def test_task_errors_stay_with_their_record(aws) -> None:  # type: ignore[no-untyped-def]
    bad = ACCOUNTS[2]
    plan = hub_plan(
        ACCOUNTS[:4],
        tasks=(
            TaskRef("whoami", "sts.get_caller_identity"),
            TaskRef(
                "nope",
                "call",
                (
                    ("service", "s3"),
                    ("operation", "GetBucketAcl"),
                    ("params", {"Bucket": f"missing-{bad}"}),
                ),
            ),
        ),
    )
    execution = run(plan, credentials=ROOT, aws_sessions=private_sessions())
    records = list(execution)
    assert len(records) == 8
    whoami = [r for r in records if r.task == "whoami"]
    nope = [r for r in records if r.task == "nope"]
    assert all(r.status == "ok" for r in whoami)
    assert all(r.status == "error" and r.error.code == "NoSuchBucket" for r in nope)
    assert all(r.error.hop is None for r in nope)
    assert execution.summary.targets_failed == 4
    assert execution.summary.records_failed == 4


def test_regions_fan_out(aws) -> None:  # type: ignore[no-untyped-def]
    plan = hub_plan(
        ACCOUNTS[:3],
        regions=("us-east-1", "eu-west-1", "ap-southeast-2"),
        tasks=(TaskRef("whoami", "sts.get_caller_identity"),),
    )
    records = list(run(plan, credentials=ROOT, aws_sessions=private_sessions()))
    assert sorted((r.account_id, r.region) for r in records) == sorted(
        (a, region) for a in ACCOUNTS[:3] for region in ("us-east-1", "eu-west-1", "ap-southeast-2")
    )


def test_all_regions_are_the_enabled_ones(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import boto3

    expected = sorted(
        r["RegionName"]
        for r in boto3.client("ec2", region_name="us-east-1").describe_regions()["Regions"]
    )
    _install_module(
        monkeypatch, "rc_test_where", where=lambda session, context: session.region_name
    )
    plan = hub_plan(
        ACCOUNTS[:2],
        regions=("all",),
        tasks=(TaskRef("where", "python", (("function", "rc_test_where:where"),)),),
    )
    plan = dataclasses.replace(
        plan, targets=tuple(dataclasses.replace(t, regions=()) for t in plan.targets)
    )
    faults = Faults(lambda op, request: None)
    records = list(run(plan, credentials=ROOT, aws_sessions=private_sessions(faults)))
    assert len(expected) > 10
    for account in ACCOUNTS[:2]:
        mine = [r for r in records if r.account_id == account]
        assert sorted(r.region for r in mine) == expected
        assert all(r.data == r.region for r in mine)  # the session is in the record's region
    assert faults.seen["DescribeRegions"] == 2  # once per target


def test_task_regions_override_the_jobs(aws) -> None:  # type: ignore[no-untyped-def]
    plan = hub_plan(
        ACCOUNTS[:2],
        tasks=(
            TaskRef("a", "sts.get_caller_identity"),
            TaskRef("b", "sts.get_caller_identity", regions=("eu-central-1", "us-west-2")),
        ),
    )
    records = list(
        run(plan, credentials=ROOT, aws_sessions=private_sessions(), regions=["ca-central-1"])
    )
    assert sorted({(r.task, r.region) for r in records}) == [
        ("a", "ca-central-1"),
        ("b", "eu-central-1"),
        ("b", "us-west-2"),
    ]


def _install_module(monkeypatch: pytest.MonkeyPatch, name: str, **functions: Any) -> None:
    module = types.ModuleType(name)
    for key, value in functions.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("with_second_task", [False, True])
def test_timeout_gives_a_timeout_record(aws, monkeypatch, with_second_task: bool) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()

    def slow(session: Any, context: Any) -> str:
        if context.account_id == ACCOUNTS[1]:
            release.wait(10)
        return "done"

    _install_module(monkeypatch, "rc_test_slow", slow=slow)
    tasks = (TaskRef("slow", "python", (("function", "rc_test_slow:slow"),), timeout_seconds=1),)
    if with_second_task:  # the target's units then go through the queue, not in place
        tasks += (TaskRef("whoami", "sts.get_caller_identity"),)
    plan = hub_plan(ACCOUNTS[:3], tasks=tasks)
    try:
        records = list(run(plan, credentials=ROOT, aws_sessions=private_sessions()))
    finally:
        release.set()
    slow_records = by_target([r for r in records if r.task == "slow"])
    assert slow_records[f"audit@{ACCOUNTS[1]}"].error.code == "TaskTimeout"
    assert slow_records[f"audit@{ACCOUNTS[0]}"].data == "done"
    assert slow_records[f"audit@{ACCOUNTS[2]}"].data == "done"
    assert len(records) == 3 * len(tasks)


def test_records_stream_before_the_run_ends(aws) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    plan = hub_plan(
        [acct(i) for i in range(200)],
        concurrency=2,
        tasks=(TaskRef("noop", "python", (("function", "rc_test_noop:noop"),)),),
    )
    assumer = fake_for(plan, clock)
    sys.modules["rc_test_noop"] = types.SimpleNamespace(noop=lambda s, c: c.target)  # type: ignore[assignment]
    try:
        iterator = iter(
            run(
                plan,
                credentials=ROOT,
                assumer=assumer,
                clock=clock,
                aws_sessions=private_sessions(),
                check_identity=False,
            )
        )
        first = next(iterator)
        assert first.status == "ok"
        # only a few targets were started: work is pulled as results are consumed
        assert sum(assumer.calls.values()) <= 1 + 2 * 3
        rest = list(iterator)
    finally:
        del sys.modules["rc_test_noop"]
    assert len(rest) == 199
    assert sum(assumer.calls.values()) == 201


def test_progress_callback_per_target(aws) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, bool, int, int]] = []
    plan = hub_plan(
        ACCOUNTS[:5],
        tasks=(TaskRef("a", "sts.get_caller_identity"), TaskRef("b", "sts.get_caller_identity")),
    )
    list(
        run(
            plan,
            credentials=ROOT,
            aws_sessions=private_sessions(),
            progress=lambda *a: seen.append(a),
        )
    )
    assert [s[2] for s in seen] == [1, 2, 3, 4, 5]
    assert {s[0] for s in seen} == {f"audit@{a}" for a in ACCOUNTS[:5]}
    assert all(s[1] and s[3] == 5 for s in seen)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_task_clients_are_lent_one_task_at_a_time(aws, concurrency: int) -> None:  # type: ignore[no-untyped-def]
    sessions = private_sessions()
    plan = hub_plan(
        ACCOUNTS[:12],
        tasks=(TaskRef("a", "sts.get_caller_identity"), TaskRef("b", "s3.list_buckets")),
        concurrency=concurrency,
    )
    execution = run(plan, credentials=ROOT, aws_sessions=sessions)
    records = list(execution)
    assert len(records) == 24
    # Every request was signed with its own target's credentials ...
    for record in records:
        assert record.ok, record.error
        if record.task == "a":
            assert record.data["account"] == record.account_id
    # ... by clients lent to one task at a time: no client per target.
    assert execution.tree is not None
    leaves = {id(execution.tree.credentials(t.hop_id)) for t in plan.targets}
    assert not leaves & {key[2] for key in sessions._clients}  # only hub/root clients cached
    assert sessions.clients_lent == 24
    assert sessions.clients_created <= 2 + 2 * concurrency  # root + hub STS, sts and s3 lent


def test_services_of_a_plan_are_warmed_before_the_pool_starts() -> None:
    from rolechain.executor.context import services_of

    tasks = (
        TaskRef(id="s3.list_buckets", task="s3.list_buckets"),
        TaskRef(id="i", task="call", params=(("service", "ec2"), ("operation", "x"))),
        TaskRef(id="p", task="python", params=(("function", "m:f"),)),
    )
    plan = hub_plan([acct(1)], tasks=tasks)
    assert services_of(plan) == ["sts", "s3", "ec2"]
    assert services_of(hub_plan([acct(1)], tasks=tasks[2:])) == ["sts"]
    assert services_of(hub_plan([acct(1)], tasks=tasks[2:]), ("all",)) == ["sts", "ec2"]

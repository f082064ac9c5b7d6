"""Every task kind against moto, through the runner (as users run them)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import types
from typing import Any

import pytest

from aws.fakes import acct, hub_plan
from rolechain.executor import run
from rolechain.executor.tasks import TaskContext, json_safe
from rolechain.planner.plan import TaskRef

from .moto_helpers import ROOT, create_buckets, private_sessions

ACCOUNTS = [acct(i) for i in range(3)]


def one(task: TaskRef, accounts: list[str] | None = None, **kwargs: Any) -> list[Any]:
    plan = hub_plan(accounts or ACCOUNTS[:1], tasks=(task,), **kwargs)
    return list(run(plan, credentials=ROOT, aws_sessions=private_sessions()))


def params(**values: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(values.items())


def test_json_safe() -> None:
    value = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "day": dt.date(2026, 1, 2),
        "n": decimal.Decimal("3"),
        "f": decimal.Decimal("1.5"),
        "raw": b"text",
        "bin": b"\xff\x00",
        "set": {"b", "a"},
        "nested": [(1, 2)],
    }
    safe = json_safe(value)
    json.dumps(safe)
    assert safe["when"] == "2026-01-02T03:04:05+00:00"
    assert safe["n"] == 3
    assert safe["f"] == 1.5
    assert safe["raw"] == "text"
    assert safe["bin"] == "/wA="
    assert safe["set"] == ["a", "b"]
    assert safe["nested"] == [[1, 2]]


def test_get_caller_identity(aws) -> None:  # type: ignore[no-untyped-def]
    [record] = one(TaskRef("whoami", "sts.get_caller_identity"))
    assert record.data == {
        "account": ACCOUNTS[0],
        "arn": f"arn:aws:sts::{ACCOUNTS[0]}:assumed-role/audit/rolechain-test",
        "user_id": record.data["user_id"],
    }


@pytest.mark.parametrize("operation", ["GetCallerIdentity", "get_caller_identity"])
def test_call_by_api_or_snake_name_with_query(aws, operation: str) -> None:  # type: ignore[no-untyped-def]
    task = TaskRef("acct", "call", params(service="sts", operation=operation, query="Account"))
    [record] = one(task)
    assert record.status == "ok"
    assert record.data == ACCOUNTS[0]


def test_call_paginates_and_makes_datetimes_json_safe(aws) -> None:  # type: ignore[no-untyped-def]
    create_buckets(ACCOUNTS[:1], lambda i: 0)
    from rolechain.aws.session import AwsSessions

    from .moto_helpers import assume

    sessions = AwsSessions()
    iam = sessions.client("iam", "us-east-1", assume(sessions, ACCOUNTS[0]))
    for n in range(7):
        iam.create_role(RoleName=f"role-{n}", AssumeRolePolicyDocument="{}")
    task = TaskRef(
        "roles",
        "call",
        params(
            service="iam",
            operation="ListRoles",
            params={"MaxItems": 2},
            query="Roles[].{name: RoleName, created: CreateDate}",
        ),
    )
    [record] = one(task)
    assert record.status == "ok", record.error
    assert sorted(r["name"] for r in record.data) == [f"role-{n}" for n in range(7)]
    assert all(isinstance(r["created"], str) for r in record.data)
    json.dumps(record.data)


def test_call_without_pagination(aws) -> None:  # type: ignore[no-untyped-def]
    from rolechain.aws.session import AwsSessions

    from .moto_helpers import assume

    sessions = AwsSessions()
    iam = sessions.client("iam", "us-east-1", assume(sessions, ACCOUNTS[0]))
    for n in range(3):
        iam.create_role(RoleName=f"role-{n}", AssumeRolePolicyDocument="{}")
    task = TaskRef(
        "roles",
        "call",
        params(service="iam", operation="list_roles", params={"MaxItems": 2}, paginate=False),
    )
    [record] = one(task)
    assert len(record.data["Roles"]) == 2
    assert record.data["IsTruncated"] is True
    assert "ResponseMetadata" not in record.data


def test_call_unknown_operation_and_service(aws) -> None:  # type: ignore[no-untyped-def]
    [record] = one(TaskRef("x", "call", params(service="s3", operation="ListBukets")))
    assert record.status == "error"
    assert record.error.code == "UnknownOperation"
    [record] = one(TaskRef("x", "call", params(service="nosuchservice", operation="Foo")))
    assert record.error.code == "UnknownService"


def test_call_bad_parameters(aws) -> None:  # type: ignore[no-untyped-def]
    [record] = one(TaskRef("x", "call", params(service="s3", operation="ListObjectsV2", params={})))
    assert record.status == "error"
    assert record.error.code == "ParamValidation"


def _module(monkeypatch: pytest.MonkeyPatch, name: str, **functions: Any) -> None:
    module = types.ModuleType(name)
    for key, value in functions.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_python_task_gets_a_session_and_context(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    made = create_buckets(ACCOUNTS, lambda i: i + 1)
    seen: list[TaskContext] = []

    def inventory(session: Any, context: TaskContext) -> Any:
        seen.append(context)
        names = [b["Name"] for b in session.client("s3").list_buckets()["Buckets"]]
        ident = session.client("sts").get_caller_identity()
        return {
            "buckets": sorted(names),
            "account": ident["Account"],
            "region": session.region_name,
            "when": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "args": dict(context.args),
        }

    _module(monkeypatch, "rc_test_inventory", inventory=inventory)
    task = TaskRef(
        "inv", "python", params(function="rc_test_inventory:inventory", args={"deep": True})
    )
    records = one(task, ACCOUNTS, regions=("eu-west-1",))
    for record in records:
        assert record.status == "ok", record.error
        assert record.data["buckets"] == made[record.account_id]
        assert record.data["account"] == record.account_id
        assert record.data["region"] == "eu-west-1"
        assert record.data["when"] == "2026-01-01T00:00:00+00:00"
        assert record.data["args"] == {"deep": True}
    context = next(c for c in seen if c.account_id == ACCOUNTS[1])
    assert context.target == f"audit@{ACCOUNTS[1]}"
    assert context.role_arn == f"arn:aws:iam::{ACCOUNTS[1]}:role/audit"
    assert (context.job, context.run_id, context.region) == ("inventory", "run-test", "eu-west-1")


def test_python_task_errors(aws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken(session: Any, context: Any) -> Any:
        raise ValueError("bad input")

    def denied(session: Any, context: Any) -> Any:
        return session.client("s3").get_bucket_acl(Bucket="nope-not-here")

    _module(monkeypatch, "rc_test_broken", broken=broken, denied=denied)
    [record] = one(TaskRef("b", "python", params(function="rc_test_broken:broken")))
    assert (record.status, record.error.code, record.error.message) == (
        "error",
        "ValueError",
        "bad input",
    )
    [record] = one(TaskRef("d", "python", params(function="rc_test_broken:denied")))
    assert record.error.code == "NoSuchBucket"
    [record] = one(TaskRef("m", "python", params(function="rc_test_no_such_module:f")))
    assert record.error.code == "ImportError"
    [record] = one(TaskRef("m", "python", params(function="rc_test_broken:missing")))
    assert record.error.code == "ImportError"


PRINT_ENV = (
    "import json, os; print(json.dumps({k: os.environ.get(k) for k in "
    "['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_REGION', "
    "'AWS_DEFAULT_REGION', 'AWS_ENDPOINT_URL', 'AWS_PROFILE', 'EXTRA', 'ROLECHAIN_TARGET']}))"
)


def test_exec_gets_the_targets_credentials_and_region(aws, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config"
    config.write_text("[profile other]\nregion = us-west-2\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "other")  # another credential source: must not leak
    task = TaskRef(
        "env", "exec", params(argv=[sys.executable, "-c", PRINT_ENV], env={"EXTRA": "1"})
    )
    records = one(task, ACCOUNTS[:2], regions=("eu-north-1",))
    keys = set()
    for record in records:
        assert record.status == "ok", record.error
        assert record.data["exit_code"] == 0
        env = json.loads(record.data["stdout"])
        assert env["AWS_ACCESS_KEY_ID"].startswith("ASIA")
        assert env["AWS_SECRET_ACCESS_KEY"]
        assert env["AWS_SESSION_TOKEN"]
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-north-1"
        assert env["AWS_ENDPOINT_URL"] == aws.endpoint
        assert env["AWS_PROFILE"] is None
        assert env["EXTRA"] == "1"
        assert env["ROLECHAIN_TARGET"] == record.target
        keys.add(env["AWS_ACCESS_KEY_ID"])
    assert len(keys) == 2


def test_exec_command_can_call_aws_as_the_target(aws) -> None:  # type: ignore[no-untyped-def]
    script = "import boto3; print(boto3.client('sts').get_caller_identity()['Account'])"
    [record] = one(TaskRef("who", "exec", params(argv=[sys.executable, "-c", script])))
    assert record.data["stdout"].strip() == ACCOUNTS[0]


def test_exec_non_zero_exit_is_an_error_with_data(aws) -> None:  # type: ignore[no-untyped-def]
    [record] = one(TaskRef("fail", "exec", params(shell="echo oops >&2; echo out; exit 3")))
    assert record.status == "error"
    assert record.error.code == "NonZeroExit"
    assert record.data == {"exit_code": 3, "stdout": "out\n", "stderr": "oops\n"}


def test_exec_shell_and_timeout(aws) -> None:  # type: ignore[no-untyped-def]
    [record] = one(TaskRef("sh", "exec", params(shell='echo "$AWS_REGION"')))
    assert record.data["stdout"] == "us-east-1\n"
    task = TaskRef(
        "slow",
        "exec",
        params(argv=[sys.executable, "-c", "import time; time.sleep(30)"]),
        timeout_seconds=1,
    )
    [record] = one(task)
    assert record.error.code == "TaskTimeout"
    assert record.data["exit_code"] is None


def test_exec_missing_program(aws) -> None:  # type: ignore[no-untyped-def]
    [record] = one(TaskRef("x", "exec", params(argv=["/nonexistent/program"])))
    assert record.error.code == "ExecError"


def test_throttled_task_calls_retry_within_the_budget_not_the_attempts() -> None:
    from unittest.mock import Mock

    from rolechain.aws.calls import ThrottleBudget
    from rolechain.aws.retry import CallStats, RetryPolicy
    from rolechain.errors import TransientAwsError
    from rolechain.executor.tasks import TaskEnv

    errors = [TransientAwsError("Please reduce your request rate.", code="SlowDown")] * 6
    calls = []

    def call() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "listed"

    stats = CallStats()
    env = TaskEnv(
        credentials=Mock(),
        sessions=Mock(),
        policy=RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.001),
        stats=stats,
        budget=ThrottleBudget(per_call=30, initial_wait=0.001, max_wait=0.001),
    )
    assert env.retry(call) == "listed"
    assert len(calls) == 7  # 6 throttles: more than the 2 attempts allow other errors
    assert stats.throttled == 6
    assert stats.retries == 0


def test_throttled_task_calls_stop_at_the_runs_deadline() -> None:
    import time
    from unittest.mock import Mock

    from rolechain.aws.calls import ThrottleBudget
    from rolechain.aws.retry import RetryPolicy
    from rolechain.errors import TransientAwsError
    from rolechain.executor.tasks import TaskEnv

    calls = []

    def call() -> str:
        calls.append(1)
        raise TransientAwsError("Rate exceeded", code="Throttling")

    env = TaskEnv(
        credentials=Mock(),
        sessions=Mock(),
        policy=RetryPolicy(attempts=5, initial_wait=0.001, max_wait=0.001),
        budget=ThrottleBudget(per_call=3600, initial_wait=0.001, max_wait=0.001),
        deadline=time.monotonic() - 1,  # the run's deadline has passed
    )
    with pytest.raises(TransientAwsError, match="Rate exceeded"):
        env.retry(call)
    assert len(calls) == 1  # not an hour of throttles: the run is over


def test_the_runner_gives_tasks_the_runs_budget_and_deadline(aws) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import time

    from rolechain.executor import RunContext, RunOptions
    from rolechain.executor.work import task_env

    settings = dataclasses.replace(hub_plan([acct(1)]).settings, throttle_budget=30)
    plan = hub_plan([acct(1)], settings=settings)
    context = RunContext(plan, None, RunOptions(deadline=60, check_identity=False))
    assert context.deadline_at is None  # not begun
    now = time.monotonic()
    assert context.begin(now) == now + 60
    from unittest.mock import Mock

    env = task_env(context, creds=Mock())
    assert env.deadline == now + 60
    assert env.budget.per_call == 30
    assert env.budget is context.budget

"""The built-in tasks. Names and parameters are declared in :mod:`rolechain.tasks.registry`.

Every task is ``func(unit, env) -> data``: ``unit`` is the plain work unit, ``env`` gives the
target's credentials and the run's shared sessions. ``data`` is JSON-safe. A task raises a
:class:`~rolechain.errors.RolechainError` to fail (AWS errors arrive already translated by
:mod:`rolechain.aws.errors`).

A task the runner gives up on (its timeout, the run's deadline, an interrupt) keeps running
on its thread, which cannot be stopped from outside. A task that holds something that can
be stopped registers it with ``env.on_abandon``: the ``exec`` task's command (and every
process it started) is killed.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import importlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jmespath
from botocore import xform_name

from rolechain.aws.calls import ThrottleBudget, call_paced
from rolechain.aws.credentials import HopCredentials
from rolechain.aws.environment import CONFLICTING_VARIABLES
from rolechain.aws.errors import aws_call
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import AwsSessions
from rolechain.errors import AwsContext, TaskError
from rolechain.executor.units import WorkUnit
from rolechain.model.schema import closest
from rolechain.tasks.registry import CallParams, ExecParams, PythonParams, validate_task_params

MAX_OUTPUT = 1 << 20  # bytes of stdout/stderr kept per exec task


class TaskFailed(TaskError):
    """A task failed but has data worth keeping (an exec task's exit code and output)."""

    def __init__(self, message: str, *, code: str, data: Any = None, hint: str | None = None):
        super().__init__(message, code=code, hint=hint)
        self.data = data


@dataclass
class TaskEnv:
    """What a task needs besides its unit: credentials and the run's shared machinery."""

    credentials: HopCredentials
    sessions: AwsSessions
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    stats: CallStats | None = None
    timeout: float | None = None
    on_abandon: Callable[[Callable[[], None]], None] | None = None
    budget: ThrottleBudget = field(default_factory=ThrottleBudget)
    deadline: float | None = None  # the run's, on time.monotonic()'s clock

    borrowed: dict[tuple[str, str], Any] = field(default_factory=dict)

    def client(self, service: str, region: str) -> Any:
        """A client signing with the target's credentials, lent to this task until
        :meth:`close` (see :meth:`~rolechain.aws.session.AwsSessions.borrow`)."""
        key = (service, region)
        found = self.borrowed.get(key)
        if found is None:
            found = self.borrowed[key] = self.sessions.borrow(service, region, self.credentials)
        return found

    def close(self) -> None:
        """The task is done: give its clients back."""
        borrowed, self.borrowed = self.borrowed, {}
        for client in borrowed.values():
            self.sessions.give_back(client)

    def retry(self, func: Callable[[], Any]) -> Any:
        """``func()`` with the run's retries; a throttled call (S3 ``SlowDown``, a service's
        ``Throttling``) is retried within the throttle budget, apart from the attempts."""
        return call_paced(
            func,
            pacer=None,
            key=None,
            policy=self.policy,
            budget=self.budget,
            deadline=self.deadline,
            stats=self.stats,
        )


@dataclass(frozen=True)
class TaskContext:
    """The second argument of a ``python`` task's function."""

    target: str
    account_id: str
    region: str
    role_arn: str
    job: str
    run_id: str
    args: Mapping[str, Any]


def json_safe(value: Any) -> Any:
    """``value`` with datetimes as ISO strings, bytes as text/base64, streams read."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [json_safe(v) for v in items]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    read = getattr(value, "read", None)
    if callable(read):
        return json_safe(read())
    return str(value)


def _aws(unit: WorkUnit, operation: str) -> AwsContext:
    return AwsContext(job=unit.job, target=unit.target, operation=operation, region=unit.region)


def s3_list_buckets(unit: WorkUnit, env: TaskEnv) -> Any:
    def call() -> list[dict[str, Any]]:
        with aws_call(_aws(unit, "s3:ListBuckets")):
            client = env.client("s3", unit.region)
            # Follow ContinuationToken by hand: asking a fresh client for its paginator
            # loads the paginator model from disk (several ms per account).
            response = client.list_buckets()
            buckets: list[dict[str, Any]] = list(response.get("Buckets", []))
            while response.get("ContinuationToken"):
                response = client.list_buckets(ContinuationToken=response["ContinuationToken"])
                buckets.extend(response.get("Buckets", []))
            return buckets

    buckets = env.retry(call)
    return {
        "buckets": sorted(
            ({"name": b["Name"], "created": json_safe(b.get("CreationDate"))} for b in buckets),
            key=lambda b: b["name"],
        ),
        "count": len(buckets),
    }


def sts_get_caller_identity(unit: WorkUnit, env: TaskEnv) -> Any:
    def call() -> dict[str, Any]:
        with aws_call(_aws(unit, "sts:GetCallerIdentity")):
            result: dict[str, Any] = env.client("sts", unit.region).get_caller_identity()
            return result

    found = env.retry(call)
    return {"account": found["Account"], "arn": found["Arn"], "user_id": found["UserId"]}


def _method_name(client: Any, operation: str, service: str) -> str:
    mapping: dict[str, str] = client.meta.method_to_api_mapping
    if operation in mapping:
        return operation
    api_to_method = {api: method for method, api in mapping.items()}
    if operation in api_to_method:
        return api_to_method[operation]
    snake = xform_name(operation)
    if snake in mapping:
        return snake
    guess = closest(operation, list(mapping))
    raise TaskError(
        f"{service} has no operation {operation!r}",
        code="UnknownOperation",
        hint=f"did you mean {guess!r}?" if guess else "see the boto3 reference for the service",
    )


def call(unit: WorkUnit, env: TaskEnv) -> Any:
    params = validate_task_params("call", unit.task.params_dict)
    assert isinstance(params, CallParams)
    context = _aws(unit, f"{params.service}:{params.operation}")

    def invoke() -> Any:
        with aws_call(context):
            client = env.client(params.service, unit.region)
            method = _method_name(client, params.operation, params.service)
            if params.paginate and client.can_paginate(method):
                result = client.get_paginator(method).paginate(**params.params).build_full_result()
            else:
                result = getattr(client, method)(**params.params)
        if isinstance(result, dict):
            result.pop("ResponseMetadata", None)
        return json_safe(result)

    data = env.retry(invoke)
    if params.query:
        data = jmespath.search(params.query, data)
    return data


def _load_function(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(
            f"cannot import {module_name!r} for python task {ref!r}: {exc}",
            code="ImportError",
            hint="the module must be importable where rolechain runs (PYTHONPATH)",
        ) from None
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise TaskError(f"{ref!r}: {module_name} has no {attr!r}", code="ImportError")
    if not callable(target):
        raise TaskError(f"{ref!r} is not callable", code="ImportError")
    func: Callable[..., Any] = target
    return func


def python(unit: WorkUnit, env: TaskEnv) -> Any:
    params = validate_task_params("python", unit.task.params_dict)
    assert isinstance(params, PythonParams)
    func = _load_function(params.function)
    session = env.sessions.boto3_session(env.credentials, unit.region)
    context = TaskContext(
        target=unit.target,
        account_id=unit.account_id,
        region=unit.region,
        role_arn=unit.role_arn,
        job=unit.job,
        run_id=unit.run_id,
        args=dict(params.args),
    )
    with aws_call(_aws(unit, f"python:{params.function}")):
        result = func(session, context)
    return json_safe(result)


def exec_environment(unit: WorkUnit, env: TaskEnv, extra: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: ours, less other credential sources, plus the target's."""
    frozen = env.credentials.get_frozen_credentials()
    out = {k: v for k, v in os.environ.items() if k not in CONFLICTING_VARIABLES}
    out.update(
        AWS_ACCESS_KEY_ID=frozen.access_key or "",
        AWS_SECRET_ACCESS_KEY=frozen.secret_key or "",
        AWS_SESSION_TOKEN=frozen.token or "",
        AWS_REGION=unit.region,
        AWS_DEFAULT_REGION=unit.region,
        ROLECHAIN_JOB=unit.job,
        ROLECHAIN_RUN_ID=unit.run_id,
        ROLECHAIN_TARGET=unit.target,
        ROLECHAIN_ACCOUNT_ID=unit.account_id,
        ROLECHAIN_ROLE_ARN=unit.role_arn,
    )
    out.update(extra)
    return out


def _text(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + "\n[truncated]"


def exec_(unit: WorkUnit, env: TaskEnv) -> Any:
    params = validate_task_params("exec", unit.task.params_dict)
    assert isinstance(params, ExecParams)
    if env.timeout and env.credentials.seconds_remaining() < env.timeout:
        # The command gets frozen keys: make sure they outlive its timeout if they can.
        env.credentials.force_refresh(env.credentials.get_frozen_credentials().access_key)
    argv = params.argv if params.argv is not None else ["/bin/sh", "-c", params.shell or ""]
    try:
        # A session of its own: on a timeout or when the run gives up on the task, the
        # command and everything it started are killed together (a grandchild holding the
        # output pipes open would otherwise keep this thread waiting), and a Ctrl-C at the
        # terminal reaches rolechain, which decides (grace, then kill), not the command.
        process = subprocess.Popen(
            argv,
            env=exec_environment(unit, env, params.env),
            cwd=params.cwd,
            stdout=subprocess.PIPE if params.capture else None,
            stderr=subprocess.PIPE if params.capture else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise TaskError(
            f"cannot run {argv[0]!r}: {exc.strerror or exc}", code="ExecError"
        ) from None
    if env.on_abandon is not None:
        env.on_abandon(lambda: _kill_group(process))
    stdout: bytes | None
    stderr: bytes | None
    try:
        stdout, stderr = process.communicate(timeout=env.timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = _collect(process)
        raise TaskFailed(
            f"command timed out after {env.timeout:g}s",
            code="TaskTimeout",
            data={"exit_code": None, "stdout": _text(stdout), "stderr": _text(stderr)},
        ) from None
    finally:
        if process.poll() is None:  # interrupted while waiting (a BaseException)
            _kill_group(process)
    data = {
        "exit_code": process.returncode,
        "stdout": _text(stdout),
        "stderr": _text(stderr),
    }
    if process.returncode != 0:
        raise TaskFailed(
            f"command exited with status {process.returncode}", code="NonZeroExit", data=data
        )
    return data


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the command and every process in its session (it leads its process group)."""
    killpg = getattr(os, "killpg", None)  # POSIX; elsewhere only the command is killed
    if killpg is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()


def _collect(process: subprocess.Popen[bytes]) -> tuple[bytes | None, bytes | None]:
    """What a killed command wrote; never waits long (a stray process may hold the pipes)."""
    try:
        return process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        process.wait()
        return None, None


TASK_FUNCTIONS: dict[str, Callable[[WorkUnit, TaskEnv], Any]] = {
    "s3.list_buckets": s3_list_buckets,
    "sts.get_caller_identity": sts_get_caller_identity,
    "call": call,
    "python": python,
    "exec": exec_,
}


def enabled_regions(env: TaskEnv, region: str, unit: WorkUnit | None = None) -> tuple[str, ...]:
    """Regions enabled in the credentials' account (ec2:DescribeRegions), sorted."""
    context = AwsContext(
        job=unit.job if unit else None,
        target=unit.target if unit else None,
        operation="ec2:DescribeRegions",
        region=region,
    )

    def describe() -> tuple[str, ...]:
        with aws_call(context):
            result = env.client("ec2", region).describe_regions()
        return tuple(sorted(r["RegionName"] for r in result.get("Regions", [])))

    regions: tuple[str, ...] = env.retry(describe)
    return regions


__all__ = [
    "TASK_FUNCTIONS",
    "TaskContext",
    "TaskEnv",
    "TaskFailed",
    "enabled_regions",
    "json_safe",
]

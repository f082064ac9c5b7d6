"""Built-in tasks and their parameter models.

Each task's parameters are a pydantic model, so a chain file's ``with:`` block is checked at
validation time and shows up in the JSON Schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_QUERY_CHARS = 4096


def check_jmespath(value: str, what: str = "JMESPath query") -> None:
    """Raise ValueError, in words, unless ``value`` is a JMESPath expression."""
    import jmespath  # pure, no AWS

    if len(value) > MAX_QUERY_CHARS:
        raise ValueError(
            f"the {what} is {len(value):,} characters; at most {MAX_QUERY_CHARS:,} are allowed"
        )
    try:
        jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as exc:
        # jmespath's message draws a caret under the query on lines of its own
        reason = str(exc).splitlines()[0]
        where = getattr(exc, "lex_position", None)
        at = f" at character {where}" if isinstance(where, int) else ""
        raise ValueError(f"invalid {what} {value!r}: {reason}{at}") from None
    except RecursionError:
        raise ValueError(f"the {what} nests too deeply") from None


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    """This task takes no parameters."""


class CallParams(_Params):
    """Any boto3 operation, paginated when boto3 has a paginator, filtered by JMESPath."""

    service: str = Field(description="boto3 service name, e.g. ec2, s3, iam")
    operation: str = Field(
        description="operation, snake_case (describe_instances) or API name (DescribeInstances)"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="the call's parameters")
    paginate: bool = Field(default=True, description="follow pagination when boto3 can")
    query: str | None = Field(default=None, description="JMESPath applied to the result")

    @field_validator("operation")
    @classmethod
    def _operation_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", value):
            raise ValueError(f"{value!r} is not an operation name")
        return value

    @field_validator("query")
    @classmethod
    def _query_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            check_jmespath(value)
        return value


class PythonParams(_Params):
    """A Python callable ``module:function(session, context)``."""

    function: str = Field(description="module:function, importable where rolechain runs")
    args: dict[str, Any] = Field(default_factory=dict, description="passed as context.args")

    @field_validator("function")
    @classmethod
    def _function_ref(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", value):
            raise ValueError(f"{value!r} is not 'module:function'")
        return value


class ExecParams(_Params):
    """A command run with the target's credentials and region in its environment."""

    argv: list[str] | None = Field(default=None, description="program and arguments (no shell)")
    shell: str | None = Field(default=None, description="a shell command line; runs /bin/sh -c")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables")
    cwd: str | None = None
    capture: bool = Field(default=True, description="keep stdout/stderr in the result")

    def model_post_init(self, __context: Any) -> None:
        if (self.argv is None) == (self.shell is None):
            raise ValueError("exec takes exactly one of 'argv' (a list) or 'shell' (a string)")
        if self.argv is not None and not self.argv:
            raise ValueError("'argv' must name a program")


@dataclass(frozen=True)
class TaskInfo:
    """A built-in task. ``rows`` and ``key`` are its default rows (a JMESPath expression
    over the result giving a list of objects) and the fields that identify a row;
    ``list_rows``: a result that is itself a list of objects is one row per object."""

    name: str
    params: type[_Params]
    summary: str
    rows: str | None = None
    key: tuple[str, ...] = ()
    list_rows: bool = False


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo(
            "s3.list_buckets",
            NoParams,
            "the S3 buckets owned by the target account",
            rows="buckets",
            key=("name",),
        ),
        TaskInfo(
            "sts.get_caller_identity",
            NoParams,
            "who the target's credentials are",
            rows="[@]",
            key=("account",),
        ),
        TaskInfo(
            "call",
            CallParams,
            "any boto3 operation, paginated, with a JMESPath query",
            list_rows=True,
        ),
        TaskInfo(
            "python",
            PythonParams,
            "a Python function given a boto3 session and context",
            list_rows=True,
        ),
        TaskInfo("exec", ExecParams, "a command with the target's credentials in its env"),
    )
}


def task_names() -> list[str]:
    return sorted(TASKS)


def validate_task_params(name: str, params: dict[str, Any]) -> _Params:
    """The parsed parameters of task ``name``; raises KeyError or pydantic.ValidationError."""
    return TASKS[name].params.model_validate(params)

"""The rolechain error tree.

Every error rolechain raises is a :class:`RolechainError`. Errors carry the context a user
needs to act (job, target, hop, file:line) and, where there is one, the fix.

    RolechainError
    ├── ChainFileError          a chain file is invalid (all problems at once)         exit 2
    ├── PlanError               a job cannot be planned within AWS's rules             exit 2
    ├── UsageError              a job or target asked for does not fit the chain       exit 2
    ├── CredentialsError        starting credentials missing, root user, wrong kind
    ├── EngineError             the chosen engine cannot run (extra missing, no TLS...) exit 2
    ├── AwsError                an AWS call failed (made only by rolechain.aws.errors)
    │   ├── TransientAwsError   throttling, 5xx, timeouts, connection errors: retried
    │   ├── ExpiredTokenError   the caller's credentials expired: refresh the parent, retry
    │   └── PermanentAwsError   access denied, validation, region disabled...: fail fast
    │       ├── AccessDeniedError
    │       ├── AwsValidationError
    │       ├── RegionDisabledError
    │       └── InvalidCredentialsError
    └── TaskError               a task failed inside a target (timeout, bad result, exit code)

Only :mod:`rolechain.aws.errors` translates botocore exceptions into these types; nothing
else in rolechain catches ``botocore.exceptions.ClientError``.

Every error survives pickling (a distributed engine carries them between processes): it is
rebuilt with the same type, message and attributes, whatever its constructor takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Location:
    """A place in a chain file. Lines and columns are 1-based."""

    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One problem in a chain file, reported as ``file:line:column: message``."""

    message: str
    location: Location | None = None
    key: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


@dataclass(frozen=True)
class Violation:
    """One AWS rule a planned hop would break, found before any call is made."""

    rule: str
    message: str
    fix: str
    hop: str | None = None
    location: Location | None = None
    source: str | None = None
    target: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        hop = f" [hop {self.hop}]" if self.hop else ""
        text = f"{where}{self.rule}{hop}: {self.message}\n    fix: {self.fix}"
        if self.source:
            text += f"\n    see: {self.source}"
        return text


class RolechainError(Exception):
    """Base class of every error rolechain raises."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Exception pickles as cls(*args), which keyword-only constructors cannot take.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[RolechainError], args: tuple[object, ...], state: dict[str, object]
) -> RolechainError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ChainFileError(RolechainError):
    """One or more chain files are invalid. ``problems`` lists all of them."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(
            sorted(problems, key=lambda p: (p.location or Location("", 0), p.message))
        )
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in chain file"
        super().__init__("\n".join([head + ":", *(str(p) for p in self.problems)]))


class PlanError(RolechainError):
    """A job cannot be planned within AWS's rules. ``violations`` lists all of them."""

    exit_code = 2

    def __init__(self, job: str, violations: Sequence[Violation]) -> None:
        self.job = job
        self.violations: tuple[Violation, ...] = tuple(violations)
        count = len(self.violations)
        head = f"job {job!r} cannot be planned: {count} violation{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(str(v) for v in self.violations)]))


class UsageError(RolechainError):
    """A job or target named by the caller is unknown or ambiguous. Nothing was called."""

    exit_code = 2


class CredentialsError(RolechainError):
    """The starting credentials are missing, unusable, or not what the chain file says."""


class EngineError(RolechainError):
    """The engine a run asks for cannot run it: its optional extra is not installed, the
    cluster cannot be reached, or an option it needs is refused (``--ship-credentials``
    without TLS). Raised before any task runs."""

    exit_code = 2


@dataclass(frozen=True)
class AwsContext:
    """Where an AWS call was made, so an error can say what to fix."""

    job: str | None = None
    target: str | None = None
    hop: str | None = None
    operation: str | None = None
    region: str | None = None
    location: Location | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = []
        if self.job:
            parts.append(f"job {self.job}")
        if self.target:
            parts.append(f"target {self.target}")
        if self.hop:
            parts.append(f"hop {self.hop}")
        if self.operation:
            parts.append(self.operation)
        if self.region:
            parts.append(self.region)
        if self.location:
            parts.append(str(self.location))
        return ", ".join(parts)


class AwsError(RolechainError):
    """An AWS call failed. Raised only by the seam in :mod:`rolechain.aws.errors`."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str,
        context: AwsContext | None = None,
        hint: str | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.aws_message = message
        self.context = context or AwsContext()
        self.status = status
        where = self.context.describe()
        text = f"{code}: {message}" + (f" [{where}]" if where else "")
        super().__init__(text, hint=hint)

    def with_context(self, context: AwsContext) -> AwsError:
        """The same error with more context (used as errors travel up the hop tree)."""
        return type(self)(
            self.aws_message, code=self.code, context=context, hint=self.hint, status=self.status
        )


class TransientAwsError(AwsError):
    """Throttling, a server error, a timeout or a dropped connection: worth retrying."""

    retryable = True


class ExpiredTokenError(AwsError):
    """The caller's credentials expired: refresh the parent hop, then retry."""

    retryable = True


class PermanentAwsError(AwsError):
    """An error that retrying cannot fix."""


class AccessDeniedError(PermanentAwsError):
    """Trust policy, permissions, SCP, or a missing/wrong ExternalId."""


class AwsValidationError(PermanentAwsError):
    """AWS rejected a parameter (chaining cap, MaxSessionDuration, patterns, sizes)."""


class RegionDisabledError(PermanentAwsError):
    """STS is not active in that region for the role's account."""


class InvalidCredentialsError(PermanentAwsError):
    """The access key or token is not valid at all."""


class TaskError(RolechainError):
    """A task failed inside one target (timeout, non-zero exit, bad parameters at run time)."""

    def __init__(self, message: str, *, code: str = "TaskError", hint: str | None = None) -> None:
        self.code = code
        super().__init__(message, hint=hint)

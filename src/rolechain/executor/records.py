"""What a run yields: one :class:`Record` per (target, region, task), and a :class:`Summary`.

Records are plain data (JSON-safe ``data``), made as each unit of work finishes and
streamed to the caller; the engines keep none of them. :mod:`rolechain.results` formats
and stores them (a :class:`RecordSink`). The record builders (:func:`unit_record`,
:func:`target_record`, :func:`error_of`) are the only places a record is made, whichever
engine makes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from rolechain.aws.errors import describe_foreign
from rolechain.errors import AwsError, RolechainError, TaskError

if TYPE_CHECKING:
    from rolechain.executor.units import WorkUnit
    from rolechain.planner.plan import NoMatch, Plan, Target


@dataclass(frozen=True)
class RecordError:
    code: str
    message: str
    hop: str | None = None


@dataclass(frozen=True)
class Record:
    """The result of one task in one region of one target (or a target that failed)."""

    job: str
    run_id: str
    target: str
    account_id: str
    role_arn: str
    region: str | None
    task: str | None
    status: Literal["ok", "error"]
    data: Any = None
    error: RecordError | None = None
    started_at: str = ""
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        error = data.get("error")
        return cls(**{**data, "error": RecordError(**error) if error else None})


RunStatus = Literal["running", "ok", "failed", "interrupted", "deadline-exceeded"]
StopKind = Literal["interrupted", "deadline-exceeded"]

# Error codes of records the runner makes itself (not from a task or AWS).
TASK_TIMEOUT = "TaskTimeout"  # the task ran past its timeout, or was running at the deadline
DEADLINE_EXCEEDED = "DeadlineExceeded"  # the run's deadline came before the unit started
INTERRUPTED = "Interrupted"  # the run was cancelled before the unit finished
STOP_CODES = frozenset({DEADLINE_EXCEEDED, INTERRUPTED})
# The summary's call counters, as CallStats.counts() names them.
CALL_COUNTS = (
    "assume_calls",
    "retries",
    "throttled",
    "assume_retries",
    "assume_throttled",
    "expired_token_refreshes",
)


@dataclass
class Summary:
    """Totals of a run, complete once its records have all been consumed.

    Every planned target ends up in exactly one of ``targets_ok`` (all its records ok),
    ``targets_failed`` (some record is an error) and ``targets_unfinished`` (the run
    stopped before the target was done: it has an ``Interrupted`` or ``DeadlineExceeded``
    record). ``stop`` says why a run stopped early, ``stop_reason`` in words (``SIGINT``,
    ``deadline of 30s``, or what the embedder passed to ``Run.cancel``).

    Tasks that run past their timeout, or are still running when the run stops, are given
    up: ``abandoned`` counts them; those that finished before the run ended had their
    result dropped (``late_results``); ``still_running`` were still running at the end
    (their threads never block the process from exiting).

    ``assume_calls`` counts AssumeRole attempts (``planned_assume_calls`` plus retries,
    throttled attempts and refreshes). ``retries`` counts retries after transient errors
    other than throttling; ``throttled`` the attempts (AssumeRole and other calls) that AWS
    answered with a throttling error; ``assume_retries`` and ``assume_throttled`` the
    AssumeRole part of each;
    ``expired_token_refreshes`` the ``ExpiredToken`` answers recovered from by refreshing
    the caller and trying again. ``pacing`` has one entry per calling account AssumeRole
    was paced for: ``key`` (the account), ``calls`` (attempts), ``throttled``, ``rate``
    (calls/s it was paced at when the run ended; None: never throttled, never slowed),
    ``lowest_rate``, ``cuts`` (multiplicative decreases that stood), ``undone`` (cuts
    undone because the throttling did not follow the rate), ``background`` (share of calls
    throttled whatever the rate) and ``waited`` (seconds callers waited for slots).

    ``engine`` is where the units ran (``threads`` or ``dask``). On Dask, ``workers`` is
    the number of worker processes that took part (W), ``cluster_workers`` how many the
    cluster had (a run whose targets fit one batch uses one of them), ``batches`` the Dask
    tasks (each a batch of targets sharing their hubs), ``assume_bound`` the most AssumeRole
    calls the run may make: every hop once, plus each inner (shared) hop once more per extra
    worker
    (``planned_assume_calls + (W - 1) x inner hops``; retries of transient errors,
    ``assume_retries``, come on top); ``duplicates_dropped`` counts records
    of a unit that arrived a second time (a batch re-run after its worker died) and were
    dropped, so that every unit has exactly one record. ``worker_pacing`` says how each worker
    paced AssumeRole (its share of the run's rate). ``cpu_seconds`` is the CPU the run
    used: this process's while the run ran (threads), the workers' while they ran batches
    (dask); divided by the requests a job makes, it is the CPU per request of
    docs/scaling.md.
    """

    job: str
    run_id: str
    targets: int = 0
    targets_ok: int = 0
    targets_failed: int = 0
    targets_unfinished: int = 0
    records: int = 0
    records_failed: int = 0
    assume_calls: int = 0
    planned_assume_calls: int = 0
    retries: int = 0
    throttled: int = 0
    assume_throttled: int = 0
    assume_retries: int = 0
    expired_token_refreshes: int = 0
    pacing: list[dict[str, Any]] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    started_at: str = ""
    finished_at: str | None = None
    stop: StopKind | None = None
    stop_reason: str | None = None
    abandoned: int = 0
    late_results: int = 0
    still_running: int = 0
    failed_targets: list[str] = field(default_factory=list)
    engine: str = "threads"
    workers: int = 0
    cluster_workers: int = 0  # worker processes of the cluster (some may get no batch)
    batches: int = 0
    assume_bound: int | None = None
    duplicates_dropped: int = 0
    worker_pacing: str | None = None
    cpu_seconds: float = 0.0

    def set_call_counts(self, counts: Mapping[str, int]) -> None:
        """Take the run's call counters (``CallStats.counts()``, or the workers' added up)."""
        for name in CALL_COUNTS:
            setattr(self, name, counts.get(name, 0))

    @property
    def status(self) -> RunStatus:
        """``running`` until the run ends; then ``ok``, ``failed``, ``interrupted`` or
        ``deadline-exceeded``."""
        if self.stop is not None:
            return self.stop
        if self.finished_at is None:
            return "running"
        return "failed" if self.targets_failed or self.targets_unfinished else "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def interrupted(self) -> bool:
        return self.stop == "interrupted"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status}


@runtime_checkable
class RecordSink(Protocol):
    """Somewhere records go as they are made (the SQLite store implements this)."""

    def start(self, plan: Plan) -> None: ...

    def add(self, record: Record) -> None: ...

    def finish(self, summary: Summary) -> None: ...


# -- making records -------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """``moment`` as records write times: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


def iso_now() -> str:
    """Now, as records write their ``started_at``."""
    return iso(now())


def unit_record(
    unit: WorkUnit, data: Any, error: RecordError | None, started_at: str, duration_ms: int
) -> Record:
    """The record of one unit: ok with ``data``, or an error."""
    return Record(
        job=unit.job,
        run_id=unit.run_id,
        target=unit.target,
        account_id=unit.account_id,
        role_arn=unit.role_arn,
        region=unit.region,
        task=unit.task.id,
        status="error" if error else "ok",
        data=data,
        error=error,
        started_at=started_at,
        duration_ms=duration_ms,
    )


def target_record(
    plan: Plan, target: Target, error: RecordError, started_at: str, ms: int
) -> Record:
    """The one record of a target that failed (or stopped) before its units existed."""
    return Record(
        job=plan.job,
        run_id=plan.run_id,
        target=target.name,
        account_id=target.account_id,
        role_arn=target.role_arn,
        region=None,
        task=None,
        status="error",
        error=error,
        started_at=started_at,
        duration_ms=ms,
    )


def no_match_record(plan: Plan, miss: NoMatch, started_at: str) -> Record:
    """The record of a glob over an Organizations role set that matched no account AWS
    Organizations listed: an error, never a run of every account (``target`` is the glob)."""
    return Record(
        job=plan.job,
        run_id=plan.run_id,
        target=miss.selector,
        account_id="",
        role_arn="",
        region=None,
        task=None,
        status="error",
        error=RecordError(code=miss.code, message=f"{miss.message}. Fix: {miss.fix}"),
        started_at=started_at,
        duration_ms=0,
    )


def error_of(exc: BaseException) -> RecordError:
    """The record's error for an exception (never includes a credential)."""
    if isinstance(exc, AwsError):
        return RecordError(code=exc.code, message=exc.aws_message, hop=exc.context.hop)
    if isinstance(exc, TaskError):
        return RecordError(code=exc.code, message=exc.message)
    if isinstance(exc, RolechainError):
        return RecordError(code=type(exc).__name__, message=exc.message)
    name = type(exc).__name__
    if isinstance(exc, SystemExit):
        return RecordError(code=name, message=f"the task called sys.exit({exc.code!r})")
    if not isinstance(exc, Exception):  # KeyboardInterrupt, GeneratorExit, other BaseExceptions
        detail = f": {exc}" if str(exc) else ""
        return RecordError(code=name, message=f"the task raised {name}{detail}")
    return RecordError(code=name, message=str(exc) or name)


def task_error(exc: BaseException) -> RecordError:
    """The record's error for what a task raised: a botocore error a task let through (a
    ``python`` task's own client) is described as rolechain describes AWS errors."""
    foreign = describe_foreign(exc) if isinstance(exc, Exception) else None
    return error_of(foreign if foreign is not None else exc)

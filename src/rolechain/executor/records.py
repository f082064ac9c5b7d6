"""What a run yields: one :class:`Record` per (target, region, task), and a :class:`Summary`.

Records are plain data (JSON-safe ``data``), made as each unit of work finishes and
streamed to the caller; the runner keeps none of them. :mod:`rolechain.results` formats and
stores them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


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


@dataclass
class Summary:
    """Totals of a run, complete once its records have all been consumed."""

    job: str
    run_id: str
    targets: int = 0
    targets_ok: int = 0
    targets_failed: int = 0
    records: int = 0
    records_failed: int = 0
    assume_calls: int = 0
    planned_assume_calls: int = 0
    retries: int = 0
    elapsed_seconds: float = 0.0
    started_at: str = ""
    finished_at: str | None = None
    interrupted: bool = False
    failed_targets: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.targets_failed == 0 and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

"""Records as rows: the flat shape CSV, tables and the SQLite store share.

:class:`~rolechain.executor.records.Record` itself lives in the executor (which makes
records and may not import this package); it is re-exported here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rolechain.errors import redact

if TYPE_CHECKING:
    from rolechain.executor.records import Record, RecordError, Summary


def __getattr__(name: str) -> Any:
    # Re-exported lazily: importing the executor package is not cheap, and what only reads
    # a store (results, diff, sql) never needs it.
    if name in ("Record", "RecordError", "Summary"):
        from rolechain.executor import records

        return getattr(records, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COLUMNS",
    "Record",
    "RecordError",
    "Summary",
    "data_json",
    "from_row",
    "shown",
    "to_row",
]

COLUMNS = (
    "job",
    "run_id",
    "target",
    "account_id",
    "role_arn",
    "region",
    "task",
    "status",
    "error_code",
    "error_message",
    "error_hop",
    "started_at",
    "duration_ms",
    "data",
)


def data_json(data: Any) -> str | None:
    """``data`` as compact JSON text (None stays None)."""
    if data is None:
        return None
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)


_SAME: Any = object()


def to_row(record: Record, *, data: Any = _SAME) -> dict[str, Any]:
    """A flat row: the error split into three columns, data as JSON text (``data``: this
    instead of the record's, e.g. what is left of it once its rows are taken out)."""
    error = record.error
    return {
        "job": record.job,
        "run_id": record.run_id,
        "target": record.target,
        "account_id": record.account_id,
        "role_arn": record.role_arn,
        "region": record.region,
        "task": record.task,
        "status": record.status,
        "error_code": error.code if error else None,
        "error_message": redact(error.message) if error else None,
        "error_hop": error.hop if error else None,
        "started_at": record.started_at,
        "duration_ms": record.duration_ms,
        "data": data_json(record.data if data is _SAME else data),
    }


def shown(record: Record) -> dict[str, Any]:
    """``record.to_dict()`` as written out: an error message (which may quote a parameter
    AWS refused) never shows a value read from ``${env:...}``. Task data is left as it is."""
    out = record.to_dict()
    if out.get("error"):
        out["error"]["message"] = redact(out["error"]["message"])
    return out


def from_row(row: dict[str, Any]) -> Record:
    """The inverse of :func:`to_row`."""
    from rolechain.executor.records import Record, RecordError

    error = (
        RecordError(row["error_code"], row["error_message"] or "", row["error_hop"])
        if row.get("error_code")
        else None
    )
    return Record(
        job=row["job"],
        run_id=row["run_id"],
        target=row["target"],
        account_id=row["account_id"],
        role_arn=row["role_arn"],
        region=row["region"],
        task=row["task"],
        status=row["status"],
        data=json.loads(row["data"]) if row.get("data") else None,
        error=error,
        started_at=row["started_at"],
        duration_ms=int(row["duration_ms"]),
    )

"""The python task of bench_inventory: twenty bucket-like rows per account, no AWS call
(so that the run's wall time is AssumeRole and storing, what rows can slow down)."""

from __future__ import annotations

from typing import Any

ROWS = 20


def twenty(session: Any, context: Any) -> dict[str, Any]:
    account = context.account_id
    buckets = [
        {
            "name": f"bucket-{account}-{n:02d}",
            "created": f"2026-01-{1 + n % 28:02d}T03:00:00+00:00",
            "region": "us-east-1",
            "tags": {"team": f"team-{n % 5}", "env": "prod" if n % 2 else "dev"},
        }
        for n in range(ROWS)
    ]
    return {"buckets": buckets, "count": ROWS}

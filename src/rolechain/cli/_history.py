"""``rolechain history``: the list of runs and one run's detail, as text.

Kept apart from the command so that new columns (or new filters) are one function each.
Every time is shown in one format, UTC to the second (``2026-12-06 14:57:00Z``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from rolechain.results.store import Store

# A scheduled run's trigger time is schedule time; in a rehearsal (--time-scale) that clock
# runs faster than the real one its 'started' is in. Past this gap, the table says so.
_CLOCK_GAP = timedelta(minutes=5)
_UNFINISHED = ("Interrupted", "DeadlineExceeded")


def when(text: str | None) -> str:
    """``2026-12-06 14:57:00Z`` for any ISO time the store holds ('' for none)."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return text
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


def since_cutoff(value: str, now: datetime | None = None) -> datetime:
    """``--since``: a duration back from now (``2h``, ``7d``) or an ISO date/time (UTC)."""
    from rolechain.model.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError):
        seconds = None
    if seconds is not None:
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def select_runs(
    store: Store,
    *,
    job: str | None,
    status: tuple[str, ...],
    since: datetime | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Runs newest first, filtered by job, status and start time, at most ``limit``."""
    out: list[dict[str, Any]] = []
    for run in store.runs(job=job, limit=None):
        if status and run["status"] not in status:
            continue
        started = run.get("started_at") or run.get("scheduled_for")
        if since is not None and started:
            moment = datetime.fromisoformat(started.replace("Z", "+00:00")).astimezone(UTC)
            if moment < since:
                continue
        out.append(run)
        if len(out) >= limit:
            break
    return out


def target_counts(store: Store, run: dict[str, Any]) -> tuple[int, int, int]:
    """(ok, failed, of) for a run. A run that stopped before writing its summary (stopped,
    interrupted) has its counts worked out from its records."""
    ok, failed, total = run["targets_ok"] or 0, run["targets_failed"] or 0, run["targets"] or 0
    if ok or failed:
        return ok, failed, total
    states: dict[str, set[str]] = defaultdict(set)
    for row in store.query(
        "SELECT target, status, error_code FROM records WHERE run_id = ?", run["run_id"]
    ):
        states[row["target"]].add("ok" if row["status"] == "ok" else row["error_code"] or "")
    if not states:
        return ok, failed, total
    ok = sum(1 for codes in states.values() if codes == {"ok"})
    failed = sum(1 for codes in states.values() if codes - {"ok", *_UNFINISHED})
    return ok, failed, max(total, len(states))


def row_cells(store: Store, run: dict[str, Any], *, alerting: bool = False) -> list[str]:
    """One table row: run, job, trigger, status, started, targets, s (and the alert state
    when some run listed has one). The schedule time a run was due, its AssumeRole calls and
    throttling are in ``--run ID`` and the JSON."""
    trigger = run.get("trigger") or "manual"
    if run.get("attempt"):
        trigger += f" (retry {run['attempt']})"
    ok, failed, total = target_counts(store, run)
    return [
        run["run_id"],
        run["job"],
        lineage_note(trigger, run),
        status_note(run),
        when(run["started_at"]),
        f"{ok}/{failed} of {total}",
        f"{run['elapsed_seconds']:.1f}" if run["elapsed_seconds"] is not None else "",
        *([run.get("alert_state") or ""] if alerting else []),
    ]


def lineage_note(trigger: str, run: dict[str, Any]) -> str:
    """``resume of RUN`` / ``retry-failed of RUN``: the run a manual resume continues."""
    if run.get("retry_of") and trigger in ("resume", "retry-failed"):
        return f"{trigger} of {run['retry_of']}"
    return trigger


def status_note(run: dict[str, Any]) -> str:
    """``crashed (63 units unfinished)``: what a crash left undone."""
    status = str(run["status"])
    if status == "crashed" and run.get("unfinished"):
        left = run["unfinished"]
        return f"crashed ({left} unit{'s' if left != 1 else ''} unfinished)"
    return status


# (header, never wrapped): run ids and times are copied from here, so they are never cut.
COLUMNS = (
    ("run", True),
    ("job", False),
    ("trigger", False),
    ("status", False),
    ("started", True),
    ("ok/failed", False),
    ("s", False),
)


def columns(*, alerting: bool) -> tuple[tuple[str, bool], ...]:
    """The table's columns; ``alert`` only when some run listed has an alert state."""
    return (*COLUMNS, ("alert", False)) if alerting else COLUMNS


def clock_note(runs: list[dict[str, Any]]) -> str | None:
    """Why a scheduled run's trigger time and its start time may be far apart."""
    for run in runs:
        if not (run.get("scheduled_for") and run.get("started_at")):
            continue
        due = datetime.fromisoformat(run["scheduled_for"].replace("Z", "+00:00"))
        started = datetime.fromisoformat(run["started_at"].replace("Z", "+00:00"))
        if abs(started - due) > _CLOCK_GAP:
            return (
                "a scheduled run is due at schedule time (see --run ID), and 'started' is "
                "real time: a rehearsal (schedule --time-scale N) runs the schedule's clock N "
                "times faster; 's' is each run's real duration"
            )
    return None


def run_detail(store: Store, run_id: str) -> dict[str, Any] | None:
    """One run: its row, its target counts and its failures grouped by error code."""
    found = store.query("SELECT run_id FROM runs WHERE run_id = ?", run_id)
    if not found:
        return None
    run = next(r for r in store.runs(limit=None) if r["run_id"] == run_id)
    groups: dict[str, dict[str, Any]] = {}
    statuses: Counter[str] = Counter()
    for record in store.records(run_id):
        statuses[record.status] += 1
        if record.error is None:
            continue
        group = groups.setdefault(
            record.error.code,
            {"code": record.error.code, "count": 0, "targets": [], "message": record.error.message},
        )
        group["count"] += 1
        if record.target not in group["targets"]:
            group["targets"].append(record.target)
    ok, failed, total = target_counts(store, run)
    return {
        **run,
        "targets_ok": ok,
        "targets_failed": failed,
        "targets": total,
        "record_statuses": dict(statuses),
        "failures": sorted(groups.values(), key=lambda g: (-g["count"], g["code"])),
    }


def detail_lines(detail: dict[str, Any], *, shown: int = 5) -> list[str]:
    """The ``--run ID`` view as text lines."""
    trigger = detail.get("trigger") or "manual"
    head = f"run {detail['run_id']} (job {detail['job']}): {detail['status']}"
    if detail.get("reason"):
        head += f" ({detail['reason']})"
    trigger = f"  trigger: {trigger}"
    if detail.get("scheduled_for"):
        trigger += f", scheduled for {when(detail['scheduled_for'])} (schedule time)"
    if detail.get("attempt"):
        trigger += f", retry {detail['attempt']} of {detail['retry_of']}"
    times = f"  started: {when(detail['started_at'])}, finished: {when(detail['finished_at'])}"
    if detail.get("elapsed_seconds") is not None:
        times += f", {detail['elapsed_seconds']:.1f}s"
    lines = [
        head,
        trigger,
        times,
        f"  targets: {detail['targets_ok']} ok, {detail['targets_failed']} failed of "
        f"{detail['targets']}",
        f"  records: {detail['records'] or 0} ({detail['records_failed'] or 0} errors)",
        f"  AssumeRole calls: {detail['assume_calls'] or 0}, retries: {detail['retries'] or 0}, "
        f"throttled: {detail['throttled'] or 0}",
    ]
    failures = detail["failures"]
    if failures:
        lines.append("failures by error code:")
        for group in failures:
            targets = sorted(group["targets"])
            listed = ", ".join(targets[:shown])
            if len(targets) > shown:
                listed += f", ... (+{len(targets) - shown} more)"
            lines.append(f"  {group['code']}: {group['count']} record(s), "
                         f"{len(targets)} target(s): {listed}")  # fmt: skip
            lines.append(f"    e.g. {group['message']}")
    else:
        lines.append("failures: none")
    return lines

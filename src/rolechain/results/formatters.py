"""Output formats of ``rolechain run``: jsonl, json, csv (all streamed) and table.

A writer takes records one at a time (:meth:`Writer.write`) and is closed once
(:meth:`Writer.close`). ``jsonl`` writes and flushes a line per record as results arrive;
``json`` streams one JSON array; ``csv`` writes a header then a row per record (``data`` as
JSON text); ``table`` is for people and draws a rich table when the run ends.
"""

from __future__ import annotations

import csv
import json
from typing import IO, Any, Protocol

from rolechain.errors import printable
from rolechain.executor.records import Record, Summary
from rolechain.results.records import COLUMNS, data_json, shown, to_row

FORMATS = ("table", "json", "jsonl", "csv")


class Writer(Protocol):
    def write(self, record: Record) -> None: ...

    def close(self, summary: Summary | None = None) -> None: ...


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=False, default=str, ensure_ascii=False)


class JsonlWriter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, record: Record) -> None:
        self.stream.write(_dumps(shown(record)) + "\n")
        self.stream.flush()

    def close(self, summary: Summary | None = None) -> None:
        self.stream.flush()


class JsonWriter:
    """One JSON array of records, written as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._count = 0

    def write(self, record: Record) -> None:
        self.stream.write(("[\n  " if self._count == 0 else ",\n  ") + _dumps(shown(record)))
        self._count += 1

    def close(self, summary: Summary | None = None) -> None:
        self.stream.write("[]\n" if self._count == 0 else "\n]\n")
        self.stream.flush()


class CsvWriter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._writer = csv.DictWriter(stream, fieldnames=list(COLUMNS), lineterminator="\n")
        self._writer.writeheader()

    def write(self, record: Record) -> None:
        self._writer.writerow(to_row(record))

    def close(self, summary: Summary | None = None) -> None:
        self.stream.flush()


def brief(data: Any, width: int = 60) -> str:
    """A one-line rendering of a record's data for the table."""
    if data is None:
        return ""
    if isinstance(data, dict) and set(data) == {"buckets", "count"}:
        names = ", ".join(b["name"] for b in data["buckets"])
        text = f"{data['count']} bucket{'s' if data['count'] != 1 else ''}" + (
            f": {names}" if names else ""
        )
    elif isinstance(data, dict) and "exit_code" in data:
        out = (data.get("stdout") or "").strip().replace("\n", " ")
        text = f"exit {data['exit_code']}" + (f": {out}" if out else "")
    else:
        text = data_json(data) or ""
    return text if len(text) <= width else text[: width - 1] + "…"


class TableWriter:
    """A rich table drawn at the end (people read it; machines use the other formats)."""

    def __init__(self, stream: IO[str], *, color: bool | None = None) -> None:
        self.stream = stream
        self.color = color
        self._rows: list[tuple[str, ...]] = []

    def write(self, record: Record) -> None:
        error = record.error
        detail = (
            f"{error.code}: {error.message}" + (f" [hop {error.hop}]" if error.hop else "")
            if error
            else brief(record.data)
        )
        self._rows.append(
            (
                record.target,
                record.account_id,
                record.region or "-",
                record.task or "-",
                record.status,
                f"{record.duration_ms}",
                detail,
            )
        )

    def close(self, summary: Summary | None = None) -> None:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console(
            file=self.stream,
            no_color=self.color is False,
            force_terminal=self.color,
            width=None if self.stream.isatty() else 200,
        )
        table = Table(show_lines=False, header_style="bold")
        # On a narrow terminal, leave out the account (members are named set@account) and
        # the duration so the result keeps room.
        wide = console.width >= 120
        columns = ["target", "account", "region", "task", "status", "ms"]
        keep = [i for i, name in enumerate(columns) if wide or name not in ("account", "ms")]
        for i in keep:
            name = columns[i]
            table.add_column(name, no_wrap=True, justify="right" if name == "ms" else "left")
        table.add_column("result", overflow="fold", ratio=1, min_width=10)
        # A table is shown whole at the end, so show it in a stable order (target, region,
        # task) rather than the order targets happened to finish in.
        for row in sorted(self._rows, key=lambda r: (r[0], r[2], r[3])):
            style = "red" if row[4] == "error" else None
            cells = [row[i] for i in keep] + [row[6]]
            # never markup; no ${env:} value or terminal escape either
            table.add_row(*(Text(printable(cell)) for cell in cells), style=style)
        console.print(table)
        self.stream.flush()


def writer_for(fmt: str, stream: IO[str], *, color: bool | None = None) -> Writer:
    """The writer of format ``fmt`` on ``stream``."""
    if fmt == "jsonl":
        return JsonlWriter(stream)
    if fmt == "json":
        return JsonWriter(stream)
    if fmt == "csv":
        return CsvWriter(stream)
    if fmt == "table":
        return TableWriter(stream, color=color)
    raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


PACING_LINES = 5


def pacing_lines(pacing: list[dict[str, Any]]) -> list[str]:
    """One line per calling account that was paced or throttled (quiet runs: none)."""
    shown = [lane for lane in pacing if lane.get("throttled") or lane.get("rate") is not None]
    lines = []
    for lane in shown[:PACING_LINES]:
        rate, lowest = lane.get("rate"), lane.get("lowest_rate")
        pace = "not slowed" if rate is None else f"{rate:g}/s at the end"
        if rate is not None and lowest is not None and lowest < rate:
            pace += f" (lowest {lowest:g}/s)"
        cuts = lane.get("cuts", 0)
        lines.append(
            f"  pacing for account {printable(str(lane.get('key')))}: {pace}, "
            f"{lane.get('throttled', 0)} of {lane.get('calls', 0)} attempts throttled, "
            f"{cuts} cut{'s' if cuts != 1 else ''}"
        )
    if len(shown) > PACING_LINES:
        lines.append(f"  pacing for {len(shown) - PACING_LINES} more calling accounts")
    return lines


def summary_lines(summary: Summary) -> list[str]:
    """The run's summary as short lines for stderr."""
    status = summary.status + (f" ({summary.stop_reason})" if summary.stop_reason else "")
    unfinished = f", {summary.targets_unfinished} unfinished" if summary.targets_unfinished else ""
    lines = [
        f"run {summary.run_id} ({summary.job}): {status}",
        f"  targets: {summary.targets_ok} ok, {summary.targets_failed} failed{unfinished}"
        f" of {summary.targets}",
        f"  records: {summary.records} ({summary.records_failed} errors)",
        f"  AssumeRole calls: {summary.assume_calls} (planned {summary.planned_assume_calls}"
        + (f", {summary.assume_throttled} throttled" if summary.assume_throttled else "")
        + (f", {summary.assume_retries} retried" if summary.assume_retries else "")
        + ")",
        f"  retries: {summary.retries}, throttled: {summary.throttled}"
        + (
            f", ExpiredToken refreshes: {summary.expired_token_refreshes}"
            if summary.expired_token_refreshes
            else ""
        ),
        *pacing_lines(summary.pacing),
        f"  elapsed: {summary.elapsed_seconds:.2f}s, CPU {summary.cpu_seconds:.2f}s"
        + (" on the workers" if summary.engine == "dask" else ""),
    ]
    if summary.engine != "threads":
        bound = f"; AssumeRole bound {summary.assume_bound}" if summary.assume_bound else ""
        dropped = (
            f"; {summary.duplicates_dropped} duplicate records dropped"
            if summary.duplicates_dropped
            else ""
        )
        size = max(summary.cluster_workers, summary.workers)
        workers = f"{size} worker{'s' if size != 1 else ''}"
        if size != summary.workers:
            workers += f" ({summary.workers} took part)"
        lines.append(
            f"  engine: {summary.engine}, {workers}, {summary.batches} batch"
            f"{'es' if summary.batches != 1 else ''}{bound}{dropped}"
        )
        if summary.worker_pacing:
            lines.append(f"  AssumeRole pacing per worker: {summary.worker_pacing}")
    if summary.abandoned:
        lines.append(
            f"  tasks given up: {summary.abandoned} ({summary.late_results} finished later, "
            f"result dropped; {summary.still_running} still running at the end)"
        )
    if summary.failed_targets:
        shown = summary.failed_targets[:10]
        more = len(summary.failed_targets) - len(shown)
        lines.append("  failed: " + ", ".join(shown) + (f" and {more} more" if more > 0 else ""))
    return lines

"""Inventory commands over a run store: ``results``, ``diff``, ``sql``, ``export``,
``report``. Every error exits 2 (``diff`` uses 1 for "something changed")."""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from rolechain.cli._common import EXIT_INVALID, echo, handle_errors, write_text
from rolechain.cli._store import require_existing
from rolechain.cli._store import store_option as any_store_option
from rolechain.errors import RolechainError, printable, redact_data
from rolechain.locations import Location

P = ParamSpec("P")
R = TypeVar("R")


def inventory_errors(func: Callable[P, R]) -> Callable[P, R]:
    """:func:`handle_errors`, with every RolechainError (no store, no such run, DuckDB
    missing, bad SQL) exiting 2: ``diff`` exits 1 for "changed"."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RolechainError as exc:
            exc.exit_code = EXIT_INVALID
            raise

    return handle_errors(wrapper)


def store_option(func: Callable[P, R]) -> Callable[P, R]:
    return any_store_option(required=True, help="The store given to 'rolechain run --store'.")(func)


def _open(path: Location) -> Any:
    from rolechain.results.store import Store

    require_existing(path)
    return Store(path)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _table(columns: Sequence[str], rows: Iterable[Sequence[Any]], output: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(header_style="bold")
    for name in columns:
        table.add_column(printable(name))
    for row in rows:
        table.add_row(*(Text(printable(_cell(v))) for v in row))
    if output is None:
        Console(width=None if sys.stdout.isatty() else 200).print(table)
        return
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(table)
    write_text(buffer.getvalue(), output)


def _emit(
    columns: Sequence[str], rows: Iterable[Mapping[str, Any]], fmt: str, output: Path | None
) -> int:
    """Write ``rows`` (dicts) as ``fmt``; the number written."""
    if fmt == "parquet":
        from rolechain.results.analytics import write_parquet

        if output is None:
            raise RolechainError("--format parquet needs --output FILE")
        return write_parquet(rows, output)
    found = [redact_data(dict(r)) for r in rows]
    names = list(columns)
    for row in found:
        for name in row:
            if name not in names:
                names.append(name)
    if fmt == "table":
        _table(names, ([row.get(n) for n in names] for row in found), output)
    elif fmt == "json":
        write_text(json.dumps(found, indent=2, default=str), output)
    elif fmt == "jsonl":
        lines = "".join(json.dumps(row, default=str) + "\n" for row in found)
        write_text(lines, output)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(names)
        for row in found:
            writer.writerow([_cell(row.get(n)) for n in names])
        write_text(buffer.getvalue(), output)
    return len(found)


TABLE_FORMATS = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "jsonl", "csv", "parquet"]),
    default="table",
    show_default=True,
)
OUTPUT = click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of stdout.",
)


@click.command()
@click.argument("run_id", required=False)
@store_option
@click.option("--job", "-j", default=None, help="The job (default: the store's only job).")
@click.option("--task", "-t", default=None, help="Only this task (its id in the job).")
@click.option("--account", "-a", default=None, help="Only this account.")
@TABLE_FORMATS
@OUTPUT
@inventory_errors
def results(
    run_id: str | None,
    store: Location,
    job: str | None,
    task: str | None,
    account: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """The rows of a run (default: the latest complete run of the job), flattened.

    Each row has the columns run_id, job, task, target, account_id, region and key, then
    its own fields (nested ones dotted: tags.team). A selection with no rows (a task that
    gives none) lists the run's records instead.

    \b
    Example:
      rolechain results --store runs.db --job inventory --format csv
      rolechain results --store runs.db --format parquet --output buckets.parquet
    """
    from rolechain.results import inventory

    with _open(store) as database:
        run = run_id or inventory.latest_run(database, job)
        if run_id is not None:
            inventory.run_job(database, run_id)
        if inventory.has_rows(database, run, task, account):
            if fmt == "parquet" and output is not None:
                from rolechain.results.analytics import rows_parquet

                count = rows_parquet(database, run, output, task=task, account=account)
                echo(f"{count:,} rows of run {run} written to {output}", err=True)
                return
            columns: Sequence[str] = inventory.ROW_COLUMNS
            rows = inventory.iter_rows(database, run, task=task, account=account)
        else:
            from rolechain.results.records import COLUMNS

            columns = COLUMNS
            rows = inventory.iter_records(database, run, task=task, account=account)
        count = _emit(columns, rows, fmt, output)
    if output is not None:
        echo(f"{count:,} rows of run {run} written to {output}", err=True)


def _markdown(found: Any) -> str:
    def cell(value: Any) -> str:
        return _cell(value).replace("|", "\\|").replace("\n", " ")

    lines = [f"**{cell(found.summary_line())}**", ""]
    if found.changes:
        lines += ["| change | task | target | region | key | fields |", "|---|---|---|---|---|---|"]
        for c in found.changes:
            detail = (
                "; ".join(f"{n}: {_cell(o)} → {_cell(w)}" for n, o, w in c.fields)
                if c.kind == "changed"
                else _cell(dict(c.row))
            )
            lines.append(
                f"| {c.kind} | {cell(c.task)} | {cell(c.target)} | {cell(c.region)} | "
                f"{cell(c.key)} | {cell(detail)} |"
            )
    if found.unknown:
        lines += ["", "Unknown (failed or not run in one of the runs; not compared):", ""]
        lines += [f"- {cell(u.target)} {cell(u.region)} {cell(u.task)}: {cell(u.reason)}"
                  for u in found.unknown]  # fmt: skip
    return "\n".join(lines) + "\n"


@click.command()
@click.argument("run_a", required=False)
@click.argument("run_b", required=False)
@store_option
@click.option("--job", "-j", default=None, help="The job (default: the store's only job).")
@click.option("--task", "-t", default=None, help="Only this task (its id in the job).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    show_default=True,
)
@OUTPUT
@inventory_errors
def diff(
    run_a: str | None,
    run_b: str | None,
    store: Location,
    job: str | None,
    task: str | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Rows added, removed and changed between two runs of a job, by key.

    With no run, the job's latest two complete runs; with RUN_A only, RUN_A against the
    latest. A target that failed or was not run in either run is listed as unknown, never
    as removed or added.

    Exit status: 0 nothing changed, 1 something changed, 2 error (unknown targets alone
    do not make a change).

    \b
    Example:
      rolechain diff --store runs.db --job inventory
      rolechain diff --store runs.db --job inventory --format markdown
    """
    from rolechain.results import inventory

    with _open(store) as database:
        name, a, b = inventory.runs_to_compare(database, job, run_a, run_b)
        found = inventory.diff(database, name, a, b, task=task)
    if fmt == "json":
        write_text(json.dumps(redact_data(found.to_dict()), indent=2, default=str), output)
    elif fmt == "markdown":
        write_text(_markdown(found), output)
    else:
        rows = []
        for c in found.changes:
            detail = (
                "; ".join(f"{n}: {_cell(o)} -> {_cell(w)}" for n, o, w in c.fields)
                if c.kind == "changed"
                else _cell(dict(c.row))
            )
            rows.append((c.kind, c.task, c.target, c.region, c.key, detail))
        for u in found.unknown:
            rows.append(("unknown", u.task, u.target, u.region, "", u.reason))
        if rows:
            _table(("change", "task", "target", "region", "key", "fields"), rows, output)
    echo(found.summary_line(), err=True)
    sys.exit(1 if found.changed else 0)


@click.command()
@click.argument("query")
@store_option
@TABLE_FORMATS
@OUTPUT
@inventory_errors
def sql(query: str, store: Location, fmt: str, output: Path | None) -> None:
    """SQL over the store with DuckDB (pip install 'rolechain[analytics]').

    Views: runs, latest_runs, records, rows, latest_rows (each job's latest complete run).
    JSON columns (rows.row, records.data, runs.plan) take DuckDB's JSON functions:
    row->>'$.name', json_extract(row, '$.tags').

    \b
    Example:
      rolechain sql "SELECT account_id, count(*) FROM latest_rows GROUP BY 1" --store runs.db
    """
    from rolechain.results.analytics import query as run_query
    from rolechain.results.analytics import require

    require()
    with _open(store) as database:
        names, found = run_query(database, query)
    rows = [dict(zip(names, row, strict=True)) for row in found]
    _emit(names, rows, fmt, output)


@click.command()
@store_option
@click.option(
    "--to",
    "target",
    type=(click.Choice(["parquet"]), click.Path(file_okay=False, path_type=Path)),
    required=True,
    metavar="parquet DIR",
    help="Write Hive-partitioned Parquet under DIR (rows/, records/, runs/).",
)
@click.option("--job", "-j", default=None, help="Only this job's runs.")
@inventory_errors
def export(store: Location, target: tuple[str, Path], job: str | None) -> None:
    """Write the store as Hive-partitioned Parquet, for Athena, Spark or DuckDB elsewhere.

    DIR/rows and DIR/records are partitioned job=/task=/run_date=, DIR/runs job=/run_date=;
    exporting a run again replaces its partitions.

    \b
    Example:
      rolechain export --store runs.db --to parquet inventory-parquet
    """
    from rolechain.results.analytics import export as write
    from rolechain.results.analytics import require_arrow

    require_arrow()
    _, directory = target
    with _open(store) as database:
        counts = write(database, directory, job=job)
    echo(
        f"wrote {counts['rows']:,} rows, {counts['records']:,} records and "
        f"{counts['runs']:,} runs under {directory}",
        err=True,
    )


@click.command()
@click.argument("run_id", required=False)
@store_option
@click.option("--job", "-j", default=None, help="The job (default: the store's only job).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@inventory_errors
def report(run_id: str | None, store: Location, job: str | None, output: Path) -> None:
    """One run as a self-contained HTML page (default: the job's latest complete run).

    Summary, a sortable table of every target, failures grouped by cause with the hop and
    the fix, the changes since the previous run, and the plan as a graph. It opens from
    disk and fetches nothing.

    \b
    Example:
      rolechain report --store runs.db --job inventory --output report.html
    """
    from rolechain.results import inventory
    from rolechain.results.report import render

    with _open(store) as database:
        run = run_id or inventory.latest_run(database, job)
        page = render(database, run)
    output.write_text(page, encoding="utf-8")
    echo(f"report of run {run} written to {output}", err=True)

"""SQL over the store with DuckDB, Parquet out with pyarrow (``rolechain[analytics]``).

DuckDB's SQLite and PostgreSQL scanners are extensions it downloads at run time, which
fails offline and on air-gapped hosts, so they are not used: the store's tables are read
through the store's own connection (SQLite or PostgreSQL) in batches into Arrow tables,
which DuckDB queries in place (no copy). Only
the tables a query names are read, and for ``latest_rows`` only the rows of each job's
latest complete run.

Views: ``runs``, ``latest_runs`` (each job's latest complete run), ``records``, ``rows``
and ``latest_rows``. JSON columns (``records.data``, ``rows.row``, ``runs.plan``,
``runs.pacing``) have DuckDB's JSON type, so ``row->>'$.name'`` and ``json_extract`` work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rolechain.errors import RolechainError
from rolechain.results.records import COLUMNS
from rolechain.results.store import Store, unpack_plan

INSTALL = "pip install 'rolechain[analytics]'"
BATCH = 65536


class MissingExtra(RolechainError):
    """DuckDB or pyarrow is not installed."""


def require() -> tuple[Any, Any]:
    """(duckdb, pyarrow), or a MissingExtra that says how to install them."""
    try:
        import duckdb
        import pyarrow
    except ImportError as exc:
        raise MissingExtra(
            f"this command needs DuckDB and pyarrow ({exc.name} is not installed)",
            hint=f"install them with: {INSTALL}",
        ) from None
    return duckdb, pyarrow


def require_arrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise MissingExtra(
            f"Parquet needs pyarrow ({exc.name} is not installed)",
            hint=f"install it with: {INSTALL}",
        ) from None
    return pyarrow


# (name, arrow type) of each column read from SQLite
_RUN_COLUMNS = (
    ("run_id", "string"), ("job", "string"), ("principal", "string"), ("status", "string"),
    ("trigger", "string"), ("scheduled_for", "string"), ("attempt", "int64"),
    ("retry_of", "string"), ("reason", "string"), ("started_at", "string"),
    ("finished_at", "string"), ("targets", "int64"), ("targets_ok", "int64"),
    ("targets_failed", "int64"), ("records", "int64"), ("records_failed", "int64"),
    ("assume_calls", "int64"), ("planned_assume_calls", "int64"), ("retries", "int64"),
    ("throttled", "int64"), ("expired_token_refreshes", "int64"),
    ("elapsed_seconds", "float64"), ("pacing", "string"), ("plan", "string"),
)  # fmt: skip
_RECORD_TYPES = {"duration_ms": "int64"}
_RECORD_COLUMNS = (
    ("id", "int64"),
    *((name, _RECORD_TYPES.get(name, "string")) for name in COLUMNS),
    ("rows", "int64"),
    ("row_key", "string"),
)
_META_COLUMNS = (
    ("id", "int64"), ("run_id", "string"), ("job", "string"), ("task", "string"),
    ("target", "string"), ("account_id", "string"), ("region", "string"),
)  # fmt: skip
_ROW_COLUMNS = (("record_id", "int64"), ("key", "string"), ("row", "string"))

_LATEST = "SELECT run_id FROM latest_runs"  # the store's view: each job's latest complete run
_VIEWS = {
    "runs": "SELECT * REPLACE (pacing::JSON AS pacing, plan::JSON AS plan) FROM _runs",
    "latest_runs": "SELECT * FROM runs WHERE run_id IN (SELECT run_id FROM _latest)",
    "records": "SELECT * REPLACE (data::JSON AS data) FROM _records",
    "rows": (
        "SELECT m.run_id, m.job, m.task, m.target, m.account_id, m.region, k.key, "
        "k.row::JSON AS row FROM _record_rows k JOIN _meta m ON m.id = k.record_id"
    ),
    "latest_rows": (
        "SELECT m.run_id, m.job, m.task, m.target, m.account_id, m.region, k.key, "
        "k.row::JSON AS row FROM _latest_record_rows k JOIN _meta m ON m.id = k.record_id "
        "WHERE m.run_id IN (SELECT run_id FROM _latest)"
    ),
}
VIEWS = tuple(_VIEWS)


def arrow_table(pa: Any, rows: Iterable[Sequence[Any]], columns: Sequence[tuple[str, str]]) -> Any:
    """An Arrow table of ``rows`` (tuples)."""
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in columns])
    found = list(rows)
    values = [[row[i] for row in found] for i in range(len(columns))]
    arrays = [pa.array(v, type=f.type) for v, f in zip(values, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _select(
    store: Store,
    columns: Sequence[tuple[str, str]],
    table: str,
    where: str = "",
    expressions: Mapping[str, str] | None = None,
) -> Any:
    """The table read from SQLite into Arrow: SQLite writes each row as a line of JSON
    (``json_object``, in C) and Arrow parses the lines (in C++), so that Python handles
    one string per row instead of an object per value."""
    import io

    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in columns])
    made = expressions or {}
    pairs = ", ".join(f"'{name}', {made.get(name, name)}" for name, _ in columns)
    cursor = store.tuples(f"SELECT {store.json_object(pairs)} FROM {table} {where}")  # noqa: S608
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    tables = []
    while True:
        chunk = cursor.fetchmany(BATCH)
        if not chunk:
            break
        text = "\n".join(line for (line,) in chunk).encode("utf-8")
        # a block holds whole lines: make it as big as the chunk (a stored plan is large)
        read = pj.ReadOptions(block_size=max(len(text) + 1, 1 << 20), use_threads=True)
        tables.append(pj.read_json(io.BytesIO(text), read_options=read, parse_options=options))
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)


def _wide(sql: str, words: list[str]) -> bool:
    """Whether ``sql`` may read every column without naming it: ``*`` (other than in
    ``count(*)``), or a view named twice (a self-join, a view used as a struct)."""
    if "*" in re.sub(r"count\s*\(\s*\*\s*\)", "", sql, flags=re.IGNORECASE):
        return True
    return any(words.count(view) > 1 for view in VIEWS)


def connect(store: Store, sql: str = "") -> Any:
    """A DuckDB connection with the store's views. Only the tables ``sql`` names are read
    (all of them when it is empty), and the big text columns (``row``, ``key``, ``data``,
    ``plan``) only when it names them or may read every column (``*``); the others are
    left null, which a query that never names them cannot see."""
    duckdb, pa = require()
    listed = [w.lower() for w in re.findall(r"[A-Za-z_]+", sql)]
    words = set(listed) if sql else set(VIEWS)
    wide = not sql or _wide(sql, listed)

    def read(
        columns: Sequence[tuple[str, str]],
        table: str,
        where: str = "",
        expressions: Mapping[str, str] | None = None,
    ) -> Any:
        heavy = {"row", "key", "data", "plan", "pacing", "error_message"}
        kept = [
            c for c in columns if (wide or c[0] not in heavy or c[0] in words) and c[0] != "plan"
        ]
        found = _select(store, kept, table, where, expressions)
        if table == "runs" and (wide or "plan" in words):
            # stored compressed: read in Python, one per run
            plans = dict(store.tuples("SELECT run_id, plan FROM runs"))
            text = [plans[r] and unpack_plan(plans[r]) for r in found["run_id"].to_pylist()]
            found = found.append_column("plan", pa.array(text, type=pa.string()))
            kept.append(("plan", "string"))
        for index, (name, kind) in enumerate(columns):
            if (name, kind) not in kept:
                nulls = pa.nulls(found.num_rows, type=getattr(pa, kind)())
                found = found.add_column(index, name, nulls)
        return found

    con = duckdb.connect()
    tables: dict[str, Any] = {
        "_runs": read(_RUN_COLUMNS, "runs"),
        "_latest": arrow_table(pa, store.tuples(_LATEST), (("run_id", "string"),)),
    }
    empty_rows = arrow_table(pa, (), _ROW_COLUMNS)
    if words & {"rows", "latest_rows"}:
        tables["_meta"] = read(_META_COLUMNS, "records")
    else:
        tables["_meta"] = arrow_table(pa, (), _META_COLUMNS)
    tables["_records"] = (
        read(_RECORD_COLUMNS, "records")
        if "records" in words
        else arrow_table(pa, (), _RECORD_COLUMNS)
    )
    rows_from = "record_rows k JOIN records r ON r.id = k.record_id"
    # || '' makes json_set's result plain text again (JSON lines carry the row as a string)
    rows_made = {"record_id": "k.record_id", "key": "k.key", "row": f"({store.row_sql}) || ''"}
    tables["_record_rows"] = (
        read(_ROW_COLUMNS, rows_from, "", rows_made) if "rows" in words else empty_rows
    )
    if "latest_rows" in words:
        tables["_latest_record_rows"] = (
            tables["_record_rows"]
            if "rows" in words
            else read(
                _ROW_COLUMNS,
                rows_from,
                f"WHERE r.run_id IN ({_LATEST})",
                rows_made,
            )
        )
    else:
        tables["_latest_record_rows"] = empty_rows
    for name, table in tables.items():
        con.register(name, table)
    for name, body in _VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {body}")
    return con


def query(store: Store, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` over the store; (column names, rows)."""
    con = connect(store, sql)
    duckdb, _ = require()
    try:
        cursor = con.execute(sql)
    except duckdb.Error as exc:
        raise RolechainError(
            f"SQL error: {str(exc).strip()}",
            hint=f"the views are {', '.join(VIEWS)}; see docs/inventory.md",
        ) from None
    names = [d[0] for d in cursor.description or ()]
    return names, cursor.fetchall()


# -- Parquet ---------------------------------------------------------------------------


def _column(pa: Any, values: list[Any]) -> Any:
    """An Arrow array of ``values``; objects and mixed types become JSON text."""
    import json

    try:
        if not any(isinstance(v, Mapping) for v in values):
            return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    text = [
        v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
        for v in values
    ]
    return pa.array(text, type=pa.string())


def table_of(pa: Any, rows: Iterable[Mapping[str, Any]]) -> Any:
    """An Arrow table of dicts whose keys may differ (a missing field is null)."""
    found = list(rows)
    names: dict[str, None] = {}
    for row in found:
        for name in row:
            names.setdefault(name, None)
    return pa.table({name: _column(pa, [row.get(name) for row in found]) for name in names})


def write_parquet(rows: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write ``rows`` to one Parquet file; the number written."""
    pa = require_arrow()
    import pyarrow.parquet as pq

    table = table_of(pa, rows)
    pq.write_table(table, str(path))
    return int(table.num_rows)


def export(store: Store, directory: Path, *, job: str | None = None) -> dict[str, int]:
    """Write ``rows``, ``records`` (partitioned ``job=/task=/run_date=``) and ``runs``
    (``job=/run_date=``) under ``directory`` as Hive-partitioned Parquet; each run's
    partitions are replaced when it is exported again. Returns rows written per dataset."""
    pa = require_arrow()
    import pyarrow.parquet as pq

    date = "substr(coalesce(u.started_at, u.scheduled_for, ''), 1, 10)"
    where = "WHERE u.job = ?" if job else ""
    args: tuple[Any, ...] = (job,) if job else ()
    # Column names and clauses are constants of this module; the job is a bound parameter.
    datasets = {
        "rows": (
            f"SELECT r.run_id, r.job, r.task, r.target, r.account_id, r.region, k.key, {store.row_sql} AS row, "  # noqa: E501, S608
            f"u.started_at AS run_started_at, {date} AS run_date FROM record_rows k "
            f"JOIN records r ON r.id = k.record_id JOIN runs u ON u.run_id = r.run_id {where}",
            ["job", "task", "run_date"],
        ),
        "records": (
            f"SELECT {', '.join('r.' + c for c in COLUMNS)}, r.rows, "  # noqa: S608
            f"u.started_at AS run_started_at, {date} AS run_date FROM records r "
            f"JOIN runs u ON u.run_id = r.run_id {where}",
            ["job", "task", "run_date"],
        ),
        "runs": (
            f"SELECT {', '.join('u.' + n for n, _ in _RUN_COLUMNS)}, {date} AS run_date "  # noqa: S608
            f"FROM runs u {where}",
            ["job", "run_date"],
        ),
    }
    counts: dict[str, int] = {}
    for name, (sql, partitions) in datasets.items():
        cursor = store.tuples(sql, args)
        columns = [d[0] for d in cursor.description]
        found = [dict(zip(columns, row, strict=True)) for row in cursor]
        for row in found:
            if row.get("plan") is not None:
                row["plan"] = unpack_plan(row["plan"])
        table = pa.Table.from_pylist(found)
        for column in partitions:
            if column in table.column_names:
                index = table.column_names.index(column)
                filled = pa.array(
                    [v if v not in (None, "") else "none" for v in table[column].to_pylist()],
                    type=pa.string(),
                )
                table = table.set_column(index, column, filled)
        counts[name] = int(table.num_rows)
        if table.num_rows:
            pq.write_to_dataset(
                table,
                root_path=str(directory / name),
                partition_cols=partitions,
                existing_data_behavior="delete_matching",
                basename_template="part-{i}.parquet",
            )
    return counts


def rows_parquet(
    store: Store, run_id: str, path: Path, *, task: str | None = None, account: str | None = None
) -> int:
    """The run's rows (as ``rolechain results`` flattens them) to one Parquet file, parsed
    by Arrow from JSON lines SQLite writes; the number written. Rows whose fields change
    type from one row to the next go through :func:`write_parquet` instead."""
    import io

    pa = require_arrow()
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from rolechain.results.inventory import ROW_COLUMNS, iter_rows, run_filter

    where, args = run_filter(run_id, task, account)
    pairs = ", ".join(f"'{c}', {'k' if c == 'key' else 'r'}.{c}" for c in ROW_COLUMNS)
    made = store.json_object(f"{pairs}, 'row', {store.json_value(store.row_sql)}")
    cursor = store.tuples(
        f"SELECT {made} FROM record_rows k "  # noqa: S608
        f"JOIN records r ON r.id = k.record_id WHERE {where} ORDER BY r.id, k.rowid",
        args,
    )
    text = "\n".join(line for (line,) in cursor).encode("utf-8")
    if not text:
        return write_parquet(iter_rows(store, run_id, task=task, account=account), path)
    try:
        read = pj.ReadOptions(block_size=max(len(text) + 1, 1 << 20))
        table = pj.read_json(io.BytesIO(text), read_options=read)
        while any(pa.types.is_struct(f.type) for f in table.schema):
            table = table.flatten()
        # a row's field named like a column (region) gives way to the column, as in results
        clashing = [f"row.{c}" for c in ROW_COLUMNS if f"row.{c}" in table.column_names]
        table = table.drop_columns(clashing)
        names = [n[4:] if n.startswith("row.") else n for n in table.column_names]
        if any(pa.types.is_null(f.type) for f in table.schema):
            raise ValueError("a column of no type")
        table = table.rename_columns(names)
        # the row's fields sorted after the columns, as results lists them
        fields = sorted(n for n in names if n not in ROW_COLUMNS)
        table = table.select([*ROW_COLUMNS, *fields])
        pq.write_table(table, str(path))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
        return write_parquet(iter_rows(store, run_id, task=task, account=account), path)
    return int(table.num_rows)

"""``rolechain sql`` through DuckDB (no SQLite scanner), ``results --format parquet`` and
``export --to parquet``; and the clear exit 2 when the analytics extra is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.results.store import Store

from .stores import ACCOUNTS, store_run

ROWS_A = {ACCOUNTS[0]: {"k1": {"size": 1, "tags": {"team": "red"}}, "k2": {"size": 2}}}
ROWS_B = {
    ACCOUNTS[0]: {"k1": {"size": 1, "tags": {"team": "blue"}}},
    ACCOUNTS[1]: {"k9": {"size": 9}},
}


@pytest.fixture
def db(store_url: Path | str) -> Path | str:
    path = store_url
    with Store(path) as store:
        store_run(store, "A", ROWS_A, when="2026-01-01T03:00:00Z")
        store_run(store, "B", ROWS_B, when="2026-01-02T03:00:00Z", failed={ACCOUNTS[2]})
    return path


def sql(db: Path | str, query: str, *more: str) -> list[dict[str, object]]:
    answer = CliRunner().invoke(cli, ["sql", query, "--store", str(db), "--format", "json", *more])
    assert answer.exit_code == 0, answer.output
    found: list[dict[str, object]] = json.loads(answer.stdout)
    return found


def test_views_and_json_functions(db: Path | str) -> None:
    assert sql(db, "SELECT count(*) AS n FROM rows") == [{"n": 4}]
    assert sql(db, "SELECT count(*) AS n FROM latest_rows") == [{"n": 2}]
    assert sql(db, "SELECT run_id, status FROM latest_runs") == [
        {"run_id": "B", "status": "failed"}
    ]
    found = sql(
        db,
        "SELECT account_id, key, row->>'$.tags.team' AS team, json_extract(row, '$.size') AS size "
        "FROM latest_rows ORDER BY key",
    )
    assert found == [
        {"account_id": ACCOUNTS[0], "key": "k1", "team": "blue", "size": "1"},
        {"account_id": ACCOUNTS[1], "key": "k9", "team": None, "size": "9"},
    ]
    errors = sql(db, "SELECT target, error_code FROM records WHERE status = 'error'")
    assert errors == [{"target": f"audit@{ACCOUNTS[2]}", "error_code": "AccessDenied"}]
    plans = sql(db, "SELECT plan->>'$.job' AS job FROM runs ORDER BY run_id")
    assert plans == [{"job": "inv"}, {"job": "inv"}]


def test_sql_errors_exit_2_with_the_views_named(db: Path | str) -> None:
    answer = CliRunner().invoke(cli, ["sql", "SELECT * FROM nowhere", "--store", str(db)])
    assert answer.exit_code == 2
    assert "latest_rows" in answer.output


def test_results_as_parquet_and_csv(db: Path | str, tmp_path: Path) -> None:
    out = tmp_path / "rows.parquet"
    answer = CliRunner().invoke(
        cli, ["results", "--store", str(db), "--format", "parquet", "--output", str(out)]
    )
    assert answer.exit_code == 0, answer.output
    table = pq.read_table(out).to_pylist()
    assert sorted((r["account_id"], r["key"], r["tags.team"]) for r in table) == [
        (ACCOUNTS[0], "k1", "blue"),
        (ACCOUNTS[1], "k9", None),
    ]
    csv = CliRunner().invoke(cli, ["results", "B", "--store", str(db), "--format", "csv"])
    assert (
        csv.stdout.splitlines()[0]
        == "run_id,job,task,target,account_id,region,key,id,size,tags.team"
    )
    assert len(csv.stdout.splitlines()) == 3
    missing = CliRunner().invoke(cli, ["results", "--store", str(db), "--format", "parquet"])
    assert missing.exit_code == 2
    assert "--output" in missing.output


def test_export_is_hive_partitioned(db: Path | str, tmp_path: Path) -> None:
    out = tmp_path / "parquet"
    for _ in range(2):  # exporting again replaces, never duplicates
        answer = CliRunner().invoke(
            cli, ["export", "--store", str(db), "--to", "parquet", str(out)]
        )
        assert answer.exit_code == 0, answer.output
    parts = sorted(p.relative_to(out).parent.as_posix() for p in out.rglob("*.parquet"))
    assert "rows/job=inv/task=things/run_date=2026-01-01" in parts
    assert "rows/job=inv/task=things/run_date=2026-01-02" in parts
    assert "runs/job=inv/run_date=2026-01-02" in parts
    con = duckdb.connect()
    found = con.execute(
        f"SELECT run_date, count(*) FROM read_parquet('{out}/rows/**/*.parquet', "
        "hive_partitioning = true) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(str(d), n) for d, n in found] == [("2026-01-01", 2), ("2026-01-02", 2)]


def test_without_the_analytics_extra(db: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb raises ImportError
    answer = CliRunner().invoke(cli, ["sql", "SELECT 1", "--store", str(db)])
    assert answer.exit_code == 2
    assert "pip install 'rolechain[analytics]'" in answer.output
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    answer = CliRunner().invoke(cli, ["export", "--store", str(db), "--to", "parquet", "x"])
    assert answer.exit_code == 2
    assert "pip install 'rolechain[analytics]'" in answer.output


def test_columns_left_out_only_when_the_query_cannot_see_them(db: Path | str) -> None:
    # count(*) reads no row text; '*' and a view named twice read every column
    assert sql(db, "SELECT count(*) AS n FROM latest_rows WHERE account_id = '222222222222'") == [
        {"n": 1}
    ]
    [whole] = sql(db, "SELECT * FROM latest_rows WHERE key = 'k9'")
    assert json.loads(str(whole["row"])) == {"id": "k9", "size": 9}
    pairs = sql(
        db,
        "SELECT a.key AS old, b.row->>'$.size' AS size FROM rows a JOIN rows b "
        "ON a.key = b.key AND a.run_id = 'A' AND b.run_id = 'B'",
    )
    assert pairs == [{"old": "k1", "size": "1"}]
    [plan] = sql(db, "SELECT r.* FROM runs r WHERE run_id = 'A'")
    assert plan["plan"] is not None


def test_parquet_of_rows_whose_types_differ(tmp_path: Path) -> None:
    path = tmp_path / "mixed.db"
    mixed = {ACCOUNTS[0]: {"k1": {"size": 1}}, ACCOUNTS[1]: {"k2": {"size": "big"}}}
    with Store(path) as store:
        store_run(store, "A", mixed)
    out = tmp_path / "mixed.parquet"
    answer = CliRunner().invoke(
        cli, ["results", "--store", str(path), "--format", "parquet", "--output", str(out)]
    )
    assert answer.exit_code == 0, answer.output
    assert sorted(str(r["size"]) for r in pq.read_table(out).to_pylist()) == ["1", "big"]

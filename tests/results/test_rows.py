"""Rows: the task's rows expression and key, the built-in defaults, the store's rows table
and its migration from schema 3."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest

from aws.fakes import hub_plan
from rolechain.errors import ChainFileError
from rolechain.executor.records import Record, Summary
from rolechain.model.loader import loads
from rolechain.planner.plan import Plan, TaskRef
from rolechain.results.rows import RowSpec
from rolechain.results.store import SCHEMA_VERSION, Store

BUCKETS = {
    "buckets": [{"name": "b1", "created": "2026"}, {"name": "b2", "created": "2027"}],
    "count": 2,
}


def spec(task: str, rows: str | None = None, key: tuple[str, ...] | None = None) -> RowSpec:
    return RowSpec.of(TaskRef(id=task, task=task, rows=rows, key=key))


def test_built_in_defaults() -> None:
    buckets = spec("s3.list_buckets")
    found = buckets.extract(BUCKETS)
    assert found is not None
    assert [buckets.key_of(r) for r in found.rows or []] == ["b1", "b2"]
    assert found.rest == {"count": 2}
    assert buckets.restore(found.rest, found.rows or []) == BUCKETS
    who = spec("sts.get_caller_identity")
    identity = {"account": "222222222222", "arn": "arn", "user_id": "u"}
    found = who.extract(identity)
    assert found is not None
    assert found.rows == [identity]
    assert who.key_of(identity) == "222222222222"
    assert who.restore(found.rest, [identity]) == identity
    assert spec("exec").extract({"exit_code": 0, "stdout": "x"}) is None


def test_call_and_python_give_rows_when_their_result_is_a_list_of_objects() -> None:
    python = spec("python", key=("id",))
    found = python.extract([{"id": "i-1"}, {"id": "i-2"}])
    assert found is not None
    assert [python.key_of(r) for r in found.rows or []] == ["i-1", "i-2"]
    assert python.extract({"not": "a list"}) is None
    assert spec("call").extract(["strings", "only"]) is None
    # no key: a row is identified by its content
    anonymous = spec("call")
    assert anonymous.key_of({"a": 1}) == anonymous.key_of({"a": 1}) != anonymous.key_of({"a": 2})


def test_declared_rows_and_compound_keys() -> None:
    instances = spec(
        "call", rows="Reservations[].Instances[]", key=("InstanceId", "Placement.Zone")
    )
    data = {"Reservations": [{"Instances": [{"InstanceId": "i-1", "Placement": {"Zone": "a"}}]}]}
    found = instances.extract(data)
    assert found is not None
    assert found.rows == [{"InstanceId": "i-1", "Placement": {"Zone": "a"}}]
    assert instances.key_of(found.rows[0]) == '["i-1","a"]'
    assert found.rest is None  # not a field path: the rows are the record's data
    # a declared expression that gives no list of objects: no rows, the data stays whole
    wrong = spec("call", rows="Reservations[0].Instances[0].InstanceId").extract(data)
    assert wrong is not None
    assert wrong.rows is None
    assert wrong.rest == data
    assert "a string" in (wrong.why or "")
    # a missing field is no rows at all (an account with no instances)
    empty = spec("call", rows="Reservations[].Instances[]").extract({"Reservations": []})
    assert empty is not None
    assert empty.rows == []


CHAIN = """
principals:
  ci: {{kind: user, account: "111111111111"}}
roles:
  hub: {{arn: "arn:aws:iam::111111111111:role/hub", trusts: [ci]}}
jobs:
  inv:
    from: ci
    to: hub
    tasks:
      - {{task: call, with: {{service: ec2, operation: describe_instances}}, {extra}}}
"""


def test_the_chain_file_declares_rows_and_key() -> None:
    chain = loads(
        CHAIN.format(extra="rows: 'Reservations[].Instances[]', key: [InstanceId]"), file="c.yaml"
    )
    [task] = chain.model.jobs["inv"].tasks
    assert (task.rows, task.key) == ("Reservations[].Instances[]", ["InstanceId"])
    with pytest.raises(ChainFileError, match="invalid rows expression"):
        loads(CHAIN.format(extra="rows: 'Reservations[.'"), file="c.yaml")
    with pytest.raises(ChainFileError, match="invalid key field"):
        loads(CHAIN.format(extra="key: ['a[']"), file="c.yaml")


def test_the_plan_keeps_rows_and_key_through_json() -> None:
    task = TaskRef(id="i", task="call", rows="Items", key=("Id",))
    plan = dataclasses.replace(hub_plan(["222222222222"]), tasks=(task,))
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again.tasks == (task,)
    old = plan.to_dict()
    for t in old["tasks"]:
        del t["rows"], t["key"]
    assert Plan.from_dict(old).tasks[0].rows is None  # a plan stored by an older rolechain


def record(account: str, data: object, task: str = "s3.list_buckets", run: str = "r1") -> Record:
    return Record("inv", run, f"audit@{account}", account, "arn", "us-east-1", task, "ok", data)


PLAN_TYPE = {
    "sqlite": ("typeof(plan)", "blob"),
    "postgresql": ("pg_typeof(plan)::text", "bytea"),
}


def test_the_store_keeps_rows_in_their_own_table(store_url: Path | str, backend: str) -> None:
    plan = dataclasses.replace(hub_plan(["222222222222", "333333333333"]), run_id="r1")
    with Store(store_url, batch=1) as store:
        store.start(plan)
        store.add(record("222222222222", BUCKETS))
        store.add(record("333333333333", {"buckets": [], "count": 0}))
        store.finish(Summary("inv", "r1", finished_at="2026-01-01T00:00:00Z"))
        found = store.query("SELECT account_id, key, row FROM rows ORDER BY key")
        assert [(r["account_id"], r["key"]) for r in found] == [
            ("222222222222", "b1"),
            ("222222222222", "b2"),
        ]
        assert json.loads(found[0]["row"]) == {"name": "b1", "created": "2026"}
        # the key field is stored once, as the key; the rows view puts it back
        stored = store.query("SELECT key, row FROM record_rows ORDER BY key")
        assert stored[0] == {"key": "b1", "row": '{"created":"2026"}'}
        assert store.query("SELECT DISTINCT row_key FROM records") == [{"row_key": "name"}]
        # the plan is stored compressed, and read back whole
        expression, kind = PLAN_TYPE[backend]
        assert store.query(f"SELECT {expression} AS kind FROM runs") == [{"kind": kind}]
        assert store.plan("r1") == plan
        counts = store.query("SELECT account_id, rows, data FROM records ORDER BY account_id")
        assert [(r["rows"], r["data"]) for r in counts] == [(2, '{"count":2}'), (0, '{"count":0}')]
        assert [r.data for r in store.records("r1")] == [BUCKETS, {"buckets": [], "count": 0}]
        # the rows of a run go when the run goes (prune deletes runs)
        store.query("DELETE FROM runs WHERE run_id = 'r1'")
        assert store.query("SELECT count(*) AS n FROM record_rows") == [{"n": 0}]


def test_records_of_two_stores_writing_one_file_keep_their_rows(store_url: Path | str) -> None:
    path = store_url
    first, second = Store(path, batch=1000), Store(path, batch=1000)
    for store, run in ((first, "r1"), (second, "r2")):
        store.start(dataclasses.replace(hub_plan(["222222222222"]), run_id=run))
    first.add(record("222222222222", BUCKETS, run="r1"))
    second.add(record("222222222222", {"buckets": [{"name": "x"}], "count": 1}, run="r2"))
    second.flush()
    first.flush()
    found = first.query("SELECT run_id, key FROM rows ORDER BY run_id, key")
    assert [(r["run_id"], r["key"]) for r in found] == [("r1", "b1"), ("r1", "b2"), ("r2", "x")]
    first.close()
    second.close()


def test_a_version_3_store_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, job TEXT NOT NULL, principal TEXT, "
        "status TEXT NOT NULL, started_at TEXT, finished_at TEXT, targets INTEGER, "
        "targets_ok INTEGER, targets_failed INTEGER, records INTEGER, records_failed INTEGER, "
        "assume_calls INTEGER, planned_assume_calls INTEGER, retries INTEGER, "
        "elapsed_seconds REAL, plan TEXT, trigger TEXT NOT NULL DEFAULT 'manual', "
        "scheduled_for TEXT, attempt INTEGER NOT NULL DEFAULT 0, retry_of TEXT, reason TEXT, "
        "throttled INTEGER, expired_token_refreshes INTEGER, pacing TEXT);"
        "CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, "
        "job TEXT NOT NULL, target TEXT NOT NULL, account_id TEXT, role_arn TEXT, region TEXT, "
        "task TEXT, status TEXT NOT NULL, error_code TEXT, error_message TEXT, error_hop TEXT, "
        "started_at TEXT, duration_ms INTEGER, data TEXT);"
        "INSERT INTO runs (run_id, job, status, plan) VALUES ('old', 'inv', 'ok', "
        f"'{json.dumps(hub_plan(['222222222222']).to_dict())}');"
        "INSERT INTO records (run_id, job, target, status, task, data) VALUES "
        "('old', 'inv', 'audit@1', 'ok', 's3.list_buckets', '{\"count\": 0}');"
        "PRAGMA user_version=3;"
    )
    db.close()
    with Store(path) as store:
        assert store.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == 6
        assert store.query("SELECT rows FROM records") == [{"rows": None}]
        assert store.query("SELECT count(*) AS n FROM latest_rows") == [{"n": 0}]
        assert [r["run_id"] for r in store.query("SELECT run_id FROM latest_runs")] == ["old"]
        old_plan = store.plan("old")  # stored as JSON text before version 4
        assert old_plan is not None
        assert old_plan.targets[0].account_id == "222222222222"

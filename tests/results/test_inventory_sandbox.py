"""Against the sandbox: two runs with buckets added, removed and retagged between them, and
one account denied in the second. ``diff`` shows exactly the changes, and the denied
account's buckets as unknown, never as removed; the scheduler's launcher gives the same
diff to ``on_change``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolechain.aws.session import static_credentials
from rolechain.cli import cli
from rolechain.executor import run
from rolechain.model.chain import Chain
from rolechain.model.loader import loads
from rolechain.results.store import Store
from rolechain.sandbox import sandbox
from rolechain.sandbox.faults import Faults
from rolechain.scheduler.launcher import ExecutorLauncher
from rolechain.scheduler.types import LaunchRequest, Trigger

# Accounts no other test uses: moto's state outlives a sandbox in the same process.
A, B, C = "313131313131", "414141414141", "515151515151"
CHAIN = f"""
version: 1
principals:
  bot: {{kind: user, account: "111111111111"}}
role_sets:
  audit:
    role_name: Audit
    trusts: [bot]
    accounts: ["{A}", "{B}", "{C}"]
jobs:
  buckets:
    from: bot
    to: audit
    regions: [us-east-1]
    tasks:
      - task: python
        id: buckets
        with: {{function: "results.inventory_tasks:buckets_with_tags"}}
        key: [name]
"""


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[Chain, Any]]:
    chain = loads(CHAIN, file="inventory.yaml")
    with sandbox(chain) as info:
        try:
            yield chain, info
        finally:  # leave moto's S3 as the sandbox made it
            info.set_faults(Faults())
            for account in (A, B, C):
                client = s3(info, account)
                for bucket in client.list_buckets().get("Buckets", []):
                    if not bucket["Name"].startswith("rolechain-"):
                        client.delete_bucket(Bucket=bucket["Name"])


def s3(info: Any, account: str) -> Any:
    return info.provisioner.client("s3", account)


@pytest.mark.slow
def test_diff_of_two_runs_against_the_sandbox(
    world: tuple[Chain, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, info = world
    env = info.principals["bot"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", env["AWS_ENDPOINT_URL"])
    creds = static_credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    for account in (A, B, C):
        for name in (f"keep-{account}", f"old-{account}"):
            s3(info, account).create_bucket(Bucket=name)
        s3(info, account).put_bucket_tagging(
            Bucket=f"keep-{account}", Tagging={"TagSet": [{"Key": "team", "Value": "red"}]}
        )
    db = tmp_path / "runs.db"
    with Store(db) as store:
        first = run(chain, "buckets", store=store, credentials=creds, run_id="run-1")
        assert all(r.ok for r in first)
    # Between the runs: in A a bucket added, one removed, one retagged; C is denied.
    s3(info, A).create_bucket(Bucket=f"new-{A}")
    s3(info, A).delete_bucket(Bucket=f"old-{A}")
    s3(info, A).put_bucket_tagging(
        Bucket=f"keep-{A}",
        Tagging={"TagSet": [{"Key": "team", "Value": "blue"}, {"Key": "env", "Value": "prod"}]},
    )
    s3(info, C).delete_bucket(Bucket=f"old-{C}")  # not seen: C is denied in the second run
    info.set_faults(Faults(deny_accounts=frozenset({C})))
    try:
        launcher = ExecutorLauncher(db, credentials_for=lambda c, j: creds)
        when = datetime(2026, 6, 1, 3, tzinfo=UTC)
        request = LaunchRequest("buckets", "run-2", Trigger("schedule", when, when), changes=True)
        done = threading.Event()
        handle = launcher.launch(chain, request, done.set)
        assert done.wait(120), "the second run did not end"
    finally:
        info.set_faults(Faults())
    result = handle.result
    assert result is not None
    assert result.status == "failed"
    assert result.failed_targets == (f"audit@{C}",)

    answer = CliRunner().invoke(
        cli, ["diff", "run-1", "run-2", "--store", str(db), "--format", "json"]
    )
    assert answer.exit_code == 1, answer.output
    found = json.loads(answer.stdout)
    changes = {(c["change"], c["account_id"], c["key"]) for c in found["changes"]}
    assert changes == {
        ("added", A, f"new-{A}"),
        ("removed", A, f"old-{A}"),
        ("changed", A, f"keep-{A}"),
    }
    [retagged] = [c for c in found["changes"] if c["change"] == "changed"]
    assert retagged["fields"] == [
        {"field": "tags.env", "old": None, "new": "prod"},
        {"field": "tags.team", "old": "red", "new": "blue"},
    ]
    [unknown] = found["unknown"]
    assert unknown["account_id"] == C
    assert "AccessDenied" in unknown["reason"]
    # C's four buckets (two the sandbox made, keep- and old-): neither removed nor kept
    assert unknown["rows_not_compared"] == 4
    assert found["summary"] | {"run_a": "", "run_b": ""} == {
        "job": "buckets", "run_a": "", "run_b": "", "added": 1, "removed": 1, "changed": 1,
        "unknown": 1, "units_compared": 2,
    }  # fmt: skip

    # The scheduler's on_change gets the same diff from the launcher
    assert result.changes is not None
    assert result.changes["changed"] is True
    assert result.changes["summary"] == found["summary"]
    assert {(c["change"], c["key"]) for c in result.changes["changes"]} == {
        (c, k) for c, _, k in changes
    }

    # The default runs are the latest two complete ones; markdown for a pull request
    markdown = CliRunner().invoke(cli, ["diff", "--store", str(db), "--format", "markdown"])
    assert markdown.exit_code == 1
    assert f"| added | buckets | audit@{A} | us-east-1 | new-{A} |" in markdown.stdout
    assert f"audit@{C}" in markdown.stdout.split("Unknown")[1]
    # the same run against itself: nothing changed, exit 0
    same = CliRunner().invoke(cli, ["diff", "run-2", "run-2", "--store", str(db)])
    assert same.exit_code == 0, same.output
    # results: one row per bucket of the latest run, tags flattened
    rows = CliRunner().invoke(
        cli, ["results", "--store", str(db), "--account", A, "--format", "jsonl"]
    )
    assert rows.exit_code == 0, rows.output
    listed = [json.loads(line) for line in rows.stdout.splitlines()]
    assert {r["name"]: r.get("tags.team") for r in listed if "rolechain-" not in r["name"]} == {
        f"keep-{A}": "blue",
        f"new-{A}": None,
    }
    assert len(listed) == 4  # and the sandbox's own two
    assert {r["run_id"] for r in listed} == {"run-2"}

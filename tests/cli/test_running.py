"""``rolechain run`` and ``rolechain history`` end to end against moto (and the sandbox)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sqlite3
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from results.stores import connect
from rolechain.cli import cli

ACCOUNTS = ["222222222201", "222222222202", "222222222203"]

CHAIN = f"""
settings:
  assume_rate: 1000
  retry: {{attempts: 2, initial_wait: 0.001, max_wait: 1}}
principals:
  ci: {{source: env, kind: user, account: "123456789012"}}
roles:
  hub:
    arn: arn:aws:iam::111111111111:role/hub
    trusts: [ci]
role_sets:
  audit:
    role_name: audit
    accounts: {ACCOUNTS}
    trusts: [hub]
jobs:
  whoami:
    from: ci
    to: audit
    tasks: [sts.get_caller_identity]
  broken:
    from: ci
    to: audit
    tasks:
      - task: call
        with: {{service: s3, operation: GetBucketAcl, params: {{Bucket: no-such-bucket-here}}}}
  stopper:
    from: ci
    to: audit
    concurrency: 1
    tasks:
      - task: python
        with: {{function: "rc_cli_stop:maybe_stop"}}
"""


@pytest.fixture
def chain_file(tmp_path: Path) -> Path:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    return path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_jsonl_streams_records_and_exit_0(aws, chain_file: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke("run", str(chain_file), "--job", "whoami", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["account_id"] for r in records) == ACCOUNTS
    assert all(r["status"] == "ok" and r["data"]["account"] == r["account_id"] for r in records)
    assert "AssumeRole calls: 4 (planned 4)" in result.stderr
    assert "3 ok, 0 failed of 3" in result.stderr


def test_target_and_region_options(aws, chain_file: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke(
        "run",
        str(chain_file),
        "-j",
        "whoami",
        "-t",
        "audit@222222222201",
        "-r",
        "eu-west-1",
        "-r",
        "us-west-2",
        "-f",
        "json",
        "-q",
    )
    assert result.exit_code == 0
    records = json.loads(result.stdout)
    assert sorted((r["target"], r["region"]) for r in records) == [
        ("audit@222222222201", "eu-west-1"),
        ("audit@222222222201", "us-west-2"),
    ]
    assert result.stderr == ""  # --quiet


def test_failed_targets_exit_1_and_csv_output(aws, chain_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.csv"
    result = invoke(
        "run", str(chain_file), "--job", "broken", "--format", "csv", "--output", str(out)
    )
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 3
    assert {r["error_code"] for r in rows} == {"NoSuchBucket"}
    assert "0 ok, 3 failed of 3" in result.stderr


def test_invalid_chain_exits_2_and_calls_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(CHAIN.replace("trusts: [hub]", "trusts: [hubb]"))
    result = invoke("run", str(bad), "--job", "whoami")
    assert result.exit_code == 2
    assert "hubb" in result.stderr
    result = invoke("run", str(tmp_path / "bad.yaml"), "--job", "no-such-job")
    assert result.exit_code == 2


def test_store_and_history(aws, chain_file: Path, tmp_path: Path, store_url) -> None:  # type: ignore[no-untyped-def]
    db = store_url
    assert invoke("run", str(chain_file), "-j", "whoami", "--store", str(db), "-q").exit_code == 0
    assert invoke("run", str(chain_file), "-j", "broken", "--store", str(db), "-q").exit_code == 1
    with contextlib.closing(connect(db)) as raw:
        rows = raw.execute(
            "SELECT job, status, count(*) FROM records GROUP BY job, status ORDER BY job"
        ).fetchall()
    assert [tuple(r) for r in rows] == [("broken", "error", 3), ("whoami", "ok", 3)]
    result = invoke("history", "--store", str(db), "--format", "json")
    assert result.exit_code == 0
    runs = json.loads(result.stdout)
    assert [(r["job"], r["status"]) for r in runs] == [("broken", "failed"), ("whoami", "ok")]
    assert runs[1]["assume_calls"] == 4
    table = invoke("history", "--store", str(db), "--job", "whoami")
    assert "whoami" in table.stdout
    assert "broken" not in table.stdout
    missing = invoke("history", "--store", str(tmp_path / "nope.db"))
    assert missing.exit_code == 1


def test_keyboard_interrupt_raised_by_a_task_is_that_targets_failure(
    aws, chain_file: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    # Only a signal to the process stops a run (tests/cli/test_signals.py); user code that
    # raises KeyboardInterrupt is one more task failure.
    def maybe_stop(session: Any, context: Any) -> str:
        if context.account_id == ACCOUNTS[1]:
            raise KeyboardInterrupt
        return context.account_id

    module = types.ModuleType("rc_cli_stop")
    module.maybe_stop = maybe_stop  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rc_cli_stop", module)
    db = tmp_path / "runs.db"
    out = tmp_path / "out.jsonl"
    result = invoke("run", str(chain_file), "-j", "stopper", "--store", str(db), "-o", str(out))
    assert result.exit_code == 1
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["account_id"], (r["error"] or {}).get("code")) for r in kept] == [
        (ACCOUNTS[0], None),
        (ACCOUNTS[1], "KeyboardInterrupt"),
        (ACCOUNTS[2], None),
    ]
    status = sqlite3.connect(db).execute("SELECT status, records FROM runs").fetchone()
    assert status == ("failed", 3)


def test_deadline_and_grace_options(aws, chain_file: Path) -> None:  # type: ignore[no-untyped-def]
    result = invoke("run", "--help")
    assert "--deadline" in result.output
    assert "--grace" in result.output
    assert "143" in result.output
    bad = invoke("run", str(chain_file), "-j", "whoami", "--deadline", "soon")
    assert bad.exit_code == 2
    assert "not a duration" in bad.output
    ok = invoke("run", str(chain_file), "-j", "whoami", "-q", "--deadline", "none", "--grace", "0")
    assert ok.exit_code == 0, ok.output


def test_help_has_an_example() -> None:
    result = invoke("run", "--help")
    assert "Example:" in result.output
    assert "--store" in result.output
    assert "--sandbox" in result.output
    assert "--time-scale" in result.output


@pytest.mark.parametrize(
    "option", [["--time-scale", "60"], ["--sts-rate", "50"], ["--connect-latency", "50"]]
)
def test_sandbox_options_need_sandbox(chain_file: Path, option: list[str]) -> None:
    result = CliRunner().invoke(cli, ["run", str(chain_file), "-j", "whoami", *option])
    assert result.exit_code == 2
    assert f"{option[0]} needs --sandbox" in result.output


def test_bad_sts_rate_is_a_usage_error(chain_file: Path) -> None:
    args = ["run", str(chain_file), "-j", "whoami", "--sandbox", "--sts-rate", "50:0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "burst" in result.output


def test_run_in_the_sandbox(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("moto")
    for key in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    demo = Path(__file__).resolve().parents[2] / "chains" / "demo.yaml"
    args = ["--sts-rate", "1000:50", "--connect-latency", "5"]  # a quota it stays under
    result = invoke("run", str(demo), "--job", "inventory", "--sandbox", "--format", "jsonl", *args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records
    assert all(r["status"] == "ok" for r in records)
    assert all(r["data"]["count"] >= 1 for r in records)


def test_a_run_process_imports_only_what_it_needs(aws: Any, chain_file: Path) -> None:
    # A whole `rolechain run` process (no python task, not in the sandbox): networkx is for
    # drawing graphs, boto3 (and s3transfer) for python tasks, moto for the sandbox.
    probe = (
        "import atexit, runpy, sys\n"
        "def report():\n"
        "    unneeded = ('networkx', 'boto3', 's3transfer', 'moto', 'rich')\n"
        "    print('LOADED', sorted(m for m in unneeded if m in sys.modules), file=sys.stderr)\n"
        "atexit.register(report)\n"
        f"sys.argv = ['rolechain', 'run', {str(chain_file)!r}, '-j', 'whoami', '-q']\n"
        "runpy.run_module('rolechain', run_name='__main__')\n"
    )
    import os
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == len(ACCOUNTS)  # it ran: one record per account
    assert "LOADED []" in proc.stderr

"""Issue 20, the first hour of a new user: what runs is what was asked for, every built-in
example works, and the messages say what to do."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolechain.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "chains" / "demo.yaml"
ORG = ROOT / "chains" / "org-inventory.yaml"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)


# -- 1. a glob that matches nothing selects nothing ---------------------------------------


@pytest.mark.parametrize(
    "targets",
    [["audit@9*"], ["audit@3*", "audit@9*"]],
)
def test_a_target_glob_matching_no_member_of_a_listed_set_is_refused(
    targets: list[str],
) -> None:
    args = [arg for t in targets for arg in ("--target", t)]
    result = invoke("plan", str(DEMO), "--job", "inventory", *args)
    assert result.exit_code == 2, result.output
    assert "glob 'audit@9*' matches no target of job inventory" in result.output
    assert "audit@333333333333, audit@444444444444" in result.output


def test_a_run_with_a_glob_matching_nothing_runs_nothing(no_aws_env: None) -> None:
    pytest.importorskip("moto")
    result = invoke(
        "run", str(DEMO), "--job", "inventory", "--sandbox", "--target", "audit@9*",
        "--format", "jsonl",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_a_to_glob_matching_no_member_of_a_listed_set_fails_validate(tmp_path: Path) -> None:
    old = "    to: audit\n    via: [security-hub]\n    regions:"
    text = DEMO.read_text().replace(old, old.replace("audit", '"audit@9*"', 1), 1)
    assert 'to: "audit@9*"' in text
    path = tmp_path / "chain.yaml"
    path.write_text(text)
    result = invoke("validate", str(path))
    assert result.exit_code == 2, result.output
    assert "glob 'audit@9*' matches none of the 5 members of role set audit" in result.output


def jsonl(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


def no_match_error(record: dict[str, Any], glob: str) -> str:
    """The record's message, after checking it is the NoMatchingAccounts error of ``glob``."""
    assert record["target"] == glob
    assert record["status"] == "error"
    assert record["error"]["code"] == "NoMatchingAccounts"
    message = str(record["error"]["message"])
    assert f"glob {glob!r} matches none of the 3 accounts AWS Organizations listed for role " in (
        message
    )
    assert re.search(r"set audit: audit@\d{12}, audit@\d{12}, audit@\d{12}\. Fix: ", message)
    return message


def test_an_organization_glob_is_applied_to_the_listed_accounts(
    tmp_path: Path, no_aws_env: None
) -> None:
    pytest.importorskip("moto")
    # Offline the glob stands for the set's unknown accounts...
    planned = invoke("plan", str(ORG), "--job", "inventory", "--target", "audit@nomatch*")
    assert planned.exit_code == 0, planned.output
    # ...once Organizations has listed them, a glob matching none of them is an error
    # record (stored), never "all"; the run fails (exit 1).
    store = tmp_path / "runs.db"
    result = invoke(
        "run", str(ORG), "--job", "inventory", "--sandbox", "--target", "audit@nomatch*",
        "--format", "jsonl", "--store", str(store),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    (record,) = jsonl(result.stdout)
    no_match_error(record, "audit@nomatch*")
    assert "targets: 0 ok, 1 failed of 1" in result.stderr
    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT target, status, error_code FROM records").fetchall()
        run = db.execute("SELECT status, targets, targets_failed FROM runs").fetchall()
    assert stored == [("audit@nomatch*", "error", "NoMatchingAccounts")]
    assert run == [("failed", 1, 1)]
    # --retry-failed applies the glob again (to the accounts listed then), as a schedule's
    # retry_failed does; --resume has nothing left to run.
    again = ["run", str(ORG), "--job", "inventory", "--sandbox", "--target", "audit@nomatch*",
             "--format", "jsonl", "--store", str(store)]  # fmt: skip
    retried = invoke(*again, "--retry-failed", record["run_id"])
    assert retried.exit_code == 1, retried.output
    (retry_record,) = jsonl(retried.stdout)
    no_match_error(retry_record, "audit@nomatch*")
    resumed = invoke(*again, "--resume", record["run_id"])
    assert resumed.exit_code == 0, resumed.output
    assert "nothing to run" in resumed.output
    # A glob that matches some of them runs only those.
    every = invoke("run", str(ORG), "--job", "legacy-buckets", "--sandbox", "--format", "jsonl",
                   "--target", "legacy@5*")  # fmt: skip
    assert every.exit_code == 0, every.output
    assert {r["target"] for r in jsonl(every.stdout)} == {"legacy@555555555555"}


def test_an_organization_glob_beside_one_that_matches(no_aws_env: None) -> None:
    """The matching glob runs (3 accounts x 2 regions x 2 tasks), the other is an error
    record, and the run is failed."""
    pytest.importorskip("moto")
    result = invoke(
        "run", str(ORG), "--job", "inventory", "--sandbox", "--format", "jsonl",
        "--target", "audit@[0-9]*", "--target", "audit@nomatch*",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    records = jsonl(result.stdout)
    errors = [r for r in records if r["status"] != "ok"]
    assert len(errors) == 1
    no_match_error(errors[0], "audit@nomatch*")
    assert len({r["target"] for r in records if r["status"] == "ok"}) == 3
    assert len(records) == 3 * 2 * 2 + 1
    assert "targets: 3 ok, 1 failed of 4" in result.stderr


@pytest.mark.parametrize(
    ("to", "ok_targets"),
    [('"audit@nomatch*"', 0), ('["audit@[0-9]*", "audit@nomatch*"]', 3)],
)
def test_an_organization_to_glob_matching_no_live_account_is_an_error_record(
    to: str, ok_targets: int, tmp_path: Path, no_aws_env: None
) -> None:
    pytest.importorskip("moto")
    text = ORG.read_text().replace("    to: audit\n", f"    to: {to}\n", 1)
    path = tmp_path / "org.yaml"
    path.write_text(text)
    assert invoke("validate", str(path)).exit_code == 0
    result = invoke("run", str(path), "--job", "inventory", "--sandbox", "--format", "jsonl")
    assert result.exit_code == 1, result.output
    records = jsonl(result.stdout)
    (error,) = [r for r in records if r["status"] != "ok"]
    no_match_error(error, "audit@nomatch*")
    assert len({r["target"] for r in records if r["status"] == "ok"}) == ok_targets


def test_an_organization_glob_on_the_dask_engine(no_aws_env: None) -> None:
    """The worker that lists the accounts re-plans; the driver gives the error record once
    (not once per batch)."""
    pytest.importorskip("moto")
    pytest.importorskip("distributed")
    result = invoke(
        "run", str(ORG), "--job", "inventory", "--sandbox", "--format", "jsonl",
        "--workers", "1", "--target", "audit@[0-9]*", "--target", "audit@nomatch*",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    records = jsonl(result.stdout)
    (error,) = [r for r in records if r["status"] != "ok"]
    no_match_error(error, "audit@nomatch*")
    assert len(records) == 3 * 2 * 2 + 1


def test_credentials_refuse_a_glob() -> None:
    result = invoke("credentials", str(ORG), "--job", "inventory", "--target", "audit@9*")
    assert result.exit_code == 2, result.output
    assert "'audit@9*' is a glob; credentials are for one role" in result.output
    assert "--target audit@ACCOUNT_ID" in result.output


# -- 2. the sandbox works in every region -------------------------------------------------


def demo_in(region: str, tmp_path: Path) -> Path:
    text = DEMO.read_text().replace("  region: us-east-1\n", f"  region: {region}\n", 1)
    text = text.replace("regions: [us-east-1]", f"regions: [{region}]")
    path = tmp_path / f"demo-{region}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("region", ["eu-central-1", "ap-southeast-2", "us-west-2"])
def test_the_demo_runs_in_the_sandbox_in_any_region(
    region: str, tmp_path: Path, no_aws_env: None
) -> None:
    pytest.importorskip("moto")
    path = demo_in(region, tmp_path)
    result = invoke("run", str(path), "--job", "inventory", "--sandbox", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 5
    assert {r["region"] for r in records} == {region}
    assert all(r["status"] == "ok" and r["data"]["count"] == 2 for r in records)


def test_verify_in_the_sandbox_outside_us_east_1(tmp_path: Path, no_aws_env: None) -> None:
    pytest.importorskip("moto")
    result = invoke("verify", str(demo_in("eu-central-1", tmp_path)), "--sandbox")
    assert result.exit_code == 0, result.output
    assert "0 drift" in result.output


# -- 3. region names are checked ----------------------------------------------------------


def test_a_misspelt_region_option_is_refused_before_anything_runs() -> None:
    result = invoke("run", str(DEMO), "--job", "inventory", "-r", "eu-wset-1", "--sandbox")
    assert result.exit_code == 2
    assert "unknown region 'eu-wset-1'; did you mean 'eu-west-1'?" in result.output
    assert "sandbox:" not in result.output


def test_a_misspelt_region_in_a_chain_file_fails_validate(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    path.write_text(DEMO.read_text().replace("regions: [us-east-1]", "regions: [eu-wset-1]"))
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert "jobs.inventory.regions[0]: unknown region 'eu-wset-1'; did you mean" in result.output


# -- 4. the scheduler says at start when a principal has no credentials -------------------

SCHEDULED = """
version: 1
principals:
  bot: {{source: {source}, kind: user, account: "{account}"}}
roles:
  audit: {{arn: "arn:aws:iam::333333333333:role/Audit", trusts: [bot]}}
jobs:
  tick:
    from: bot
    to: audit
    schedule: "@daily"
    tasks: [sts.get_caller_identity]
"""


def scheduled(tmp_path: Path, source: str = "env", account: str = "123456789012") -> Path:
    path = tmp_path / "scheduled.yaml"
    path.write_text(SCHEDULED.format(source=source, account=account))
    return path


def schedule(*args: str) -> Any:
    base = ["--dry-run", "--time-scale", "3600", "--for", "1m", "--no-watch"]
    return CliRunner().invoke(cli, ["schedule", *args, *base])


def test_a_principal_without_credentials_is_warned_about_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_aws_env: None
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    chain = scheduled(tmp_path)
    result = schedule(str(chain))
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert "WARNING credentials" in first
    assert "principal 'bot' has no usable credentials, so every run of tick will fail" in first
    strict = schedule(str(chain), "--strict")
    assert strict.exit_code == 2
    assert "--strict refuses to start" in strict.stderr
    assert "would_fire" not in strict.stderr


def test_check_calls_get_caller_identity_once_per_principal(aws: Any, tmp_path: Path) -> None:
    result = schedule(str(scheduled(tmp_path)), "--check", "--strict")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("credentials_checked principal=bot caller=arn:aws:") == 1
    # Without --check nothing is called; with it, credentials of another account are found.
    other = scheduled(tmp_path, account="999999999999")
    assert schedule(str(other)).exit_code == 0
    assert "WARNING credentials" not in schedule(str(other)).stderr
    checked = schedule(str(other), "--check")
    assert "credentials are of account 123456789012, but principal 'bot' is in account " \
        "999999999999" in checked.stderr  # fmt: skip


# -- 7. history ---------------------------------------------------------------------------

HISTORY_CHAIN = """
settings:
  assume_rate: 1000
  retry: {attempts: 2, initial_wait: 0.001, max_wait: 1}
principals:
  ci: {source: env, kind: user, account: "123456789012"}
role_sets:
  audit:
    role_name: audit
    accounts: ["222222222201", "222222222202", "222222222203"]
    trusts: [ci]
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
        with: {service: s3, operation: GetBucketAcl, params: {Bucket: no-such-bucket-here}}
"""


@pytest.fixture
def store_of_runs(aws: Any, tmp_path: Path) -> tuple[Path, list[str]]:
    chain = tmp_path / "chain.yaml"
    chain.write_text(HISTORY_CHAIN)
    store = tmp_path / "runs.db"
    for job in ("whoami", "broken", "whoami"):
        invoke("run", str(chain), "--job", job, "--store", str(store), "--format", "jsonl")
    runs = json.loads(invoke("history", "--store", str(store), "--format", "json").stdout)
    return store, [r["run_id"] for r in runs]


def test_history_never_cuts_run_ids_in_100_columns(
    store_of_runs: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, ids = store_of_runs
    monkeypatch.setenv("COLUMNS", "100")
    out = invoke("history", "--store", str(store)).stdout
    assert max(len(line) for line in out.splitlines()) <= 100
    for run_id in ids:
        assert run_id in out
    # One time format, UTC to the second.
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", out)
    assert "+00:00" not in out


def test_history_filters_and_the_run_detail(store_of_runs: tuple[Path, list[str]]) -> None:
    store, ids = store_of_runs
    failed = json.loads(
        invoke("history", "--store", str(store), "--status", "failed", "--format", "json").stdout
    )
    assert [r["job"] for r in failed] == ["broken"]
    limited = invoke("history", "--store", str(store), "--limit", "1", "--format", "json")
    assert [r["run_id"] for r in json.loads(limited.stdout)] == ids[:1]
    recent = invoke("history", "--store", str(store), "--since", "1h", "--format", "json")
    assert len(json.loads(recent.stdout)) == 3
    future = invoke("history", "--store", str(store), "--since", "2999-01-01", "--format", "json")
    assert json.loads(future.stdout) == []
    detail = invoke("history", "--store", str(store), "--run", failed[0]["run_id"]).stdout
    assert "targets: 0 ok, 3 failed of 3" in detail
    assert "failures by error code:" in detail
    assert re.search(r"NoSuchBucket: 3 record\(s\), 3 target\(s\): audit@222222222201", detail)
    missing = invoke("history", "--store", str(store), "--run", "nope")
    assert missing.exit_code == 2
    assert "recent runs: " + ids[0] in missing.output


def test_history_counts_an_interrupted_run_from_its_records(
    store_of_runs: tuple[Path, list[str]],
) -> None:
    store, ids = store_of_runs
    with sqlite3.connect(store) as db:  # a run stopped before it wrote its summary
        db.execute(
            "UPDATE runs SET status='interrupted', targets_ok=0, targets_failed=0 WHERE run_id = ?",
            (ids[0],),
        )
    out = json.loads(invoke("history", "--store", str(store), "--run", ids[0],
                            "--format", "json").stdout)  # fmt: skip
    assert (out["targets_ok"], out["targets_failed"], out["targets"]) == (3, 0, 3)
    table = invoke("history", "--store", str(store)).stdout
    (row,) = [line for line in table.splitlines() if ids[0] in line]
    assert "3/0 of 3" in row


# -- 8. messages --------------------------------------------------------------------------


def test_a_wrong_or_missing_job_is_refused_before_the_sandbox_starts() -> None:
    wrong = invoke("run", str(DEMO), "--job", "nope", "--sandbox")
    assert wrong.exit_code == 2
    assert "unknown job 'nope'; valid: inventory, nightly, whoami" in wrong.output
    assert "sandbox:" not in wrong.output
    missing = CliRunner().invoke(cli, ["run", str(DEMO), "--sandbox"])
    assert missing.exit_code == 2
    assert "Choose one of the jobs of" in missing.output
    assert "inventory, whoami, nightly" in missing.output


def test_a_bad_target_lists_only_the_jobs_targets() -> None:
    result = invoke("plan", str(DEMO), "--job", "inventory", "--target", "nope")
    assert result.exit_code == 2
    assert "valid: audit@333333333333" in result.output
    assert "reader" not in result.output
    assert "security-hub" not in result.output


def test_validate_says_a_shared_violation_once(tmp_path: Path) -> None:
    path = tmp_path / "chain.yaml"
    # Every job of the demo takes two hops to audit: a limit of one breaks all three.
    path.write_text(
        DEMO.read_text().replace("  concurrency: 8\n", "  concurrency: 8\n  max_hops: 1\n")
    )
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert result.output.count("max-hops") == 1, result.output
    assert "job 'whoami' cannot be planned: the same 1 violation as job inventory" in result.output


def test_a_failed_run_leaves_no_empty_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_aws_env: None
) -> None:
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    store = tmp_path / "runs.db"
    result = invoke("run", str(DEMO), "--job", "inventory", "--store", str(store))
    assert result.exit_code != 0
    assert "no starting credentials" in result.output
    assert list(tmp_path.iterdir()) == []


def test_the_sandbox_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from rolechain.sandbox import server

    monkeypatch.setitem(sys.modules, "cheroot", None)
    monkeypatch.setitem(sys.modules, "cheroot.wsgi", None)
    with pytest.raises(server.SandboxError, match="the sandbox needs cheroot"):
        server._require_moto()


# -- 9. set-up and reports ----------------------------------------------------------------


def test_a_dask_summary_says_how_many_workers_the_cluster_had() -> None:
    from rolechain.results.formatters import summary_lines
    from rolechain.results.records import Summary

    summary = Summary(job="j", run_id="r", engine="dask", workers=1, cluster_workers=2, batches=1)
    (line,) = [text for text in summary_lines(summary) if "engine:" in text]
    assert "engine: dask, 2 workers (1 took part), 1 batch" in line
    summary.workers = 2
    (line,) = [text for text in summary_lines(summary) if "engine:" in text]
    assert "engine: dask, 2 workers, 1 batch" in line


def test_an_organizations_run_counts_its_discovery_hops_as_planned(no_aws_env: None) -> None:
    pytest.importorskip("moto")
    result = invoke("run", str(ORG), "--job", "inventory", "--sandbox", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert "AssumeRole calls: 5 (planned 5)" in result.output


def test_the_store_lock_and_journal_files_are_ignored() -> None:
    ignored = (ROOT / ".gitignore").read_text().split()
    assert {"*.db", "*.db.lock", "*.db-wal", "*.db-shm"} <= set(ignored)


def test_make_demo_installs_only_the_sandbox_extra() -> None:
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\n$(DEMO_STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "'.[sandbox]'" in recipe
    assert ".[dev]" not in recipe
    assert "\ndemo: $(DEMO_STAMP)\n" in text
    # uv first (seconds instead of pip's ~15 s on a fresh clone), pip when uv cannot install.
    assert "$$uv pip install --quiet --python $(BIN)/python -e '.[sandbox]'" in recipe
    assert "$(BIN)/python -m pip install $(PIP_QUIET) --no-compile -e '.[sandbox]'" in recipe
    # A venv made by `make demo` may have no pip: the dev install adds it first.
    dev = text.split("\n$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert dev.index("ensurepip") < dev.index("pip install")


def test_graph_job_collapses_role_set_members_and_expand_draws_them() -> None:
    collapsed = invoke("graph", str(DEMO), "--job", "inventory").stdout
    assert '"audit (5 accounts)"' in collapsed
    assert "audit@333333333333" not in collapsed
    assert "class n_audit__5_0_ target" in collapsed
    expanded = invoke("graph", str(DEMO), "--job", "inventory", "--expand").stdout
    assert "audit (5 accounts)" not in expanded
    for account in ("333333333333", "777777777777"):
        assert f"audit@{account}" in expanded


def test_reach_takes_a_glob_or_a_role_set_and_collapses_members() -> None:
    for selector in ("audit@*", "audit"):
        out = invoke("reach", str(DEMO), selector).stdout
        assert "who can reach 5 roles" in out
        assert "inventory-bot -> security-hub -> audit@{333333333333, 444444444444" in out
        assert "(5 accounts)" in out
        assert out.count(" fits ") == 1
    one = json.loads(invoke("reach", str(DEMO), "audit@3*", "--format", "json").stdout)
    assert [r["target"] for r in one] == ["audit@333333333333"]
    wrong = invoke("reach", str(DEMO), "audit@9")
    assert wrong.exit_code == 2
    assert "audit@ACCOUNT (5 accounts), reader@ACCOUNT (6 accounts), security-hub" in wrong.output
    assert "audit@444444444444" not in wrong.output


def test_a_second_scheduler_on_a_locked_store_is_refused_before_the_sandbox(
    tmp_path: Path,
) -> None:
    from rolechain.scheduler.lock import StoreLock

    store = tmp_path / "runs.db"
    with StoreLock(store, command="the first scheduler"):
        result = CliRunner().invoke(
            cli, ["schedule", str(DEMO), "--sandbox", "--store", str(store), "--for", "1m"]
        )
    assert result.exit_code == 2
    assert "another scheduler holds" in result.stderr
    assert " sandbox " not in result.stderr
    assert "sandbox endpoint=" not in result.stderr

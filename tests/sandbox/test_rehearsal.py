"""Rehearsals through the executor: drift between declared and provisioned roles, and a
job that outlives its sessions many times over in compressed time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolechain.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "chains" / "demo.yaml"

SESSION_SECONDS = 900
# A 900 s session lasts 3 real seconds, and botocore's 10-minute mandatory refresh comes
# 2 real seconds before it ends: room for a request on a loaded machine.
TIME_SCALE = 300
SESSIONS_OUTLIVED = 2


def keep_listing(session: Any, context: Any) -> dict[str, Any]:
    """A python task that keeps calling S3 for several session lengths."""
    s3 = session.client("s3")
    calls = 0
    until = time.monotonic() + SESSIONS_OUTLIVED * SESSION_SECONDS / TIME_SCALE
    while time.monotonic() < until:
        s3.list_buckets()
        calls += 1
        time.sleep(0.05)
    return {"calls": calls}


LONG_JOB = f"""
version: 1
principals:
  ops: {{kind: user, account: "111111111111"}}
roles:
  hub:
    arn: arn:aws:iam::222222222222:role/Hub
    trusts: [ops]
    duration: {SESSION_SECONDS}
role_sets:
  audit:
    role_name: Audit
    trusts: [hub]
    duration: {SESSION_SECONDS}
    accounts: ["333333333333", "444444444444"]
jobs:
  long:
    from: ops
    to: audit
    regions: [us-east-1]
    runtime: 3h
    tasks:
      - task: python
        with: {{function: "sandbox.test_rehearsal:keep_listing"}}
"""


def records(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_long_job_in_compressed_time_never_sees_an_expired_token(tmp_path: Path) -> None:
    chain = tmp_path / "long.yaml"
    chain.write_text(LONG_JOB)
    result = CliRunner().invoke(
        cli,
        ["run", str(chain), "--job", "long", "--sandbox", "--time-scale", str(TIME_SCALE),
         "--format", "jsonl"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = records(result.output)
    assert {r["target"] for r in found} == {"audit@333333333333", "audit@444444444444"}
    assert all(r["status"] == "ok" for r in found), found
    assert all(r["data"]["calls"] > SESSIONS_OUTLIVED for r in found)
    assert "ExpiredToken" not in result.output
    # Every target's session was refreshed while the task ran: more AssumeRole calls than
    # the three the plan needs without refreshes.
    line = next(x for x in result.output.splitlines() if "AssumeRole calls:" in x)
    made = int(line.split("AssumeRole calls:")[1].split()[0])
    assert made > 3


def test_drift_fails_the_drifted_target_the_way_aws_would(tmp_path: Path) -> None:
    existing = DEMO.read_text().replace('      - "444444444444"  # payments-staging\n', "")
    existing = existing.replace(
        "jobs:",
        "  audit-legacy:\n"
        "    role_name: InventoryAudit\n"
        "    trusts: [security-hub]\n"
        "    external_id: old-external-id\n"
        '    accounts: ["444444444444"]\n\njobs:',
    )
    provision = tmp_path / "existing.yaml"
    provision.write_text(existing)
    result = CliRunner().invoke(
        cli,
        ["run", str(DEMO), "--job", "inventory", "--sandbox", "--provision", str(provision),
         "--format", "jsonl"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    by_target = {r["target"]: r for r in records(result.output)}
    assert len(by_target) == 5
    failed = by_target.pop("audit@444444444444")
    assert failed["status"] == "error"
    assert failed["error"]["code"] == "AccessDenied"
    assert failed["error"]["message"].endswith(
        "is not authorized to perform: sts:AssumeRole on resource: "
        "arn:aws:iam::444444444444:role/InventoryAudit"
    )
    assert failed["error"]["hop"] == "security-hub -> audit@444444444444"
    assert all(r["status"] == "ok" for r in by_target.values())

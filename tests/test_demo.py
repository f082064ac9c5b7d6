"""`make demo` works: the demo chain runs in the sandbox and prints buckets per account."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from rolechain.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "chains" / "demo.yaml"
ACCOUNTS = ["333333333333", "444444444444", "555555555555", "666666666666", "777777777777"]


def makefile_demo_command() -> list[str]:
    """The command `make demo` runs, read from the Makefile so the two cannot drift."""
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\ndemo:", 1)[1].split("\n", 2)[1].strip()
    assert recipe.startswith("$(BIN)/rolechain "), recipe
    return recipe.removeprefix("$(BIN)/rolechain ").split()


def test_demo_prints_a_table_of_buckets_per_account_and_the_summary() -> None:
    args = makefile_demo_command()
    assert args[:2] == ["run", "chains/demo.yaml"]
    assert "--sandbox" in args
    result = CliRunner().invoke(cli, [*args[:1], str(DEMO), *args[2:], "--format", "table"])
    assert result.exit_code == 0, result.output
    out = result.output
    for account in ACCOUNTS:
        row = next(line for line in out.splitlines() if f"audit@{account}" in line)
        assert "s3.list_buckets" in row
        assert "ok" in row
        assert "2 buckets" in row
    assert "targets: 5 ok, 0 failed of 5" in out
    assert re.search(r"AssumeRole calls: 6 \(planned 6\)", out)


def test_make_demo_command_runs_in_a_fresh_process() -> None:
    args = makefile_demo_command()
    proc = subprocess.run(
        [sys.executable, "-m", "rolechain", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--format" in args
    assert args[args.index("--format") + 1] == "table"
    for account in ACCOUNTS:
        row = next(line for line in proc.stdout.splitlines() if f"audit@{account}" in line)
        assert "s3.list_buckets" in row
        assert " ok " in row
        assert f"2 buckets: rolechain-backups-{account}" in row
    assert "targets: 5 ok, 0 failed of 5" in proc.stderr

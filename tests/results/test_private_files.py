"""The store and its lock hold task output: created private, never written through a link."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

import pytest

from rolechain.errors import RolechainError
from rolechain.model.schema import Alert
from rolechain.results.store import Store
from rolechain.scheduler.alerts import AlertSender
from rolechain.scheduler.lock import StoreLock, lock_path
from rolechain.scheduler.logs import EventLog


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_store_and_its_directories_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "rolechain" / "runs.db"
    with Store(path):
        pass
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    with StoreLock(path):
        assert mode(lock_path(path)) == 0o600


def test_an_existing_store_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with Store(path):
        pass
    path.chmod(0o640)
    with Store(path):
        pass
    assert mode(path) == 0o640


def test_the_store_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "runs.db"
    link.symlink_to(victim)
    with pytest.raises(RolechainError, match="symbolic link"):
        Store(link)
    assert victim.read_text() == "precious\n"


def test_the_lock_is_opened_nofollow(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock_path(store).symlink_to(victim)
    with pytest.raises(RolechainError, match="symbolic link"):
        StoreLock(store).acquire()
    assert victim.read_text() == "precious\n"  # not truncated


def test_an_alert_command_gets_a_minimal_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "scheduler-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "scheduler-token")
    monkeypatch.setenv("SOME_OTHER", "x")
    monkeypatch.setenv("LANG", "C.UTF-8")
    out = tmp_path / "env.json"
    script = f"import json, os; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))"
    alert = Alert(command=[sys.executable, "-c", script], env={"PAGER_KEY": "k1"})
    log = EventLog(io.StringIO())
    AlertSender(log, synchronous=True).send("failure", alert, {"job": "j", "run_id": "r"})
    env = json.loads(out.read_text())
    names = set(env) - {"LC_CTYPE", "PWD", "SHLVL", "_", "__CF_USER_TEXT_ENCODING"}
    assert names <= {"PATH", "HOME", "LANG", "TZ", "PAGER_KEY", "ROLECHAIN_ALERT",
                     "ROLECHAIN_JOB", "ROLECHAIN_RUN_ID", "ROLECHAIN_STATUS"}  # fmt: skip
    assert env["PAGER_KEY"] == "k1"
    assert env["LANG"] == "C.UTF-8"
    assert env["ROLECHAIN_JOB"] == "j"
    assert "scheduler-secret" not in out.read_text()


def test_written_files_are_private_and_never_follow_a_link(tmp_path: Path) -> None:
    from rolechain.private import write_private

    new = tmp_path / "out" / "deep" / "file.txt"
    write_private(new, "one\n")
    assert new.read_text() == "one\n"
    assert mode(new) == 0o600
    assert mode(new.parent) == 0o700
    write_private(new, "two\n")  # shorter or longer: the old text is gone
    assert new.read_text() == "two\n"
    new.chmod(0o644)
    write_private(new, "three\n")
    assert mode(new) == 0o644  # an existing file keeps its mode
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for link, points_to in ((tmp_path / "link", victim), (tmp_path / "dangling", tmp_path / "x")):
        link.symlink_to(points_to)
        with pytest.raises(RolechainError, match="symbolic link"):
            write_private(link, "evil\n")
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "x").exists()


def test_exports_and_generated_files_are_written_private(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from rolechain.cli import cli

    root = Path(__file__).resolve().parents[2]
    demo = str(root / "chains" / "demo.yaml")
    out = tmp_path / "units"
    result = CliRunner().invoke(
        cli, ["schedule", "export", demo, "--to", "systemd", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o700
    files = list(out.iterdir())
    assert files
    assert all(mode(f) == 0o600 for f in files)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "config"
    link.symlink_to(tmp_path / "not-yet")  # dangling: `exists()` is False
    result = CliRunner().invoke(cli, ["export-aws-config", demo, "-o", str(link)])
    assert result.exit_code != 0
    assert "symbolic link" in result.stderr
    assert not (tmp_path / "not-yet").exists()

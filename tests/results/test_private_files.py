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

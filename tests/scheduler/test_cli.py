"""``rolechain schedule`` as users run it: real processes, real signals, the sandbox, and
the store they leave behind."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.results.store import Store
from rolechain.scheduler.clock import VirtualClock
from scheduler.fakes import record_codes as codes

TESTS = Path(__file__).resolve().parents[1]

CHAIN = """
version: 1
settings:
  schedule: {{jitter: 0}}
principals:
  bot: {{kind: user, account: "111111111111"}}
role_sets:
  audit:
    role_name: Audit
    trusts: [bot]
    accounts: ["333333333333", "444444444444"]
jobs:
  tick:
    from: bot
    to: audit
    regions: [us-east-1]
    schedule: "{schedule}"
    concurrency: 1
    tasks:
      - task: python
        with: {{function: "scheduler.tasks:nap", args: {{seconds: {seconds}, {more}}}}}
"""


def write_chain(
    path: Path, schedule: str = "*/5 * * * *", seconds: float = 0, more: str = ""
) -> Path:
    path.write_text(CHAIN.format(schedule=schedule, seconds=seconds, more=more))
    return path


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLECHAIN_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


class Scheduler:
    """A ``rolechain schedule`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rolechain", "schedule", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 90) -> str:
        end = time.monotonic() + timeout
        for line in self.lines:
            if re.search(pattern, line):
                return line
        while time.monotonic() < end:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self._queue.empty():
                    break
                continue
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no {pattern!r} in:\n" + "\n".join(self.lines))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 90) -> int:
        code = self.proc.wait(timeout)
        time.sleep(0.1)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code


@pytest.fixture
def kill_leftovers() -> Iterator[list[Scheduler]]:
    started: list[Scheduler] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(10)


def rows(store: Path | str) -> list[dict[str, Any]]:
    with Store(store, reap=False) as db:
        return db.query("SELECT * FROM runs ORDER BY scheduled_for")


@pytest.mark.slow
def test_two_scheduled_runs_against_the_sandbox(tmp_path: Path, store_url: Path | str) -> None:
    """End to end: a subprocess, the sandbox, compressed time, two runs in the store (a
    SQLite file, then a PostgreSQL database)."""
    chain = write_chain(tmp_path / "c.yaml")
    store = store_url
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rolechain",
            "schedule",
            str(chain),
            "--sandbox",
            "--time-scale",
            "120",  # 5 minutes in 2.5 s: a run (well under a second) never overlaps the next
            "--for",
            "12m",
            "--store",
            str(store),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert events
    assert all({"ts", "level", "event"} <= set(e) for e in events)
    found = [r for r in rows(store) if r["trigger"] == "schedule" and r["status"] != "skipped"]
    assert len(found) >= 2
    for run in found:
        assert run["status"] == "ok"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d[05]:00Z", run["scheduled_for"])
        with Store(store, reap=False) as db:
            [(count,)] = db.tuples(
                "SELECT count(*) FROM records WHERE run_id=?", (run["run_id"],)
            ).fetchall()
        assert count == run["records"] == 2
    listed = CliRunner().invoke(cli, ["schedule", str(chain), "--list", "--store", str(store)])
    assert listed.exit_code == 0, listed.output
    assert len(re.findall(r"^  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC  \(", listed.stdout, re.M)) == 5
    assert f"last run: {found[-1]['run_id']} ok" in listed.stdout


@pytest.mark.slow
def test_sigterm_mid_run_gives_grace_then_records_interrupted(
    tmp_path: Path, kill_leftovers: list[Scheduler]
) -> None:
    chain = write_chain(tmp_path / "c.yaml", schedule="* * * * *", seconds=2)
    store = tmp_path / "runs.db"
    s = Scheduler(
        str(chain),
        "--sandbox",
        "--time-scale",
        "30",
        "--store",
        str(store),
        "--grace",
        "1s",
        "--no-watch",
    )
    kill_leftovers.append(s)
    s.wait_for(r" fire job=tick")
    s.signal(signal.SIGTERM)
    assert s.finish() == 0
    s.wait_for(r" cancelling job=tick")
    s.wait_for(r" stopped ")
    (run,) = [r for r in rows(store) if r["status"] != "skipped"]
    assert run["status"] == "interrupted"
    assert run["reason"] == "the scheduler is stopping"
    # A record for every target: what finished is kept (a 2 s task may have), the task
    # still running after the grace and the target not started are Interrupted.
    kept = codes(store, run["run_id"])
    assert len(kept) == run["records"] == 2
    assert kept.count("Interrupted") >= 1
    assert set(kept) <= {"ok", "Interrupted"}


@pytest.mark.slow
def test_a_second_signal_stops_at_once(tmp_path: Path, kill_leftovers: list[Scheduler]) -> None:
    chain = write_chain(tmp_path / "c.yaml", schedule="* * * * *", seconds=30)
    store = tmp_path / "runs.db"
    s = Scheduler(
        str(chain),
        "--sandbox",
        "--time-scale",
        "30",
        "--store",
        str(store),
        "--grace",
        "10m",
        "--no-watch",
    )
    kill_leftovers.append(s)
    s.wait_for(r" fire job=tick")
    s.signal(signal.SIGINT)
    s.wait_for(r" stopping running=1")
    s.signal(signal.SIGTERM)
    assert s.finish() == 130
    (run,) = [r for r in rows(store) if r["status"] != "skipped"]
    assert run["status"] == "interrupted"
    assert codes(store, run["run_id"]) == ["Interrupted", "Interrupted"]  # written at once


@pytest.mark.slow
def test_tasks_that_never_return_neither_block_replace_nor_shutdown(
    tmp_path: Path, kill_leftovers: list[Scheduler]
) -> None:
    """Every run has a task that never returns. Each run is replaced by the next fire (the
    task gets the grace, then Interrupted), the threads left behind are logged, and
    SIGTERM during a run still shuts down: exit 0, every run and record in the store."""
    chain = write_chain(
        tmp_path / "c.yaml",
        schedule="* * * * *",
        more='quick: ["333333333333"], hang: ["444444444444"]',
    )
    chain.write_text(
        chain.read_text().replace(
            "    concurrency: 1\n", "    concurrency: 1\n    overlap: replace\n"
        )
    )
    store = tmp_path / "runs.db"
    s = Scheduler(str(chain), "--sandbox", "--time-scale", "30", "--store", str(store),
                  "--grace", "1s", "--no-watch")  # fmt: skip
    kill_leftovers.append(s)
    s.wait_for(r" replacing job=tick")
    s.wait_for(r" run_finished job=tick .*status=interrupted .*reason=\"replaced by the run")
    s.wait_for(r" fire job=tick .*scheduled_for=")  # the replacement starts
    s.signal(signal.SIGTERM)
    assert s.finish() == 0
    s.wait_for(r" stopped ")
    runs = [r for r in rows(store) if r["status"] != "skipped"]
    assert len(runs) >= 2
    for run in runs:
        assert run["status"] == "interrupted"
        assert codes(store, run["run_id"]) in (["ok", "Interrupted"], ["Interrupted"] * 2)
    reasons = [run["reason"] for run in runs]
    assert reasons[0].startswith("replaced by the run scheduled for")
    assert reasons[-1] == "the scheduler is stopping"
    leaks = [line for line in s.lines if " tasks_still_running " in line]
    assert leaks
    assert all(re.search(r" tasks=1 ", line) for line in leaks)


@pytest.mark.slow
def test_one_scheduler_per_store(tmp_path: Path, kill_leftovers: list[Scheduler]) -> None:
    chain = write_chain(tmp_path / "c.yaml", schedule="0 0 1 1 *")
    store = tmp_path / "runs.db"
    first = Scheduler(str(chain), "--store", str(store), "--no-watch")
    kill_leftovers.append(first)
    first.wait_for(r"scheduler_started")
    second = subprocess.run(
        [sys.executable, "-m", "rolechain", "schedule", str(chain), "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=90,
        env=environment(),
        check=False,
    )
    assert second.returncode == 2
    assert f"another scheduler holds {store}.lock: pid {first.proc.pid}" in second.stderr
    first.signal(signal.SIGTERM)
    assert first.finish() == 0


@pytest.mark.slow
def test_reload_on_sighup_and_on_change_keeps_the_schedule_when_invalid(
    tmp_path: Path, kill_leftovers: list[Scheduler]
) -> None:
    chain = write_chain(tmp_path / "c.yaml", schedule="0 3 * * *")
    s = Scheduler(str(chain), "--dry-run", "--store", str(tmp_path / "runs.db"))
    kill_leftovers.append(s)
    s.wait_for(r"scheduled job=tick .*next=")
    chain.write_text(chain.read_text().replace('"0 3 * * *"', '"0 25 * * *"'))
    s.signal(signal.SIGHUP)
    line = s.wait_for(r"reload_failed problem=")
    assert re.search(r"c\.yaml:\d+:\d+: jobs\.tick\.schedule: '0 25 \* \* \*' is not a cron", line)
    s.wait_for(r"reload_failed reason=\"kept the schedule loaded before\"")
    assert s.proc.poll() is None
    write_chain(chain, schedule="30 4 * * *")  # noticed without a signal
    s.wait_for(r"reloaded jobs=tick .*changed=tick")
    s.wait_for(r"scheduled job=tick|reloaded")
    s.signal(signal.SIGTERM)
    assert s.finish() == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_metrics_and_healthz(tmp_path: Path, kill_leftovers: list[Scheduler]) -> None:
    chain = write_chain(tmp_path / "c.yaml", schedule="0 3 * * *")
    port = _free_port()
    s = Scheduler(str(chain), "--dry-run", "--metrics-port", str(port), "--no-watch")
    kill_leftovers.append(s)
    s.wait_for(r"scheduled job=tick")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        assert answer.status == 200
        assert answer.read() == b"ok\n"
    # The job's next fire is set just after "scheduled" is logged: ask until it is there.
    next_fire = re.compile(r'rolechain_next_fire_timestamp_seconds\{job="tick"\} \d')
    for _ in range(300):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        if next_fire.search(text):
            break
        time.sleep(0.1)
    assert "rolechain_scheduler_up 1.0" in text
    assert next_fire.search(text), text
    s.signal(signal.SIGTERM)
    assert s.finish() == 0


class _ScaledVirtualClock(VirtualClock):
    """The scheduler's virtual clock where the CLI builds its ``RealClock(scale)``: an hour
    of schedule passes without waiting, whatever the machine's load."""

    START = datetime(2026, 1, 1, 0, 0, 3, tzinfo=UTC)

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(self.START)
        self.scale = scale


STARTS = [(0, 10), (0, 20), (0, 30), (0, 40), (0, 50), (1, 0)]


def test_dry_run_logs_what_would_fire(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Time from the virtual clock: at --time-scale 36000 on the real one, the hour is a
    # tenth of a second, and a loaded machine that stalls the loop that long misses ticks.
    monkeypatch.setattr("rolechain.scheduler.clock.RealClock", _ScaledVirtualClock)
    chain = write_chain(tmp_path / "c.yaml", schedule="*/10 * * * *")
    result = CliRunner().invoke(
        cli,
        ["schedule", str(chain), "--dry-run", "--time-scale", "36000", "--for", "1h", "--no-watch"],
    )
    assert result.exit_code == 0, result.output
    # 00:00:03 to 01:00:03: 00:10, 00:20, ... 01:00, in order, and nothing run.
    fired = re.findall(r" would_fire job=tick scheduled_for=(\S+)", result.stderr)
    assert fired == [f"2026-01-01T{h:02d}:{m:02d}:00Z" for h, m in STARTS], result.stderr
    assert " fire job=" not in result.stderr  # nothing launched


def test_mfa_on_a_scheduled_path_is_refused_at_load(tmp_path: Path) -> None:
    chain = tmp_path / "mfa.yaml"
    chain.write_text(
        CHAIN.format(schedule="@daily", seconds=0, more="").replace(
            "    trusts: [bot]\n",
            "    trusts: [bot]\n    mfa_serial: arn:aws:iam::111111111111:mfa/bot\n",
        )
    )
    result = CliRunner().invoke(cli, ["schedule", str(chain), "--store", str(tmp_path / "r.db")])
    assert result.exit_code == 2
    assert re.search(r"mfa\.yaml:\d+:\d+: mfa-scheduled", result.stderr), result.stderr
    assert not (tmp_path / "r.db").exists()


def test_static_session_keys_are_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = write_chain(tmp_path / "c.yaml")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    result = CliRunner().invoke(
        cli,
        ["schedule", str(chain), "--dry-run", "--time-scale", "3600", "--for", "1m", "--no-watch"],
    )
    assert result.exit_code == 0, result.output
    assert re.search(
        r"WARNING credentials problem=\".*c\.yaml:\d+:\d+: principal 'bot' .*"
        r"AWS_SESSION_TOKEN",
        result.stderr,
    ), result.stderr
    assert "token" not in result.stderr.replace("AWS_SESSION_TOKEN", "")


def test_usage_errors() -> None:
    root = Path(__file__).resolve().parents[2]
    demo = str(root / "chains" / "demo.yaml")
    for argv, message in (
        ([demo], "--store PATH|URL"),
        ([demo, "--store", "x.db", "--time-scale", "5"], "--time-scale needs"),
        ([demo, "--list", "--job", "nope"], "no job 'nope'"),
    ):
        result = CliRunner().invoke(cli, ["schedule", *argv])
        assert result.exit_code == 2, result.output
        assert message in result.stderr

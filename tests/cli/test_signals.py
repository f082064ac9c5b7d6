"""``rolechain run`` as a real process, stopped the way people and schedulers stop it.

Each test starts ``rolechain run ... --sandbox --format jsonl --store runs.db`` in a child
process whose ``python`` tasks write a marker file when they start and then behave as the
test says (return, wait for a file, block forever, call ``sys.exit``...). Signals are sent
with ``os.kill`` to the child while tasks are in flight, as a terminal, ``kill`` or a
scheduler would; the test then counts records on stdout and in the store, and checks the
exit status.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto")
pytestmark = pytest.mark.slow

ACCOUNTS = [f"22222222220{i}" for i in range(6)]
TARGETS = [f"audit@{a}" for a in ACCOUNTS]
WAIT = 90.0  # seconds a test waits for the child to reach a state (the machine may be slow)

TASKS = """
import os, sys, threading, time
from pathlib import Path


def behave(session, context):
    folder = Path(context.args["dir"])
    (folder / f"started-{context.account_id}").touch()
    what = context.args["plan"].get(context.account_id, "ok")
    if what == "stuck":
        threading.Event().wait()  # never returns
    if what == "wait":
        while not (folder / "release").exists():
            time.sleep(0.02)
    if what == "exit":
        sys.exit(3)
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "generator-exit":
        raise GeneratorExit
    return session.client("sts").get_caller_identity()["Account"]
"""


def chain_text(folder: Path, plan: dict[str, str], concurrency: int, timeout: str | None) -> str:
    task: dict[str, Any] = {
        "task": "python",
        "with": {"function": "rc_signal_tasks:behave", "args": {"dir": str(folder), "plan": plan}},
    }
    if timeout is not None:
        task["timeout"] = timeout
    return textwrap.dedent(
        f"""
        settings:
          assume_rate: 1000
        principals:
          ci: {{kind: user, account: "123456789012", arn: "arn:aws:iam::123456789012:user/ci"}}
        roles:
          hub:
            arn: arn:aws:iam::111111111111:role/hub
            trusts: [ci]
        role_sets:
          audit:
            role_name: audit
            accounts: {json.dumps(ACCOUNTS)}
            trusts: [hub]
        jobs:
          work:
            from: ci
            to: audit
            concurrency: {concurrency}
            tasks: [{json.dumps(task)}]
        """
    )


class Child:
    """A ``rolechain run`` child process; stdout lines are collected as they come."""

    def __init__(
        self,
        tmp_path: Path,
        plan: dict[str, str],
        *,
        concurrency: int,
        timeout: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.folder = tmp_path / "markers"
        self.folder.mkdir()
        (tmp_path / "rc_signal_tasks.py").write_text(TASKS)
        chain = tmp_path / "chain.yaml"
        chain.write_text(chain_text(self.folder, plan, concurrency, timeout))
        self.store = tmp_path / "runs.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PYTHONPATH"] = str(tmp_path)
        argv = [sys.executable, "-m", "rolechain", "run", str(chain), "--job", "work"]
        argv += ["--sandbox", "--format", "jsonl", "--store", str(self.store), *extra]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            cwd=tmp_path,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines)),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def started(self, index: int) -> bool:
        return (self.folder / f"started-{ACCOUNTS[index]}").exists()

    def release(self) -> None:
        (self.folder / "release").touch()

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"the run ended before {what}: {self.finish()[1]}")
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.02)

    def send(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def finish(self) -> tuple[int, str]:
        try:
            self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("the run did not exit")
        for reader in self._readers:
            reader.join(timeout=10)
        return self.process.returncode, "".join(self.errors)

    def records(self) -> dict[str, str]:
        """target -> 'ok' or the error code, from stdout."""
        parsed = [json.loads(line) for line in self.lines]
        assert len(parsed) == len({r["target"] for r in parsed})  # one record per target
        return {r["target"]: (r["error"] or {}).get("code") or r["status"] for r in parsed}

    def stored(self) -> tuple[str, dict[str, str]]:
        """The run's status and target -> 'ok' or the error code, from the store."""
        db = sqlite3.connect(self.store)
        [(status, count)] = db.execute("SELECT status, records FROM runs").fetchall()
        rows = db.execute("SELECT target, status, error_code FROM records").fetchall()
        assert count == len(rows)
        return status, {t: code or s for t, s, code in rows}


def test_sigint_keeps_finished_work_and_a_second_one_stops_at_once(tmp_path: Path) -> None:
    # Two slots: targets 0 and 1 finish, then 2 (waits for a file) and 3 (never returns)
    # hold both; 4 and 5 wait for a slot.
    child = Child(
        tmp_path,
        {ACCOUNTS[2]: "wait", ACCOUNTS[3]: "stuck"},
        concurrency=2,
        extra=("--grace", "10m"),
    )
    child.wait_until(lambda: child.started(2) and child.started(3), "two tasks in flight")
    child.wait_until(lambda: len(child.lines) == 2, "the first two records")
    child.send(signal.SIGINT)
    child.release()  # target 2 finishes during the grace period
    child.wait_until(lambda: len(child.lines) == 3, "the record finished during the grace")
    child.send(signal.SIGINT)  # target 3 never would: a second Ctrl-C stops now
    status, stderr = child.finish()  # long before the 10 minutes of grace
    assert status == 130, stderr
    expected = {
        TARGETS[0]: "ok",
        TARGETS[1]: "ok",
        TARGETS[2]: "ok",
        TARGETS[3]: "Interrupted",
        TARGETS[4]: "Interrupted",
        TARGETS[5]: "Interrupted",
    }
    assert child.records() == expected
    assert child.stored() == ("interrupted", expected)
    assert not child.started(4)
    assert not child.started(5)
    assert "SIGINT: stopping; tasks in flight have 600s to finish" in stderr
    assert "interrupted (SIGINT)" in stderr
    assert "3 ok, 0 failed, 3 unfinished of 6" in stderr


def test_sigterm_lets_tasks_in_flight_finish_then_exits_143(tmp_path: Path) -> None:
    child = Child(tmp_path, {ACCOUNTS[1]: "wait"}, concurrency=1)
    child.wait_until(lambda: child.started(1) and len(child.lines) == 1, "a task in flight")
    child.send(signal.SIGTERM)
    child.release()
    status, stderr = child.finish()
    assert status == 143, stderr
    expected = {TARGETS[0]: "ok", TARGETS[1]: "ok"} | {t: "Interrupted" for t in TARGETS[2:]}
    assert child.records() == expected
    assert child.stored() == ("interrupted", expected)
    assert not any(child.started(i) for i in range(2, 6))


def test_a_stuck_task_and_sys_exit_stay_with_their_targets(tmp_path: Path) -> None:
    child = Child(
        tmp_path,
        {
            ACCOUNTS[0]: "stuck",
            ACCOUNTS[1]: "exit",
            ACCOUNTS[2]: "interrupt",
            ACCOUNTS[3]: "generator-exit",
        },
        concurrency=2,
        timeout="2s",
    )
    status, stderr = child.finish()  # the process exits although a task never returns
    assert status == 1, stderr
    expected = {
        TARGETS[0]: "TaskTimeout",
        TARGETS[1]: "SystemExit",
        TARGETS[2]: "KeyboardInterrupt",
        TARGETS[3]: "GeneratorExit",
        TARGETS[4]: "ok",
        TARGETS[5]: "ok",
    }
    assert child.records() == expected
    assert child.stored() == ("failed", expected)
    assert "2 ok, 4 failed of 6" in stderr
    assert "1 still running at the end" in stderr


def test_the_deadline_ends_the_run_with_exit_1(tmp_path: Path) -> None:
    # One slot, and target 1 never returns: targets 2-5 can only be ended by the deadline.
    # The process is real, so its deadline is real time: long enough for target 0 to finish
    # and target 1 to start on a loaded machine (checked before the deadline, so a machine
    # too slow for it fails saying so); the test asserts which record each target gets.
    child = Child(tmp_path, {ACCOUNTS[1]: "stuck"}, concurrency=1, extra=("--deadline", "10s"))
    child.wait_until(lambda: len(child.lines) == 1 and child.started(1), "target 1 in flight")
    status, stderr = child.finish()
    assert status == 1, stderr
    records = child.records()
    assert list(records) == TARGETS  # in order: one slot
    assert records == {TARGETS[0]: "ok", TARGETS[1]: "TaskTimeout"} | {
        t: "DeadlineExceeded" for t in TARGETS[2:]
    }
    assert child.stored() == ("deadline-exceeded", records)
    assert not any(child.started(i) for i in range(2, 6))
    assert "deadline-exceeded (deadline of 10s)" in stderr

"""``rolechain run --engine dask --workers 2`` as a real process, stopped as a terminal
stops it: Ctrl-C sends SIGINT to the whole foreground process group, the local Dask
workers included. The workers ignore it; the driver cancels the batches not started, gives
those in flight the grace, keeps their records, and is the only one to write stdout."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dask_engine.world import ACCOUNTS, TASKS, WAIT, chain_text, python_task

pytestmark = pytest.mark.slow


def test_ctrl_c_keeps_finished_records_and_only_the_driver_writes_stdout(tmp_path: Path) -> None:
    folder = tmp_path / "markers"
    folder.mkdir()
    (tmp_path / "rc_dask_tasks.py").write_text(TASKS)
    accounts = ACCOUNTS[:8]
    # Batches of two, one per worker at a time: [0, 1] and [2, 3] run, the rest wait.
    plan = {accounts[0]: "wait", accounts[1]: "print", accounts[2]: "wait"}
    chain = tmp_path / "chain.yaml"
    chain.write_text(chain_text("work", [python_task(folder, plan)], accounts=8, concurrency=2))
    store = tmp_path / "runs.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(tmp_path)
    argv = [sys.executable, "-m", "rolechain", "run", str(chain), "--job", "work", "--sandbox"]
    argv += ["--engine", "dask", "--workers", "2", "--batch-size", "2", "--grace", "5m"]
    argv += ["--format", "jsonl", "--store", str(store)]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
        cwd=tmp_path,
        start_new_session=True,  # its own process group, as a shell gives a job
    )
    out: list[str] = []
    err: list[str] = []
    readers = [
        threading.Thread(target=lambda s=s, into=into: into.extend(s), daemon=True)  # type: ignore[misc]
        for s, into in ((process.stdout, out), (process.stderr, err))
    ]
    for reader in readers:
        reader.start()

    def started(account: str) -> bool:
        return any(folder.glob(f"started-{account}-*"))

    deadline = time.monotonic() + WAIT
    while not (started(accounts[0]) and started(accounts[2]) and any(folder.glob("done-*"))):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the batches did not start: {''.join(err)}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C at a terminal: every process
    # The batches not started are cancelled at once: their records come first.
    deadline = time.monotonic() + WAIT
    while len(out) < 4:
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"no Interrupted records: {''.join(err)}")
        time.sleep(0.05)
    (folder / "release").touch()  # the batches in flight finish within the grace
    try:
        status = process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the run did not exit")
    for reader in readers:
        reader.join(timeout=10)
    stderr = "".join(err)

    assert status == 130, stderr
    records: list[dict[str, Any]] = [json.loads(line) for line in out]  # only records
    codes = {r["target"]: (r["error"] or {}).get("code") or r["status"] for r in records}
    assert len(records) == len(codes) == 8
    assert codes == {f"audit@{a}": "ok" for a in accounts[:4]} | {
        f"audit@{a}": "Interrupted" for a in accounts[4:]
    }
    assert "noise on a worker's stdout" in stderr  # a task's prints go to stderr
    assert "interrupted (SIGINT)" in stderr
    assert "running job work: 8 targets" in stderr  # the plan came back from a worker
    db = sqlite3.connect(store)
    [(run_status, count)] = db.execute("SELECT status, records FROM runs").fetchall()
    rows = db.execute("SELECT target, status, error_code FROM records").fetchall()
    assert (run_status, count) == ("interrupted", 8)
    assert {t: code or s for t, s, code in rows} == codes


def test_local_workers_run_without_the_statistical_profiler(tmp_path: Path) -> None:
    """The workers of a local cluster a run starts have Dask's profiler off: on CPython 3.11
    before 3.11.9 its sys._current_frames() calls can deadlock a worker (gh-106883)."""
    (tmp_path / "rc_dask_tasks.py").write_text(TASKS)
    accounts = ACCOUNTS[:2]
    task = python_task(tmp_path, {a: "config" for a in accounts})
    chain = tmp_path / "chain.yaml"
    chain.write_text(chain_text("work", [task], accounts=2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(tmp_path)
    argv = [sys.executable, "-m", "rolechain", "run", str(chain), "--job", "work", "--sandbox"]
    argv += ["--engine", "dask", "--workers", "1", "--format", "jsonl"]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=WAIT, check=False
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["data"] for r in records] == [{"profile": False}] * 2

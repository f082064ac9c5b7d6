"""Benchmark of a run whose tasks outlive their timeout: slots are freed at the timeout.

    .venv/bin/python benchmarks/bench_stopping.py [--repeat 3]

The workload of issue 8: ``rolechain run --sandbox`` over 5 targets, concurrency 1, a
``python`` task that sleeps 3 s with ``timeout: 1s``. Every task times out; the run must not
wait for the abandoned tasks, so it should take about 5 x 1 s, and must take less than
2 x (5 x 1 s) = 10 s. Then the same with a task that never returns (``timeout: 2s``): the
process must still exit.

Each run is a fresh process (interpreter start to exit, sandbox start-up included),
timed from outside; the run's own elapsed time comes from its ``--store`` database. The
records' start times show the slot being handed on: with one slot, consecutive starts are
about one timeout apart, not one task (3 s) apart. Figures are printed; nothing is
asserted about time (tests/executor/test_stopping.py asserts the behaviour).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

TARGETS = 5
TIMEOUT = 1
SLEEP = 3
BOUND = 2 * TARGETS * TIMEOUT

TASKS = """
import threading
import time


def sleep(session, context):
    time.sleep(context.args["seconds"])
    return "slept"


def never(session, context):
    threading.Event().wait()
"""


def chain_text(function: str, timeout: int, args: str) -> str:
    accounts = [f"{300000000000 + i:012d}" for i in range(TARGETS)]
    return f"""
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
    accounts: {json.dumps(accounts)}
    trusts: [hub]
jobs:
  slow:
    from: ci
    to: audit
    concurrency: 1
    tasks:
      - task: python
        timeout: {timeout}s
        with: {{function: "rc_bench_tasks:{function}", args: {args}}}
"""


def one_run(folder: Path, chain: Path) -> dict[str, object]:
    store = folder / "runs.db"
    store.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(folder)
    argv = [sys.executable, "-m", "rolechain", "run", str(chain), "--job", "slow", "--sandbox"]
    argv += ["--format", "jsonl", "--store", str(store), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in done.stdout.splitlines()]
    db = sqlite3.connect(store)
    [(elapsed,)] = db.execute("SELECT elapsed_seconds FROM runs").fetchall()
    db.close()
    starts = sorted(datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")) for r in records)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    return {
        "status": done.returncode,
        "wall": wall,
        "elapsed": float(elapsed),
        "codes": sorted({(r["error"] or {}).get("code", "ok") for r in records}),
        "records": len(records),
        "gap": statistics.median(gaps) if gaps else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    # Called as main() (by benchmarks/run.py): defaults, not run.py's own arguments.
    args = parser.parse_args(argv if argv is not None else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "rc_bench_tasks.py").write_text(TASKS)
        sleepy = folder / "sleepy.yaml"
        sleepy.write_text(chain_text("sleep", TIMEOUT, f"{{seconds: {SLEEP}}}"))
        stuck = folder / "stuck.yaml"
        stuck.write_text(chain_text("never", 2, "{}"))

        print(
            f"   {TARGETS} targets, concurrency 1, {SLEEP}s python tasks, timeout {TIMEOUT}s "
            f"(bound: 2 x {TARGETS} x {TIMEOUT}s = {BOUND}s); fresh process each, "
            f"{args.repeat} runs"
        )
        runs = [one_run(folder, sleepy) for _ in range(args.repeat)]
        for n, found in enumerate(runs, 1):
            print(
                f"   run {n}: exit {found['status']}, {found['records']} records {found['codes']}, "
                f"process {found['wall']:.2f}s, run {found['elapsed']:.2f}s, "
                f"median start-to-start {found['gap']:.2f}s"
            )
        walls = [float(r["wall"]) for r in runs]
        elapsed = [float(r["elapsed"]) for r in runs]
        print(
            f"   process wall: best {min(walls):.2f}s, median {statistics.median(walls):.2f}s "
            f"= {statistics.median(walls) / BOUND:.2f}x the bound; the run itself: median "
            f"{statistics.median(elapsed):.2f}s = {statistics.median(elapsed) / BOUND:.2f}x; "
            f"serial tasks would take {TARGETS * SLEEP}s"
        )
        never = one_run(folder, stuck)
        print(
            f"   a task that never returns (timeout 2s): exit {never['status']}, "
            f"{never['records']} records {never['codes']}, process {never['wall']:.2f}s, "
            f"run {never['elapsed']:.2f}s"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

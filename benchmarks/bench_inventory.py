"""Inventory at scale, as whole processes (interpreter start to exit, medians):

    .venv/bin/python benchmarks/bench_inventory.py [--accounts 10000] [--rows 20]
        [--repeat 3] [--run-accounts 1000]

* A store of two runs of ``--accounts`` accounts x ``--rows`` rows (200,000 rows a run),
  written with the store's own API (as ``rolechain run --store`` writes it); between the
  runs 1% of the accounts have a row added, one removed and one changed, and 1% fail.
  Then, each a fresh process, median of ``--repeat``: ``rolechain diff`` of the two runs
  (goal <= 2 s), ``rolechain results --format parquet`` of one run (<= 3 s), ``rolechain
  sql "SELECT count(*) FROM latest_rows"`` (<= 1 s). The store's size against the rows'
  own JSON (each row object, compact; goal <= 1.5x).
* The cost of storing rows in a real run: ``rolechain run --store`` against the sandbox
  (``--run-accounts`` accounts, a python task giving 20 bucket-like rows each, no AWS
  call so that storing weighs as much as it can), with ``rows: buckets`` declared and
  without, alternating; the ratio of the median walls (goal <= 1.10x).

Nothing is asserted: the figures are printed next to their goals.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _sandbox import Sandbox, accounts, chain_text, environment
from bench_process import BIN, load, run_process

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


def make_store(path: Path, n: int, rows: int) -> int:
    """Two runs of ``n`` accounts x ``rows`` rows; the rows' own JSON size, in bytes."""
    from rolechain.executor.records import Record, RecordError, Summary
    from rolechain.planner.plan import Hop, Plan, Target, TaskRef
    from rolechain.results.rows import row_json
    from rolechain.results.store import Store

    ids = accounts(n)
    task = TaskRef(id="buckets", task="python", rows="buckets", key=("name",))
    hub = Hop("hub", None, "ci", "hub", "arn:aws:iam::111111111111:role/hub", "111111111111",
              "aws", 1, False, 3600, "default", "rolechain")  # fmt: skip
    hops = [hub] + [
        dataclasses.replace(
            hub,
            id=f"hub>{a}",
            parent="hub",
            role=f"audit@{a}",
            role_arn=f"arn:aws:iam::{a}:role/audit",
            account_id=a,
            depth=2,
            chained=True,
        )
        for a in ids
    ]
    targets = [
        Target(f"audit@{a}", f"arn:aws:iam::{a}:role/audit", a, ("hub", f"hub>{a}"), 3600, False)
        for a in ids
    ]
    size = 0
    changed = set(ids[::100])
    failed = set(ids[50::100])
    with Store(path) as store:
        for run, day in (("run-a", "01"), ("run-b", "02")):
            plan = Plan("inventory", "ci", "user", run, ("us-east-1",), tuple(hops),
                        tuple(targets), tasks=(task,))  # fmt: skip
            store.start(plan)
            for a in ids:
                target = f"audit@{a}"
                if run == "run-b" and a in failed:
                    error = RecordError("AccessDenied", "denied", f"ci -> hub -> {target}")
                    store.add(Record("inventory", run, target, a, "arn", None, None, "error",
                                     None, error))  # fmt: skip
                    continue
                buckets = [
                    {"name": f"bucket-{a}-{i:02d}", "created": f"2026-01-{1 + i:02d}T03:00:00Z",
                     "region": "us-east-1",
                     "tags": {"team": f"team-{i % 5}", "env": "prod" if i % 2 else "dev"}}
                    for i in range(rows)
                ]  # fmt: skip
                if run == "run-b" and a in changed:
                    buckets[0]["tags"]["team"] = "moved"
                    buckets.pop()
                    buckets.append({"name": f"bucket-{a}-new", "created": "2026-01-02T03:00:00Z",
                                    "region": "us-east-1", "tags": {}})  # fmt: skip
                size += sum(len(row_json(b)) for b in buckets)
                store.add(Record("inventory", run, target, a, "arn", "us-east-1", "buckets",
                                 "ok", {"buckets": buckets, "count": len(buckets)},
                                 started_at=f"2026-01-{day}T03:00:00Z"))  # fmt: skip
            store.finish(Summary("inventory", run, targets=n, started_at=f"2026-01-{day}T03:00:00Z",
                                 finished_at=f"2026-01-{day}T03:10:00Z"))  # fmt: skip
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    return size


def median_wall(
    argv: list[str], repeat: int, env: dict[str, str], ok: tuple[int, ...]
) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeat`` fresh processes."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu, _, _, code = run_process(argv, env, check=False)
        if code not in ok:
            raise RuntimeError(f"{argv[:3]} exited {code}")
        walls.append(wall)
        cpus.append(cpu)
    return float(statistics.median(walls)), float(statistics.median(cpus))


def queries(args: argparse.Namespace, tmp: Path) -> None:
    db = tmp / "runs.db"
    started = time.perf_counter()
    size = make_store(db, args.accounts, args.rows)
    print(f"store of 2 runs x {args.accounts:,} accounts x {args.rows} rows written with the "
          f"store API in {time.perf_counter() - started:.1f} s")  # fmt: skip
    rc = str(BIN / "rolechain")
    env = dict(os.environ)
    out = tmp / "rows.parquet"
    figures = {
        "diff": median_wall(
            [
                rc,
                "diff",
                "--store",
                str(db),
                "--job",
                "inventory",
                "--format",
                "json",
                "--output",
                os.devnull,
            ],
            args.repeat,
            env,
            (1,),
        ),
        "results --format parquet": median_wall(
            [rc, "results", "--store", str(db), "--format", "parquet", "--output", str(out)],
            args.repeat,
            env,
            (0,),
        ),
        "sql count(*) over latest_rows": median_wall(
            [rc, "sql", "SELECT count(*) FROM latest_rows", "--store", str(db)],
            args.repeat,
            env,
            (0,),
        ),
    }
    goals = {"diff": 2.0, "results --format parquet": 3.0, "sql count(*) over latest_rows": 1.0}
    for name, (wall, cpu) in figures.items():
        print(f"{name}: {wall:.2f} s median of {args.repeat} (goal <= {goals[name]:g} s; "
              f"CPU {cpu:.2f} s)")  # fmt: skip
    stored = db.stat().st_size
    print(f"store size {stored / 1e6:.1f} MB for rows whose own JSON is {size / 1e6:.1f} MB: "
          f"{stored / size:.2f}x (goal <= 1.5x)")  # fmt: skip


def run_cost(args: argparse.Namespace, tmp: Path) -> None:
    n = args.run_accounts
    task = {"task": "python", "id": "buckets", "with": {"function": "inventory_rows:twenty"}}
    with_rows = tmp / "with-rows.yaml"
    with_rows.write_text(chain_text(accounts(n), tasks=[{**task, "rows": "buckets",
                                                         "key": ["name"]}]))  # fmt: skip
    without = tmp / "without-rows.yaml"
    without.write_text(chain_text(accounts(n), tasks=[task]))
    server = Sandbox(n, 0.0)
    try:
        env = environment(server.env)
        env["PYTHONPATH"] = str(HERE)
        walls: dict[str, list[float]] = {"rows": [], "no rows": []}
        cpus: dict[str, list[float]] = {"rows": [], "no rows": []}
        for i in range(args.repeat):
            order = [("rows", with_rows), ("no rows", without)]
            for name, chain in order if i % 2 == 0 else reversed(order):
                db = tmp / f"run-{name.replace(' ', '-')}-{i}.db"
                argv = [str(BIN / "rolechain"), "run", str(chain), "--job", "inventory",
                        "--store", str(db), "--format", "jsonl", "--output", os.devnull,
                        "--quiet"]  # fmt: skip
                wall, cpu, *_ = run_process(argv, env)
                walls[name].append(wall)
                cpus[name].append(cpu)
        with_median = statistics.median(walls["rows"])
        without_median = statistics.median(walls["no rows"])
        print(f"rolechain run --store, {n:,} accounts x 20 rows: {with_median:.2f} s storing "
              f"rows, {without_median:.2f} s without: {with_median / without_median:.3f}x "
              f"(goal <= 1.10x; medians of {args.repeat}, alternating); CPU "
              f"{statistics.median(cpus['rows']):.2f} s against "
              f"{statistics.median(cpus['no rows']):.2f} s")  # fmt: skip
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--run-accounts", type=int, default=1000)
    args = parser.parse_args(argv if argv is not None else [])
    print(load())
    with tempfile.TemporaryDirectory() as tmp:
        queries(args, Path(tmp))
        run_cost(args, Path(tmp))


if __name__ == "__main__":
    main(sys.argv[1:])

"""What durable records cost: ``rolechain run --store`` at 1,000 targets, whole processes.

    .venv/bin/python benchmarks/bench_store.py [--targets 1000] [--repeat 5]
        [--latency-ms 0] [--baseline /path/to/other/.venv/bin/python]

Since issue 19 every record is committed to the store before it is printed (and the run's
row carries a heartbeat and its planned units), where before records were written in
batches of 200 or every second. Contenders, each a fresh process (interpreter start to
exit), alternating, the median of ``--repeat`` runs, against one sandbox in its own process
(``_sandbox.py``; no latency by default, so that nothing hides the store's cost):

* ``no store``: ``rolechain run ... --format jsonl --output /dev/null`` (no --store);
* ``store``: the same with ``--store runs.db`` (a new file each run);
* ``store (baseline)``, with ``--baseline PYTHON``: the same command run by another
  installation's interpreter (e.g. a checkout of the main branch before this change):
  the before/after comparison. The goal: ``store`` at most 1.05x the baseline's wall time.

Each stored run is checked: 1,000 records in the store. Figures are printed; nothing is
asserted about time.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

from _sandbox import Sandbox, accounts, chain_text, environment
from bench_process import Figures, load, run_process

GOAL = 1.05


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--baseline", default=None, metavar="PYTHON")
    args = parser.parse_args(argv if argv is not None else [])
    n = args.targets
    print(f"  {n} targets, {args.repeat} runs each, {load()}", flush=True)
    server = Sandbox(n, args.latency_ms / 1000.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            chain = work / "chain.yaml"
            chain.write_text(chain_text(accounts(n)))
            env = environment(server.env)
            store = work / "runs.db"
            base = ["run", str(chain), "--job", "inventory", "--format", "jsonl", "--output",
                    os.devnull, "--quiet"]  # fmt: skip
            contenders = {
                "no store": [sys.executable, "-m", "rolechain", *base],
                "store": [sys.executable, "-m", "rolechain", *base, "--store", str(store)],
            }
            if args.baseline:
                contenders["store (baseline)"] = [
                    args.baseline, "-m", "rolechain", *base, "--store", str(store)
                ]  # fmt: skip
            figures = {name: Figures() for name in contenders}
            order = list(contenders)
            for i in range(args.repeat):
                for name in order if i % 2 == 0 else reversed(order):
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{store}{suffix}").unlink(missing_ok=True)
                    wall, cpu, rss, _, _ = run_process(contenders[name], env)
                    if name != "no store":
                        _check(store, n)
                    figures[name].wall.append(wall)
                    figures[name].cpu.append(cpu)
                    figures[name].rss.append(rss)
                    print(f"  run {i + 1} {name}: {wall:.2f}s", flush=True)
    finally:
        server.stop()
    print()
    for name, f in figures.items():
        print(f"  {name:18} wall {f.median('wall'):6.2f}s  cpu {f.median('cpu'):6.2f}s  "
              f"rss {f.median('rss'):6.0f} MiB")  # fmt: skip
    store, bare = figures["store"], figures["no store"]
    print(f"  store / no store: {store.median('wall') / bare.median('wall'):.3f}x wall, "
          f"{store.median('cpu') / bare.median('cpu'):.3f}x CPU")  # fmt: skip
    if "store (baseline)" in figures:
        before = figures["store (baseline)"]
        ratio = store.median("wall") / before.median("wall")
        print(f"  store / store (baseline): {ratio:.3f}x wall (goal <= {GOAL}x: "
              f"{'met' if ratio <= GOAL else 'NOT met'}), "
              f"{store.median('cpu') / before.median('cpu'):.3f}x CPU")  # fmt: skip
    print(f"  ({load()})")


def _check(store: Path, n: int) -> None:
    db = sqlite3.connect(store)
    try:
        (count,) = db.execute("SELECT count(*) FROM records").fetchone()
    finally:
        db.close()
    if count != n:
        raise RuntimeError(f"the store has {count} records, not {n}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The store on PostgreSQL against SQLite, as whole processes.

    .venv/bin/python benchmarks/bench_store_postgres.py [--runs 10000] [--targets 1000]
        [--repeat 5]     (--runs 0 or --targets 0 leaves that part out)

A throwaway PostgreSQL server is started from the machine's binaries (``tests/postgres.py``;
PostgreSQL's default durability settings: the store itself turns ``synchronous_commit`` off
for its session, as SQLite's store runs with ``synchronous=NORMAL``). Each figure is the
median of ``--repeat`` fresh processes (interpreter start to exit), SQLite and PostgreSQL
alternating:

* **history written**: one process records ``--runs`` runs (each: its row, one unit, one
  record, its summary: what ``rolechain run`` writes) into a new store;
* **history read**: ``rolechain history --limit RUNS --format json`` over those runs;
* **a run of --targets targets**: ``rolechain run ... --store`` against the sandbox
  (``_sandbox.py``, in its own process), into a new store each time; every record is
  committed before it is printed on both backends. Goal: PostgreSQL within 1.10x of
  SQLite's wall time.

Each store is checked afterwards (runs and records counted). Figures are printed; nothing
is asserted about time.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from _sandbox import Sandbox, accounts, chain_text, environment
from bench_process import Figures, load, run_process

TESTS = str(Path(__file__).resolve().parents[1] / "tests")
sys.path.insert(0, TESTS)

GOAL = 1.10

# One process writing N runs as `rolechain run` does: the run's row and units, a record,
# its summary; each write committed on its own.
WRITER = """
import dataclasses, sys
sys.path.insert(0, sys.argv[3])
from aws.fakes import hub_plan
from rolechain.executor.records import Record, Summary
from rolechain.results.store import Store

where, n = sys.argv[1], int(sys.argv[2])
base = hub_plan(["222222222222"])
with Store(where) as store:
    for i in range(n):
        run_id = f"r{i:06d}"
        store.start(dataclasses.replace(base, run_id=run_id, job="inventory"))
        store.add(Record("inventory", run_id, "audit@222222222222", "222222222222", "arn",
                         "us-east-1", "whoami", "ok", {"Account": "222222222222"}))
        stamp = f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        store.finish(Summary("inventory", run_id, targets=1, targets_ok=1, records=1,
                             started_at=stamp, finished_at=stamp))
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv if argv is not None else [])
    import postgres

    found = postgres.bindir()
    if found is None:
        print("  skipped: PostgreSQL's initdb/pg_ctl not found (pg_config --bindir)")
        return
    print(f"  {args.runs} runs of history, a run of {args.targets} targets; {args.repeat} "
          f"processes each, alternating; {load()}", flush=True)  # fmt: skip
    server = postgres.PostgresServer(found, settings={}).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            history = _history(server, work, args.runs, args.repeat) if args.runs else None
            runs = _runs(server, work, args.targets, args.repeat) if args.targets else None
    finally:
        server.stop()
    print()
    results: list[tuple[str, dict[str, Figures]]] = []
    if history is not None:
        results += [("history written", history[0]), ("history read", history[1])]
    if runs is not None:
        results.append((f"run of {args.targets} targets", runs))
    for title, figures in results:
        lite, pg = figures["sqlite"], figures["postgresql"]
        ratio = pg.median("wall") / lite.median("wall")
        goal = (
            f" (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})" if "run" in title else ""
        )
        print(f"  {title:24} sqlite {lite.median('wall'):6.2f}s  postgresql "
              f"{pg.median('wall'):6.2f}s  ratio {ratio:.3f}x wall{goal}; CPU "
              f"{lite.median('cpu'):.2f}s / {pg.median('cpu'):.2f}s")  # fmt: skip
    print(f"  ({load()})")


def _fresh(server: object, work: Path, backend: str, label: str) -> str:
    if backend == "postgresql":
        return server.create_database(label)  # type: ignore[attr-defined,no-any-return]
    path = work / f"{label}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return str(path)


def _alternate(
    repeat: int, step: Callable[[str, int], tuple[float, float, float]]
) -> dict[str, Figures]:
    figures = {"sqlite": Figures(), "postgresql": Figures()}
    order = list(figures)
    for i in range(repeat):
        for backend in order if i % 2 == 0 else reversed(order):
            wall, cpu, rss = step(backend, i)
            figures[backend].wall.append(wall)
            figures[backend].cpu.append(cpu)
            figures[backend].rss.append(rss)
    return figures


def _history(
    server: object, work: Path, n: int, repeat: int
) -> tuple[dict[str, Figures], dict[str, Figures]]:
    env = dict(os.environ)
    stores: dict[str, str] = {}

    def write(backend: str, i: int) -> tuple[float, float, float]:
        where = stores[backend] = _fresh(server, work, backend, f"history{i}")
        wall, cpu, rss, _, _ = run_process(
            [sys.executable, "-c", WRITER, where, str(n), TESTS], env
        )
        _check(where, n, n)
        print(f"  history written {i + 1} {backend}: {wall:.2f}s", flush=True)
        return wall, cpu, rss

    def read(backend: str, i: int) -> tuple[float, float, float]:
        argv = [sys.executable, "-m", "rolechain", "history", "--store", stores[backend],
                "--limit", str(n), "--format", "json"]  # fmt: skip
        wall, cpu, rss, out, _ = run_process(argv, env)
        listed = out.count('"run_id"')
        if listed != n:
            raise RuntimeError(f"history listed {listed} runs, not {n}")
        print(f"  history read {i + 1} {backend}: {wall:.2f}s", flush=True)
        return wall, cpu, rss

    written = _alternate(repeat, write)
    return written, _alternate(repeat, read)


def _runs(server: object, work: Path, n: int, repeat: int) -> dict[str, Figures]:
    sandbox = Sandbox(n, 0.0)
    try:
        chain = work / "chain.yaml"
        chain.write_text(chain_text(accounts(n)))
        env = environment(sandbox.env)
        base = [sys.executable, "-m", "rolechain", "run", str(chain), "--job", "inventory",
                "--format", "jsonl", "--output", os.devnull, "--quiet"]  # fmt: skip

        def one(backend: str, i: int) -> tuple[float, float, float]:
            where = _fresh(server, work, backend, f"run{i}")
            wall, cpu, rss, _, _ = run_process([*base, "--store", where], env)
            _check(where, 1, n)
            print(f"  run {i + 1} {backend}: {wall:.2f}s", flush=True)
            return wall, cpu, rss

        return _alternate(repeat, one)
    finally:
        sandbox.stop()


def _check(where: str, runs: int, records: int) -> None:
    """The store holds ``runs`` runs and ``records`` records."""
    if "://" in where:
        import psycopg

        with psycopg.connect(where) as db:
            counts = db.execute(
                "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM records)"
            ).fetchone()
    else:
        db = sqlite3.connect(where)
        try:
            counts = db.execute(
                "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM records)"
            ).fetchone()
        finally:
            db.close()
    if tuple(counts or ()) != (runs, records):
        raise RuntimeError(f"{where}: (runs, records) {counts}, not {(runs, records)}")


if __name__ == "__main__":
    main(sys.argv[1:])

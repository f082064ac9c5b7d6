"""``make bench``: run every benchmark and print its figures.

Benchmarks print numbers; they assert nothing about time (machines are noisy). Ratios are
measured within one run so that they compare like with like.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BENCHES = [
    "bench_planner",
    "bench_executor",
    "bench_process",
    "bench_stopping",
    "bench_discover",
    "bench_loading",
    "bench_scheduler",
    "bench_dask",
    "bench_ascode",
    "bench_inventory",
    "bench_store",
    "bench_store_postgres",
]


def main(argv: list[str]) -> int:
    selected = argv or BENCHES
    for name in selected:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        importlib.import_module(name).main()
        print(f"   ({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""``make bench`` runs every benchmark: each one is listed and imports (the figures
themselves are measured by ``make bench``, not here: tests never time anything)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_path() -> Iterator[None]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_make_bench_runs_every_benchmark(bench_path: None) -> None:
    run = importlib.import_module("run")
    assert sorted(run.BENCHES) == sorted(p.stem for p in BENCHMARKS.glob("bench_*.py"))


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCHMARKS.glob("bench_*.py")))
def test_each_benchmark_imports_and_has_a_main(bench_path: None, name: str) -> None:
    module = importlib.import_module(name)
    assert callable(module.main)

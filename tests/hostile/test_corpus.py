"""The hostile-input corpus: every case answered with exit 0 or 2, in bounded time and
memory, with no traceback, no raw control character and every problem located.

``manifest.toml`` lists the cases and the exit status each must have; ``files/`` holds the
committed ones and ``generated.py`` makes the rest at test time (too large to commit, or
not plain files: FIFOs, devices, sockets, dangling symlinks, file names that are not
UTF-8). One child process (``child.py``) runs them all, one after another, with its
address space capped and a hang alarm per case, and reports for each the exit status, the
CPU seconds and the peak memory. Limits: 200 MB per case, and 50 times the CPU time of a
fixed piece of plain Python work the child measures before and after the cases (about 2
CPU seconds on the machines we test on). CPU time, as a ratio to work measured in the same
process at the same time, is what is asserted, never wall time: on a shared, loaded machine
both slow down alike. A hang still fails, through the child's alarm and the subprocess
timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hostile.generated import GENERATORS

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
MANIFEST = HERE / "manifest.toml"
MAX_CPU_RATIO = 50  # a case's CPU time over the child's reference work (about 2 s here)
MAX_PEAK_BYTES = 200 * 1024 * 1024

pytestmark = pytest.mark.slow


def manifest() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))["cases"]
    return cases


def case_id(case: dict[str, Any]) -> str:
    return str(case.get("path") or f"generated/{case['generate']}")


def test_manifest_matches_the_files() -> None:
    cases = manifest()
    ids = [case_id(c) for c in cases]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    committed = {str(p.relative_to(FILES)) for p in FILES.rglob("*") if p.is_file()}
    listed = {c["path"] for c in cases if "path" in c}
    assert committed == listed, (committed - listed, listed - committed)
    generated = {c["generate"] for c in cases if "generate" in c}
    assert generated == set(GENERATORS), generated ^ set(GENERATORS)
    assert len(cases) >= 150
    assert {c["exit"] for c in cases} == {0, 2}
    for case in cases:
        assert set(case) <= {"path", "generate", "exit", "args", "env", "absent", "why"}, case
        assert case.get("why"), case


def _clean_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROLECHAIN_"))}
    env.update(
        HOME=str(home),
        ROLECHAIN_CACHE_DIR=str(home / "cache"),
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.mark.timeout(900)  # the child's own alarm bounds each case; a loaded machine is slow
def test_every_hostile_input_is_answered_in_bounded_time(tmp_path: Path) -> None:
    runs: list[dict[str, Any]] = []
    expected: dict[str, dict[str, Any]] = {}
    for index, case in enumerate(manifest()):
        if "generate" in case:
            where = tmp_path / f"g{index}"
            where.mkdir()
            path = str(GENERATORS[case["generate"]](where))
        else:
            path = str(FILES / case["path"])
        argv = [word.replace("{path}", path) for word in case.get("args", ["validate", "{path}"])]
        ident = case_id(case)
        expected[ident] = case
        runs.append(
            {
                "id": ident,
                "argv": argv,
                "path": path,
                "env": case.get("env", {}),
                "absent": case.get("absent", []),
            }
        )
    home = tmp_path / "home"
    home.mkdir()
    child = subprocess.run(
        [sys.executable, str(HERE / "child.py")],
        input=json.dumps(runs),
        capture_output=True,
        text=True,
        errors="surrogateescape",
        env=_clean_environment(home),
        cwd=tmp_path,
        timeout=900,
        check=False,
    )
    reports = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    assert child.returncode == 0, child.stderr[-3000:]
    # What a case may cost: MAX_CPU_RATIO times the child's reference work, measured before
    # and after the cases (the larger): 2 CPU seconds where that work takes 40 ms.
    max_cpu = MAX_CPU_RATIO * reports.pop()["reference_cpu_seconds"]
    assert [r["id"] for r in reports] == [r["id"] for r in runs], child.stderr[-3000:]

    failures: list[str] = []
    for report in reports:
        case = expected[report["id"]]
        wrong = list(report["problems"])
        if report["exit"] != case["exit"]:
            wrong.append(f"exit {report['exit']}, expected {case['exit']}")
        if report["cpu_seconds"] > max_cpu:
            wrong.append(f"{report['cpu_seconds']:.2f} CPU seconds (limit {max_cpu:.2f})")
        if report["peak_bytes"] > MAX_PEAK_BYTES:
            wrong.append(f"peak memory {report['peak_bytes'] / 2**20:.0f} MB")
        if wrong:
            failures.append(f"{report['id']}: {'; '.join(wrong)}\n    {report['stderr'][:300]!r}")
    assert not failures, f"{len(failures)} hostile cases failed:\n" + "\n".join(failures)

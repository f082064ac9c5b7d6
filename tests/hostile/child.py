"""Run hostile cases through the rolechain CLI, one after another, in a bounded process.

The test starts this script once (``python child.py < cases.json``) instead of one
interpreter per case. Before the first case it caps its own address space
(``resource.setrlimit(RLIMIT_AS)``: a blow-up ends in MemoryError here, not in the machine
swapping); every case runs under a wall-clock alarm (a hang raises instead of blocking
for ever). For each case it prints one JSON line: the exit status, what went wrong (an
uncaught exception, a traceback or a raw control character in the output, a secret that
should not be there, a problem without a location), the CPU seconds and the peak memory.

The peak is what a fresh ``rolechain`` process would reach for the case: the child's
memory after start-up (imports), plus how far the case raised the resident set above what
it was before the case (VmHWM, reset through /proc/self/clear_refs). When a case leaves
the child much bigger than it started, the child collects garbage and hands freed memory
back (malloc_trim) before the next, so leftovers do not count against it. Where
/proc/self/clear_refs is not available the peak of the whole process so far is reported,
which only overstates.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import re
import resource
import signal
import sys
import time
import traceback
from typing import Any

HANG_SECONDS = 60.0
ADDRESS_SPACE_HEADROOM = 2 * 1024**3
MAX_OUTPUT_BYTES = 1024 * 1024
SETTLE_ABOVE = 16 * 1024 * 1024
_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NOT_A_PROBLEM = ("warning:", "ok:", "error:", "job '", "... and ", "interrupted")


def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(per_case: bool) -> int:
    if per_case:
        return _status("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _settle() -> None:
    """Free what the last case left behind and give it back to the system."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise Hang(f"no answer after {HANG_SECONDS:.0f} s")


def _problems(case: dict[str, Any], stdout: str, stderr: str, result: Any) -> list[str]:
    from rolechain.errors import escape_controls, printable

    found: list[str] = []
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        detail = "".join(traceback.format_exception(*result.exc_info))
        found.append(f"uncaught {type(result.exception).__name__}: {detail[-3000:]}")
    text = stdout + stderr
    if "Traceback (most recent call last)" in text:
        found.append("a traceback in the output")
    if len(text.encode("utf-8", "surrogateescape")) > MAX_OUTPUT_BYTES:
        found.append(f"{len(text):,} characters of output")
    raw = _RAW_CONTROL.search(text)
    if raw:
        found.append(f"a raw control character {raw.group(0)!r} in the output")
    for secret in case.get("absent", []):
        if secret in text:
            found.append(f"{secret[:40]!r} is in the output")
    if "Usage:" in stderr:  # click refused the arguments (a path that does not exist)
        if case["path"] not in stderr and printable(case["path"]) not in stderr:
            found.append("a usage error that does not name the path")
        return found
    if case["argv"][0] == "validate" and "json" not in case["argv"] and result.exit_code == 2:
        where = printable(escape_controls(case["path"], newlines=True))
        lines = [line for line in stderr.splitlines() if line and not line[0].isspace()]
        problems = [line for line in lines if not line.startswith(_NOT_A_PROBLEM)]
        problems = [line for line in problems if not re.match(r"[0-9,]+ problems? in ", line)]
        unlocated = [line for line in problems if not line.startswith(where)]
        if unlocated:
            found.append(f"problems that do not start with {where!r}: {unlocated[:3]}")
        if not problems:
            found.append("exit 2 without a problem naming the file")
    return found


REFERENCE_RUNS = 5


def _reference_work() -> int:
    total = 0
    for i in range(1_000_000):
        total += i * i
    return total


def _reference_cpu() -> float:
    """CPU seconds of a fixed piece of plain Python work (the median of a few runs): what
    a case costs is compared with it, so that a machine slowed down by load (shared caches
    and cores slow CPU time too) or a slower machine is slower for both alike."""
    costs = []
    for _ in range(REFERENCE_RUNS):
        cpu = time.process_time()
        _reference_work()
        costs.append(time.process_time() - cpu)
    return sorted(costs)[REFERENCE_RUNS // 2]


def main() -> None:
    cases = json.load(sys.stdin)
    limit = _status("VmSize") + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)

    from click.testing import CliRunner

    from rolechain.cli import cli

    runner = CliRunner()
    runner.invoke(cli, ["schema"])  # import what every command needs before measuring
    _settle()
    started = floor = _status("VmRSS")
    per_case = _reset_peak()
    reference = _reference_cpu()
    for case in cases:
        if _status("VmRSS") > floor + SETTLE_ABOVE:
            _settle()
            floor = _status("VmRSS")
        before = _status("VmRSS")
        if per_case:
            _reset_peak()
        cpu, wall = time.process_time(), time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
        try:
            result = runner.invoke(cli, case["argv"], env=case.get("env"), catch_exceptions=True)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stdout = result.stdout_bytes.decode("utf-8", "surrogateescape")
        stderr = result.stderr_bytes.decode("utf-8", "surrogateescape")
        report = {
            "id": case["id"],
            "exit": result.exit_code,
            "problems": _problems(case, stdout, stderr, result),
            "cpu_seconds": round(cpu, 3),
            "wall_seconds": round(wall, 3),
            "peak_bytes": started + _peak_bytes(per_case) - before
            if per_case
            else _peak_bytes(per_case),
            "peak_per_case": per_case,
            "stderr": stderr[:600],
        }
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    reference = max(reference, _reference_cpu())
    sys.stdout.write(json.dumps({"reference_cpu_seconds": round(reference, 4)}) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "120")
    main()

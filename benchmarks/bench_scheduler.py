"""The scheduler: fire lateness and idle CPU on the real clock; memory and store size over
a simulated week of 100 jobs and 10,000+ runs.

Runs here are started by a *trivial launcher* (each run "takes" 30 simulated seconds, or
ends at once on the real clock, and writes its row and five records to the store as a real
run does): this measures the scheduler, not AWS. ``rolechain schedule`` runs each fire
through ``rolechain.run()``, measured by bench_executor.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rolechain.executor.records import Record
from rolechain.model.loader import loads
from rolechain.results.store import Store
from rolechain.scheduler.clock import RealClock, VirtualClock
from rolechain.scheduler.engine import Scheduler
from rolechain.scheduler.logs import EventLog
from rolechain.scheduler.policy import schedule_specs
from rolechain.scheduler.types import OK, LaunchRequest, RunResult

JOBS = 100
WINDOW = 30.0  # real seconds of firing on the real clock
IDLE = 10.0  # real seconds with nothing due
SIM_DAYS = 7


def chain_of(schedule: str, jitter: str, keep: int) -> Any:
    jobs = "\n".join(
        f"  j{i:03d}: {{from: bot, to: audit, tasks: [s3.list_buckets], schedule: '{schedule}', "
        f"jitter: {jitter}, keep: {{runs: {keep}}}, retry_failed: {{times: 0}}}}"
        for i in range(JOBS)
    )
    return loads(
        "version: 1\nprincipals:\n  bot: {kind: user, account: '111111111111'}\n"
        "role_sets:\n  audit: {role_name: A, trusts: [bot], accounts: ['333333333333']}\n"
        f"jobs:\n{jobs}\n",
        file="bench.yaml",
    )


class _Handle:
    def __init__(self, request: LaunchRequest, result: RunResult) -> None:
        self.request = request
        self.result: RunResult | None = None
        self._final = result

    @property
    def done(self) -> bool:
        return self.result is not None

    def finish(self) -> None:
        self.result = self._final

    def cancel(self, reason: str, grace: float | None = None) -> None:
        self.finish()

    def wait(self, timeout: float | None = None) -> bool:
        self.finish()
        return True


class TrivialLauncher:
    """Writes what a run writes (its row, five records), takes ``seconds`` of clock time."""

    def __init__(self, store: Store, schedule_end: Callable[[float, Callable[[], None]], None]):
        self.store = store
        self.schedule_end = schedule_end
        self.count = 0
        self.on_count: Callable[[int], None] = lambda n: None

    def launch(self, chain: Any, request: LaunchRequest, on_done: Callable[[], None]) -> _Handle:
        t = request.trigger
        self.store.begin_scheduled(request.run_id, request.job, trigger=t.kind,
                                   scheduled_for=t.scheduled_for, started_at=t.due)  # fmt: skip
        for n in range(5):
            self.store.add(Record(request.job, request.run_id, f"audit@33333333333{n}",
                                  "333333333333", "arn:aws:iam::333333333333:role/A",
                                  "us-east-1", "s3.list_buckets", "ok",
                                  {"buckets": [{"name": f"b{n}"}], "count": 1}))  # fmt: skip
        self.store.flush()
        self.store.end_scheduled(request.run_id, status=OK, reason=None, targets=5,
                                 targets_ok=5, records=5)  # fmt: skip
        handle = _Handle(request, RunResult(request.run_id, request.job, OK, 5, 5))

        def end() -> None:
            handle.finish()
            on_done()

        self.schedule_end(30.0, end)
        self.count += 1
        self.on_count(self.count)
        return handle


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def real_clock_lateness(tmp: Path) -> None:
    chain = chain_of("* * * * *", "1m", 20)
    specs = schedule_specs(chain)
    log = EventLog(io.StringIO(), "json")
    log.lines = []
    with Store(tmp / "real.db") as store:
        launcher = TrivialLauncher(store, lambda seconds, end: end())
        clock = RealClock()
        log.now = clock.now
        scheduler = Scheduler(chain, specs, launcher=launcher, history=store, clock=clock, log=log)
        cpu0, wall0 = time.process_time(), time.monotonic()
        scheduler.run(until=clock.now() + timedelta(seconds=WINDOW), grace=5)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    late = [e["late_ms"] for e in log.lines if e["event"] == "fire"]
    print(f"   real clock, {JOBS} jobs every minute (jitter 1m), {wall:.0f} s window: "
          f"{len(late)} fires, lateness median {statistics.median(late):.1f} ms, "
          f"max {max(late):.1f} ms (target: median < 100 ms)")  # fmt: skip
    print(f"   CPU while firing: {100 * cpu / wall:.2f}% of a core")

    chain = chain_of("0 3 1 1 *", "0", 20)  # nothing due for months
    with Store(tmp / "idle.db") as store:
        launcher = TrivialLauncher(store, lambda seconds, end: end())
        clock = RealClock()
        log = EventLog(io.StringIO(), "text", clock.now)
        scheduler = Scheduler(chain, schedule_specs(chain), launcher=launcher, history=store,
                              clock=clock, log=log)  # fmt: skip
        timer = threading.Timer(IDLE, scheduler.request_stop)
        cpu0, wall0 = time.process_time(), time.monotonic()
        timer.start()
        scheduler.run(grace=1)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    print(f"   idle CPU, {JOBS} jobs scheduled, {wall:.0f} s: {100 * cpu / wall:.3f}% of a core "
          "(target: < 1%)")  # fmt: skip


def whole_process_idle(tmp: Path) -> None:
    """``rolechain schedule`` itself (file watcher, signal handling, imports included),
    100 jobs with nothing due: CPU time of the process over a real window."""
    import subprocess

    chain = tmp / "idle.yaml"
    jobs = "\n".join(
        f"  j{i:03d}: {{from: bot, to: audit, tasks: [s3.list_buckets], schedule: '0 3 1 1 *'}}"
        for i in range(JOBS)
    )
    chain.write_text(
        "version: 1\nprincipals:\n  bot: {kind: user, account: '111111111111'}\n"
        "role_sets:\n  audit: {role_name: A, trusts: [bot], accounts: ['333333333333']}\n"
        f"jobs:\n{jobs}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "rolechain", "schedule", str(chain), "--store",
         str(tmp / "p.db"), "--log-format", "json"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = 0
    for line in proc.stderr:  # wait until every job is scheduled
        seen += '"event": "scheduled"' in line
        if seen == JOBS:
            break
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    cpu0, wall0 = cpu(), time.monotonic()
    time.sleep(IDLE * 2)
    used, wall = cpu() - cpu0, time.monotonic() - wall0
    proc.terminate()
    proc.wait(60)
    print(f"   idle CPU of a 'rolechain schedule' process (watcher on), {JOBS} jobs, "
          f"{wall:.0f} s: {100 * used / wall:.2f}% of a core (target: < 1%; "
          f"clock ticks of 1/{ticks} s)")  # fmt: skip


def simulated_week(tmp: Path) -> None:
    keep = 20
    chain = chain_of("0 * * * *", "5m", keep)
    specs = schedule_specs(chain)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    clock = VirtualClock(start)
    marks: dict[int, tuple[float, int]] = {}
    path = tmp / "week.db"
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(Store(path))
        launcher = TrivialLauncher(
            store, lambda seconds, end: clock.call_at(clock.now() + timedelta(seconds=seconds), end)
        )

        def mark(n: int) -> None:
            if n in (10, 1_000, 2_000, 5_000, 10_000, 15_000):
                marks[n] = (rss_mib(), path.stat().st_size + _wal(path))

        launcher.on_count = mark
        sink = stack.enter_context(open(os.devnull, "w"))
        scheduler = Scheduler(chain, specs, launcher=launcher, history=store, clock=clock,
                              log=EventLog(sink, "text", clock.now))  # fmt: skip
        t0 = time.perf_counter()
        scheduler.run(until=start + timedelta(days=SIM_DAYS), grace=60)
        elapsed = time.perf_counter() - t0
        rows = store.query("SELECT count(*) AS n FROM runs")[0]["n"]
        records = store.query("SELECT count(*) AS n FROM records")[0]["n"]
    print(f"   simulated week, {JOBS} hourly jobs: {launcher.count} runs in {elapsed:.1f} s "
          f"real ({launcher.count / elapsed:.0f} runs/s)")  # fmt: skip
    for n, (rss, size) in sorted(marks.items()):
        print(f"     after run {n:>6}: RSS {rss:6.1f} MiB, store {size / 2**20:5.2f} MiB")
    rss10, rss10k = marks[10][0], marks[10_000][0]
    print(
        f"   RSS run 10 -> run 10,000: {rss10:.1f} -> {rss10k:.1f} MiB "
        f"({100 * (rss10k - rss10) / rss10:+.1f}%; target: within 10%)"
    )
    print(f"   store: {rows} runs, {records} records kept (keep.runs {keep} x {JOBS} jobs); "
          f"size at run 2,000 {marks[2_000][1] / 2**20:.2f} MiB, at run 10,000 "
          f"{marks[10_000][1] / 2**20:.2f} MiB")  # fmt: skip


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def main() -> None:
    print(f"   (python {sys.version.split()[0]}; maxrss so far "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        simulated_week(Path(tmp))
        real_clock_lateness(Path(tmp))
        whole_process_idle(Path(tmp))


if __name__ == "__main__":
    main()

"""The race users care about: whole processes, ``rolechain run`` against a hand-written loop.

    .venv/bin/python benchmarks/bench_process.py [--sizes 200,1000] [--repeat 3]
        [--latency-ms 20] [--connect-latency-ms 50] [--quota 50] [--quota-calls 1000]
        [--throttle-runs 50]

Every contender is a fresh process, interpreter start to exit, with the same 16 threads
against the same sandbox (``_sandbox.py``, in its own process, ``--latency-ms`` per
request), alternating, the median of ``--repeat`` runs:

* ``loop``: the minimal hand-written loop (``hand_loop.py``: one botocore session, the hub
  assumed once, a thread pool, a new S3 client per account);
* ``rolechain``: ``rolechain run chain.yaml --job inventory`` with rolechain's default
  settings (no ``assume_rate``: adaptive pacing), records as JSON Lines to /dev/null.

For each: wall time, CPU seconds (user + system, from ``wait4``), peak RSS (the child's own
``ru_maxrss``), the AssumeRole calls the sandbox answered and the connections it served.
Then, always with whole ``rolechain run`` processes and default settings:

* the same race at the smallest size with ``--connect-latency-ms`` on every new connection
  (a TLS handshake) on top of the request latency: where sharing connections counts;
* pacing against a quota: ``--quota-calls`` targets against a sandbox quota of ``--quota``
  STS calls/s per calling account (``--sts-rate``), read from the sandbox's own log of STS
  calls: the share of the quota used after the first 5 seconds, the share of AssumeRole
  attempts throttled after them, and whether every target was ok;
* random throttling: ``--throttle-runs`` runs of 100 targets with 30% of STS calls
  throttled at random (``--throttle 0.3``): how many runs had every target ok.

The issue's goals are printed next to each figure. The machine's load average is printed
with them: the benchmark shares its cores with whatever else runs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _sandbox import CONCURRENCY, HUB, Sandbox, accounts, chain_text, environment

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class Figures:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)  # MiB
    assume: list[int] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(self, name)))


# Runs one command and reports its own wall time, CPU and peak RSS. It is a fresh, small
# process: Linux carries the high-water RSS of a parent across fork and exec, so a child
# forked straight from this (possibly big: make bench runs benchmarks in one process)
# process would report this process's RSS as its own.
MEASURE = """
import json, os, subprocess, sys, time
argv = json.loads(sys.argv[1])
start = time.perf_counter()
proc = subprocess.Popen(argv)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - start
sys.stderr.write("\\n@@measured " + json.dumps({
    "wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024,
    "code": os.waitstatus_to_exitcode(status)}) + "\\n")
"""


def run_process(
    argv: list[str], env: dict[str, str], *, check: bool = True
) -> tuple[float, float, float, str, int]:
    """(wall s, cpu s, peak RSS MiB, stdout, exit status) of one fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(argv)],
        env=env,
        capture_output=True,
        cwd=HERE.parent,
        check=False,
    )
    err = done.stderr.decode("utf-8", "replace")
    head, _, measured = err.rpartition("@@measured ")
    if not measured:
        raise RuntimeError(f"{argv[:3]}: no measurement:\n{err[-3000:]}")
    figures = json.loads(measured)
    code = int(figures["code"])
    if check and code != 0:
        raise RuntimeError(f"{argv[:3]} exited {code}:\n{head[-3000:]}")
    return figures["wall"], figures["cpu"], figures["rss"], done.stdout.decode(), code


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def rolechain_argv(chain: Path, *extra: str) -> list[str]:
    return [str(BIN / "rolechain"), "run", str(chain), "--job", "inventory", *extra]


def race(server: Sandbox, n: int, repeat: int, workdir: Path, label: str) -> dict[str, Figures]:
    chain = workdir / f"default-{n}.yaml"
    chain.write_text(chain_text(accounts(n)))  # rolechain's default settings
    env = environment(server.env)
    contenders = {
        "loop": [sys.executable, str(HERE / "hand_loop.py"), str(n), "--threads", "16"],
        "rolechain": rolechain_argv(chain, "--format", "jsonl", "--output", os.devnull, "--quiet"),
    }
    figures = {name: Figures() for name in contenders}
    order = list(contenders)
    for i in range(repeat):
        for name in order if i % 2 == 0 else reversed(order):
            before = server.counters()
            wall, cpu, rss, out, _ = run_process(contenders[name], env)
            after = server.counters()
            if name == "loop":
                result = json.loads(out.strip().splitlines()[-1])
                if result["bad"] or result["buckets"] != 2 * n:
                    raise RuntimeError(f"the loop saw the wrong buckets: {result}")
            f = figures[name]
            f.wall.append(wall)
            f.cpu.append(cpu)
            f.rss.append(rss)
            f.assume.append(
                after["calls"].get("AssumeRole", 0) - before["calls"].get("AssumeRole", 0)
            )
            f.connections.append(after["connections"] - before["connections"])
            print(f"  [{label}] run {i + 1} {name}: {wall:.2f}s", flush=True)
    return figures


def verdict(ok: bool) -> str:
    return "meets the goal" if ok else "MISSES the goal"


def report(title: str, figures: dict[str, Figures], n: int, goals: dict[str, float]) -> None:
    loop = figures["loop"]
    print(f"{title}: {n} targets, {CONCURRENCY} threads, median of {len(loop.wall)}; {load()}")
    print(
        f"  {'contender':10s} {'wall s':>7s} {'x loop':>6s} {'CPU s':>6s} {'x loop':>6s} "
        f"{'RSS MiB':>7s} {'x loop':>6s} {'AssumeRole':>10s} {'conns':>6s}"
    )
    for name, f in figures.items():
        print(
            f"  {name:10s} {f.median('wall'):7.2f} {f.median('wall') / loop.median('wall'):6.2f} "
            f"{f.median('cpu'):6.2f} {f.median('cpu') / loop.median('cpu'):6.2f} "
            f"{f.median('rss'):7.1f} {f.median('rss') / loop.median('rss'):6.2f} "
            f"{int(f.median('assume')):10d} {int(f.median('connections')):6d}"
        )
    ours = figures["rolechain"]
    checks = [("wall", "wall", goals.get("wall")), ("CPU", "cpu", goals.get("cpu"))]
    for label, name, goal in checks:
        if goal is not None:
            ratio = ours.median(name) / loop.median(name)
            print(f"  goal: {label} <= {goal:g}x the loop: {ratio:.2f}x, {verdict(ratio <= goal)}")
    if "rss" in goals:
        ratio = ours.median("rss") / loop.median("rss")
        mib = ours.median("rss")
        ok = ratio <= goals["rss"] and mib <= goals["rss_mib"]
        print(
            f"  goal: peak RSS <= {goals['rss']:g}x the loop and <= {goals['rss_mib']:g} MiB: "
            f"{ratio:.2f}x, {mib:.0f} MiB, {verdict(ok)}"
        )
    assumed = sorted(set(ours.assume))
    print(f"  goal: AssumeRole N+1 = {n + 1}: {assumed}, {verdict(assumed == [n + 1])}")


# -- pacing, with whole rolechain run processes ----------------------------------------------

WARM_UP = 5.0  # "after the first seconds"


def pacing_against_quota(
    server: Sandbox, n: int, quota: float, latency: float, workdir: Path
) -> None:
    """One ``rolechain run`` over ``n`` targets against a quota of ``quota`` STS calls/s."""
    chain = workdir / f"quota-{n}.yaml"
    chain.write_text(chain_text(accounts(n)))
    env = environment(server.env)
    try:
        server.set_faults(latency=latency, sts_rate=quota)
        time.sleep(1.5)  # the quota's bucket fills up, as an account that was idle
        since = len(server.sts_log())
        wall, _, _, out, _ = run_process(rolechain_argv(chain, "--format", "jsonl"), env)
        log = server.sts_log(since)
    finally:
        server.set_faults(latency=latency)
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    ok = sum(1 for r in records if r["status"] == "ok")
    calls = [(at, code) for at, action, account, code in log if action == "AssumeRole"]
    hub = [
        (at, code) for at, action, account, code in log if account == HUB and action == "AssumeRole"
    ]
    start, end = hub[0][0], hub[-1][0]
    after = [(at, code) for at, code in hub if at - start >= WARM_UP]
    span = end - start - WARM_UP
    rate = sum(1 for _, code in after if code is None) / span if span > 0 else 0.0
    throttled = sum(1 for _, code in after if code) / max(len(after), 1)
    print(
        f"pacing against a {quota:g}/s STS quota per calling account: rolechain run (default "
        f"settings), {n} targets, {CONCURRENCY} threads, {wall:.1f}s; {load()}"
    )
    print(
        f"  after the first {WARM_UP:g} s: {rate:.1f} AssumeRole/s succeeded from the hub's "
        f"account = {rate / quota:.0%} of the quota (goal >= 85%: "
        f"{verdict(rate >= 0.85 * quota)}); {throttled:.1%} of {len(after)} attempts "
        f"throttled (goal < 5%: {verdict(throttled < 0.05)})"
    )
    print(
        f"  whole run: {ok} of {n} targets ok (goal 100%: {verdict(ok == n)}); "
        f"{sum(1 for _, code in calls if code)} of {len(calls)} AssumeRole attempts throttled"
    )


def random_throttling(
    server: Sandbox, runs: int, n: int, share: float, latency: float, workdir: Path
) -> None:
    """``runs`` whole ``rolechain run`` processes of ``n`` targets, ``share`` of STS throttled."""
    chain = workdir / f"throttled-{n}.yaml"
    chain.write_text(chain_text(accounts(n)))
    env = environment(server.env)
    all_ok = 0
    walls: list[float] = []
    throttled = attempts = 0
    try:
        server.set_faults(latency=latency, throttle=share)
        for number in range(runs):
            before = server.counters()
            wall, _, _, out, _ = run_process(
                rolechain_argv(chain, "--format", "jsonl", "--quiet"), env, check=False
            )
            after = server.counters()
            records = [json.loads(line) for line in out.splitlines() if line.strip()]
            good = sum(1 for r in records if r["status"] == "ok")
            all_ok += good == n
            walls.append(wall)
            throttled += after["denied"].get("Throttling", 0) - before["denied"].get(
                "Throttling", 0
            )
            attempts += sum(
                after["calls"].get(op, 0) - before["calls"].get(op, 0)
                for op in ("AssumeRole", "GetCallerIdentity")
            )
            if good != n:
                print(f"  run {number + 1}: {n - good} targets not ok", flush=True)
    finally:
        server.set_faults(latency=latency)
    print(
        f"{share:.0%} of STS calls throttled at random: {runs} whole rolechain run processes "
        f"(default settings) of {n} targets: {all_ok} of {runs} runs had every target ok "
        f"(goal {runs} of {runs}: {verdict(all_ok == runs)}); {throttled} of {attempts} "
        f"STS calls throttled; median {statistics.median(walls):.1f}s a run; {load()}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="200,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--connect-latency-ms", type=float, default=50.0)
    parser.add_argument("--quota", type=float, default=50.0)
    parser.add_argument("--quota-calls", type=int, default=1000)
    parser.add_argument("--throttle-runs", type=int, default=50)
    args = parser.parse_args(argv if argv is not None else [])
    sizes = [int(s) for s in args.sizes.split(",") if s]
    latency = args.latency_ms / 1000
    server = Sandbox(max([*sizes, args.quota_calls, 100]), latency)
    try:
        print(
            f"sandbox: {server.info['accounts']} accounts provisioned in "
            f"{server.info['provision_seconds']:.1f}s; latency {args.latency_ms:g} ms/request",
            flush=True,
        )
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            for n in sizes:
                figures = race(server, n, args.repeat, workdir, f"{n}")
                goals = {"wall": 1.15, "cpu": 1.25}
                if n >= 1000:
                    goals.update(rss=1.5, rss_mib=150)
                report("whole processes", figures, n, goals)
            if sizes and args.connect_latency_ms:
                connect = args.connect_latency_ms / 1000
                server.set_faults(latency=latency, connect_latency=connect)
                n = min(sizes)
                try:
                    figures = race(server, n, args.repeat, workdir, f"{n}+connect")
                finally:
                    server.set_faults(latency=latency)
                report(
                    f"with {args.connect_latency_ms:g} ms per new connection and "
                    f"{args.latency_ms:g} ms per request",
                    figures,
                    n,
                    {"wall": 0.8},
                )
            if args.quota_calls:
                pacing_against_quota(server, args.quota_calls, args.quota, latency, workdir)
            if args.throttle_runs:
                random_throttling(server, args.throttle_runs, 100, 0.3, latency, workdir)
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

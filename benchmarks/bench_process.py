"""The race users care about: whole processes, ``rolechain run`` against a hand-written loop.

    .venv/bin/python benchmarks/bench_process.py [--sizes 200,1000] [--repeat 3]
        [--latency-ms 20] [--connect-latency-ms 50] [--quota 50]

Every contender is a fresh process, interpreter start to exit, with the same 16 threads
against the same sandbox (``_sandbox.py``, in its own process, ``--latency-ms`` per
request), alternating, the median of ``--repeat`` runs:

* ``loop``: the minimal hand-written loop (``hand_loop.py``: one botocore session, the hub
  assumed once, a thread pool, a new S3 client per account);
* ``rolechain``: ``rolechain run chain.yaml --job inventory`` with rolechain's defaults (no
  ``assume_rate`` in the chain file), records as JSON Lines to /dev/null;
* ``rolechain, assume_rate 100000``: the same with the fixed AssumeRole limiter out of the
  way, to show what is left of the process itself.

For each: wall time, CPU seconds (user + system, from ``wait4``), peak RSS (the child's own
``ru_maxrss``) and the AssumeRole calls the sandbox answered. Then:

* the same race at 200 targets with ``--connect-latency-ms`` on every new connection (a
  TLS handshake) on top of the request latency: where sharing connections counts;
* pacing against a quota: 1,000 AssumeRole calls through the hub against a sandbox quota
  of ``--quota`` calls/s per calling account, by 16 threads calling through
  :func:`rolechain.aws.pacing.call_paced` (the adaptive pacer and the throttle budget,
  wired here until the run context uses them): the share of the quota reached after the
  first 5 seconds, the share of attempts throttled after them, and the share of calls
  that succeeded;
* random throttling: ``--throttle-rounds`` rounds of 100 such calls with 30% of STS calls
  throttled at random (a fresh pacer each round): how many rounds had every call ok.

Figures are printed; nothing is asserted about time (machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _sandbox import CONCURRENCY, Sandbox, accounts, chain_text, environment

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
FAST = 100000.0


@dataclass
class Figures:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)  # MiB
    assume: list[int] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(self, name)))


def run_process(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, str, int]:
    """(wall s, cpu s, peak RSS MiB, stdout, exit status) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE.parent
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    out = proc.stdout.read()
    reader.join()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    code = proc.returncode
    if code != 0:
        raise RuntimeError(f"{argv[:3]} exited {code}:\n{b''.join(err_chunks).decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.decode(), code


def race(server: Sandbox, n: int, repeat: int, workdir: Path, label: str) -> dict[str, Figures]:
    ids = accounts(n)
    default_chain = workdir / f"default-{n}.yaml"
    fast_chain = workdir / f"fast-{n}.yaml"
    default_chain.write_text(chain_text(ids))
    fast_chain.write_text(chain_text(ids, assume_rate=FAST))
    env = environment(server.env)
    rolechain = [str(BIN / "rolechain"), "run"]
    tail = ["--job", "inventory", "--format", "jsonl", "--output", os.devnull, "--quiet"]
    contenders = {
        "loop": [sys.executable, str(HERE / "hand_loop.py"), str(n), "--threads", "16"],
        "rolechain": [*rolechain, str(default_chain), *tail],
        "rolechain, assume_rate 100000": [*rolechain, str(fast_chain), *tail],
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


def report(title: str, figures: dict[str, Figures], n: int) -> None:
    loop = figures["loop"]
    print(f"{title}: {n} targets, {CONCURRENCY} threads, median of {len(loop.wall)}")
    print(
        f"  {'contender':31s} {'wall s':>7s} {'x loop':>6s} {'CPU s':>6s} {'x loop':>6s} "
        f"{'RSS MiB':>7s} {'x loop':>6s} {'AssumeRole':>10s} {'conns':>6s}"
    )
    for name, f in figures.items():
        print(
            f"  {name:31s} {f.median('wall'):7.2f} {f.median('wall') / loop.median('wall'):6.2f} "
            f"{f.median('cpu'):6.2f} {f.median('cpu') / loop.median('cpu'):6.2f} "
            f"{f.median('rss'):7.1f} {f.median('rss') / loop.median('rss'):6.2f} "
            f"{int(f.median('assume')):10d} {int(f.median('connections')):6d}"
        )


# -- pacing (wired here until the run context uses it) ---------------------------------------


class PacedHub:
    """AssumeRole from the hub's account into audit roles, through ``call_paced``."""

    def __init__(self, server: Sandbox) -> None:
        self.server = server

    def __enter__(self) -> PacedHub:
        sys.path.insert(0, str(HERE.parent / "src"))
        import botocore.session
        from botocore.config import Config

        self.saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(environment(self.server.env))
        session = botocore.session.Session()
        config = Config(max_pool_connections=CONCURRENCY, retries={"total_max_attempts": 1})
        sts: Any = session.create_client("sts", config=config)
        hub = sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/hub", RoleSessionName="pace")
        keys = hub["Credentials"]
        self.hub_sts: Any = session.create_client(
            "sts",
            config=config,
            aws_access_key_id=keys["AccessKeyId"],
            aws_secret_access_key=keys["SecretAccessKey"],
            aws_session_token=keys["SessionToken"],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        os.environ.clear()
        os.environ.update(self.saved)

    def run(self, ids: list[str], pacer: Any) -> tuple[int, list[tuple[float, bool]], float]:
        """(calls that succeeded, (seconds from start, throttled) per attempt, seconds)."""
        from rolechain.aws.errors import aws_call, is_throttle
        from rolechain.aws.pacing import call_paced
        from rolechain.aws.retry import RetryPolicy

        log: list[tuple[float, bool]] = []
        lock = threading.Lock()
        start = time.monotonic()

        def one(account: str) -> bool:
            def attempt() -> Any:
                sent = time.monotonic() - start
                throttled = False
                try:
                    with aws_call():
                        return self.hub_sts.assume_role(
                            RoleArn=f"arn:aws:iam::{account}:role/audit", RoleSessionName="pace"
                        )
                except Exception as exc:
                    throttled = is_throttle(exc)
                    raise
                finally:
                    with lock:
                        log.append((sent, throttled))

            try:
                call_paced(attempt, pacer=pacer, key="111111111111", policy=RetryPolicy())
            except Exception:
                return False
            return True

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            ok = sum(pool.map(one, ids))
        return ok, log, time.monotonic() - start


def pacing_against_quota(server: Sandbox, n: int, quota: float, latency: float) -> None:
    """``n`` AssumeRole calls from the hub's account, paced, against ``quota`` calls/s."""
    from rolechain.aws.pacing import Pacer

    pacer = Pacer()
    try:
        with PacedHub(server) as hub:
            server.set_faults(latency=latency, sts_rate=quota)
            ok, log, elapsed = hub.run(accounts(n), pacer)
    finally:
        server.set_faults(latency=latency)
    after = [(t, throttled) for t, throttled in log if t >= 5.0]
    end = max(t for t, _ in log)
    rate_after = sum(1 for _, throttled in after if not throttled) / max(end - 5.0, 1e-9)
    (lane,) = pacer.report()
    print(
        f"pacing against a {quota:g}/s STS quota per calling account: {n} AssumeRole calls "
        f"from the hub's account, {CONCURRENCY} threads, the adaptive pacer and throttle "
        f"budget wired in this benchmark, {elapsed:.1f}s"
    )
    print(
        f"  after the first 5 s: {rate_after:.1f} calls/s succeeded = "
        f"{rate_after / quota:.0%} of the quota; "
        f"{sum(1 for _, t in after if t) / max(len(after), 1):.1%} of attempts throttled"
    )
    print(
        f"  whole run: {ok}/{n} calls ok ({ok / n:.0%}); {lane.throttled} of {lane.calls} "
        f"attempts throttled; final rate {lane.rate or 0:.1f}/s, lowest "
        f"{lane.lowest_rate or 0:.1f}/s, {lane.cuts} cuts"
    )


def random_throttling(server: Sandbox, rounds: int, n: int, share: float, latency: float) -> None:
    """``rounds`` fresh fan-outs of ``n`` calls with ``share`` of STS calls throttled."""
    from rolechain.aws.pacing import Pacer

    all_ok = 0
    seconds: list[float] = []
    lost = 0
    try:
        with PacedHub(server) as hub:
            server.set_faults(latency=latency, throttle=share)  # the hub is assumed already
            for _ in range(rounds):
                ok, _, elapsed = hub.run(accounts(n), Pacer())  # a fresh process each time
                all_ok += ok == n
                lost += n - ok
                seconds.append(elapsed)
    finally:
        server.set_faults(latency=latency)
    print(
        f"{share:.0%} of STS calls throttled at random: {rounds} rounds of {n} AssumeRole calls "
        f"(pacer and throttle budget): {all_ok} of {rounds} rounds all ok, {lost} calls lost; "
        f"median {statistics.median(seconds):.1f}s a round"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="200,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--connect-latency-ms", type=float, default=50.0)
    parser.add_argument("--quota", type=float, default=50.0)
    parser.add_argument("--quota-calls", type=int, default=1000)
    parser.add_argument("--throttle-rounds", type=int, default=50)
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
                report("whole processes", figures, n)
            if sizes and args.connect_latency_ms:
                connect = args.connect_latency_ms / 1000
                server.set_faults(latency=latency, connect_latency=connect)
                n = min(sizes)
                figures = race(server, n, args.repeat, workdir, f"{n}+connect")
                report(
                    f"with {args.connect_latency_ms:g} ms per new connection and "
                    f"{args.latency_ms:g} ms per request",
                    figures,
                    n,
                )
                server.set_faults(latency=latency)
        if args.quota_calls:
            pacing_against_quota(server, args.quota_calls, args.quota, latency)
        if args.throttle_rounds:
            random_throttling(server, args.throttle_rounds, 100, 0.3, latency)
    finally:
        server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

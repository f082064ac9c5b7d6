"""Benchmark of ``rolechain run``: a hub-and-spoke inventory against the rolechain sandbox.

    .venv/bin/python benchmarks/bench_executor.py [--accounts 500] [--memory-targets 1000]
        [--latency-ms 20] [--repeat 3]

The server is the sandbox (``rolechain.sandbox.sandbox``): moto behind the middleware that
enforces trust policies, the chaining cap, session-name patterns and expiry, provisioned
from a chain (an IAM user ``ci``, a ``hub`` role trusting it, an ``audit`` role in every
account trusting the hub, two buckets per account) and answering every request
``--latency-ms`` later, like a round trip to AWS (provisioning is exempt). It runs in its
own process (``_sandbox.py``), out of the measuring process's GIL.

What it measures (figures are printed, nothing is asserted about time):

1. AssumeRole calls of the inventory, counted three ways: on the wire (a botocore
   ``before-send`` handler), answered by the sandbox (its own counter, read from the server
   process), and by rolechain (summary and plan). All must be hub + N.
2. Wall time of ``rolechain.run`` against a minimal hand-written loop doing the same work
   as the same principal (one shared botocore session, the hub assumed once, a thread pool
   of the same size, AssumeRole + ListBuckets per account, valid session names so the
   sandbox's trust checks pass), in the same process, alternating, best and median.
3. Peak RSS of a run over 1,000 targets, measured in a fresh subprocess with
   ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (results streamed to /dev/null as jsonl),
   next to the RSS of the same process before the run.

Both workloads check that every account shows exactly its two provisioned buckets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _sandbox import (
    CONCURRENCY,
    Sandbox,
    accounts,
    chain_text,
    environment,
    expected_buckets,
)
from hand_loop import loop as hand_loop

SCRIPT = str(Path(__file__).resolve())  # re-invoked as the memory child


# -- workloads -----------------------------------------------------------------------------


def hand_written(ids: list[str]) -> tuple[float, int]:
    """The minimal loop an expert writes (``hand_loop.py``), in this process, timed.

    Same principal (the environment's keys), same roles, valid session names: the sandbox
    checks its calls exactly as it checks rolechain's.
    """
    start = time.perf_counter()
    found = hand_loop(ids, CONCURRENCY)
    if any(f < 0 for f in found):
        raise RuntimeError("hand loop: some account did not show its two buckets")
    return time.perf_counter() - start, sum(found)


def with_rolechain(ids: list[str]) -> tuple[float, int, int, int, int]:
    """(seconds, buckets found, AssumeRole on the wire, summary's count, plan's count)."""
    import botocore.session

    from rolechain.aws.session import AwsSessions
    from rolechain.executor import run
    from rolechain.model.loader import loads

    start = time.perf_counter()
    chain = loads(chain_text(ids), file="bench.yaml")
    session = botocore.session.Session()
    wire = {"AssumeRole": 0}
    lock = threading.Lock()

    def count(**kwargs: Any) -> None:
        with lock:
            wire["AssumeRole"] += 1

    session.register("before-send.sts.AssumeRole", count)
    result = run(
        chain,
        "inventory",
        aws_sessions=AwsSessions(botocore_session=session, concurrency=CONCURRENCY),
    )
    found = 0
    for record in result:
        found += _checked(record)
    elapsed = time.perf_counter() - start
    return elapsed, found, wire["AssumeRole"], result.summary.assume_calls, result.plan.assume_calls


def _checked(record: Any) -> int:
    """The number of buckets a record lists, after checking they are the account's two."""
    if record.status != "ok":
        raise RuntimeError(f"rolechain record failed: {record}")
    names = {b["name"] for b in record.data["buckets"]}
    if names != expected_buckets(record.account_id):
        raise RuntimeError(f"rolechain: {record.account_id} has buckets {sorted(names)}")
    count: int = record.data["count"]
    return count


def _vm_hwm_kib() -> int | None:
    """The process's own RSS high-water mark (Linux), for a cross-check of ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def memory_child(n: int) -> None:
    """In a fresh process: run over n targets, stream jsonl to /dev/null, print RSS."""
    from rolechain.executor import run
    from rolechain.model.loader import loads
    from rolechain.results.formatters import writer_for

    chain = loads(chain_text(accounts(n)), file="bench.yaml")
    before = _vm_hwm_kib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = run(chain, "inventory")
    buckets = 0
    with open(os.devnull, "w") as sink:
        writer = writer_for("jsonl", sink)
        for record in result:
            buckets += _checked(record)
            writer.write(record)
        writer.close(result.summary)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm = _vm_hwm_kib()
    print(
        json.dumps(
            {
                "vm_hwm_mib": round(hwm / 1024, 1) if hwm else None,
                "targets": n,
                "ok": result.summary.targets_ok,
                "buckets": buckets,
                "assume_calls": result.summary.assume_calls,
                "rss_before_mib": round(before / 1024, 1),
                "peak_rss_mib": round(peak / 1024, 1),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--memory-targets", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    # Called as main() (by benchmarks/run.py): defaults, not run.py's own arguments.
    args = parser.parse_args(argv if argv is not None else [])

    if args.memory_child is not None:
        memory_child(args.memory_child)
        return

    ids = accounts(args.accounts)
    total = max(args.accounts, args.memory_targets)
    t0 = time.perf_counter()
    server = Sandbox(total, args.latency_ms / 1000)
    try:
        info = server.info
        print(
            f"sandbox: {info['accounts']} accounts ({total} audit, the hub's, the "
            f"principal's), {info['roles']} roles, "
            f"{info['buckets']} buckets provisioned in {info['provision_seconds']:.1f}s "
            f"(started and ready in {time.perf_counter() - t0:.1f}s); "
            f"latency {args.latency_ms:g} ms/request; {CONCURRENCY} threads",
            flush=True,
        )
        os.environ.clear()
        os.environ.update(environment(server.env))
        # The memory run happens in a child process started while this process is still
        # small: Linux carries ru_maxrss across fork+exec, so a child forked from a big
        # parent would report the parent's high-water mark.
        out = subprocess.run(
            [sys.executable, SCRIPT, "--memory-child", str(args.memory_targets)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"memory run failed ({out.returncode}):\n{out.stderr[-3000:]}")
        figures = json.loads(out.stdout.strip().splitlines()[-1])

        ours: list[float] = []
        theirs: list[float] = []
        calls: tuple[int, int, int, int] = (0, 0, 0, 0)
        found_hand = found_ours = 0
        for i in range(args.repeat):
            # Alternate which goes first, so neither always runs on a warmer server.
            for which in ("hand", "ours") if i % 2 == 0 else ("ours", "hand"):
                if which == "hand":
                    seconds, found_hand = hand_written(ids)
                    theirs.append(seconds)
                    continue
                answered_before = server.calls().get("AssumeRole", 0)
                seconds, found_ours, wire, summary_calls, planned = with_rolechain(ids)
                answered = server.calls().get("AssumeRole", 0) - answered_before
                ours.append(seconds)
                calls = (wire, answered, summary_calls, planned)
        wire, answered, summary_calls, planned = calls
        print(
            f"buckets seen: rolechain {found_ours}, hand loop {found_hand} "
            f"(2 provisioned in each of {args.accounts} accounts = {2 * args.accounts})"
        )
        print(
            f"AssumeRole calls: {wire} on the wire, {answered} answered by the sandbox, "
            f"{summary_calls} counted by rolechain, {planned} planned "
            f"(hub + {args.accounts} accounts = {args.accounts + 1})"
        )
        print(
            f"rolechain wall time: best {min(ours):.2f}s, median {statistics.median(ours):.2f}s"
            " (loading the chain, planning and GetCallerIdentity included)"
        )
        print(
            f"hand-written loop:   best {min(theirs):.2f}s, median {statistics.median(theirs):.2f}s"
        )
        print(
            f"ratio rolechain/hand loop (best/best): {min(ours) / min(theirs):.2f}; "
            f"(median/median): {statistics.median(ours) / statistics.median(theirs):.2f}; "
            f"{args.repeat} runs each, alternating"
        )
        print(
            # VmHWM is this process's own high-water mark; ru_maxrss can carry the parent's
            # across fork and exec, so it is shown only as an upper bound.
            f"peak RSS for {figures['targets']} targets: {figures['vm_hwm_mib']} MiB "
            f"(VmHWM; ru_maxrss {figures['peak_rss_mib']} MiB, which may include the parent's; "
            f"before the run: {figures['rss_before_mib']} MiB; {figures['ok']} ok, "
            f"{figures['buckets']} buckets, {figures['assume_calls']} AssumeRole calls, "
            f"{figures['seconds']}s)"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main(sys.argv[1:])

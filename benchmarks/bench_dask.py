"""Benchmark of the Dask engine: a CPU-heavy job on 1 and 2 worker processes vs threads.

    .venv/bin/python benchmarks/bench_dask.py [--targets 200] [--pages 20] [--repeat 3]

The job: ``rolechain run`` over ``--targets`` accounts through a hub, one ``call`` task per
target that lists a bucket of ``--pages`` objects one object per page (``s3
ListObjectsV2`` with ``PageSize: 1``): ``pages`` signed requests and parsed responses per
target, the work that binds one Python process to one core. The sandbox
(``bench_executor``'s, in its own process, no added latency) answers.

Contenders, each a whole ``rolechain run`` process (interpreter start to exit, fresh each
time, alternating, median of ``--repeat``), stdout to a file and checked (every target ok,
``pages`` keys each):

* ``threads``: the default engine, 16 threads in one process;
* ``dask-1`` / ``dask-2``: ``--engine dask --workers N``, a local cluster of N worker
  processes started by the run (its start-up included).

For each: the process's wall time and the run's own elapsed time (from its summary), the
requests it made (the sandbox's own counters: AssumeRole, GetCallerIdentity,
ListObjectsV2), throughput (requests per second of the run), and CPU seconds per request
(user + system of the rolechain process and its worker processes, from ``RUSAGE_CHILDREN``),
over the whole process and for the run alone (the summary's ``cpu_seconds``: the process
while the run ran, or the workers while they ran batches). The sandbox's own CPU per
request is shown apart: on a small machine it is the sandbox that caps the throughput.

Then the pacing across workers: ``assume_rate: R`` over ``--targets`` targets with a task
that only calls GetCallerIdentity, on threads and on 1 and 2 workers: the rate at which
targets start (each one right after its AssumeRole) stays near R whatever the number of
workers (each takes 1/W of it); without the shares, 2 workers would start at 2R.

The machine may be shared and has few cores (the sandbox takes one): figures are
indicative; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _sandbox import Sandbox, accounts, chain_text, environment

BUCKET = "rolechain-bench-pages"
CONTENDERS = {
    "threads": ["--engine", "threads"],
    "dask-1": ["--engine", "dask", "--workers", "1"],
    "dask-2": ["--engine", "dask", "--workers", "2"],
}


def pages_task(pages: int) -> dict[str, Any]:
    return {
        "task": "call",
        "id": "pages",
        "with": {
            "service": "s3",
            "operation": "list_objects_v2",
            "params": {"Bucket": BUCKET, "PaginationConfig": {"PageSize": 1}},
            "query": "Contents[].Key",
        },
    }


def fill_bucket(pages: int) -> None:
    """One bucket of ``pages`` objects, listed by every target (moto lets any account)."""
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    for i in range(pages):
        s3.put_object(Bucket=BUCKET, Key=f"object-{i:03d}", Body=b"x")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def whole_process(
    chain: Path, extra: list[str], server: Sandbox, expect: int, pages: int | None
) -> dict[str, float]:
    """One ``rolechain run`` process: wall, run elapsed, requests, CPU (its own and the
    sandbox's)."""
    before_calls = server.calls()
    sandbox_before = process_cpu(server.proc.pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        argv = [sys.executable, "-m", "rolechain", "run", str(chain), "--job", "work"]
        done = subprocess.run(
            [*argv, "--format", "jsonl", *extra],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"{extra} exited {done.returncode}:\n{done.stderr[-3000:]}")
        out.seek(0)
        records = [json.loads(line) for line in out]
    if len(records) != expect or any(r["status"] != "ok" for r in records):
        raise RuntimeError(f"{extra}: {len(records)} records, not {expect} ok")
    if pages is not None and any(len(r["data"]) != pages for r in records):
        raise RuntimeError(f"{extra}: a target did not list {pages} objects")
    calls = server.calls()
    sandbox_cpu = process_cpu(server.proc.pid) - sandbox_before
    requests = sum(calls.values()) - sum(before_calls.values())
    starts = sorted(datetime.fromisoformat(r["started_at"].replace("Z", "+00:00")) for r in records)
    elapsed = float(re.findall(r"elapsed: ([\d.]+)s", done.stderr)[-1])
    run_cpu = float(re.findall(r"elapsed: [\d.]+s, CPU ([\d.]+)s", done.stderr)[-1])
    assumed = int(re.findall(r"AssumeRole calls: (\d+)", done.stderr)[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall": wall,
        "elapsed": elapsed,
        "requests": requests,
        "cpu": cpu,
        "run_cpu": run_cpu,
        "sandbox_cpu": sandbox_cpu,
        "assume": assumed,
        "assume_answered": calls.get("AssumeRole", 0) - before_calls.get("AssumeRole", 0),
        # Targets start as their hop is assumed: the rate at which they start is the
        # AssumeRole rate (after the limiter's first burst).
        "start_rate": (len(starts) - 1) / max(1e-3, (starts[-1] - starts[0]).total_seconds()),
    }


def race(
    chain: Path, server: Sandbox, repeat: int, expect: int, pages: int | None
) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CONTENDERS}
    names = list(CONTENDERS)
    for i in range(repeat):
        order = names if i % 2 == 0 else list(reversed(names))  # alternate
        for name in order:
            results[name].append(whole_process(chain, CONTENDERS[name], server, expect, pages))
    return results


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--assume-rate", type=float, default=40.0)
    args = parser.parse_args(argv if argv is not None else [])

    ids = accounts(args.targets)
    cores = os.cpu_count()
    server = Sandbox(args.targets, 0.0)
    saved = dict(os.environ)
    try:
        # This process (the bucket) and the rolechain processes reach the sandbox only.
        os.environ.clear()
        os.environ.update(environment(server.env))
        fill_bucket(args.pages)
        folder = Path(tempfile.mkdtemp(prefix="rolechain-bench-dask-"))
        chain = folder / "pages.yaml"
        chain.write_text(
            chain_text(ids, assume_rate=100_000, job="work", tasks=[pages_task(args.pages)])
        )
        print(
            f"job: {args.targets} targets through a hub, a call task listing {args.pages} "
            f"pages each; sandbox without added latency, in its own process; {cores} cores "
            "(shared with the sandbox and anything else running: figures are indicative)",
            flush=True,
        )
        results = race(chain, server, args.repeat, args.targets, args.pages)
        print(
            f"{'engine':8} {'wall s':>7} {'run s':>6} {'requests':>8} {'req/s':>6} "
            f"{'CPU s':>6} {'ms/req':>6} {'run CPU s':>9} {'ms/req':>6} {'sandbox':>7}"
        )
        for name, runs in results.items():
            requests = median(runs, "requests")
            elapsed = median(runs, "elapsed")
            cpu = median(runs, "cpu")
            run_cpu = median(runs, "run_cpu")
            print(
                f"{name:8} {median(runs, 'wall'):7.2f} {elapsed:6.2f} {requests:8.0f} "
                f"{requests / elapsed:6.0f} {cpu:6.2f} {1000 * cpu / requests:6.2f} "
                f"{run_cpu:9.2f} {1000 * run_cpu / requests:6.2f} "
                f"{1000 * median(runs, 'sandbox_cpu') / requests:7.2f}"
            )
        print(
            "(CPU s: the whole rolechain process and its worker processes, start-up included; "
            "run CPU s: the summary's CPU of the run itself (threads: the process while it "
            "ran; dask: the workers while they ran batches); sandbox: the sandbox's own "
            "CPU ms per request)"
        )
        base = median(results["threads"], "elapsed")
        print(
            "throughput vs threads (run time, median): "
            + ", ".join(
                f"{name} {base / median(runs, 'elapsed'):.2f}x"
                for name, runs in results.items()
                if name != "threads"
            )
            + f"; {args.repeat} whole processes each, alternating; AssumeRole: "
            + ", ".join(f"{name} {median(runs, 'assume'):.0f}" for name, runs in results.items())
        )

        # Pacing across workers: the AssumeRole rate holds whatever the workers.
        chain = folder / "pacing.yaml"
        chain.write_text(
            chain_text(
                ids, assume_rate=args.assume_rate, job="work", tasks=["sts.get_caller_identity"]
            )
        )
        paced = race(chain, server, 1, args.targets, None)
        print(
            f"pacing, assume_rate: {args.assume_rate:g}, {args.targets} targets: targets "
            "started per second (the AssumeRole rate, first burst included): "
            + ", ".join(
                f"{name} {runs[0]['start_rate']:.1f}/s "
                f"({runs[0]['assume_answered']:.0f} AssumeRole)"
                for name, runs in paced.items()
            )
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main(sys.argv[1:])

"""Benchmark of ``rolechain run``: a hub-and-spoke inventory against a local moto server.

    .venv/bin/python benchmarks/bench_executor.py [--accounts 500] [--latency-ms 20]

What it measures (figures are printed, nothing is asserted):

1. AssumeRole calls of a 500-account inventory through one hub, counted on the wire, and
   the plan's count (they must be equal: 501).
2. Wall time of ``rolechain.run`` against a minimal hand-written loop doing the same work
   (one shared botocore session, the hub assumed once, a thread pool of the same size,
   AssumeRole + ListBuckets per account) in the same process, alternating, best of N.
3. Peak RSS of a run over 1,000 targets, measured in a fresh subprocess with
   ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (results streamed to /dev/null as jsonl),
   next to the RSS of the same process before the run.

moto runs in its own process behind a WSGI middleware that adds a fixed latency to every
request, like a network round trip to AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HUB = "111111111111"
CONCURRENCY = 16
KEY, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def accounts(n: int) -> list[str]:
    return [f"{300000000000 + i:012d}" for i in range(n)]


# -- the server --------------------------------------------------------------------------


def serve(port: int, latency: float) -> None:
    """moto on 127.0.0.1:port, every request delayed by ``latency`` seconds."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)

    def slow(environ: dict[str, Any], start_response: Any) -> Any:
        if latency and not environ.get("PATH_INFO", "").startswith("/moto-api"):
            time.sleep(latency)
        return app(environ, start_response)

    make_server("127.0.0.1", port, slow, threaded=True).serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), "--latency-ms", str(latency * 1000)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return proc, endpoint
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("moto server did not start")


def environment(endpoint: str) -> None:
    for key in list(os.environ):
        if key.startswith("AWS_"):
            del os.environ[key]
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )


# -- workloads -----------------------------------------------------------------------------


def chain_text(ids: list[str]) -> str:
    return f"""
settings:
  concurrency: {CONCURRENCY}
  assume_rate: 100000
principals:
  ci: {{source: env, kind: user, account: "123456789012"}}
roles:
  hub:
    arn: arn:aws:iam::{HUB}:role/hub
    trusts: [ci]
role_sets:
  audit:
    role_name: audit
    accounts: {json.dumps(ids)}
    trusts: [hub]
jobs:
  inventory:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
"""


def setup_buckets(ids: list[str]) -> None:
    """One bucket per account, created with that account's own credentials."""
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    config = Config(max_pool_connections=32, retries={"total_max_attempts": 3})
    sts = session.create_client("sts", region_name="us-east-1", config=config)

    def one(account: str) -> None:
        c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/setup", RoleSessionName="setup")[
            "Credentials"
        ]
        s3 = session.create_client(
            "s3",
            region_name="us-east-1",
            config=config,
            aws_access_key_id=c["AccessKeyId"],
            aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c["SessionToken"],
        )
        s3.create_bucket(Bucket=f"inventory-{account}")

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, ids))


def hand_written(ids: list[str]) -> tuple[float, int]:
    """The minimal loop an expert writes: one session, hub once, a pool of the same size."""
    import botocore.session
    from botocore.config import Config

    start = time.perf_counter()
    session = botocore.session.Session()
    config = Config(max_pool_connections=CONCURRENCY, retries={"total_max_attempts": 1})
    sts = session.create_client("sts", region_name="us-east-1", config=config)
    hub = sts.assume_role(RoleArn=f"arn:aws:iam::{HUB}:role/hub", RoleSessionName="hub")[
        "Credentials"
    ]
    hub_sts = session.create_client(
        "sts",
        region_name="us-east-1",
        config=config,
        aws_access_key_id=hub["AccessKeyId"],
        aws_secret_access_key=hub["SecretAccessKey"],
        aws_session_token=hub["SessionToken"],
    )

    def one(account: str) -> int:
        c = hub_sts.assume_role(
            RoleArn=f"arn:aws:iam::{account}:role/audit", RoleSessionName="inventory"
        )["Credentials"]
        s3 = session.create_client(
            "s3",
            region_name="us-east-1",
            config=config,
            aws_access_key_id=c["AccessKeyId"],
            aws_secret_access_key=c["SecretAccessKey"],
            aws_session_token=c["SessionToken"],
        )
        return len(s3.list_buckets()["Buckets"])

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        found = sum(pool.map(one, ids))
    return time.perf_counter() - start, found


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
        if record.status != "ok":
            raise RuntimeError(f"benchmark record failed: {record}")
        found += record.data["count"]
    elapsed = time.perf_counter() - start
    return elapsed, found, wire["AssumeRole"], result.summary.assume_calls, result.plan.assume_calls


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
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = run(chain, "inventory")
    with open(os.devnull, "w") as sink:
        writer = writer_for("jsonl", sink)
        for record in result:
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
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--setup", type=int, default=None, help=argparse.SUPPRESS)
    # Called as main() (by benchmarks/run.py): defaults, not run.py's own arguments.
    args = parser.parse_args(argv if argv is not None else [])

    if args.serve is not None:
        serve(args.serve, args.latency_ms / 1000)
        return
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return
    if args.setup is not None:
        setup_buckets(accounts(args.setup))
        return

    latency = args.latency_ms / 1000
    proc, endpoint = start_server(latency)
    try:
        environment(endpoint)
        ids = accounts(args.accounts)
        total = max(args.accounts, args.memory_targets)
        t0 = time.perf_counter()
        # Setup and the memory run happen in child processes started while this process is
        # still small: Linux carries ru_maxrss across fork+exec, so a child forked from a
        # big parent would report the parent's high-water mark.
        subprocess.run([sys.executable, __file__, "--setup", str(total)], check=True)
        print(
            f"setup: {total} accounts with a bucket each in {time.perf_counter() - t0:.1f}s; "
            f"latency {args.latency_ms:g} ms/request; {CONCURRENCY} threads"
        )
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(args.memory_targets)],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])

        ours: list[float] = []
        theirs: list[float] = []
        calls: tuple[int, int, int] = (0, 0, 0)
        for _ in range(args.repeat):
            seconds, found = hand_written(ids)
            assert found == len(ids), found
            theirs.append(seconds)
            seconds, found, wire, summary_calls, planned = with_rolechain(ids)
            assert found == len(ids), found
            ours.append(seconds)
            calls = (wire, summary_calls, planned)
        wire, summary_calls, planned = calls
        print(
            f"AssumeRole calls: {wire} on the wire, {summary_calls} counted by rolechain, "
            f"{planned} planned (hub + {args.accounts} accounts = {args.accounts + 1})"
        )
        print(
            f"rolechain wall time: best {min(ours):.2f}s, median {statistics.median(ours):.2f}s"
            " (loading the chain, planning and GetCallerIdentity included)"
        )
        print(
            f"hand-written loop:   best {min(theirs):.2f}s, median {statistics.median(theirs):.2f}s"
        )
        print(
            f"ratio (best/best): {min(ours) / min(theirs):.2f}; "
            f"(median/median): {statistics.median(ours) / statistics.median(theirs):.2f}"
        )
        print(
            f"peak RSS for {figures['targets']} targets: {figures['peak_rss_mib']} MiB "
            f"(ru_maxrss; VmHWM {figures['vm_hwm_mib']} MiB; after imports and loading the "
            f"chain: {figures['rss_before_mib']} MiB; {figures['ok']} ok, "
            f"{figures['assume_calls']} AssumeRole calls, {figures['seconds']}s)"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main(sys.argv[1:])

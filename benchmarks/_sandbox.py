"""The sandbox the benchmarks run against, in a process of its own.

    python benchmarks/_sandbox.py ACCOUNTS [--latency-ms 20] [--assume-rate R]

provisions a hub-and-spoke chain (:func:`chain_text`: an IAM user ``ci``, a ``hub`` role
trusting it, an ``audit`` role in ACCOUNTS accounts trusting the hub, two buckets per
account), prints one JSON line (the principal's environment, what provisioning took), then
answers one JSON command per line on stdin with one JSON line on stdout:

* ``{"cmd": "counters"}``: the calls it answered, the errors it gave, the connections
  that carried a request;
* ``{"cmd": "faults", ...}``: inject these faults from now on (``Faults`` keyword
  arguments: ``latency``, ``connect_latency``, ``sts_rate``, ``sts_burst``, ...);
* ``{"cmd": "sts_log", "since": N}``: the STS calls answered from the N-th on, as
  ``[seconds, action, calling account, error code or null]`` (its ``SandboxState.sts_log``).

It runs in its own process so that the server is out of the measured processes' way (and
GIL), as AWS is.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

HUB = "111111111111"
PRINCIPAL_ACCOUNT = "123456789012"
CONCURRENCY = 16
PROVISION_TIMEOUT = 900.0  # seconds to wait for the sandbox's first line
SCRIPT = str(Path(__file__).resolve())


def accounts(n: int) -> list[str]:
    return [f"{300000000000 + i:012d}" for i in range(n)]


def expected_buckets(account: str) -> set[str]:
    """The sample buckets the sandbox provisions in every account with a role."""
    return {f"rolechain-logs-{account}", f"rolechain-backups-{account}"}


def chain_text(
    ids: list[str],
    *,
    assume_rate: float | None = None,
    job: str = "inventory",
    tasks: Sequence[Any] = ("s3.list_buckets",),
) -> str:
    """The benchmarks' chain: a hub, then ``ids``; ``job`` runs ``tasks`` on each.
    ``assume_rate`` None: rolechain's default pacing."""
    rate = f"\n  assume_rate: {assume_rate:g}" if assume_rate is not None else ""
    return f"""
settings:
  concurrency: {CONCURRENCY}{rate}
principals:
  ci: {{source: env, kind: user, account: "{PRINCIPAL_ACCOUNT}"}}
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
  {job}:
    from: ci
    to: audit
    tasks: {json.dumps(list(tasks))}
"""


def environment(env: dict[str, str]) -> dict[str, str]:
    """An environment that reaches the sandbox as its principal, and nothing else."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean.update(env)
    clean.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return clean


# -- the server (child process) ------------------------------------------------------------


def serve(n: int, latency: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from rolechain.model.loader import loads
    from rolechain.sandbox import Faults, sandbox

    chain = loads(chain_text(accounts(n)), file="bench.yaml")
    start = time.perf_counter()
    with sandbox(chain, faults=Faults(latency=latency)) as info:
        made = info.provisioned
        report = {
            "env": info.principals["ci"],
            "provision_seconds": round(time.perf_counter() - start, 2),
            "accounts": len(made.accounts),
            "roles": len(made.roles),
            "buckets": sum(len(b) for b in made.buckets.values()),
        }
        print(json.dumps(report), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            name = command.pop("cmd")
            if name == "counters":
                state = info.state
                answer: dict[str, Any] = {
                    "calls": dict(state.calls),
                    "denied": dict(state.denied),
                    "connections": state.connections,
                }
            elif name == "faults":
                info.set_faults(Faults(**command))
                answer = {"ok": True}
            elif name == "sts_log":
                log = list(info.state.sts_log)[int(command.get("since", 0)) :]
                answer = {"calls": [[c.at, c.action, c.account, c.code] for c in log]}
            else:
                answer = {"error": f"unknown command {name!r}"}
            print(json.dumps(answer), flush=True)


class Sandbox:
    """The sandbox child process, seen from the benchmark."""

    def __init__(self, n: int, latency: float) -> None:
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, str(n), "--latency-ms", str(latency * 1000)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdin is not None
        self.stdout: IO[str] = self.proc.stdout
        self.stdin: IO[str] = self.proc.stdin
        try:
            self.info: dict[str, Any] = json.loads(self._line(PROVISION_TIMEOUT))
        except BaseException:
            self.stop()
            raise

    @property
    def env(self) -> dict[str, str]:
        return dict(self.info["env"])

    def _line(self, timeout: float) -> str:
        with selectors.DefaultSelector() as selector:
            selector.register(self.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.stop()
                raise RuntimeError(f"the sandbox said nothing in {timeout:g}s")
        line = self.stdout.readline()
        if not line:
            code = self.proc.wait(timeout=10)
            self.errors.seek(0)
            tail = self.errors.read().decode("utf-8", "replace")[-3000:]
            self.stop()
            raise RuntimeError(f"the sandbox exited ({code}):\n{tail}")
        return line

    def _ask(self, **command: Any) -> dict[str, Any]:
        self.stdin.write(json.dumps(command) + "\n")
        self.stdin.flush()
        answer: dict[str, Any] = json.loads(self._line(60))
        return answer

    def counters(self) -> dict[str, Any]:
        """The sandbox's own counters: ``calls``, ``denied``, ``connections``."""
        return self._ask(cmd="counters")

    def calls(self) -> dict[str, int]:
        """The calls it answered, by operation."""
        calls: dict[str, int] = self.counters()["calls"]
        return calls

    def set_faults(self, **faults: Any) -> None:
        self._ask(cmd="faults", **faults)

    def sts_log(self, since: int = 0) -> list[tuple[float, str, str, str | None]]:
        """The STS calls it answered (from the ``since``-th): (monotonic seconds, action,
        calling account, error code or None)."""
        calls = self._ask(cmd="sts_log", since=since)["calls"]
        return [(float(at), action, account, code) for at, action, account, code in calls]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stdout.close()
        self.errors.close()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("accounts", type=int)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    serve(args.accounts, args.latency_ms / 1000)

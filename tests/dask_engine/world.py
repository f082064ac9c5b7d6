"""One sandbox and one Dask cluster shared by the Dask engine's tests.

The sandbox is provisioned once with a principal ``ci`` (IAM user keys), a ``hub`` role it
may assume and an ``audit`` role in each of 200 accounts that trusts the hub. Chains for
the tests (:func:`chain`) name the same roles with the jobs each test needs; jobs are not
provisioned, so every test can have its own.

The cluster is a ``LocalCluster`` of 2 worker processes (``processes=True``, one thread
each). Its workers get the sandbox's endpoint and the principal's keys *in their own
environment* (the nanny's ``env``, which also holds for a worker the nanny restarts after a
SIGKILL): nothing is shipped by the runs. ``rc_dask_tasks`` (:data:`TASKS`), on the
workers' PYTHONPATH, holds the ``python`` tasks and the plugins the tests use.
"""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rolechain.executor import Record
from rolechain.results.store import Store

ACCOUNTS = [f"{400000000000 + i:012d}" for i in range(200)]
WAIT = 120.0  # seconds a test waits for workers to reach a state (the machine may be slow)
HUB = "111111111111"

TASKS = '''
"""Tasks and plugins of the Dask engine's tests (imported on the workers and in pytest)."""
import os
import signal
import threading
import time
from pathlib import Path

from distributed import SchedulerPlugin, WorkerPlugin


def behave(session, context):
    """A python task: mark that it started (with the worker's pid), then do as planned."""
    folder = Path(context.args["dir"])
    what = context.args.get("plan", {}).get(context.account_id, "ok")
    (folder / f"started-{context.account_id}-{os.getpid()}").touch()
    if what == "wait":
        while not (folder / "release").exists():
            time.sleep(0.02)
    if what == "stuck":
        threading.Event().wait()  # never returns
    if what == "print":
        print("noise on a worker's stdout", flush=True)
    if what == "fail":
        raise RuntimeError("this task fails")
    if what == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # takes its worker process with it
    if what == "config":  # the Dask config of the worker it runs on
        import dask

        return {"profile": dask.config.get("distributed.worker.profile.enabled")}
    account = session.client("sts").get_caller_identity()["Account"]
    (folder / f"done-{context.account_id}-{os.getpid()}").touch()
    return {"account": account}


CAPTURED = []


def _capture(parsed, **_):
    creds = parsed.get("Credentials") or {}
    CAPTURED.extend(v for k, v in creds.items() if k in ("SecretAccessKey", "SessionToken"))


class CaptureSecrets(WorkerPlugin):
    """Keeps every secret AssumeRole issues on the worker (the test then looks for them)."""

    name = "rc-capture-secrets"

    def setup(self, worker):
        from rolechain.aws.session import shared_botocore_session

        shared_botocore_session().register(
            "after-call.sts.AssumeRole", _capture, unique_id="rc-capture-secrets"
        )


def captured():
    return list(CAPTURED)


class GraphLog(SchedulerPlugin):
    """Everything the scheduler holds of each task: key, group, its spec (as text and
    pickled) and any exception text."""

    name = "rc-graph-log"

    def __init__(self):
        self.texts = []
        self.blobs = []
        self.keys = set()
        self.scheduler = None

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        self.texts.extend(str(kwargs.get(k, "")) for k in ("exception_text", "traceback_text"))
        ts = self.scheduler.tasks.get(key) if self.scheduler is not None else None
        if ts is None or key in self.keys:
            return
        from distributed.protocol.pickle import dumps

        self.keys.add(key)
        self.texts.extend([str(key), str(ts.prefix.name), str(ts.group.name), repr(ts.run_spec)])
        self.blobs.append(dumps(ts.run_spec))
'''


def chain_text(
    job: str,
    tasks: list[Any],
    *,
    accounts: int = 200,
    concurrency: int = 16,
    settings: str = "",
    extra: str = "",
) -> str:
    ids = ACCOUNTS[:accounts]
    return textwrap.dedent(
        f"""
        settings:
          assume_rate: 100000
        {settings}
        principals:
          ci: {{kind: user, account: "123456789012", arn: "arn:aws:iam::123456789012:user/ci"}}
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
            concurrency: {concurrency}
            tasks: {json.dumps(tasks)}
        {extra}
        """
    )


@dataclass
class World:
    """The shared sandbox and cluster."""

    sandbox: Any  # SandboxInfo
    env: dict[str, str]  # the principal's environment (the workers have it too)
    folder: Path  # on the workers' PYTHONPATH: rc_dask_tasks.py
    cluster: Any  # LocalCluster

    @property
    def address(self) -> str:
        return str(self.cluster.scheduler_address)

    def assume_calls(self) -> int:
        return int(self.sandbox.state.calls["AssumeRole"])

    def markers(self, folder: Path, kind: str) -> dict[str, set[int]]:
        """account -> pids of the workers where the task reached ``kind`` (started/done)."""
        found: dict[str, set[int]] = {}
        for path in folder.glob(f"{kind}-*"):
            _, account, pid = path.name.split("-")
            found.setdefault(account, set()).add(int(pid))
        return found


def python_task(folder: Path, plan: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "task": "python",
        "with": {
            "function": "rc_dask_tasks:behave",
            "args": {"dir": str(folder), "plan": plan or {}},
        },
    }
    task.update(extra)
    return task


def worker_env(sandbox_env: dict[str, str], folder: Path) -> dict[str, str]:
    return {
        **sandbox_env,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "PYTHONPATH": str(folder),
    }


class Background:
    """Makes and iterates a Run on a thread (a store is used on the thread that opened it),
    so that the test can act while it runs."""

    def __init__(self, make: Any, store: Path | None = None) -> None:
        self.records: list[Record] = []
        self.error: BaseException | None = None
        self.made = threading.Event()
        self.run: Any = None
        self.thread = threading.Thread(target=self._work, args=(make, store), daemon=True)
        self.thread.start()
        assert self.made.wait(WAIT), "the run was not made"
        if self.error is not None:
            raise self.error

    def _work(self, make: Any, store: Path | None) -> None:
        database = Store(store) if store is not None else None
        try:
            self.run = make(database)
            self.made.set()
            for record in self.run:
                self.records.append(record)
        except BaseException as exc:
            self.error = exc
        finally:
            self.made.set()
            if database is not None:
                database.close()

    def wait_for(self, condition: Any, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if not self.thread.is_alive():
                pytest.fail(f"the run ended before {what}: {self.error!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def join(self) -> list[Record]:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the run did not end"
        if self.error is not None:
            raise self.error
        return self.records

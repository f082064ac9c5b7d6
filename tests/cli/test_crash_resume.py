"""``kill -9`` a stored run, then ``history`` and ``--resume``: nothing printed is lost,
the crash is said, and the resume finishes exactly the units left. On both stores: a SQLite
file, and a PostgreSQL database (``--store postgresql://...``).

A sandbox is served from the test process (``rolechain sandbox`` in-process), and each case
starts ``rolechain run ... --format jsonl --store runs.db`` against it in a child process
(its own process group, so the Dask engine's local workers die with it, as on a lost node),
waits until it has printed N records, and sends SIGKILL to the group. The moments are spread
over the run deterministically (N records), 12 with the thread engine and 8 with Dask (the
driver of a cluster that lives on, as when the machine running ``rolechain run`` is lost).
Then:

- every record on stdout is in the store (committed before it was printed);
- ``rolechain history`` says the run ``crashed``, with the count of units without a record;
- ``rolechain run --resume RUN_ID`` runs exactly those units: every unit has one record
  over the two runs, and the resumed run's AssumeRole calls are the distinct hops of its
  targets (the hub, and one per target left), counted in the sandbox's STS log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from results.stores import connect
from rolechain.cli import cli
from rolechain.model.loader import load

pytest.importorskip("moto")
pytestmark = pytest.mark.slow

WAIT = 120.0
REGIONS = ("us-east-1", "eu-west-1")

TASKS = """
import time


def work(session, context):
    time.sleep(float(context.args.get("sleep", 0.02)))
    return {"account": context.account_id}
"""


def _chain(tmp_path: Path, accounts: list[str], concurrency: int = 3, sleep: float = 0.02) -> Path:
    (tmp_path / "rc_crash_tasks.py").write_text(TASKS)
    chain = tmp_path / "chain.yaml"
    chain.write_text(
        textwrap.dedent(
            f"""
            settings:
              assume_rate: 1000
            principals:
              ci: {{kind: user, account: "123456789012", arn: "arn:aws:iam::123456789012:user/ci"}}
            roles:
              hub:
                arn: arn:aws:iam::111111111111:role/hub
                trusts: [ci]
            role_sets:
              audit:
                role_name: audit
                accounts: {json.dumps(accounts)}
                trusts: [hub]
            jobs:
              work:
                from: ci
                to: audit
                concurrency: {concurrency}
                regions: {json.dumps(list(REGIONS))}
                tasks:
                  - task: python
                    with: {{function: "rc_crash_tasks:work", args: {{sleep: {sleep}}}}}
            """
        )
    )
    return chain


SANDBOX: dict[str, str] = {}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """Start a sandbox for the chain :func:`_chain` writes (call it with the accounts)."""
    from rolechain.sandbox import sandbox

    with contextlib.ExitStack() as stack:

        def start(accounts: list[str], concurrency: int = 3, sleep: float = 0.02) -> Any:
            chain = _chain(tmp_path, accounts, concurrency, sleep)
            info = stack.enter_context(sandbox(load(chain)))
            SANDBOX.clear()
            SANDBOX.update(info.principals["ci"])
            return chain, info

        yield start
    SANDBOX.clear()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(SANDBOX)
    env["PYTHONPATH"] = str(tmp_path)
    return env


def _assume_calls(info: Any) -> int:
    return sum(1 for call in list(info.state.sts_log) if call.action == "AssumeRole")


def _argv(chain: Path, store: Path | str, engine: tuple[str, ...], *extra: str) -> list[str]:
    return [sys.executable, "-m", "rolechain", "run", str(chain), "--job", "work",
            "--format", "jsonl", "--store", str(store), "--quiet", *engine, *extra]  # fmt: skip


def _kill_after(argv: list[str], tmp_path: Path, records: int) -> list[dict[str, Any]]:
    """Run ``argv``; SIGKILL its process group once ``records`` lines are on stdout; the
    complete lines it printed."""
    child = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env=_env(tmp_path), cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    lines: list[bytes] = []
    seen = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            if len(lines) >= records:
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not seen.wait(WAIT):
        os.killpg(child.pid, signal.SIGKILL)
        pytest.fail(f"no {records} records within {WAIT}s")
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(WAIT)
    reader.join(10)
    assert child.returncode == -signal.SIGKILL, f"the run ended first ({child.returncode})"
    return [json.loads(line) for line in lines if line.endswith(b"\n")]


def _units(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["target"], r["region"], r["task"]) for r in records]


def _stored(store: Path | str, run_id: str) -> list[tuple[str, str, str]]:
    db = connect(store)
    mark = "%s" if isinstance(store, str) else "?"
    try:
        rows = db.execute(
            f"SELECT target, region, task FROM records WHERE run_id={mark}", (run_id,)
        ).fetchall()
        return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        db.close()


def _history(store: Path | str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["history", "--store", str(store), "--format", "json"])
    assert result.exit_code == 0, result.output
    runs: list[dict[str, Any]] = json.loads(result.stdout)
    return runs


def _crash_and_resume(tmp_path: Path, chain: Path, info: Any, engine: tuple[str, ...],
                      accounts: list[str], moments: list[int],
                      make_store: Any) -> None:  # fmt: skip
    planned = {(f"audit@{a}", region, "python") for a in accounts for region in REGIONS}
    for moment in moments:
        store = make_store()
        printed = _kill_after(_argv(chain, store, engine), tmp_path, moment)
        assert len(printed) >= min(moment, 1)
        [crashed] = _history(store)
        run_id = crashed["run_id"]
        stored = _stored(store, run_id)
        # Durable before visible: every record printed is in the store.
        assert set(_units(printed)) <= set(stored), f"moment {moment}"
        assert len(stored) == len(set(stored))
        assert crashed["status"] == "crashed", crashed
        assert crashed["unfinished"] == len(planned) - len(stored), f"moment {moment}"

        before = _assume_calls(info)
        done = subprocess.run(
            _argv(chain, store, engine, "--resume", run_id), capture_output=True,
            env=_env(tmp_path), cwd=tmp_path, timeout=WAIT, check=False,
        )  # fmt: skip
        calls = _assume_calls(info) - before
        assert done.returncode == 0, done.stderr.decode()
        resumed = [json.loads(line) for line in done.stdout.splitlines()]
        # Exactly the missing units, each once over the two runs.
        both = stored + _units(resumed)
        assert sorted(both) == sorted(planned), f"moment {moment}"
        newest = _history(store)[0]
        assert (newest["trigger"], newest["retry_of"], newest["status"]) == (
            "resume", run_id, "ok",
        )  # fmt: skip
        targets = {r["target"] for r in resumed}
        # The hub and each target left, once each (an attempt the run retried, a read
        # timeout on a loaded machine, is counted apart).
        own = newest["assume_calls"]
        assert 1 + len(targets) <= own <= 1 + len(targets) + (newest["retries"] or 0)
        if engine:
            # A cluster that outlives its driver may still finish the killed run's batches:
            # the sandbox can see their calls too (their records are lost with the driver).
            assert calls >= own
        else:
            assert calls == own


# Each unit takes ``sleep`` seconds: the last moment leaves several units to run, so the
# kill lands before the run ends.


@pytest.mark.timeout(600)
def test_kill_9_then_resume_with_threads(
    tmp_path: Path, served: Any, make_store: Any, backend: str
) -> None:
    accounts = [f"3333333300{i:02d}" for i in range(16)]  # 32 units
    chain, info = served(accounts, sleep=0.1)
    moments = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]
    # on PostgreSQL every other moment: the same spread, in half the suite's time
    chosen = moments if backend == "sqlite" else moments[::2]
    _crash_and_resume(tmp_path, chain, info, (), accounts, chosen, make_store)


@pytest.mark.timeout(600)
def test_kill_9_then_resume_with_dask(
    tmp_path: Path, served: Any, monkeypatch: pytest.MonkeyPatch, make_store: Any, backend: str
) -> None:
    """The driver (``--cluster``) is killed; the cluster's worker lives on, as when the
    machine that ran ``rolechain run`` is lost, and the resumed run uses it again."""
    distributed = pytest.importorskip("distributed")
    import dask

    from rolechain.executor.dask.cluster import LOCAL_WORKER_CONFIG

    accounts = [f"4444444400{i:02d}" for i in range(12)]  # 24 units
    chain, info = served(accounts, sleep=0.2)
    # Worker processes are spawned with this process's sys.path (not $PYTHONPATH).
    monkeypatch.syspath_prepend(str(tmp_path))
    with dask.config.set(LOCAL_WORKER_CONFIG), distributed.LocalCluster(
        n_workers=1, threads_per_worker=3, processes=True, host="127.0.0.1",
        dashboard_address=":0", silence_logs=40, env=_env(tmp_path),
    ) as cluster:  # fmt: skip
        engine = ("--cluster", cluster.scheduler_address, "--batch-size", "2")
        moments = [1, 3, 5, 7, 9, 11, 13, 15]
        chosen = moments if backend == "sqlite" else moments[1::2]
        _crash_and_resume(tmp_path, chain, info, engine, accounts, chosen, make_store)


def test_resume_is_refused_when_the_job_changed(
    tmp_path: Path, served: Any, store_url: Path | str
) -> None:
    accounts = [f"5555555500{i:02d}" for i in range(6)]
    chain, _ = served(accounts)
    store = store_url
    _kill_after(_argv(chain, store, ()), tmp_path, 2)
    [crashed] = _history(store)
    chain.write_text(chain.read_text().replace('"555555550005"', '"555555550005", "555555550099"'))
    done = subprocess.run(
        _argv(chain, store, (), "--resume", crashed["run_id"]), capture_output=True, text=True,
        env=_env(tmp_path), cwd=tmp_path, timeout=WAIT, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "targets added: audit@555555550099" in done.stderr
    assert done.stdout == ""
    assert len(_history(store)) == 1  # nothing ran


def test_retry_failed_reruns_failed_and_unfinished_units(
    tmp_path: Path, served: Any, store_url: Path | str
) -> None:
    """--retry-failed runs the errors again too (here: a run cut by its deadline)."""
    accounts = [f"6666666600{i:02d}" for i in range(4)]
    chain, _ = served(accounts, concurrency=1)
    chain.write_text(chain.read_text().replace("sleep: 0.02", "sleep: 0.6"))
    assert "sleep: 0.6" in chain.read_text()
    store = store_url
    first = subprocess.run(
        _argv(chain, store, (), "--deadline", "2s"), capture_output=True, text=True,
        env=_env(tmp_path), cwd=tmp_path, timeout=WAIT, check=False,
    )  # fmt: skip
    assert first.returncode == 1, first.stderr
    [run] = _history(store)
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert any(r["error"] for r in records)
    assert not all(r["error"] for r in records)
    # A target the deadline stopped before its units existed has one record for both.
    left = sum(1 if r["task"] else len(REGIONS) for r in records if r["error"])
    chain.write_text(chain.read_text().replace("sleep: 0.6", "sleep: 0.01"))
    retried = subprocess.run(
        _argv(chain, store, (), "--retry-failed", run["run_id"]), capture_output=True,
        text=True, env=_env(tmp_path), cwd=tmp_path, timeout=WAIT, check=False,
    )  # fmt: skip
    assert retried.returncode == 0, retried.stderr
    redone = [json.loads(line) for line in retried.stdout.splitlines()]
    assert len(redone) == left
    assert all(r["status"] == "ok" for r in redone)
    assert _history(store)[0]["trigger"] == "retry-failed"


@pytest.mark.parametrize("where", ["stdout", "--output"])
def test_a_store_that_fills_up_mid_run_loses_no_record(
    tmp_path: Path, served: Any, where: str
) -> None:
    """The store's file hits the size limit (RLIMIT_FSIZE: as a full disk) after a few
    records: the run goes on, every record is on stdout and in --output, the error is said
    once with its fix, and the exit status is 3."""
    import resource

    accounts = [f"7777777700{i:02d}" for i in range(20)]  # 40 units
    chain, _ = served(accounts)
    store, output = tmp_path / "runs.db", tmp_path / "out.jsonl"

    def limit() -> None:  # runs in the child: files it writes stop growing at 160 kB
        resource.setrlimit(resource.RLIMIT_FSIZE, (160_000, 160_000))

    argv = _argv(chain, store, (), *(["--output", str(output)] if where == "--output" else []))
    argv[argv.index("--quiet")] = "--verbose"
    done = subprocess.run(
        argv, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=WAIT,
        check=False, preexec_fn=limit,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("cannot be written") == 1, done.stderr
    assert "Fix: free space on the disk holding" in done.stderr
    text = output.read_text() if where == "--output" else done.stdout
    written = [json.loads(line) for line in text.splitlines()]
    assert sorted(_units(written)) == sorted(
        (f"audit@{a}", region, "python") for a in accounts for region in REGIONS
    )
    [run] = _history(store)  # what the store has is consistent: a crashed run, resumable
    assert len(_stored(store, run["run_id"])) < len(written)

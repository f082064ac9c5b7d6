"""The Dask engine against the sandbox, on a LocalCluster of 2 worker processes.

Every run here is ``rolechain.run(..., engine=EngineOptions(kind="dask", cluster=...))``:
the same Run, records, summary and stop contract as the thread engine; the workers start
from the principal in their own environment.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import rolechain
from dask_engine.world import ACCOUNTS, Background, World, chain_text, python_task
from rolechain.aws.session import static_credentials
from rolechain.executor import EngineOptions, Record
from rolechain.model.loader import loads
from rolechain.results.store import Store

pytestmark = pytest.mark.slow


def dask(world: World, **options: Any) -> EngineOptions:
    return EngineOptions(kind="dask", cluster=world.address, **options)


def chain(text: str) -> Any:
    return loads(text, file="test.yaml")


def comparable(records: list[Record]) -> list[dict[str, Any]]:
    """Records without their timings, in a stable order."""
    rows = []
    for record in records:
        row = record.to_dict()
        row.pop("started_at")
        row.pop("duration_ms")
        rows.append(row)
    return sorted(rows, key=lambda r: (r["target"], r["region"] or "", r["task"] or ""))


def units(records: list[Record]) -> Counter[tuple[str, str | None, str | None]]:
    return Counter((r.target, r.region, r.task) for r in records)


def test_200_targets_give_the_thread_engines_records(
    world: World, principal_env: dict[str, str]
) -> None:
    job = chain(chain_text("inventory", ["sts.get_caller_identity", "s3.list_buckets"]))
    keys = static_credentials(
        principal_env["AWS_ACCESS_KEY_ID"], principal_env["AWS_SECRET_ACCESS_KEY"]
    )
    threads = rolechain.run(job, "inventory", run_id="r-same", credentials=keys)
    by_threads = list(threads)
    assert threads.summary.assume_calls == 201
    before = world.assume_calls()
    on_dask = rolechain.run(job, "inventory", run_id="r-same", engine=dask(world, batch_size=25))
    by_dask = list(on_dask)
    made = world.assume_calls() - before

    assert len(by_dask) == 400
    assert comparable(by_dask) == comparable(by_threads)
    summary = on_dask.summary
    assert (summary.status, summary.engine, summary.batches) == ("ok", "dask", 8)
    assert summary.targets_ok == 200
    # AssumeRole <= N + W x inner hops: 200 audit hops, the hub once per worker.
    assert 1 <= summary.workers <= 2
    assert summary.assume_bound == 200 + summary.workers
    # The bound is on hops assumed (first attempts); a retry of a transient error (a
    # keep-alive connection reset on a loaded machine) is counted apart, on top of it.
    first_attempts = summary.assume_calls - summary.assume_retries
    assert 201 <= first_attempts <= summary.assume_bound, summary
    assert first_attempts <= made <= summary.assume_calls  # as the sandbox answered them


def test_a_worker_killed_mid_run_has_its_batch_run_again_and_every_record_once(
    own_world: World, tmp_path: Path
) -> None:
    import os
    import signal

    world = own_world
    folder = tmp_path / "markers"
    folder.mkdir()
    slow = ACCOUNTS[12]  # in the second batch of ten
    job = chain(
        chain_text("work", [python_task(folder, {slow: "wait"})], accounts=40, concurrency=4)
    )
    before = world.assume_calls()
    background = Background(lambda _: rolechain.run(job, "work", engine=dask(world, batch_size=10)))
    run = background.run
    started = lambda: world.markers(folder, "started").get(slow, set())  # noqa: E731
    background.wait_for(lambda: len(started()) == 1, "the slow task to start")
    # Mid-batch: some units of the slow task's batch have finished on that worker.
    [victim] = started()
    batch = ACCOUNTS[10:20]
    done = lambda: [a for a in batch if victim in world.markers(folder, "done").get(a, ())]  # noqa: E731
    background.wait_for(lambda: len(done()) >= 3, "some of the batch's units to finish")
    os.kill(victim, signal.SIGKILL)
    (folder / "release").touch()
    records = background.join()

    assert units(records) == Counter(
        {(f"audit@{a}", "us-east-1", "python"): 1 for a in ACCOUNTS[:40]}
    )
    assert all(r.ok for r in records), [r.error for r in records if not r.ok]
    # The batch ran again on another worker process; its records came once.
    again = world.markers(folder, "started")
    assert len(again[slow]) == 2
    assert victim in again[slow]
    summary = run.summary
    assert summary.status == "ok"
    assert summary.duplicates_dropped == 0
    # The summary counts the calls of every worker process that sent records back; the
    # dead one's last calls died with it (the sandbox saw them), and the batch's hops were
    # assumed again where it ran again.
    assert 41 <= summary.assume_calls <= world.assume_calls() - before


def test_cancel_keeps_what_finished_and_interrupts_the_rest(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "markers"
    folder.mkdir()
    waiting = {a: "wait" for a in ACCOUNTS[:8]}  # the first two batches, one per worker
    job = chain(chain_text("work", [python_task(folder, waiting)], accounts=24, concurrency=4))
    background = Background(
        lambda store: rolechain.run(
            job, "work", engine=dask(world, batch_size=4), store=store, grace=60
        ),
        store=tmp_path / "runs.db",
    )
    run = background.run
    started = lambda: set(world.markers(folder, "started"))  # noqa: E731
    background.wait_for(lambda: len(started()) == 8, "both workers' batches to start")
    run.cancel("maintenance window")
    (folder / "release").touch()  # the tasks in flight finish within the grace
    records = background.join()

    by_target = {r.target: (r.error.code if r.error else r.status) for r in records}
    assert len(records) == len(by_target) == 24
    assert {t for t, s in by_target.items() if s == "ok"} == {f"audit@{a}" for a in ACCOUNTS[:8]}
    assert {s for t, s in by_target.items() if t not in {f"audit@{a}" for a in ACCOUNTS[:8]}} == {
        "Interrupted"
    }
    assert started() == set(ACCOUNTS[:8])  # the other batches never started
    summary = run.summary
    assert (summary.status, summary.stop_reason) == ("interrupted", "maintenance window")
    assert (summary.targets_ok, summary.targets_unfinished) == (8, 16)
    with Store(tmp_path / "runs.db") as db:
        [stored] = db.runs()
        assert (stored["status"], stored["records"]) == ("interrupted", 24)
        assert {
            r.target: (r.error.code if r.error else r.status) for r in db.records(stored["run_id"])
        } == by_target
    # Each worker forgot the run.
    from distributed import Client

    from rolechain.executor.dask.worker import runs_kept

    with Client(world.address) as client:
        kept = client.run(runs_kept)
    assert not any(key.startswith(run.plan.run_id) for keys in kept.values() for key in keys)


def test_task_timeouts_and_the_deadline_hold_on_workers(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "markers"
    folder.mkdir()
    stuck = python_task(folder, {ACCOUNTS[0]: "stuck"}, timeout="1s")
    job = chain(chain_text("work", [stuck], accounts=6, concurrency=3))
    run = rolechain.run(job, "work", engine=dask(world, batch_size=3))
    records = list(run)
    codes = {r.target: r.error.code if r.error else r.status for r in records}
    assert codes == {f"audit@{a}": "ok" for a in ACCOUNTS[1:6]} | {
        f"audit@{ACCOUNTS[0]}": "TaskTimeout"
    }
    assert run.summary.status == "failed"
    assert run.summary.abandoned == 1

    # A deadline: the tasks in flight wait forever, the rest have not started. The workers
    # are real processes, so the deadline is real time: long enough for the batches before
    # the waiting tasks to finish on a loaded machine. Each target's record follows from
    # whether its task started (its marker), not from how far the run got.
    folder = tmp_path / "late"
    folder.mkdir()
    waiting = {a: "wait" for a in ACCOUNTS[10:16]}
    job = chain(chain_text("late", [python_task(folder, waiting)], accounts=16, concurrency=3))
    run = rolechain.run(job, "late", engine=dask(world, batch_size=3), deadline=10)
    try:
        records = list(run)
    finally:
        (folder / "release").touch()
    codes = {r.target: r.error.code if r.error else r.status for r in records}
    assert len(records) == 16
    started = {path.name.split("-")[1] for path in folder.glob("started-*")}
    for account in ACCOUNTS[:16]:
        code = codes[f"audit@{account}"]
        if account not in started:
            assert code == "DeadlineExceeded", (account, codes)
        elif account in waiting:
            assert code == "TaskTimeout", (account, codes)  # cut off on a worker, by it
        else:
            assert code == "ok", (account, codes)
    assert "TaskTimeout" in codes.values()
    summary = run.summary
    assert (summary.status, summary.stop_reason) == ("deadline-exceeded", "deadline of 10s")
    assert summary.targets_ok + summary.targets_unfinished + summary.targets_failed == 16


def test_each_worker_takes_its_share_of_the_assume_rate(world: World) -> None:
    # Both workers up: one killed by an earlier test may still be starting again (slowly, on
    # a loaded machine), and a run launched meanwhile gives one worker the whole rate.
    world.cluster.wait_for_workers(2, timeout=90)
    job = chain(
        chain_text("inventory", ["sts.get_caller_identity"], accounts=20, concurrency=4).replace(
            "assume_rate: 100000", "assume_rate: 20"
        )
    )
    run = rolechain.run(job, "inventory", engine=dask(world, batch_size=5))
    assert all(r.ok for r in run)
    # Two workers, four batches: each paces AssumeRole at half the rate the file sets.
    assert run.summary.worker_pacing == "10/s (share 0.5)"
    # One lane per calling account, added up over the workers: the principal's account
    # assumed the hub (once per worker), the hub's account assumed the 20 audit roles.
    lanes = {lane["key"]: lane for lane in run.summary.pacing or []}
    assert set(lanes) == {"123456789012", "111111111111"}
    assert lanes["123456789012"]["calls"] == run.summary.workers
    assert lanes["111111111111"]["calls"] == 20
    assert run.summary.assume_calls == 20 + run.summary.workers


def test_a_target_that_kills_its_workers_fails_alone(own_world: World, tmp_path: Path) -> None:
    world = own_world
    folder = tmp_path / "markers"
    folder.mkdir()
    poison = ACCOUNTS[1]
    job = chain(chain_text("work", [python_task(folder, {poison: "kill"})], accounts=6))
    run = rolechain.run(job, "work", engine=dask(world, batch_size=3))
    records = list(run)
    codes = {r.target: r.error.code if r.error else r.status for r in records}
    assert len(records) == 6
    assert codes == {f"audit@{a}": "ok" for a in ACCOUNTS[:6] if a != poison} | {
        f"audit@{poison}": "WorkerLost"
    }
    summary = run.summary
    # The batch of three was split after its workers died: three more batches.
    assert summary.batches == 2 + 3
    assert summary.failed_targets == [f"audit@{poison}"]


def test_shipped_credentials_travel_only_over_tls(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import distributed

    from rolechain.errors import CredentialsError

    # This process, and so the workers of the local clusters the runs start, can reach the
    # sandbox but has no credentials.
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED"):
        monkeypatch.setenv(name, world.env[name])
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    addresses: list[str] = []

    class Spy(distributed.LocalCluster):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            addresses.append(self.scheduler_address)

    monkeypatch.setattr(distributed, "LocalCluster", Spy)
    job = chain(chain_text("inventory", ["sts.get_caller_identity"], accounts=4))

    # Credentials never travel unless asked: the worker has none of its own.
    with pytest.raises(CredentialsError, match="no starting credentials"):
        list(rolechain.run(job, "inventory", engine=EngineOptions("dask", workers=1)))
    keys = static_credentials(world.env["AWS_ACCESS_KEY_ID"], world.env["AWS_SECRET_ACCESS_KEY"])
    # Given to a run that starts its own local cluster, they are in its workers' environment
    # from the start (the processes are this machine's), never in a task.
    local = rolechain.run(
        job, "inventory", credentials=keys, engine=EngineOptions("dask", workers=1)
    )
    assert [r.status for r in local] == ["ok"] * 4
    shipped = EngineOptions("dask", workers=1, ship_credentials=True)
    run = rolechain.run(job, "inventory", credentials=keys, engine=shipped)
    records = list(run)
    assert [r.status for r in records] == ["ok"] * 4
    assert run.summary.assume_calls == 5
    # every local cluster talks TLS (issue 18), so the shipped keys went over TLS too
    assert len(addresses) == 3
    assert all(address.startswith("tls://") for address in addresses)

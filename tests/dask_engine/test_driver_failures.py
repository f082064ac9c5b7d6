"""The Dask driver says what went wrong instead of swallowing it: a feeder that cannot take
the next outcome from Dask fails the batches it was watching (instead of leaving the run
waiting for ever), a scheduler that cannot be asked for its workers is not read as "no
workers", and errors keep their cause. No cluster: fakes stand in for Dask's client."""

from __future__ import annotations

import logging
from queue import SimpleQueue
from typing import Any

import pytest

from aws.fakes import acct, hub_plan
from rolechain.errors import EngineError
from rolechain.executor import EngineOptions, Record, RunContext, RunOptions, Summary
from rolechain.executor.dask import driver
from rolechain.executor.dask.cluster import Cluster
from rolechain.executor.dask.driver import (
    CLUSTER_UNREACHABLE,
    LOST_TRACK,
    NO_WORKERS,
    NO_WORKERS_LIMIT,
    DaskLoop,
    DaskRunner,
)


class Sink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def start(self, plan: object) -> None: ...

    def add(self, record: Record) -> None:
        self.records.append(record)

    def finish(self, summary: Summary) -> None: ...


def loop_with(client: Any, targets: int = 3) -> tuple[DaskLoop, Sink]:
    plan = hub_plan([acct(i) for i in range(targets)])
    context = RunContext(plan, None, RunOptions(check_identity=False))
    sink = Sink()
    summary = Summary(job=plan.job, run_id=plan.run_id, targets=targets)
    loop = DaskLoop(DaskRunner(context, EngineOptions("dask"), summary=summary, sink=sink))
    loop._start_sink()
    loop.set_up = True
    loop.cluster.client = client
    return loop, sink


class Future:
    def __init__(self, key: str) -> None:
        self.key = key
        self.status = "pending"


def test_a_feeder_that_fails_says_so_and_the_batches_it_watched_fail() -> None:
    class Broken:
        def is_empty(self) -> bool:
            return False

        def __next__(self) -> Any:
            raise OSError("the comm to the scheduler was closed")

    queue: SimpleQueue[object] = SimpleQueue()
    feeder = driver._Feeder(client=object(), queue=queue)
    feeder.completed = Broken()
    feeder.running = True
    feeder._feed()  # returns: on the old code silently, with nothing on the queue
    item = queue.get_nowait()
    assert isinstance(item, driver._FeedFailed)
    assert "comm to the scheduler was closed" in str(item.error)
    assert feeder.running is False

    loop, sink = loop_with(client=object())
    sent, waiting = loop.ledger.add(loop.targets[:2]), loop.ledger.add(loop.targets[2:])
    loop.ledger.backlog.append(waiting)
    loop.ledger.sent_as(sent, Future(sent.key))
    for record, target in loop._handle(item):
        loop._emit(record, target)
    assert [r.target for r in sink.records] == [t.name for t in loop.targets[:2]]
    assert {r.error.code for r in sink.records if r.error} == {LOST_TRACK}
    assert "comm to the scheduler was closed" in sink.records[0].error.message  # type: ignore[union-attr]
    assert list(loop.ledger.pending) == [waiting.key]  # not sent yet: sent later, as usual
    assert loop.summary.targets_failed == 2


def test_a_feeder_failing_while_the_client_closes_is_the_end_of_the_run() -> None:
    loop, _ = loop_with(client=None)
    batch = loop.ledger.add(loop.targets)
    loop.ledger.sent_as(batch, Future(batch.key))
    assert loop._handle(driver._FeedFailed(RuntimeError("closing"))) == []
    assert batch.key in loop.ledger.pending  # the wind-down records it


def test_a_scheduler_that_cannot_say_its_workers_is_not_a_cluster_without_workers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unreachable:
        def nthreads(self) -> dict[str, int]:
            raise OSError("timed out talking to tcp://10.0.0.1:8786")

    loop, _ = loop_with(Unreachable())
    batch = loop.ledger.add(loop.targets)
    loop.ledger.sent_as(batch, Future(batch.key))
    loop.next_check = 0.0
    with caplog.at_level(logging.WARNING, logger=driver.__name__):
        assert loop._check_workers() == []  # within the limit: keep waiting
    assert "timed out talking" in caplog.text
    # As if the limit had passed since the first failed answer.
    assert loop.no_workers_since is not None
    loop.no_workers_since -= NO_WORKERS_LIMIT
    loop.next_check = 0.0
    out = loop._check_workers()
    assert len(out) == 3
    errors = {record.error.code for record, _ in out if record.error}
    assert errors == {CLUSTER_UNREACHABLE}  # the old code said NoWorkers
    assert "OSError: timed out talking to tcp://10.0.0.1:8786" in out[0][0].error.message  # type: ignore[union-attr]


def test_a_cluster_with_no_workers_still_says_so() -> None:
    class Empty:
        def nthreads(self) -> dict[str, int]:
            return {}

    loop, _ = loop_with(Empty())
    batch = loop.ledger.add(loop.targets)
    loop.ledger.sent_as(batch, Future(batch.key))
    loop.next_check = 0.0
    assert loop._check_workers() == []
    assert loop.no_workers_since is not None
    loop.no_workers_since -= NO_WORKERS_LIMIT
    loop.next_check = 0.0
    out = loop._check_workers()
    assert {record.error.code for record, _ in out if record.error} == {NO_WORKERS}


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (TimeoutError("no workers in 60s"), "has no worker"),
        (OSError("Connection refused"), "OSError: Connection refused"),
    ],
)
def test_waiting_for_workers_keeps_the_cause(
    raised: Exception, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Client:
        def wait_for_workers(self, n: int, timeout: float) -> None:
            raise raised

        def close(self) -> None: ...

    cluster = Cluster(EngineOptions("dask", cluster="tcp://127.0.0.1:1"))
    monkeypatch.setattr(cluster, "_client", lambda where: Client())
    with pytest.raises(EngineError, match=said) as caught:
        cluster.connect()
    assert caught.value.__cause__ is raised  # the old code dropped it (from None)


class KilledWorker(Exception):
    """Dask's error for a task whose workers kept dying (matched by name, as Dask's is)."""


def test_after_a_worker_dies_batches_wait_for_a_live_worker() -> None:
    """A batch that kills its worker is split, and its parts go out only as worker threads
    come back: none is queued on the surviving worker behind the innocent batch running
    there (the next death would be blamed on both). The old code refreshed the window from
    the cluster only every few seconds, and sent a part to the one live worker at once."""

    class Client:
        def __init__(self) -> None:
            self.workers = {"tcp://127.0.0.1:1": 1, "tcp://127.0.0.1:2": 1}
            self.submitted: list[str] = []

        def nthreads(self) -> dict[str, int]:
            return dict(self.workers)

        def submit(self, *args: Any, key: str, pure: bool) -> Future:
            self.submitted.append(key)
            return Future(key)

    class Feeder:
        def add(self, futures: list[Any]) -> None: ...

    client = Client()
    loop, sink = loop_with(client, targets=6)
    poisoned, innocent, last = (loop.targets[i : i + 2] for i in (0, 2, 4))
    loop.ledger.queue([poisoned, innocent, last])
    loop.feeder = Feeder()  # type: ignore[assignment]
    loop.window = 2  # as _launch found it
    loop._top_up()
    assert len(client.submitted) == 2  # two worker threads: two batches out
    first, second = client.submitted
    # The first batch's task killed a worker each time it ran: one worker is left.
    del client.workers["tcp://127.0.0.1:1"]
    assert loop._handle(driver._BatchDone(Future(first), KilledWorker("died twice"))) == []
    loop._look_around()
    assert client.submitted == [first, second]  # the old code sent a part here too
    # A worker is back (the nanny restarted it): one of the parts goes out.
    client.workers["tcp://127.0.0.1:3"] = 1
    loop._look_around()
    assert len(client.submitted) == 3
    assert len(loop.ledger.sent) == 2
    assert sink.records == []

"""The driver keeps one record per unit, whatever comes back: a batch's records arrive
together, a unit already recorded is dropped (and counted), a batch that comes back after
the run recorded it stopped is dropped whole, and a target the worker returned nothing for
still gets a record. No cluster: the driver's bookkeeping, fed by hand."""

from __future__ import annotations

from aws.fakes import acct, hub_plan
from rolechain.executor import EngineOptions, RunContext, RunOptions
from rolechain.executor.dask.driver import DaskLoop, DaskRunner
from rolechain.executor.dask.worker import BatchResult, WorkerInfo
from rolechain.executor.records import Record, Summary, unit_record
from rolechain.executor.units import units_for


def result(index: int, records: list[Record]) -> BatchResult:
    worker = WorkerInfo("tcp://w:1", "tcp://w:1/1", {"assume_calls": 3}, "")
    return BatchResult(index, tuple(records), worker)


def test_every_unit_once_whatever_comes_back() -> None:
    plan = hub_plan([acct(i) for i in range(4)])
    context = RunContext(plan, None, RunOptions(check_identity=False))
    summary = Summary(job=plan.job, run_id=plan.run_id, targets=4)
    stored: list[Record] = []

    class Sink:
        def start(self, plan: object) -> None: ...

        def add(self, record: Record) -> None:
            stored.append(record)

        def finish(self, summary: Summary) -> None: ...

    runner = DaskRunner(context, EngineOptions("dask"), summary=summary, sink=Sink())
    loop = DaskLoop(runner)
    loop.set_up = True
    a, b, c, d = plan.targets
    first = loop.ledger.add((a, b))
    second = loop.ledger.add((b, c))  # b again: as if a batch had run twice
    third = loop.ledger.add((d,))

    def ok(target: object) -> Record:
        [unit] = units_for(plan, target, plan.tasks[0], ("us-east-1",))  # type: ignore[arg-type]
        return unit_record(unit, {"fine": True}, None, "2026-01-01T00:00:00Z", 1)

    out = loop._accept(first, result(0, [ok(a), ok(b)]))
    out += loop._accept(second, result(1, [ok(b), ok(c)]))
    out += loop._accept(third, result(2, []))  # the worker sent nothing for d
    for entry in out:
        loop._emit(*entry)
    late = loop._done(type("F", (), {"key": first.key})(), result(0, [ok(a), ok(b)]))

    assert [r.target for r in stored] == [a.name, b.name, c.name, d.name]
    assert stored[-1].error is not None
    assert stored[-1].error.code == "NoRecord"
    assert late == []  # the batch was settled: its second coming is dropped whole
    assert (summary.duplicates_dropped, summary.late_results) == (1, 2)
    assert (summary.records, summary.targets_ok, summary.targets_failed) == (4, 3, 1)
    assert not loop.ledger.pending


def test_the_ledger_sends_within_the_window_and_splits_to_the_front() -> None:
    from rolechain.executor.dask.ledger import BatchLedger

    plan = hub_plan([acct(i) for i in range(5)])
    a, b, c, d, e = plan.targets
    ledger = BatchLedger("run-1")
    ledger.queue([(a, b), (c, d), (e,)])
    sent = list(ledger.to_send(0))
    assert sent == []
    first = next(ledger.to_send(1))
    ledger.sent_as(first, object())
    assert list(ledger.to_send(1)) == []  # the window is full
    parts = ledger.split(first)  # its workers kept dying: one batch per target, next
    assert [p.names for p in parts] == [(a.name,), (b.name,)]
    assert [batch.names for batch in ledger.backlog][:2] == [(a.name,), (b.name,)]
    assert first.settled
    assert first.key not in ledger.pending
    assert not ledger.sent
    assert [p.key for p in parts] == ["rolechain-batch-run-1-00003", "rolechain-batch-run-1-00004"]
    left = list(ledger.unsent())
    assert len(left) == 4
    assert not ledger.backlog
    for batch in left:
        ledger.settle(batch)
    assert not ledger.pending

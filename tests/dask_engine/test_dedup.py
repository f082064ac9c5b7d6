"""The driver keeps one record per unit, whatever comes back: a batch's records arrive
together, a unit already recorded is dropped (and counted), a batch that comes back after
the run recorded it stopped is dropped whole, and a target the worker returned nothing for
still gets a record. No cluster: the driver's bookkeeping, fed by hand."""

from __future__ import annotations

from aws.fakes import acct, hub_plan
from rolechain.executor import EngineOptions, RunContext, RunOptions
from rolechain.executor.dask_engine import DaskRunner, _Batch, _Schedule
from rolechain.executor.dask_worker import BatchResult, WorkerInfo
from rolechain.executor.records import Record, Summary
from rolechain.executor.runner import unit_record
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
    schedule = _Schedule(runner)
    schedule.set_up = True
    a, b, c, d = plan.targets
    first = _Batch("k0", 0, (a, b))
    second = _Batch("k1", 1, (b, c))  # b again: as if a batch had run twice
    third = _Batch("k2", 2, (d,))
    for batch in (first, second, third):
        schedule.batches[batch.key] = batch
        schedule.pending[batch.key] = batch

    def ok(target: object) -> Record:
        [unit] = units_for(plan, target, plan.tasks[0], ("us-east-1",))  # type: ignore[arg-type]
        return unit_record(unit, {"fine": True}, None, "2026-01-01T00:00:00Z", 1)

    out = schedule._accept(first, result(0, [ok(a), ok(b)]))
    out += schedule._accept(second, result(1, [ok(b), ok(c)]))
    out += schedule._accept(third, result(2, []))  # the worker sent nothing for d
    for entry in out:
        schedule._emit(*entry)
    late = schedule._done(type("F", (), {"key": "k0"})(), result(0, [ok(a), ok(b)]))

    assert [r.target for r in stored] == [a.name, b.name, c.name, d.name]
    assert stored[-1].error is not None
    assert stored[-1].error.code == "NoRecord"
    assert late == []  # the batch was settled: its second coming is dropped whole
    assert (summary.duplicates_dropped, summary.late_results) == (1, 2)
    assert (summary.records, summary.targets_ok, summary.targets_failed) == (4, 3, 1)
    assert not schedule.pending

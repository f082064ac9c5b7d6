"""A run is bounded in time, keeps what finished, and keeps each failure to its unit.

In-process, with the fake assumer (no AWS calls): tasks are ``python`` tasks whose
functions block on events the test controls. Run time is a :class:`~rolechain.clock.
ManualClock` the tasks move ("this task ran for two hours"), so a timeout or the deadline
passes while a given task runs, whatever the machine's load. The same behaviour through
real signals on a real ``rolechain run`` process is in tests/cli/test_signals.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aws.fakes import FakeClock, acct, fake_for, hub_plan
from rolechain.aws.session import AwsSessions
from rolechain.clock import ManualClock
from rolechain.executor import Record, Run, RunContext, RunOptions, run
from rolechain.planner.plan import Plan, TaskRef

from .moto_helpers import ROOT
from .test_api import ListSink

ACCOUNTS = [acct(i) for i in range(6)]
TARGETS = [f"audit@{a}" for a in ACCOUNTS]


class Tasks:
    """Behaviour per account for the ``python`` task ``rc_test_stop:task``.

    ``a3`` is target 3's first task; ``a3_other`` its second task (``job(second_task=True)``,
    which has no timeout); a target without behaviour returns its account id.
    """

    def __init__(self, behaviour: dict[str, Callable[[], Any]]) -> None:
        self.behaviour = behaviour
        self.started: dict[str, threading.Event] = {a: threading.Event() for a in ACCOUNTS}
        self.release = threading.Event()  # set at the end of every test: nothing leaks

    def __call__(self, session: Any, context: Any) -> Any:
        other = context.args.get("unit") == "other"
        if not other:
            self.started[context.account_id].set()
        action = self.behaviour.get(context.account_id + ("_other" if other else ""))
        return action() if action is not None else context.account_id


def _key(name: str) -> str:
    """``a3`` -> account 3's id; ``a3_other`` -> account 3's id + ``_other``."""
    index, _, rest = name[1:].partition("_")
    return acct(int(index)) + (f"_{rest}" if rest else "")


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Tasks]]:
    made: list[Tasks] = []

    def make(**behaviour: Callable[[], Any]) -> Tasks:
        found = Tasks({_key(name): action for name, action in behaviour.items()})
        module = types.ModuleType("rc_test_stop")
        module.task = found  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "rc_test_stop", module)
        made.append(found)
        return found

    yield make
    for found in made:
        found.release.set()


def job(
    concurrency: int = 2,
    timeout: int | None = None,
    accounts: list[str] = ACCOUNTS,
    *,
    second_task: bool = False,
) -> Plan:
    function = (("function", "rc_test_stop:task"),)
    tasks = (TaskRef("task", "python", function, timeout_seconds=timeout),)
    if second_task:
        tasks += (TaskRef("other", "python", (*function, ("args", {"unit": "other"}))),)
    return hub_plan(accounts, concurrency=concurrency, tasks=tasks)


def start(plan: Plan, sink: ListSink | None = None, **options: Any) -> Run:
    clock = FakeClock()
    return run(
        plan,
        credentials=ROOT,
        assumer=fake_for(plan, clock),
        clock=clock,
        aws_sessions=AwsSessions(),
        check_identity=False,
        store=sink,
        **options,
    )


def codes(records: list[Record]) -> dict[str, str]:
    return {r.target: (r.error.code if r.error else "ok") for r in records}


def wait_for(event: threading.Event) -> None:
    assert event.wait(60), "the task never started"


# -- timeouts free the slot ----------------------------------------------------------------


def test_a_timed_out_task_frees_its_slot_at_once(tasks) -> None:  # type: ignore[no-untyped-def]
    made = tasks()
    run_clock = ManualClock()

    def overrun() -> None:  # every task runs past its timeout, then never returns
        run_clock.advance(2)
        made.release.wait()

    made.behaviour = {a: overrun for a in ACCOUNTS}
    execution = start(job(concurrency=1, timeout=1, accounts=ACCOUNTS[:3]), run_clock=run_clock)
    records = list(execution)
    assert codes(records) == {t: "TaskTimeout" for t in TARGETS[:3]}
    assert all(r.duration_ms == 1000 for r in records)
    # One slot, three tasks that never return: each started while the ones before were
    # still running (given up on), so the slot was handed on at each timeout.
    starts = [r.started_at for r in records]
    assert starts == sorted(starts)
    summary = execution.summary
    assert (summary.abandoned, summary.still_running, summary.late_results) == (3, 3, 0)
    assert summary.targets_failed == 3
    assert summary.status == "failed"


def test_a_late_result_is_dropped_and_counted(tasks) -> None:  # type: ignore[no-untyped-def]
    execution: Run

    def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 60
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)

    def late() -> str:  # runs past its timeout; returns once the runner has given up on it
        run_clock.advance(2)
        until(lambda: execution.summary.abandoned >= 1)
        return "too late"

    def after_the_late_one() -> str:  # no timeout: waits until the late result is counted
        until(lambda: execution.summary.late_results >= 1)
        return "done"

    run_clock = ManualClock()
    tasks(a0=late, a0_other=after_the_late_one)
    plan = job(concurrency=1, timeout=1, accounts=ACCOUNTS[:1], second_task=True)
    execution = start(plan, run_clock=run_clock)
    records = list(execution)
    assert [(r.task, r.error.code if r.error else r.data) for r in records] == [
        ("task", "TaskTimeout"),
        ("other", "done"),
    ]
    summary = execution.summary
    assert (summary.abandoned, summary.late_results, summary.still_running) == (1, 1, 0)


def test_the_timeout_counts_from_the_task_not_from_assuming_the_hops(tasks) -> None:  # type: ignore[no-untyped-def]
    tasks()
    plan = job(concurrency=1, timeout=1, accounts=ACCOUNTS[:1])
    clock = FakeClock()
    fake = fake_for(plan, clock)
    slow_leaf = plan.hops[1].id
    run_clock = ManualClock()

    class SlowAssumer:
        stats = fake.stats

        def assume(self, hop, caller, token_code=None):  # type: ignore[no-untyped-def]
            if hop.id == slow_leaf:
                run_clock.advance(5)  # preparing the target outlasts the task's timeout
            return fake.assume(hop, caller, token_code)

    execution = run(
        plan,
        credentials=ROOT,
        assumer=SlowAssumer(),
        clock=clock,
        aws_sessions=AwsSessions(),
        check_identity=False,
        run_clock=run_clock,
    )
    assert codes(list(execution)) == {TARGETS[0]: "ok"}


# -- failures stay with their unit -----------------------------------------------------------


class Custom(BaseException):
    pass


def test_whatever_a_task_raises_is_its_own_record(tasks) -> None:  # type: ignore[no-untyped-def]
    def raiser(exc: BaseException) -> Callable[[], Any]:
        def go() -> Any:
            raise exc

        return go

    tasks(
        a0=lambda: sys.exit(3),
        a1=raiser(KeyboardInterrupt()),
        a2=raiser(GeneratorExit()),
        a3=raiser(Custom("odd")),
        a4=raiser(SystemExit("bye")),
    )
    sink = ListSink()
    execution = start(job(concurrency=2, second_task=True), sink)
    records = list(execution)
    assert len(records) == 12
    failed = {(r.target, r.error.code, r.error.message) for r in records if r.error}
    assert failed == {
        (TARGETS[0], "SystemExit", "the task called sys.exit(3)"),
        (TARGETS[1], "KeyboardInterrupt", "the task raised KeyboardInterrupt"),
        (TARGETS[2], "GeneratorExit", "the task raised GeneratorExit"),
        (TARGETS[3], "Custom", "the task raised Custom: odd"),
        (TARGETS[4], "SystemExit", "the task called sys.exit('bye')"),
    }
    summary = execution.summary
    assert (summary.targets_ok, summary.targets_failed, summary.stop) == (1, 5, None)
    assert sink.summary is summary
    assert len(sink.records) == 12


# -- cancelling -------------------------------------------------------------------------------


def test_cancel_keeps_what_finishes_in_the_grace_and_marks_the_rest(tasks) -> None:  # type: ignore[no-untyped-def]
    finish = threading.Event()
    made = tasks(a2=finish.wait, a3=lambda: made.release.wait())
    sink = ListSink()
    execution = start(job(concurrency=2), sink, grace=60)

    def stop() -> None:
        wait_for(made.started[ACCOUNTS[2]])
        wait_for(made.started[ACCOUNTS[3]])
        execution.cancel("the test")  # from another thread, with both tasks in flight
        finish.set()  # the first finishes within the grace
        deadline = time.monotonic() + 60
        while TARGETS[2] not in codes(sink.records) and time.monotonic() < deadline:
            time.sleep(0.01)
        execution.cancel("again", grace=0)  # the other never would: stop now

    helper = threading.Thread(target=stop)
    helper.start()
    records = list(execution)
    helper.join()
    assert codes(records) == {
        TARGETS[0]: "ok",
        TARGETS[1]: "ok",
        TARGETS[2]: "ok",  # finished during the grace: kept
        TARGETS[3]: "Interrupted",  # still running when the grace was cut short
        TARGETS[4]: "Interrupted",  # never started
        TARGETS[5]: "Interrupted",
    }
    assert not made.started[ACCOUNTS[4]].is_set()
    assert not made.started[ACCOUNTS[5]].is_set()
    assert sink.records == records
    summary = execution.summary
    assert execution.status == summary.status == "interrupted"
    assert summary.stop_reason == "the test"
    assert (summary.targets_ok, summary.targets_failed, summary.targets_unfinished) == (3, 0, 3)
    assert sink.summary is summary
    running = next(r for r in records if r.target == TARGETS[3])
    assert "grace period" in running.error.message
    assert execution.cancelled


def test_the_grace_runs_out(tasks) -> None:  # type: ignore[no-untyped-def]
    made = tasks(a0=lambda: made.release.wait())
    run_clock = ManualClock()
    execution = start(job(concurrency=1, accounts=ACCOUNTS[:2]), grace=30, run_clock=run_clock)

    ended = threading.Event()

    def cancel_then_let_time_pass() -> None:
        wait_for(made.started[ACCOUNTS[0]])
        execution.cancel("enough")
        while not ended.wait(0.01):
            run_clock.advance(5)

    helper = threading.Thread(target=cancel_then_let_time_pass)
    helper.start()
    try:
        records = list(execution)
    finally:
        ended.set()
        helper.join()
    assert codes(records) == {TARGETS[0]: "Interrupted", TARGETS[1]: "Interrupted"}
    assert execution.summary.elapsed_seconds >= 30  # the grace, on the run clock
    assert execution.summary.still_running == 1


def test_cancel_before_the_run_starts_calls_nothing(tasks) -> None:  # type: ignore[no-untyped-def]
    tasks()
    plan = job()
    clock = FakeClock()
    fake = fake_for(plan, clock)
    sink = ListSink()
    execution = run(
        plan, credentials=ROOT, assumer=fake, clock=clock, check_identity=False, store=sink
    )
    execution.cancel("not today")
    records = list(execution)
    assert codes(records) == {t: "Interrupted" for t in TARGETS}
    assert all(r.task is None for r in records)  # no unit was made: one record per target
    assert sum(fake.calls.values()) == 0
    assert sink.summary is not None
    assert sink.summary.status == "interrupted"


def test_a_consumer_that_stops_reading_still_gets_a_complete_store(tasks) -> None:  # type: ignore[no-untyped-def]
    made = tasks(a1=lambda: made.release.wait())
    sink = ListSink()
    execution = start(job(concurrency=1), sink)
    iterator = iter(execution)
    first = next(iterator)
    iterator.close()  # e.g. an exception in the caller's loop
    assert first.ok
    assert codes(sink.records) == {TARGETS[0]: "ok", **{t: "Interrupted" for t in TARGETS[1:]}}
    assert sink.summary is not None
    assert sink.summary.stop_reason == "the caller stopped reading records"


def test_keyboard_interrupt_in_the_consumers_thread(tasks) -> None:  # type: ignore[no-untyped-def]
    # A library caller without signal handlers: Ctrl-C raises KeyboardInterrupt in the thread
    # that waits for records. The run stops, the store is complete, the exception goes on.
    made = tasks(a0=lambda: made.release.wait())
    sink = ListSink()
    execution = start(job(concurrency=1, accounts=ACCOUNTS[:2]), sink)
    main = threading.get_ident()

    def interrupt() -> None:
        wait_for(made.started[ACCOUNTS[0]])
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt).start()
    with pytest.raises(KeyboardInterrupt):
        list(execution)
    assert codes(sink.records) == {TARGETS[0]: "Interrupted", TARGETS[1]: "Interrupted"}
    assert sink.summary is not None
    assert sink.summary.stop_reason == "KeyboardInterrupt"


# -- the deadline -----------------------------------------------------------------------------


def test_the_jobs_runtime_is_the_default_deadline(tasks) -> None:  # type: ignore[no-untyped-def]
    run_clock = ManualClock()

    def past_the_deadline() -> None:  # runs for two hours, and more
        run_clock.advance(7200)
        made.release.wait()

    made = tasks(a0=past_the_deadline)
    plan = dataclasses.replace(job(concurrency=1, second_task=True), runtime_seconds=3600)
    sink = ListSink()
    execution = start(plan, sink, run_clock=run_clock)
    assert execution.deadline == 3600
    records = list(execution)
    by_unit = {(r.target, r.task): r.error.code if r.error else "ok" for r in records}
    assert by_unit[(TARGETS[0], "task")] == "TaskTimeout"  # running at the deadline
    assert by_unit[(TARGETS[0], "other")] == "DeadlineExceeded"  # queued, never started
    assert {by_unit[(t, None)] for t in TARGETS[1:]} == {"DeadlineExceeded"}
    assert len(records) == 2 + 5
    summary = execution.summary
    assert summary.status == "deadline-exceeded"
    assert summary.stop_reason == "deadline of 1h"
    assert summary.elapsed_seconds == 7200  # on the run clock
    assert sink.records == records


def test_deadline_options() -> None:
    plan = dataclasses.replace(job(), runtime_seconds=3600)
    assert RunContext(plan).deadline == 3600
    assert RunContext(plan, options=RunOptions(deadline=60)).deadline == 60
    assert RunContext(plan, options=RunOptions(deadline=math.inf)).deadline is None
    assert RunContext(job()).deadline is None
    with pytest.raises(ValueError, match="deadline"):
        RunOptions(deadline=0)
    with pytest.raises(ValueError, match="grace"):
        RunOptions(grace=-1)


# -- exec tasks are stopped, not just left behind ---------------------------------------------


def test_an_exec_task_given_up_on_is_killed_with_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 120 & echo $$ $! > {pids}; wait"
    plan = hub_plan(
        ACCOUNTS[:1],
        concurrency=1,
        tasks=(TaskRef("cmd", "exec", (("shell", script),)),),
    )
    run_clock = ManualClock()
    execution = start(plan, deadline=3600, run_clock=run_clock)

    def the_deadline_passes_once_it_runs() -> None:
        limit = time.monotonic() + 60
        while not pids.exists() and time.monotonic() < limit:
            time.sleep(0.02)
        run_clock.advance(3600)

    helper = threading.Thread(target=the_deadline_passes_once_it_runs)
    helper.start()
    records = list(execution)
    helper.join()
    assert codes(records) == {TARGETS[0]: "TaskTimeout"}
    assert pids.exists()
    for pid in map(int, pids.read_text().split()):
        assert gone(pid), f"process {pid} is still running"


def test_an_exec_timeout_is_not_held_up_by_a_child_keeping_the_pipes(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    plan = hub_plan(
        ACCOUNTS[:1],
        concurrency=1,
        tasks=(
            TaskRef(
                "cmd",
                "exec",
                (("shell", f"sleep 120 & echo $! > {pids}; sleep 120"),),
                timeout_seconds=2,
            ),
        ),
    )
    execution = start(plan)
    [record] = list(execution)
    assert record.error is not None
    assert record.error.code == "TaskTimeout"
    assert record.data["exit_code"] is None
    assert execution.summary.abandoned == 0  # exec stopped itself; nothing was left behind
    assert gone(int(pids.read_text()))


def gone(pid: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False

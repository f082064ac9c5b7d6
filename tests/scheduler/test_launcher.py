"""The launcher: real runs (``rolechain.run``) against the sandbox, written to the store
with their trigger; stopped by cancel or by their deadline, whatever their tasks do."""

from __future__ import annotations

import json
import threading
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rolechain.aws.session import static_credentials
from rolechain.clock import ManualClock
from rolechain.executor.records import RunStatus
from rolechain.model.chain import Chain
from rolechain.model.loader import loads
from rolechain.results import store as store_module
from rolechain.results.store import Store
from rolechain.scheduler.launcher import ExecutorHandle, ExecutorLauncher
from rolechain.scheduler.types import (
    DEADLINE_EXCEEDED,
    ERROR,
    INTERRUPTED,
    OK,
    STATUSES,
    LaunchRequest,
    RunResult,
    Trigger,
)
from scheduler.fakes import record_codes

CHAIN = """
version: 1
settings: {{concurrency: 1}}
principals:
  bot: {{kind: user, account: "111111111111"}}
role_sets:
  audit:
    role_name: Audit
    trusts: [bot]
    accounts: ["333333333333", "444444444444", "555555555555"]
jobs:
  j:
    from: bot
    to: audit
    regions: [us-east-1]
    schedule: "@hourly"
    tasks:
      - task: python
        with: {{function: "scheduler.tasks:nap", args: {{seconds: {seconds}, {more}}}}}
"""

QUICK, HUNG, LAST = "audit@333333333333", "audit@444444444444", "audit@555555555555"
# The first target answers at once, the second never returns: concurrency 1 runs them in
# order, so a stop finds the first done, the second in flight and the third not started.
ONE_DONE_ONE_STUCK = 'quick: ["333333333333"], hang: ["444444444444"]'


def chain_of(seconds: float = 0, more: str = "") -> Chain:
    return loads(CHAIN.format(seconds=seconds, more=more), file="c.yaml")


@pytest.fixture(scope="module")
def sandboxed() -> Iterator[tuple[Chain, dict[str, str]]]:
    from rolechain.sandbox import sandbox

    chain = chain_of()
    with sandbox(chain) as info:
        yield chain, info.principals["bot"]


def launcher(
    store: Path | str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> ExecutorLauncher:
    monkeypatch.setenv("AWS_ENDPOINT_URL", env["AWS_ENDPOINT_URL"])
    creds = static_credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    return ExecutorLauncher(store, credentials_for=lambda c, j: creds, **kwargs)


def request(run_id: str, **kwargs: Any) -> LaunchRequest:
    when = datetime(2026, 6, 1, 3, tzinfo=UTC)
    return LaunchRequest("j", run_id, Trigger("schedule", when, when), **kwargs)


def launch(launch_with: ExecutorLauncher, chain: Chain, req: LaunchRequest) -> Any:
    done = threading.Event()
    handle = launch_with.launch(chain, req, done.set)
    assert done.wait(90), "the run did not end"
    assert handle.done
    return handle


def test_a_run_is_recorded_with_its_trigger(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    chain, env = sandboxed
    handle = launch(launcher(store_url, env, monkeypatch), chain, request("r1"))
    result = handle.result
    assert result.status == OK
    assert (result.targets, result.targets_ok, result.records) == (3, 3, 3)
    with Store(store_url) as store:
        (row,) = store.runs()
        assert row["status"] == OK
        assert row["trigger"] == "schedule"
        assert row["scheduled_for"] == "2026-06-01T03:00:00Z"
        assert row["records"] == 3
        assert len(list(store.records("r1"))) == 3


def test_only_the_requested_targets_run(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    chain, env = sandboxed
    req = request("r2", targets=("audit@444444444444",))
    result = launch(launcher(store_url, env, monkeypatch), chain, req).result
    assert result.status == OK
    assert result.targets == 1


def test_a_run_that_cannot_start_is_recorded_as_error(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    chain, _ = sandboxed
    for name in [n for n in list(__import__("os").environ) if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = launch(ExecutorLauncher(store_url), chain, request("r3")).result
    assert result.status == ERROR
    assert "no starting credentials" in (result.reason or "")
    with Store(store_url) as store:
        (row,) = store.runs()
        assert (row["status"], row["trigger"]) == (ERROR, "schedule")
        assert "no starting credentials" in row["reason"]


def wait_until(condition: typing.Callable[[], bool], what: str) -> None:
    done = threading.Event()
    for _ in range(1800):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_vocabulary_of_statuses() -> None:
    """The scheduler, the store and the run spell every status the same."""
    run_statuses = set(typing.get_args(RunStatus)) - {"running"}
    assert run_statuses <= set(STATUSES)
    assert set(STATUSES) <= set(store_module.STATUSES)
    assert set(store_module.RUN_STATUSES) == set(typing.get_args(RunStatus))


@pytest.mark.slow
def test_the_deadline_stops_the_run_and_keeps_what_finished(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    """The job's runtime (on the run's clock, whatever the schedule's time scale) is the
    run's deadline: the finished target is kept, the stuck task gets TaskTimeout, the one
    not started DeadlineExceeded, and both are to be retried. The run's hour passes on a
    manual clock once the stuck task is running."""
    _, env = sandboxed
    hanging = tmp_path / "hanging"
    chain = chain_of(more=f"{ONE_DONE_ONE_STUCK}, hanging: {json.dumps(str(hanging))}")
    run_clock = ManualClock()
    go = launcher(store_url, env, monkeypatch, time_scale=2.0, run_clock=run_clock)
    done = threading.Event()
    handle = go.launch(chain, request("r4", deadline=3600.0), done.set)
    wait_until(hanging.exists, "the stuck task")
    run_clock.advance(3599)  # not scaled by 2: the deadline is not there yet
    wait_until(lambda: handle.run is not None and handle.run.summary.targets_ok == 1, "a target")
    assert not done.wait(0.2)
    run_clock.advance(1)
    assert done.wait(90), "the run did not end"
    result = handle.result
    assert result.status == DEADLINE_EXCEEDED
    assert result.reason == "the job's runtime (1h) was reached"
    # the run's accounting: a task cut off by the deadline failed (TaskTimeout), a target
    # not started is unfinished; the scheduler retries both
    assert (result.targets, result.targets_ok, result.targets_failed) == (3, 1, 1)
    assert result.targets_unfinished == 1
    assert result.failed_targets == (HUNG, LAST)
    assert (result.records, result.records_failed) == (3, 2)
    assert (result.abandoned, result.still_running) == (1, 1)
    with Store(store_url) as store:
        (row,) = store.runs()
        assert (row["status"], row["reason"]) == (DEADLINE_EXCEEDED, result.reason)
        assert (row["targets_ok"], row["records"]) == (1, 3)
    assert record_codes(store_url, "r4") == ["ok", "TaskTimeout", "DeadlineExceeded"]


@pytest.mark.slow
def test_cancel_stops_a_run_whose_task_never_returns(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    """A cancel is Run.cancel: the task in flight gets the grace, then it and the target
    not started are recorded Interrupted; the run returns by itself (no backstop)."""
    _, env = sandboxed
    hanging = tmp_path / "hanging"
    chain = chain_of(more=f"{ONE_DONE_ONE_STUCK}, hanging: {json.dumps(str(hanging))}")
    run_clock = ManualClock()
    go = launcher(store_url, env, monkeypatch, grace=30, cancel_grace=600, run_clock=run_clock)
    done = threading.Event()
    handle = go.launch(chain, request("r5"), done.set)
    wait_until(hanging.exists, "the second target's task in flight")
    wait_until(lambda: handle.run is not None and handle.run.summary.targets_ok == 1, "a target")
    assert not done.is_set()
    handle.cancel("the scheduler is stopping")
    for _ in range(1800):  # the grace passes on the run's clock
        if done.wait(0.05):
            break
        run_clock.advance(5)
    assert done.is_set()
    result = handle.result
    assert (result.status, result.reason) == (INTERRUPTED, "the scheduler is stopping")
    assert (result.targets_ok, result.targets_unfinished, result.failed_targets) == (
        1,
        2,
        (HUNG, LAST),
    )
    assert result.still_running == 1
    with Store(store_url) as store:
        (row,) = store.runs()
        assert (row["status"], row["reason"]) == (INTERRUPTED, "the scheduler is stopping")
    assert record_codes(store_url, "r5") == ["ok", "Interrupted", "Interrupted"]


@pytest.mark.slow
def test_a_cancel_before_the_run_exists_applies_when_it_does(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    _, env = sandboxed
    monkeypatch.setenv("AWS_ENDPOINT_URL", env["AWS_ENDPOINT_URL"])
    creds = static_credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    asked, release = threading.Event(), threading.Event()

    def credentials_for(chain: Chain, job: str) -> Any:
        asked.set()  # the run is being made: the handle has no Run yet
        assert release.wait(60)
        return creds

    go = ExecutorLauncher(store_url, credentials_for=credentials_for)
    done = threading.Event()
    handle = go.launch(chain_of(), request("r6"), done.set)
    assert asked.wait(60)
    handle.cancel("replaced by the run scheduled for 2026-06-01T04:00:00Z")
    assert handle.run is None
    release.set()
    assert done.wait(90)
    result = handle.result
    assert result.status == INTERRUPTED
    assert (result.targets_ok, result.targets_unfinished, result.records) == (0, 3, 3)
    assert record_codes(store_url, "r6") == ["Interrupted"] * 3


class _Deaf:
    """A run whose iteration never ends and ignores cancel (what a bug would look like)."""

    def __init__(self, plan: Any) -> None:
        self.plan = plan
        self.summary: Any = None
        self.release = threading.Event()

    def cancel(self, reason: str, *, grace: float | None = None) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        assert self.release.wait(60)
        return iter(())


def test_the_backstop_gives_up_on_a_run_that_never_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    from rolechain import executor
    from rolechain.executor.records import Summary
    from rolechain.planner import plan

    chain = chain_of()
    deaf = _Deaf(plan(chain, "j", run_id="r7"))
    monkeypatch.setattr(executor, "run", lambda *args, **kwargs: deaf)
    go = ExecutorLauncher(store_url, grace=0.1, cancel_grace=0.2)
    done = threading.Event()
    handle: ExecutorHandle = go.launch(chain, request("r7"), done.set)
    handle.cancel("the scheduler is stopping")
    assert done.wait(30)
    given_up = handle.result
    assert given_up is not None
    assert given_up.status == INTERRUPTED
    assert "was given up on" in (given_up.reason or "")
    assert given_up.failed_targets == (QUICK, HUNG, LAST)
    with Store(store_url) as store:
        assert store.runs()[0]["status"] == INTERRUPTED
    # It comes back after all: the result stays as the scheduler saw it.
    deaf.summary = Summary(job="j", run_id="r7", targets=3, finished_at="x")
    deaf.summary.stop, deaf.summary.stop_reason = "interrupted", "late"
    deaf.release.set()
    with Store(store_url, reap=False) as db:
        wait_until(
            lambda: db.query("SELECT reason FROM runs") == [{"reason": "late"}], "the late write"
        )
    assert handle.result is given_up


def test_a_principal_planned_again_as_a_session_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    """As 'rolechain run' warns when user keys turn out to be a session (the plan is made
    again with the one-hour cap), the scheduler logs it for the run."""
    import dataclasses
    import io

    from rolechain import executor
    from rolechain.aws.identity import SESSION_NOTE
    from rolechain.executor.records import Summary
    from rolechain.planner import plan
    from rolechain.planner.plan import Note
    from rolechain.scheduler.logs import EventLog

    chain = chain_of()
    planned = plan(chain, "j", run_id="r8")
    note = Note(kind=SESSION_NOTE, message="principal 'bot' is a session; planned again")
    resolved = dataclasses.replace(planned, notes=(note,))

    class Resolving:
        def __init__(self, on_plan: Any) -> None:
            self.plan, self.on_plan = planned, on_plan
            self.summary = Summary(job="j", run_id="r8", finished_at="x")

        def cancel(self, reason: str, *, grace: float | None = None) -> None:
            pass

        def __iter__(self) -> Iterator[Any]:
            self.on_plan(resolved)
            return iter(())

    monkeypatch.setattr(executor, "run", lambda *a, **kw: Resolving(kw["on_plan"]))
    out = io.StringIO()
    go = ExecutorLauncher(store_url, log=EventLog(out))
    launch(go, chain, request("r8"))
    (line,) = out.getvalue().splitlines()
    assert line.startswith("WARNING plan_note job=j run_id=r8 note=")
    assert "planned again" in line


def test_a_rehearsal_scales_the_schedule_not_the_runs_runtime(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch, store_url: Path | str
) -> None:
    """--time-scale compresses the schedule; a run's AWS calls take real time, so its
    runtime stays in real seconds (a 30m runtime at scale 3600 is not half a second)."""
    import rolechain.executor

    chain, env = sandboxed
    seen: list[float] = []
    real_run = rolechain.executor.run

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["deadline"])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(rolechain.executor, "run", spy)
    go = launcher(store_url, env, monkeypatch, time_scale=3600.0)
    handle = launch(go, chain, request("r9", deadline=1800.0))
    assert handle.result.status == OK
    assert seen == [1800.0]


def test_run_finished_seconds_are_the_runs_own_real_seconds() -> None:
    from rolechain.scheduler.engine import run_seconds

    result = RunResult("r", "j", OK, started_at="2026-06-01T03:00:00+00:00",
                       finished_at="2026-06-01T03:00:02.500000+00:00")  # fmt: skip
    assert run_seconds(result) == 2.5
    assert run_seconds(RunResult("r", "j", OK)) is None

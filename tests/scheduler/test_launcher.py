"""The launcher: real runs (``rolechain.run``) against the sandbox, written to the store
with their trigger; stopped by cancel or by their deadline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rolechain.aws.session import static_credentials
from rolechain.model.chain import Chain
from rolechain.model.loader import loads
from rolechain.results.store import Store
from rolechain.scheduler.launcher import ExecutorLauncher
from rolechain.scheduler.types import (
    DEADLINE_EXCEEDED,
    ERROR,
    INTERRUPTED,
    OK,
    LaunchRequest,
    Trigger,
)

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
        with: {{function: "scheduler.tasks:nap", args: {{seconds: {seconds}}}}}
"""


@pytest.fixture(scope="module")
def sandboxed() -> Iterator[tuple[Chain, dict[str, str]]]:
    from rolechain.sandbox import sandbox

    chain = loads(CHAIN.format(seconds=0), file="c.yaml")
    with sandbox(chain) as info:
        yield chain, info.principals["bot"]


def launcher(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **kwargs: Any
) -> ExecutorLauncher:
    monkeypatch.setenv("AWS_ENDPOINT_URL", env["AWS_ENDPOINT_URL"])
    creds = static_credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    return ExecutorLauncher(tmp_path / "runs.db", credentials_for=lambda c, j: creds, **kwargs)


def request(run_id: str, **kwargs: Any) -> LaunchRequest:
    when = datetime(2026, 6, 1, 3, tzinfo=UTC)
    return LaunchRequest("j", run_id, Trigger("schedule", when, when), **kwargs)


def launch(launch_with: ExecutorLauncher, chain: Chain, req: LaunchRequest) -> Any:
    done = threading.Event()
    handle = launch_with.launch(chain, req, done.set)
    assert done.wait(60), "the run did not end"
    assert handle.done
    return handle


def test_a_run_is_recorded_with_its_trigger(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, env = sandboxed
    handle = launch(launcher(tmp_path, env, monkeypatch), chain, request("r1"))
    result = handle.result
    assert result.status == OK
    assert (result.targets, result.targets_ok, result.records) == (3, 3, 3)
    with Store(tmp_path / "runs.db") as store:
        (row,) = store.runs()
        assert row["status"] == OK
        assert row["trigger"] == "schedule"
        assert row["scheduled_for"] == "2026-06-01T03:00:00Z"
        assert row["records"] == 3
        assert len(list(store.records("r1"))) == 3


def test_only_the_requested_targets_run(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, env = sandboxed
    req = request("r2", targets=("audit@444444444444",))
    result = launch(launcher(tmp_path, env, monkeypatch), chain, req).result
    assert result.status == OK
    assert result.targets == 1


def test_a_run_that_cannot_start_is_recorded_as_error(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, _ = sandboxed
    for name in [n for n in list(__import__("os").environ) if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = launch(ExecutorLauncher(tmp_path / "runs.db"), chain, request("r3")).result
    assert result.status == ERROR
    assert "no starting credentials" in (result.reason or "")
    with Store(tmp_path / "runs.db") as store:
        (row,) = store.runs()
        assert (row["status"], row["trigger"]) == (ERROR, "schedule")
        assert "no starting credentials" in row["reason"]


@pytest.mark.slow
def test_the_deadline_stops_the_run_and_keeps_what_finished(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, env = sandboxed
    chain = loads(CHAIN.format(seconds=1.5), file="c.yaml")
    result = launch(launcher(tmp_path, env, monkeypatch), chain, request("r4", deadline=2.0)).result
    assert result.status == DEADLINE_EXCEEDED
    assert "runtime" in (result.reason or "")
    assert 1 <= result.targets_ok < 3
    assert len(result.failed_targets) == 3 - result.targets_ok  # never finished: to retry
    with Store(tmp_path / "runs.db") as store:
        (row,) = store.runs()
        assert row["status"] == DEADLINE_EXCEEDED
        assert len(list(store.records("r4"))) == result.records == result.targets_ok


@pytest.mark.slow
def test_a_cancelled_run_that_does_not_stop_is_given_up_on(
    tmp_path: Path, sandboxed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, env = sandboxed
    chain = loads(CHAIN.format(seconds=20), file="c.yaml")
    go = launcher(tmp_path, env, monkeypatch, cancel_grace=0.5)
    done = threading.Event()
    handle = go.launch(chain, request("r5"), done.set)
    assert not done.wait(1.0)
    handle.cancel("the scheduler is stopping")
    assert done.wait(30)
    assert handle.result.status == INTERRUPTED
    assert handle.result.failed_targets  # nothing finished: every target is to be retried
    with Store(tmp_path / "runs.db") as store:
        (row,) = store.runs()
        assert row["status"] == INTERRUPTED
        assert row["reason"] == "the scheduler is stopping"

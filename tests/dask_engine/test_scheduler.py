"""The scheduler runs a job on the engine its chain file's settings name, with no code of
its own: its launcher builds each run with ``rolechain.run`` (no engine argument), and the
run picks the engine from ``settings.engine``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dask_engine.world import World, chain_text
from rolechain.model.loader import loads
from rolechain.results.store import Store
from rolechain.scheduler.launcher import ExecutorLauncher
from rolechain.scheduler.types import OK, LaunchRequest, Trigger

pytestmark = pytest.mark.slow


def test_a_scheduled_run_uses_the_engine_its_settings_name(world: World, tmp_path: Path) -> None:
    settings = f"  engine: {{kind: dask, cluster: '{world.address}', batch_size: 4}}"
    text = chain_text("nightly", ["sts.get_caller_identity"], accounts=10, settings=settings)
    chain = loads(text.replace("    tasks:", '    schedule: "@daily"\n    tasks:'), file="c.yaml")
    # No credentials from the scheduler: each worker starts from its own environment.
    launcher = ExecutorLauncher(tmp_path / "runs.db")
    when = datetime(2026, 6, 1, 3, tzinfo=UTC)
    done = threading.Event()
    handle = launcher.launch(
        chain, LaunchRequest("nightly", "r-nightly", Trigger("schedule", when, when)), done.set
    )
    assert done.wait(120), "the run did not end"
    result = handle.result
    assert result is not None
    assert (result.status, result.targets_ok, result.records) == (OK, 10, 10)
    assert handle.run is not None
    summary = handle.run.summary
    assert (summary.engine, summary.batches) == ("dask", 3)
    assert summary.assume_calls <= summary.assume_bound
    with Store(tmp_path / "runs.db") as store:
        (row,) = store.runs()
        assert (row["status"], row["records"], row["trigger"]) == (OK, 10, "schedule")
        assert len(list(store.records("r-nightly"))) == 10

"""Fixtures of the Dask engine's tests: one sandbox and one 2-process cluster for the
package (closed after its last test, so that the rest of the suite runs without them)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("distributed")
pytest.importorskip("moto")

from dask_engine.world import ACCOUNTS, HUB, TASKS, World, chain_text, worker_env


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import dask
    from distributed import LocalCluster

    from rolechain.executor.dask.cluster import LOCAL_WORKER_CONFIG
    from rolechain.model.loader import loads
    from rolechain.sandbox import sandbox

    folder = tmp_path_factory.mktemp("dask")
    (folder / "rc_dask_tasks.py").write_text(TASKS)
    sys.path.insert(0, str(folder))
    chain = loads(chain_text("inventory", ["sts.get_caller_identity"]), file="world.yaml")
    with sandbox(chain) as info, dask.config.set(LOCAL_WORKER_CONFIG):
        env = worker_env(info.principals["ci"], folder)
        cluster = _cluster(LocalCluster, env)
        try:
            yield World(info, env, folder, cluster)
        finally:
            cluster.close()
            sys.path.remove(str(folder))


def _cluster(local_cluster: Any, env: dict[str, str]) -> Any:
    return local_cluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=logging.ERROR,
        env=env,
        # A task may kill its worker once and still run (on another worker); twice, and
        # it is a KilledWorker (Dask's default is 3: the same, with more restarts).
        scheduler_kwargs={"allowed_failures": 1},
    )


@pytest.fixture
def own_world(world: World) -> Iterator[World]:
    """The shared sandbox with a 2-worker cluster of the test's own, for a test that kills
    workers: the nanny may take minutes to bring a killed worker back on a loaded machine,
    and the shared cluster's next tests need both."""
    import dask
    from distributed import LocalCluster

    from rolechain.executor.dask.cluster import LOCAL_WORKER_CONFIG

    with dask.config.set(LOCAL_WORKER_CONFIG):
        cluster = _cluster(LocalCluster, world.env)
    try:
        yield World(world.sandbox, world.env, world.folder, cluster)
    finally:
        cluster.close()


@pytest.fixture
def principal_env(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process's environment as the principal's (for the thread engine's runs)."""
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in world.env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return world.env


__all__ = ["ACCOUNTS", "HUB"]

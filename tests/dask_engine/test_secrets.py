"""No secret reaches what Dask keeps, shows or logs: task keys and names, the task graph
(as text and as the pickled task data the scheduler holds), the scheduler's, workers' and
nannies' logs, the dashboard's pages, exceptions, and the run's records and store.

Every secret the run held is known: a worker plugin captures each AssumeRole response on
the workers, and the principal's secret key is in the workers' environment (never sent).
"""

from __future__ import annotations

import logging
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import rolechain
from dask_engine.world import ACCOUNTS, Background, World, chain_text, python_task
from rolechain.executor import EngineOptions
from rolechain.model.loader import loads

pytestmark = pytest.mark.slow


def _debug_logging(level: int) -> None:
    logging.getLogger("distributed").setLevel(level)


def _graph(dask_scheduler: object) -> tuple[list[str], list[bytes]]:
    plugin = dask_scheduler.plugins["rc-graph-log"]  # type: ignore[attr-defined]
    return list(plugin.texts), list(plugin.blobs)


def _page(base: str, path: str) -> str:
    with urllib.request.urlopen(f"{base}/{path}", timeout=30) as response:
        return response.read().decode("utf-8", "replace")


def test_no_secret_in_keys_graph_logs_dashboard_or_records(world: World, tmp_path: Path) -> None:
    from distributed import Client
    from rc_dask_tasks import CaptureSecrets, GraphLog, captured  # type: ignore[import-not-found]

    folder = tmp_path / "markers"
    folder.mkdir()
    plan = {ACCOUNTS[0]: "wait", ACCOUNTS[5]: "wait", ACCOUNTS[7]: "fail", ACCOUNTS[9]: "print"}
    job = loads(chain_text("work", [python_task(folder, plan)], accounts=20), file="t.yaml")
    base = world.cluster.dashboard_link.rsplit("/status", 1)[0]
    with Client(world.address) as client:
        client.register_plugin(CaptureSecrets())
        client.register_plugin(GraphLog())
        client.run(_debug_logging, logging.DEBUG)
        client.run_on_scheduler(_debug_logging, logging.DEBUG)
        try:
            background = Background(
                lambda store: rolechain.run(
                    job,
                    "work",
                    engine=EngineOptions(kind="dask", cluster=world.address, batch_size=5),
                    store=store,
                ),
                store=tmp_path / "runs.db",
            )
            running = lambda: world.markers(folder, "started").keys() >= {ACCOUNTS[0], ACCOUNTS[5]}  # noqa: E731
            background.wait_for(running, "two batches in flight")
            # The dashboard while tasks run: each task's page and call stack.
            shown = []
            for worker, keys in client.processing().items():
                for key in keys:
                    quoted = urllib.parse.quote(str(key), safe="")
                    shown.append(_page(base, f"info/task/{quoted}.html"))
                    shown.append(_page(base, f"info/call-stack/{quoted}.html"))
                quoted = urllib.parse.quote(worker, safe="")
                for page in ("worker", "logs", "call-stacks"):
                    shown.append(_page(base, f"info/{page}/{quoted}.html"))
            (folder / "release").touch()
            records = background.join()
            shown += [_page(base, p) for p in ("info/main/workers.html", "info/main/logs.html")]
            secrets = [s for found in client.run(captured).values() for s in found]
            texts, blobs = client.run_on_scheduler(_graph)
            logs = [client.get_scheduler_logs(n=100_000)]
            logs.append(client.get_worker_logs(n=100_000))
            logs.append(client.get_worker_logs(n=100_000, nanny=True))
        finally:
            client.run(_debug_logging, logging.WARNING)
            client.run_on_scheduler(_debug_logging, logging.WARNING)
            client.unregister_worker_plugin(CaptureSecrets.name)
            client.unregister_scheduler_plugin(GraphLog.name)

    assert len(records) == 20
    assert [r.error.code for r in records if r.error] == ["RuntimeError"]
    assert len(secrets) >= 2 * 21  # a secret key and a session token for every hop
    assert any("rolechain-batch-" in text for text in texts)  # the graph was seen
    written = "\n".join(
        [
            *texts,
            *shown,
            *(str(log) for log in logs),
            *(str(r.to_dict()) for r in records),
            str(background.run.summary),
            (tmp_path / "runs.db").read_bytes().decode("latin-1"),
        ]
    )
    for secret in [*secrets, world.env["AWS_SECRET_ACCESS_KEY"]]:
        assert secret not in written
        assert not any(secret.encode() in blob for blob in blobs)  # credentials never travel

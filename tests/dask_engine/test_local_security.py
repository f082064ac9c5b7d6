"""A local cluster's workers hold the principal's credentials: nobody else may reach them.

The local cluster a run starts talks TLS with a temporary certificate only this process and
its workers hold, and serves no dashboard (on 127.0.0.1 when asked for one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from rolechain.executor.dask.cluster import Cluster
from rolechain.executor.options import EngineOptions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local() -> Iterator[Cluster]:
    cluster = Cluster(EngineOptions(kind="dask", workers=1), {"SECRET_MARKER": "w0rker-key"})
    cluster.connect()
    try:
        yield cluster
    finally:
        cluster.close()


def _secret() -> str:
    return os.environ.get("SECRET_MARKER", "")


def test_the_owner_reaches_the_workers(local: Cluster) -> None:
    assert local.cluster.scheduler_address.startswith("tls://127.0.0.1:")
    assert list(local.client.run(_secret).values()) == ["w0rker-key"]


OUTSIDER = """
import os, sys
from distributed import Client, Security
address, how = sys.argv[1], sys.argv[2]
security = Security.temporary() if how == "own-certificate" else None
client = Client(address, security=security, timeout=10)
print(client.run(lambda: os.environ.get("SECRET_MARKER")))
"""


def test_an_outsider_is_refused(local: Cluster) -> None:
    """Another process that knows only the scheduler's address (as in the issue's proof,
    ``Client(addr).run(lambda: os.environ[...])``) gets nothing."""
    address = local.cluster.scheduler_address
    attempts = {
        "plain": address,  # a plain Client: no certificate at all
        "plain-tcp": address.replace("tls://", "tcp://"),  # plain TCP to the same port
        "own-certificate": address,  # TLS, but a certificate the cluster did not make
    }
    for how, where in attempts.items():
        done = subprocess.run(
            [sys.executable, "-c", OUTSIDER, where, how],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode != 0, (how, done.stdout)
        assert "w0rker-key" not in done.stdout + done.stderr, how


def test_no_dashboard_and_no_info_pages(local: Cluster) -> None:
    assert local.dashboard is None
    port = local.cluster.scheduler_info["services"].get("dashboard")
    if port is None:
        return
    for page in ("status", "info/main/workers.html", "metrics"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/{page}", timeout=10)
        assert caught.value.code == 404


def test_a_dashboard_when_asked_for_is_on_loopback() -> None:
    cluster = Cluster(EngineOptions(kind="dask", workers=1, dashboard=True))
    cluster.connect()
    try:
        link = cluster.dashboard
        assert link is not None
        assert link.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(link, timeout=30) as page:
            assert page.status == 200
    finally:
        cluster.close()

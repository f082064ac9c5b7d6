"""A local cluster's workers hold the principal's credentials: nobody else may reach them.

The local cluster a run starts talks TLS with a temporary certificate only this process and
its workers hold, and serves no dashboard (on 127.0.0.1 when asked for one).
"""

from __future__ import annotations

import os
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


def _as_outsider(where: str, security: object) -> object:
    """Connect without the run's certificate and ask the workers for the secret."""
    from distributed import Client

    client = Client(where, security=security, timeout=10)
    try:
        return client.run(_secret)
    finally:
        client.close()


def test_an_outsider_is_refused(local: Cluster) -> None:
    from distributed import Security

    address = local.cluster.scheduler_address
    attempts = {
        "plain client, no certificates": (address, None),
        "plain TCP to the same port": (address.replace("tls://", "tcp://"), None),
        "a certificate of its own": (address, Security.temporary()),
    }
    for name, (where, security) in attempts.items():
        with pytest.raises(Exception) as refused:  # noqa: PT011 - any refusal will do
            _as_outsider(where, security)
        assert "w0rker-key" not in str(refused.value), name


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

"""The Dask cluster of a run: a client connected to an existing scheduler, or a local
cluster of worker processes the run starts (and closes after it).

Connecting happens on a thread the driver may give up on (a cancel, the deadline), so
:class:`Cluster` keeps what it makes under a lock and closes whatever arrives after it was
given up on. What fails says why, with the cause chained: a cluster that has no worker is
told apart from one that cannot be reached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

from rolechain.errors import EngineError
from rolechain.executor.context import RunContext
from rolechain.executor.dask.worker import LocalWorkerSetup
from rolechain.executor.options import EngineOptions

CONNECT_TIMEOUT = 30.0  # seconds to reach an existing scheduler
WORKER_WAIT = 60.0  # seconds to wait for the first worker of an existing cluster
# Dask config for the workers of a local cluster a run starts. Dask's statistical profiler
# calls sys._current_frames() every 10 ms on each worker; on CPython 3.11 before 3.11.9
# that call can deadlock the whole process against the garbage collector when many threads
# run (CPython gh-106883): seen here on 3.11.7, a worker of `make bench` froze for good,
# and so did the worker Dask started in its place. A local cluster's dashboard is never
# looked at, so the profiler is off (it also costs CPU); docs/scaling.md says what to do
# on a cluster of your own.
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
# Without the dashboard, Dask's scheduler and workers still start an HTTP server (on the
# cluster's host, 127.0.0.1) for their info pages and metrics: they serve nothing.
NO_HTTP_ROUTES: dict[str, Any] = {
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}


def security_for(engine: EngineOptions, *, shipping: bool) -> Any:
    """The ``distributed.Security`` to connect with (Dask's configuration by default);
    when credentials are shipped, refuse anything but a TLS connection with certificates."""
    from distributed import Security

    security = engine.security if engine.security is not None else Security()
    if not shipping:
        return security
    address = engine.cluster or ""
    if not address.startswith("tls://"):
        raise EngineError(
            f"--ship-credentials needs a TLS connection to the cluster, and {address!r} is "
            "not tls://",
            hint="connect with tls:// and TLS certificates (Dask's distributed.comm.tls.* "
            "settings or Security), or let each worker start from its own credentials",
        )
    if security.get_connection_args("client").get("ssl_context") is None:
        raise EngineError(
            "--ship-credentials needs TLS certificates for the connection to "
            f"{address}, and none are configured",
            hint="set distributed.comm.tls.ca-file, client.cert and client.key (e.g. "
            "DASK_DISTRIBUTED__COMM__TLS__CA_FILE) or pass security=Security(...)",
        )
    return security


class Cluster:
    """The client (and the local cluster, if the run started one), made on a thread that
    the driver may give up on: whatever it makes after that is closed at once."""

    def __init__(self, engine: EngineOptions, worker_env: dict[str, str] | None = None) -> None:
        self.engine = engine
        self.worker_env = worker_env  # for the processes of a local cluster
        self.lock = threading.Lock()
        self.abandoned = False
        self.client: Any = None
        self.cluster: Any = None
        self.workers = 0  # worker processes when connected

    def connect(self) -> None:
        engine = self.engine
        if engine.local:
            cluster = self._local()
            if not self._keep(cluster=cluster):
                return
            client = self._client(cluster)
        else:
            client = self._client(engine.cluster)
            if not self._keep(client=client):
                return
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT)
            except TimeoutError as exc:
                raise EngineError(
                    f"the Dask cluster at {engine.cluster} has no worker (waited {WORKER_WAIT:g}s)",
                    hint="start workers ('dask worker ADDRESS --nthreads 1') or check the address",
                ) from exc
            except Exception as exc:  # not a missing worker: say what it was
                raise EngineError(
                    f"cannot wait for the workers of the Dask cluster at {engine.cluster}: "
                    f"{type(exc).__name__}: {exc}",
                    hint="check that the scheduler is running and reachable",
                ) from exc
        self._keep(client=client)
        self.workers = len(client.nthreads())

    def _local(self) -> Any:
        import dask
        from distributed import LocalCluster, Security

        engine = self.engine
        # Always TLS with a temporary certificate and key that only this process and the
        # workers it starts hold: the workers carry the principal's credentials, and plain
        # TCP would let any local process that finds the port run code on them. No
        # dashboard unless asked for, and then on loopback only.
        security = Security.temporary()
        try:
            # The nannies hand this config to every worker process they start (restarts
            # too). LOCAL_WORKER_CONFIG: no statistical profiler (see there).
            with dask.config.set({**LOCAL_WORKER_CONFIG,
                                  **({} if engine.dashboard else NO_HTTP_ROUTES)}):  # fmt: skip
                return LocalCluster(
                    n_workers=engine.workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    scheduler_port=0,
                    dashboard_address="127.0.0.1:0" if engine.dashboard else None,
                    silence_logs=logging.ERROR,
                    protocol="tls://",
                    security=security,
                    env=self.worker_env or {},
                )
        except Exception as exc:
            raise EngineError(
                f"cannot start a local Dask cluster: {type(exc).__name__}: {exc}",
                hint="a script that runs the dask engine with local workers must start it "
                "under 'if __name__ == \"__main__\":' (workers re-import the main module)",
            ) from exc

    def _client(self, where: Any) -> Any:
        from distributed import Client

        engine = self.engine
        try:
            if isinstance(where, str):
                security = security_for(engine, shipping=engine.ship_credentials)
                client = Client(where, security=security, timeout=CONNECT_TIMEOUT)
            else:
                client = Client(where)
        except EngineError:
            raise
        except Exception as exc:
            address = where if isinstance(where, str) else where.scheduler_address
            raise EngineError(
                f"cannot connect to the Dask scheduler at {address}: {type(exc).__name__}: {exc}",
                hint="check the address and that the scheduler is running",
            ) from exc
        if engine.local:
            client.register_plugin(LocalWorkerSetup())
        return client

    def _keep(self, *, client: Any = None, cluster: Any = None) -> bool:
        with self.lock:
            if not self.abandoned:
                if client is not None:
                    self.client = client
                if cluster is not None:
                    self.cluster = cluster
                return True
        _close(client, cluster)
        return False

    def close(self) -> None:
        with self.lock:
            self.abandoned = True
            client, cluster = self.client, self.cluster
            self.client = self.cluster = None
        _close(client, cluster)

    @property
    def dashboard(self) -> str | None:
        client = self.client
        if client is None or (self.engine.local and not self.engine.dashboard):
            return None
        return getattr(client, "dashboard_link", None)


def local_env(context: RunContext, engine: EngineOptions) -> dict[str, str] | None:
    """The environment of a local cluster's worker processes when the caller gave the
    starting credentials (``credentials=``) and they are not shipped: the workers are this
    machine's own processes, started with the principal's keys in their environment, as a
    shell would start them (nothing goes through the cluster's connections)."""
    given = context.starting_credentials
    if given is None or not engine.local or engine.ship_credentials:
        return None
    frozen = given.get_frozen_credentials()
    env = {
        "AWS_ACCESS_KEY_ID": frozen.access_key or "",
        "AWS_SECRET_ACCESS_KEY": frozen.secret_key or "",
    }
    if frozen.token:
        env["AWS_SESSION_TOKEN"] = frozen.token
    return env


def _close(client: Any, cluster: Any) -> None:
    for thing in (client, cluster):
        if thing is not None:
            with contextlib.suppress(Exception):
                thing.close()


__all__ = [
    "CONNECT_TIMEOUT",
    "LOCAL_WORKER_CONFIG",
    "WORKER_WAIT",
    "Cluster",
    "local_env",
    "security_for",
]

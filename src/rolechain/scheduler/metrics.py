"""``--metrics-port``: Prometheus metrics and ``/healthz`` over HTTP (prometheus-client).

Metrics (all labelled by ``job`` where it applies):

- ``rolechain_scheduler_up``: 1 while the scheduler runs;
- ``rolechain_scheduled_runs_total{job,status}``: runs that ended, by final status;
- ``rolechain_scheduled_skips_total{job,reason}``: fires that started no run (overlap, missed);
- ``rolechain_run_duration_seconds{job}``: a histogram of run durations;
- ``rolechain_run_targets_failed{job}``: targets of the job's last run that failed or were
  left unfinished;
- ``rolechain_fire_lateness_seconds{job}``: how late runs started after their due time;
- ``rolechain_next_fire_timestamp_seconds{job}``: when the job next fires (Unix time);
- ``rolechain_tasks_abandoned_total{job}``: tasks a run gave up on (past their timeout, or
  still running when the run stopped);
- ``rolechain_tasks_still_running_total{job}``: of those, tasks still running when their
  run ended. Their threads cannot be stopped and live on until the task returns;
- ``rolechain_alert_deliveries_total{job,kind,result}``: alert delivery attempts, by
  ``result`` (``sent``, ``failed``: to be tried again, ``given-up``);
- ``rolechain_alerts_pending``: alerts waiting to be delivered (in the store's ``alerts``
  table; they survive a restart);
- ``rolechain_scheduler_leader``: with several replicas on one store, 1 while this one
  leads (fires), 0 while it is a standby; ``rolechain_scheduler_role{role}`` says the same
  as a label (``leader``, ``standby``);
- ``rolechain_scheduler_threads``: the process's live threads now. It climbs, run after
  run, when tasks never return: each keeps a thread (restart the scheduler to reclaim them).

``/healthz`` answers 200 ``ok`` while the scheduler loop is alive (it has stepped in the
last two minutes), 503 otherwise; a replica of several says its role after it (``ok
leader``, ``ok standby``: a standby is healthy). prometheus-client is imported only with
--metrics-port.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rolechain.scheduler.types import Metrics, RunResult

HEALTHY_WITHIN = 120.0


class PrometheusMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self._up = Gauge("rolechain_scheduler_up", "1 while the scheduler runs", registry=r)
        self._runs = Counter("rolechain_scheduled_runs", "Scheduled runs that ended",
                             ["job", "status"], registry=r)  # fmt: skip
        self._skips = Counter("rolechain_scheduled_skips", "Fires that started no run",
                              ["job", "reason"], registry=r)  # fmt: skip
        self._duration = Histogram(
            "rolechain_run_duration_seconds", "Duration of scheduled runs", ["job"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, float("inf")),
            registry=r,
        )  # fmt: skip
        self._failed = Gauge("rolechain_run_targets_failed",
                             "Failed or unfinished targets of the last run", ["job"],
                             registry=r)  # fmt: skip
        self._late = Histogram(
            "rolechain_fire_lateness_seconds", "Start of runs after their due time", ["job"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, float("inf")), registry=r,
        )  # fmt: skip
        self._next = Gauge("rolechain_next_fire_timestamp_seconds", "Next fire (Unix time)",
                           ["job"], registry=r)  # fmt: skip
        self._abandoned = Counter("rolechain_tasks_abandoned", "Tasks a run gave up on",
                                  ["job"], registry=r)  # fmt: skip
        self._still = Counter("rolechain_tasks_still_running",
                              "Tasks still running (on threads of their own) when their run "
                              "ended", ["job"], registry=r)  # fmt: skip
        self._deliveries = Counter("rolechain_alert_deliveries", "Alert delivery attempts",
                                   ["job", "kind", "result"], registry=r)  # fmt: skip
        self._pending = Gauge("rolechain_alerts_pending", "Alerts waiting to be delivered",
                              registry=r)  # fmt: skip
        threads = Gauge("rolechain_scheduler_threads", "Live threads of the scheduler process",
                        registry=r)  # fmt: skip
        threads.set_function(threading.active_count)
        self._leader = Gauge("rolechain_scheduler_leader",
                             "1 while this replica leads, 0 while it is a standby",
                             registry=r)  # fmt: skip
        self._role = Gauge("rolechain_scheduler_role", "This replica's role (value 1)",
                           ["role"], registry=r)  # fmt: skip
        self.heartbeat = time.monotonic()

    def started(self, jobs: list[str]) -> None:
        super().started(jobs)
        self._up.set(1)
        self.heartbeat = time.monotonic()

    def stopped(self) -> None:
        super().stopped()
        self._up.set(0)

    def role(self, role: str | None) -> None:
        super().role(role)
        self.heartbeat = time.monotonic()
        self._up.set(1 if role is not None else 0)
        self._leader.set(1 if role == "leader" else 0)
        for name in ("leader", "standby"):
            self._role.labels(name).set(1 if role == name else 0)

    def next_fire(self, job: str, when: datetime | None) -> None:
        self.heartbeat = time.monotonic()
        if when is None:
            with contextlib.suppress(KeyError):
                self._next.remove(job)
        else:
            self._next.labels(job).set(when.timestamp())

    def fired(self, job: str, lateness: float) -> None:
        self.heartbeat = time.monotonic()
        self._late.labels(job).observe(max(0.0, lateness))

    def skipped(self, job: str, reason: str) -> None:
        self._skips.labels(job, reason).inc()

    def finished(self, result: RunResult, seconds: float) -> None:
        self.heartbeat = time.monotonic()
        self._runs.labels(result.job, result.status).inc()
        self._duration.labels(result.job).observe(max(0.0, seconds))
        self._failed.labels(result.job).set(result.targets_failed + result.targets_unfinished)
        self._abandoned.labels(result.job).inc(result.abandoned)
        self._still.labels(result.job).inc(result.still_running)

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def alert_attempt(self, job: str, kind: str, result: str) -> None:
        self._deliveries.labels(job, kind, result).inc()

    def alerts_pending(self, count: int) -> None:
        self._pending.set(count)

    @property
    def healthy(self) -> bool:
        return self.up and time.monotonic() - self.heartbeat < HEALTHY_WITHIN


def serve(metrics: PrometheusMetrics, port: int, host: str = "127.0.0.1") -> Callable[[], None]:
    """Serve /metrics and /healthz on host:port in a thread; returns a function to stop."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    exporter = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok = metrics.healthy
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])  # fmt: skip
            role = f" {metrics.replica_role}" if metrics.replica_role else ""
            return [(f"ok{role}\n" if ok else f"unhealthy{role}\n").encode()]
        result: Iterable[bytes] = exporter(environ, start_response)
        return result

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server(host, port, app, server_class=Server, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="rolechain-metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop

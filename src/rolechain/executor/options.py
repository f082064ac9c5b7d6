"""How to run a job, as plain, frozen data: :class:`RunOptions` and :class:`EngineOptions`.

Every layer of the executor needs these (the context, both engines, the Dask workers that
receive them), so they sit below all of them and import nothing of the executor. The engine
of a run is chosen once, by :func:`choose_engine`, when its
:class:`~rolechain.executor.context.RunContext` is built: the caller's choice, else the
chain file's ``settings.engine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from rolechain.model.regions import region_problem
from rolechain.planner.plan import EngineKind, RunSettings

DEFAULT_CONCURRENCY = 16
DEFAULT_GRACE = 10.0
DASK_INSTALL = "pip install 'rolechain[dask]'"
CLUSTER_SCHEMES = ("tcp://", "tls://")

ENGINES: tuple[EngineKind, ...] = ("threads", "dask")


@dataclass(frozen=True)
class EngineOptions:
    """Which engine runs a job, and how (plain, frozen data).

    ``kind``: ``threads`` or ``dask``. For ``dask``: ``cluster`` is the address of an
    existing scheduler (``tcp://`` or ``tls://``); without it, a local cluster of
    ``workers`` processes (default: one per core) is started for the run and closed after
    it. ``batch_size``: targets per Dask task (default: chosen from the targets, the workers
    and the concurrency). ``ship_credentials``: hand the principal's credentials to the
    workers instead of each worker starting from its own environment; refused unless the
    connection is TLS. ``security``: a ``distributed.Security`` for a ``tls://`` cluster
    (default: Dask's configuration, ``distributed.comm.tls.*``). ``worker_source``: where
    workers load the principal's credentials (``default``, ``env``, ``profile``; default:
    the principal's declared ``source``). ``dashboard``: serve a local cluster's dashboard
    on 127.0.0.1 (default: none). A local cluster always talks TLS with a temporary
    certificate: a process that only knows its port cannot join or submit work.
    """

    kind: EngineKind = "threads"
    cluster: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    ship_credentials: bool = False
    security: Any = field(default=None, compare=False, repr=False)
    worker_source: Literal["default", "env"] | None = None
    dashboard: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ValueError(f"unknown engine {self.kind!r}; engines: {', '.join(ENGINES)}")
        if self.cluster is not None and self.workers is not None:
            raise ValueError(
                "give a cluster address or a number of local workers, not both "
                f"(cluster {self.cluster!r}, workers {self.workers})"
            )
        if self.cluster is not None and not self.cluster.startswith(CLUSTER_SCHEMES):
            raise ValueError(f"cluster address {self.cluster!r} must start with tcp:// or tls://")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.kind == "threads":
            used = [
                name
                for name in ("cluster", "workers", "batch_size", "security", "worker_source")
                if getattr(self, name) is not None
            ] + (["ship_credentials"] if self.ship_credentials else [])
            if used:
                raise ValueError(f"{', '.join(used)} only apply to the dask engine")

    @classmethod
    def from_settings(cls, settings: RunSettings) -> EngineOptions:
        """The engine a plan's settings name (``settings.engine`` of the chain file)."""
        return cls(
            kind=settings.engine,
            cluster=settings.engine_cluster,
            workers=settings.engine_workers,
            batch_size=settings.engine_batch_size,
            ship_credentials=settings.engine_ship_credentials,
            dashboard=settings.engine_dashboard,
        )

    @property
    def local(self) -> bool:
        """Whether the run starts a local cluster of its own."""
        return self.kind == "dask" and self.cluster is None

    def describe(self) -> str:
        if self.kind == "threads":
            return "threads"
        where = self.cluster if self.cluster else f"local cluster ({self.workers or 'auto'})"
        return f"dask on {where}"


def choose_engine(
    settings: RunSettings, requested: EngineOptions | str | None = None
) -> EngineOptions:
    """The engine of a run: ``requested`` (a kind or options), else the settings'.

    When the caller asks for the kind the settings name, what the caller leaves unset comes
    from the settings (``--engine dask`` keeps the chain file's cluster address; ``--workers
    4`` replaces it).
    """
    declared = EngineOptions.from_settings(settings)
    if requested is None:
        return declared
    if isinstance(requested, str):
        requested = EngineOptions(kind=requested)  # type: ignore[arg-type]
    if requested.kind != declared.kind:
        return requested
    values = {f.name: getattr(requested, f.name) for f in fields(requested)}
    if requested.cluster is None and requested.workers is None:
        values["cluster"], values["workers"] = declared.cluster, declared.workers
    if requested.batch_size is None:
        values["batch_size"] = declared.batch_size
    values["ship_credentials"] = requested.ship_credentials or declared.ship_credentials
    values["dashboard"] = requested.dashboard or declared.dashboard
    return EngineOptions(**values)


@dataclass(frozen=True)
class RunOptions:
    """How to run a job: plain, frozen data (a scheduler can store it, an engine ship it).

    ``targets``: narrow the job to these targets (names or globs). ``regions``: run tasks
    in these regions instead of the job's. ``concurrency``: units worked at once (default:
    the job's, else the settings', else 16). ``deadline``: seconds the whole run may take,
    from when it starts; ``None`` takes the job's ``runtime`` (no deadline if it has none),
    ``math.inf`` means no deadline whatever the job says. ``grace``: seconds in-flight units
    get to finish after a cancel (SIGINT/SIGTERM in the CLI). ``check_identity``: call
    GetCallerIdentity first (refuse the root user and a wrong principal; re-plan user keys
    that are a session). ``run_id``: the run's id (default: a new one when planning).
    ``engine``: where the units run (:class:`EngineOptions`, or
    ``"threads"``/``"dask"``); default: the chain file's ``settings.engine``, else threads.
    ``skip``: units not to run, as (target, region, task id): those an earlier run of the
    same plan already finished (``rolechain run --resume``).
    """

    targets: tuple[str, ...] | None = None
    regions: tuple[str, ...] | None = None
    concurrency: int | None = None
    deadline: float | None = None
    grace: float = DEFAULT_GRACE
    check_identity: bool = True
    run_id: str | None = None
    engine: EngineOptions | EngineKind | None = None
    skip: frozenset[tuple[str, str, str]] = frozenset()

    def __post_init__(self) -> None:
        for name in ("targets", "regions"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                if isinstance(value, str):
                    value = (value,)
                object.__setattr__(self, name, tuple(value) or None)
        for region in self.regions or ():
            problem = region_problem(region) if region != "all" else None
            if problem is not None:
                raise ValueError(problem)
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"deadline must be a positive number of seconds, not {self.deadline}")
        if not self.grace >= 0:
            raise ValueError(f"grace must be zero or more seconds, not {self.grace}")


__all__ = [
    "CLUSTER_SCHEMES",
    "DASK_INSTALL",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_GRACE",
    "ENGINES",
    "EngineKind",
    "EngineOptions",
    "RunOptions",
    "choose_engine",
]

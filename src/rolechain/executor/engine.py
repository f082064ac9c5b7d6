"""Engines: where the units of a run execute. The seam between :class:`~rolechain.executor.Run`
and what runs its units.

* ``threads`` (the default): :class:`~rolechain.executor.runner.Runner`, a bounded pool of
  daemon threads in this process.
* ``dask``: :class:`~rolechain.executor.dask_engine.DaskRunner`, batches of targets on the
  workers of a Dask cluster (a local one of N processes, or an existing scheduler), records
  streamed back to this process, which alone writes them. Needs the ``distributed``
  package (``pip install 'rolechain[dask]'``), imported only when this engine is chosen.

The engine is chosen from :attr:`RunOptions.engine <rolechain.executor.context.RunOptions>`
when the caller names one, else from the plan's settings (``settings.engine`` in the chain
file). :class:`~rolechain.executor.Run` asks :func:`runner_for`, so every entry point that
builds a Run (``rolechain run``, :func:`rolechain.run`, the scheduler) gets the engine the
settings name without code of its own.

Both engines take the same parts (context, summary, sink, progress, stop signal, the
``on_plan`` callback) and keep
the same contract: one record per unit, every record in the sink before it is yielded,
``Run.cancel`` and the deadline stop the run the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rolechain.errors import EngineError

if TYPE_CHECKING:
    from rolechain.executor.context import RunContext
    from rolechain.executor.records import Record, Summary
    from rolechain.executor.runner import ProgressCallback, RecordSink, StopSignal
    from rolechain.planner.plan import Plan

EngineKind = Literal["threads", "dask"]
ENGINES: tuple[EngineKind, ...] = ("threads", "dask")
DASK_INSTALL = "pip install 'rolechain[dask]'"
CLUSTER_SCHEMES = ("tcp://", "tls://")


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
    the principal's declared ``source``).
    """

    kind: EngineKind = "threads"
    cluster: str | None = None
    workers: int | None = None
    batch_size: int | None = None
    ship_credentials: bool = False
    security: Any = field(default=None, compare=False, repr=False)
    worker_source: Literal["default", "env"] | None = None

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
    def from_settings(cls, settings: Mapping[str, Any]) -> EngineOptions:
        """The engine a plan's settings name (``settings.engine`` of the chain file)."""
        kind: EngineKind = settings.get("engine") or "threads"
        return cls(
            kind=kind,
            cluster=settings.get("engine_cluster"),
            workers=settings.get("engine_workers"),
            batch_size=settings.get("engine_batch_size"),
            ship_credentials=bool(settings.get("engine_ship_credentials", False)),
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
    settings: Mapping[str, Any], requested: EngineOptions | str | None = None
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
    return EngineOptions(**values)


def require_dask() -> None:
    """Raise :class:`EngineError` with the install line if ``distributed`` is missing."""
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise EngineError(
            "the dask engine needs the 'distributed' package, which is not installed "
            f"({exc.name or exc})",
            hint=f"install the extra: {DASK_INSTALL}",
        ) from None


class RecordSource(Protocol):
    """What an engine gives :class:`~rolechain.executor.Run`: the run's records, streamed."""

    def records(self) -> Iterator[Record]: ...


def runner_for(
    context: RunContext,
    *,
    progress: ProgressCallback | None = None,
    summary: Summary | None = None,
    sink: RecordSink | None = None,
    stop: StopSignal | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> RecordSource:
    """The engine the context's options or settings choose, ready to run its plan.

    Raises :class:`EngineError` at once (before any AWS call) when the engine cannot be
    used: the ``dask`` extra is missing, or the context was built with parts that cannot
    travel to workers.
    """
    engine = context.engine
    if engine.kind == "dask":
        require_dask()
        from rolechain.executor.dask_engine import DaskRunner

        return DaskRunner(
            context,
            engine,
            progress=progress,
            summary=summary,
            sink=sink,
            stop=stop,
            on_plan=on_plan,
        )
    from rolechain.executor.runner import Runner

    return Runner(
        context, progress=progress, summary=summary, sink=sink, stop=stop, on_plan=on_plan
    )


__all__ = [
    "DASK_INSTALL",
    "ENGINES",
    "EngineKind",
    "EngineOptions",
    "RecordSource",
    "choose_engine",
    "require_dask",
    "runner_for",
]

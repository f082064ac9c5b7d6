"""Engines: where the units of a run execute. The seam between :class:`~rolechain.executor.Run`
and what runs its units; dispatch only.

* ``threads`` (the default): :class:`~rolechain.executor.threads.ThreadRunner`, a bounded
  pool of daemon threads in this process.
* ``dask``: :class:`~rolechain.executor.dask.driver.DaskRunner`, batches of targets on the
  workers of a Dask cluster (a local one of N processes, or an existing scheduler), records
  streamed back to this process, which alone writes them. Needs the ``distributed``
  package (``pip install 'rolechain[dask]'``), imported only when this engine is chosen.

The engine is chosen once, when the run's context is built (``RunContext.engine``:
:attr:`RunOptions.engine <rolechain.executor.options.RunOptions>` when the caller names
one, else the plan's ``settings.engine``). :class:`~rolechain.executor.Run` asks
:func:`runner_for`, so every entry point that builds a Run (``rolechain run``,
:func:`rolechain.run`, the scheduler) gets that engine without code of its own.

Both engines take the same parts (:class:`~rolechain.executor.loop.RunnerBase`) and run
the same loop (:class:`~rolechain.executor.loop.RunLoop`): one record per unit, every
record in the sink before it is yielded, ``Run.cancel`` and the deadline stop the run the
same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from rolechain.errors import EngineError
from rolechain.executor.options import DASK_INSTALL

if TYPE_CHECKING:
    from rolechain.executor.context import RunContext
    from rolechain.executor.loop import ProgressCallback, StopSignal
    from rolechain.executor.records import Record, RecordSink, Summary
    from rolechain.planner.plan import Plan


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
        from rolechain.executor.dask.driver import DaskRunner

        return DaskRunner(
            context,
            engine,
            progress=progress,
            summary=summary,
            sink=sink,
            stop=stop,
            on_plan=on_plan,
        )
    from rolechain.executor.threads import ThreadRunner

    return ThreadRunner(
        context, progress=progress, summary=summary, sink=sink, stop=stop, on_plan=on_plan
    )


__all__ = ["RecordSource", "require_dask", "runner_for"]

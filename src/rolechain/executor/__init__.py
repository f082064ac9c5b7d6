"""Running jobs: :func:`run` streams records; :func:`sessions` hands out target sessions.

>>> import rolechain
>>> chain = rolechain.load("chains/org-inventory.yaml")             # doctest: +SKIP
>>> result = rolechain.run(chain, "inventory", concurrency=32)        # doctest: +SKIP
>>> for record in result:                                             # doctest: +SKIP
...     print(record.target, record.region, record.status)
>>> result.summary.targets_failed                                     # doctest: +SKIP
0
>>> factory = rolechain.sessions(chain, "inventory")                  # doctest: +SKIP
>>> s3 = factory.session("audit@222222222222").client("s3")           # doctest: +SKIP

A run, in order: plan (offline; a bad chain file or plan raises before any call), check the
principal with GetCallerIdentity (re-planning if user keys turn out to be a session),
resolve Organizations role sets through their ``via`` hop and plan again with the accounts,
then run the tasks on a bounded pool, assuming each hop once and refreshing as needed.

The engine (a thread pool here, or batches on a Dask cluster) is chosen by ``engine=`` or
the chain file's ``settings.engine`` (:mod:`rolechain.executor.engine`).

The package, bottom up (import-linter keeps these layers): ``records`` (records, summary,
record builders), ``options`` (RunOptions, EngineOptions), ``units``/``tasks``,
``context`` (builds everything a run needs), ``work`` (one unit), ``loop`` (the run loop
both engines share, the stop signal), ``threads`` and ``dask/`` (the engines), ``engine``
(dispatch) and ``api`` (Run, run, sessions), re-exported here.
"""

from rolechain.executor.api import Run, SessionFactory, run, sessions
from rolechain.executor.context import RunContext
from rolechain.executor.options import EngineOptions, RunOptions
from rolechain.executor.records import Record, RecordError, RecordSink, RunStatus, Summary
from rolechain.executor.tasks import TaskContext
from rolechain.executor.units import WorkUnit

__all__ = [
    "EngineOptions",
    "Record",
    "RecordError",
    "RecordSink",
    "Run",
    "RunContext",
    "RunOptions",
    "RunStatus",
    "SessionFactory",
    "Summary",
    "TaskContext",
    "WorkUnit",
    "run",
    "sessions",
]

"""The planner: turn a job into a tree of hops that AWS will accept, before any call.

>>> from rolechain.planner import plan                          # doctest: +SKIP
>>> p = plan(chain, "inventory")                                 # doctest: +SKIP
>>> p.assume_calls                                               # doctest: +SKIP
"""

from __future__ import annotations

from rolechain.planner.plan import Discovery, Hop, Note, Plan, Target, TaskRef
from rolechain.planner.planner import new_run_id, plan

__all__ = ["Discovery", "Hop", "Note", "Plan", "Target", "TaskRef", "new_run_id", "plan"]

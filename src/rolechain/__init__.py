"""rolechain: cross-account AWS role paths as code.

The public API is imported lazily so that ``import rolechain`` is cheap:

>>> import rolechain
>>> chain = rolechain.load("chains/org-inventory.yaml")      # doctest: +SKIP
>>> plan = rolechain.plan(chain, "inventory")                 # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "load": "rolechain.model.loader:load",
    "Chain": "rolechain.model.chain:Chain",
    "plan": "rolechain.planner:plan",
    "Plan": "rolechain.planner.plan:Plan",
    "Hop": "rolechain.planner.plan:Hop",
    "Target": "rolechain.planner.plan:Target",
    "run": "rolechain.executor:run",
    "sessions": "rolechain.executor:sessions",
}

__all__ = ["Chain", "Hop", "Plan", "Target", "__version__", "load", "plan", "run", "sessions"]

if TYPE_CHECKING:
    from rolechain.errors import *  # noqa: F403
    from rolechain.executor import run, sessions
    from rolechain.model.chain import Chain
    from rolechain.model.loader import load
    from rolechain.planner import plan
    from rolechain.planner.plan import Hop, Plan, Target


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        errors = importlib.import_module("rolechain.errors")
        if hasattr(errors, name):
            return getattr(errors, name)
        raise AttributeError(f"module 'rolechain' has no attribute {name!r}")
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, "__version__"])

"""``python`` tasks for the scheduler's tests (importable as ``scheduler.tasks``)."""

from __future__ import annotations

import time
from typing import Any


def nap(session: Any, context: Any) -> dict[str, Any]:
    """Sleep ``args.seconds`` (real time), then answer."""
    seconds = float(context.args.get("seconds", 0))
    time.sleep(seconds)
    return {"slept": seconds}

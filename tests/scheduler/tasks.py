"""``python`` tasks for the scheduler's tests (importable as ``scheduler.tasks``)."""

from __future__ import annotations

import threading
import time
from typing import Any


def nap(session: Any, context: Any) -> dict[str, Any]:
    """Sleep ``args.seconds`` (real time), then answer. Accounts listed in ``args.quick``
    answer at once; accounts listed in ``args.hang`` never return (after making the file
    ``args.hanging``, when given)."""
    account = context.account_id
    if account in context.args.get("hang", ()):
        if context.args.get("hanging"):
            open(context.args["hanging"], "a").close()
        threading.Event().wait()
    seconds = 0.0 if account in context.args.get("quick", ()) else float(context.args["seconds"])
    time.sleep(seconds)
    return {"slept": seconds}


def flaky(session: Any, context: Any) -> dict[str, Any]:
    """Fail until the file ``args.fixed`` exists (the fix is deployed), then answer."""
    from pathlib import Path

    if not Path(context.args["fixed"]).exists():
        raise RuntimeError("broken until fixed")
    return {"fixed": True}

"""One line per scheduler event on stderr: ``text`` for people, ``json`` for collectors.

Text: ``2026-12-01T03:00:00Z fire job=inventory run_id=... scheduled_for=...``; values with
spaces are quoted and control characters escaped, so one event is always one line. JSON:
one object per line with ``ts``, ``level``, ``event`` and the same fields. Values read from
``${env:...}`` are shown as where they came from (:func:`rolechain.errors.redact`), as
everywhere rolechain prints.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from rolechain.errors import printable, redact_data
from rolechain.scheduler.types import iso


def _text_value(value: Any) -> str:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    text = printable(value, newlines=True)  # redacted; controls and newlines escaped
    if not text or any(c in text for c in ' "='):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple):
        value = list(value)
    return redact_data(value)


class EventLog:
    """Writes events; thread-safe (runs end on worker threads)."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        fmt: str = "text",
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"log format {fmt!r}: text or json")
        self.stream = stream if stream is not None else sys.stderr
        self.fmt = fmt
        self.now = now
        self.lines: list[dict[str, Any]] | None = None  # kept when capturing (tests)
        self._lock = threading.Lock()

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        fields = {k: v for k, v in fields.items() if v is not None}
        when = self.now() if self.now is not None else None
        if self.lines is not None:
            self.lines.append({"event": event, "level": level, "ts": when, **fields})
        if self.fmt == "json":
            doc = {"ts": iso(when) if when else None, "level": level, "event": event}
            doc.update({k: _json_value(v) for k, v in fields.items()})
            line = json.dumps(doc, default=str, ensure_ascii=True)
        else:
            head = [iso(when)] if when else []
            if level != "info":
                head.append(level.upper())
            head.append(event)
            line = " ".join(head + [f"{k}={_text_value(v)}" for k, v in fields.items()])
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def error(self, event: str, **fields: Any) -> None:
        self.emit(event, "error", **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.emit(event, "warning", **fields)

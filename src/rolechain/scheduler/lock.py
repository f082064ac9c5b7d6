"""One scheduler per store: an OS lock on ``<store>.lock``, naming its holder.

``fcntl.flock`` on a file next to the store: the kernel releases it when the holder exits,
however it exits (kill -9 included), so there is never a stale lock to clean up, as with
``flock(1)`` around a cron job. The holder writes who it is (pid, host, command, since)
into the file; a second scheduler that cannot take the lock reads that and says so. The
``filelock`` package would also lock, but it truncates the file each time it tries, which
would erase the holder's name; ``flock`` on a descriptor opened without truncation keeps
it. POSIX only, like the signals the scheduler relies on (SIGHUP, SIGTERM).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechain.errors import RolechainError
from rolechain.private import open_private


class LockedError(RolechainError):
    """Another scheduler holds the store's lock (exit 2)."""

    exit_code = 2


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


class StoreLock:
    """Hold the store's lock for the life of this object (use it as a context manager)."""

    def __init__(self, store: Path, *, command: str | None = None) -> None:
        self.path = lock_path(store)
        self.command = command or " ".join(sys.argv)
        self._fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        # 0600, and never through a symlink: the file is truncated and written below
        fd = open_private(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._read(fd)
            os.close(fd)
            raise LockedError(
                f"another scheduler holds {self.path}: {describe(holder)}",
                hint="one scheduler per store: stop it first, or use another --store",
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "command": self.command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self._fd = fd

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            data = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            found = json.loads(data) if data.strip() else {}
            return found if isinstance(found, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that has not written its name yet"
    parts = [f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    if holder.get("command"):
        parts.append(f"({holder['command']})")
    return " ".join(parts)

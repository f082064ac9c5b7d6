"""Loading (and reloading) a schedule from chain files, and watching them for changes."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from rolechain.errors import UsageError
from rolechain.model.chain import Chain
from rolechain.scheduler.policy import ScheduleSpec, schedule_specs
from rolechain.scheduler.unattended import Warning_, check


class ScheduleLoader:
    """Loads PATH, resolves its scheduled jobs (or ``jobs``), plans them and checks their
    credentials. Called once at start (errors exit 2) and on every reload (errors keep
    the schedule running)."""

    def __init__(
        self, path: Path, jobs: Sequence[str] = (), *, check_credentials: bool = True
    ) -> None:
        self.path = path
        self.jobs = tuple(jobs)
        self.check_credentials = check_credentials
        self.warnings: list[Warning_] = []

    def __call__(self) -> tuple[Chain, dict[str, ScheduleSpec]]:
        from rolechain.model.loader import load

        chain = load(self.path)
        specs = schedule_specs(chain, self.jobs)
        if not specs:
            raise UsageError(
                f"no job in {self.path} has a 'schedule'",
                hint="add a cron expression under a job's 'schedule' (see docs/scheduling.md)",
            )
        if self.check_credentials:
            self.warnings = check(chain, list(specs))
        else:
            from rolechain.planner import plan

            for name in specs:
                plan(chain, name)
            self.warnings = []
        return chain, specs

    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.iterdir() if p.suffix in (".yaml", ".yml"))
        return [self.path]


def fingerprint(paths: Sequence[Path]) -> str:
    """A hash of the files' names and contents (a touch without a change is no change)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing")
    return digest.hexdigest()


class Watcher:
    """Calls ``on_change`` when the chain's files really change (watchfiles, which uses
    inotify/FSEvents/ReadDirectoryChangesW and debounces bursts of events). It watches the
    directory, not the file, so editors and Kubernetes ConfigMaps that replace a file by
    renaming or re-pointing a symlink are seen too. Only a change of content counts."""

    def __init__(self, loader: ScheduleLoader, on_change: Callable[[], None]) -> None:
        self.loader = loader
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._print = fingerprint(loader.files())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="rolechain-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        from watchfiles import watch

        root = self.loader.path if self.loader.path.is_dir() else self.loader.path.parent
        # Every 5 s without an event the files are compared anyway: a change made before
        # the watch was set up, or on a filesystem without change events (NFS), is still
        # seen (reading a chain file that often costs nothing measurable).
        for _changes in watch(root, stop_event=self._stop, debounce=500, step=100,
                              rust_timeout=5000, yield_on_timeout=True):  # fmt: skip
            now = fingerprint(self.loader.files())
            if now != self._print:
                self._print = now
                self.on_change()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

"""The driver's book of batches: what each batch of a run is, where it stands, and which
units already have their record.

A batch is *waiting* (in the backlog, not sent), *sent* (a Dask task on the cluster) or
*settled* (its records are in, or its targets were given their error records); a batch is
pending until it is settled. A batch whose workers keep dying is split: it is settled
without records, and one new batch per target goes to the front of the backlog. Every unit
(target, region, task) gets one record: :meth:`BatchLedger.first` says whether a record is
the first of its unit (a batch that ran twice sends its records twice).

Plain bookkeeping, no Dask: the driver (:mod:`rolechain.executor.dask.driver`) sends and
receives, the ledger keeps the books.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rolechain.executor.records import Record
from rolechain.planner.plan import Target

UnitId = tuple[str, str | None, str | None]  # target, region, task


@dataclass
class LedgerBatch:
    """One batch of targets: its task key, its number, its future once sent."""

    key: str
    index: int
    targets: tuple[Target, ...]
    future: Any = None
    settled: bool = False
    split: bool = False
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(t.name for t in self.targets)


class BatchLedger:
    """Every batch of one run (keyed ``rolechain-batch-<run key>-<n>``) and the units that
    have a record."""

    def __init__(self, run_key: str) -> None:
        self.run_key = run_key
        self.batches: dict[str, LedgerBatch] = {}  # every batch ever made
        self.pending: dict[str, LedgerBatch] = {}  # not settled yet: sent, or waiting
        self.backlog: deque[LedgerBatch] = deque()  # not sent yet
        self.sent: set[str] = set()  # sent to the cluster, not settled
        self.seen: set[UnitId] = set()

    def add(self, targets: tuple[Target, ...]) -> LedgerBatch:
        """A new pending batch of ``targets`` (not in the backlog yet)."""
        index = len(self.batches)
        batch = LedgerBatch(f"rolechain-batch-{self.run_key}-{index:05d}", index, targets)
        self.batches[batch.key] = batch
        self.pending[batch.key] = batch
        return batch

    def queue(self, groups: list[tuple[Target, ...]]) -> None:
        """The run's batches, at the back of the backlog in order."""
        self.backlog.extend(self.add(targets) for targets in groups)

    def get(self, key: str) -> LedgerBatch | None:
        return self.batches.get(key)

    def to_send(self, window: int) -> Iterator[LedgerBatch]:
        """Batches from the backlog, while fewer than ``window`` are out; the caller sends
        each and gives its future to :meth:`sent_as`."""
        while self.backlog and len(self.sent) < window:
            yield self.backlog.popleft()

    def sent_as(self, batch: LedgerBatch, future: Any) -> None:
        batch.future = future
        self.sent.add(batch.key)

    def settle(self, batch: LedgerBatch) -> None:
        """The batch is done with: no longer pending, sent or waiting."""
        batch.settled = True
        self.pending.pop(batch.key, None)
        self.sent.discard(batch.key)
        if batch.future is None:  # never sent
            with contextlib.suppress(ValueError):
                self.backlog.remove(batch)

    def split(self, batch: LedgerBatch) -> list[LedgerBatch]:
        """Settle ``batch`` without records and put one batch per target at the front of
        the backlog (next to run); the new batches."""
        self.settle(batch)
        batch.split = True
        parts = [self.add((target,)) for target in batch.targets]
        self.backlog.extendleft(reversed(parts))
        return parts

    def unsent(self) -> Iterator[LedgerBatch]:
        """Take the batches never sent out of the backlog (the run stopped)."""
        while self.backlog:
            yield self.backlog.popleft()

    def first(self, record: Record) -> bool:
        """Whether this is the first record of its unit (and note it)."""
        unit = (record.target, record.region, record.task)
        if unit in self.seen:
            return False
        self.seen.add(unit)
        return True


__all__ = ["BatchLedger", "LedgerBatch", "UnitId"]

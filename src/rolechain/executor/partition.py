"""Cutting a plan into batches for a distributed engine: targets that share their hubs
travel together.

A worker process assumes each hop it needs once per run and keeps it (its hop tree, keyed
by the run and the hop's path). A batch is a set of targets whose paths share their inner
hops, so a worker that takes a batch assumes those hubs once for all of them; whatever the
batches, each worker assumes each inner hop at most once, so a run makes at most::

    AssumeRole <= N + W x I

calls, N being the hops that lead to no other hop (one per target), W the workers that
took part and I the inner hops (:func:`inner_hops`); :func:`assume_bound` is that number.

:func:`partition` sorts the targets by their path, so that the targets of one subtree are
next to each other, and packs groups of siblings (targets under the same parent hop) into
batches of at most ``size`` targets, whole when they fit; a group larger than ``size`` is
cut into full batches, and its last piece is packed like a group.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from rolechain.planner.plan import Plan, Target

MAX_BATCH = 500  # targets per batch when the size is chosen: bounded result payloads
BATCHES_PER_WORKER = 4  # batches each worker gets when the size is chosen (load balance)


def inner_hops(plan: Plan) -> int:
    """Hops that are the parent of another hop: the hubs targets share."""
    return len({hop.parent for hop in plan.hops if hop.parent is not None})


def assume_bound(plan: Plan, workers: int) -> int:
    """The most AssumeRole calls a run on ``workers`` worker processes makes: every hop
    once, and every inner hop once more per extra worker."""
    return plan.assume_calls + max(0, workers - 1) * inner_hops(plan)


def default_batch_size(targets: int, workers: int, concurrency: int) -> int:
    """Targets per batch when none is given.

    Enough batches for each worker to get several (a worker that finishes early takes the
    next; a batch lost with its worker is a small part of the run), each with at least
    twice the concurrency (a batch's pool runs full most of its time), at most
    :data:`MAX_BATCH`.
    """
    spread = math.ceil(max(1, targets) / (BATCHES_PER_WORKER * max(1, workers)))
    return max(1, min(MAX_BATCH, max(2 * concurrency, spread)))


def partition(plan: Plan, size: int) -> list[tuple[Target, ...]]:
    """The plan's targets in batches of at most ``size``; siblings stay together when they
    fit, and batches follow the hop tree (targets sorted by path)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    groups: dict[tuple[str, ...], list[Target]] = {}
    for target in sorted(plan.targets, key=lambda t: t.path):
        groups.setdefault(target.path[:-1], []).append(target)
    batches: list[tuple[Target, ...]] = []
    current: list[Target] = []
    for members in groups.values():
        if current and len(current) + len(members) > size:
            batches.append(tuple(current))
            current = []
        while len(members) > size:  # only when current is empty
            batches.append(tuple(members[:size]))
            members = members[size:]
        current.extend(members)
    if current:
        batches.append(tuple(current))
    return batches


def batch_plan(plan: Plan, targets: Iterable[Target]) -> Plan:
    """The part of ``plan`` a batch needs: its targets and the hops on their paths (in the
    plan's order, parents first). What one Dask task carries, so a task's size grows with
    its batch, not with the run."""
    chosen = tuple(targets)
    needed = {hop_id for target in chosen for hop_id in target.path}
    return dataclasses.replace(
        plan,
        hops=tuple(hop for hop in plan.hops if hop.id in needed),
        targets=chosen,
        notes=(),
        discoveries=(),
    )


__all__ = ["assume_bound", "batch_plan", "default_batch_size", "inner_hops", "partition"]

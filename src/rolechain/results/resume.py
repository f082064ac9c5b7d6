"""Resume or retry a recorded run: which of its units to run again, and which to skip.

``rolechain run --resume RUN_ID`` runs the units of RUN_ID that have no final record (it
crashed, was interrupted, or hit its deadline); ``--retry-failed RUN_ID`` also runs those
whose record is an error. Either way the job must plan to the same units as the run did
(the same plan hash): if the chain file changed the job's targets, tasks or regions since,
the resume is refused (exit 2) and what changed is said. The new run is limited to the
targets that have something left, skips the units already done (so the AssumeRole calls
it makes are those of the hops leading to those targets only), and records ``retry_of``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rolechain.errors import UsageError
from rolechain.planner.plan import Plan
from rolechain.results.lifecycle import Unit, plan_hash, unfinished_units
from rolechain.results.store import Store, unpack_plan

RESUMING = ("resume", "retry-failed")


@dataclass(frozen=True)
class Resumption:
    """What a resumed run runs: ``targets`` (names) minus the ``skip`` units."""

    run_id: str
    trigger: str  # resume or retry-failed
    targets: tuple[str, ...]
    skip: frozenset[Unit]
    missing: int  # units to run


def _targets_of(stored_plan: str | bytes | None) -> list[str]:
    if not stored_plan:
        return []
    return [t["name"] for t in json.loads(unpack_plan(stored_plan)).get("targets", [])]


def resumption(store: Store, run_id: str, job: str, plan: Plan, *, failed_too: bool) -> Resumption:
    """The units of ``run_id`` to run again with ``plan`` (the job planned now, offline).

    Raises :class:`UsageError` (exit 2, nothing called) for an unknown run, a run of another
    job, one still running, or a plan that changed since.
    """
    flag = "--retry-failed" if failed_too else "--resume"
    run = store.run(run_id)
    if run is None:
        raise UsageError(
            f"{flag} {run_id}: no such run in {store.name}",
            hint="'rolechain history --store FILE' lists the runs",
        )
    if run["job"] != job:
        raise UsageError(
            f"{flag} {run_id}: that run is of job {run['job']!r}, not {job!r}",
            hint=f"run it with --job {run['job']}",
        )
    if run["status"] in ("running", "starting"):
        raise UsageError(
            f"{flag} {run_id}: the run is still going (pid {run['pid']} on {run['host']})",
            hint="wait for it to end, or stop it first",
        )
    root = store.run(_lineage(store, run_id)[0]) or run
    if not root["plan_hash"]:
        raise UsageError(
            f"{flag} {run_id}: the run has no recorded units (it never started, or was "
            "recorded by a rolechain before 0.2)",
            hint="run the job again without --resume",
        )
    # Accounts discovered from AWS Organizations are known only once the run asks; such a
    # plan is not comparable offline (a target gone from the organization fails its unit).
    if not plan.discoveries and plan_hash(plan) != root["plan_hash"]:
        before = _targets_of(root.get("plan"))
        now = [t.name for t in plan.targets]
        added = [t for t in now if t not in set(before)]
        removed = [t for t in before if t not in set(now)]
        changes = []
        if added:
            changes.append("targets added: " + ", ".join(added[:20]))
        if removed:
            changes.append("targets removed: " + ", ".join(removed[:20]))
        if not changes:
            changes.append("its tasks, regions or the paths to its targets changed")
        raise UsageError(
            f"{flag} {run_id}: the chain file changed job {job!r} since that run ("
            + "; ".join(changes)
            + ")",
            hint="run the job anew, restore the chain file the run was made with, or give "
            "the same --target options as that run",
        )
    runs = _lineage(store, run_id)
    planned = store.planned(runs[0])
    finished = store.finished(runs, ok_only=failed_too)
    missing = unfinished_units(planned, finished)
    skip = {u for u in finished if u[1] is not None and u[2] is not None}
    targets = tuple(dict.fromkeys(unit[0] for unit in missing))
    return Resumption(
        run_id=run_id,
        trigger="retry-failed" if failed_too else "resume",
        targets=targets,
        skip=frozenset(skip),  # type: ignore[arg-type]
        missing=len(missing),
    )


def _lineage(store: Store, run_id: str) -> list[str]:
    """``run_id`` and the runs it resumed, oldest (the run that planned every unit) first."""
    chain = [run_id]
    run = store.run(run_id)
    while run and run.get("retry_of") and run.get("trigger") in RESUMING and len(chain) < 1000:
        chain.append(run["retry_of"])
        run = store.run(run["retry_of"])
    return chain[::-1]

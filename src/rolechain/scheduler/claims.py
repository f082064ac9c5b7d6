"""Each fire claimed once: a row of table ``fires``, unique on (job, scheduled_for).

Before the scheduler starts a run (or records a skipped fire) it claims the fire. The claim
and the run's first row (``starting``, or ``skipped``) are written in one transaction, so
a replica killed between the two leaves neither, and the next leader's catch-up sees the
fire as not run. A retry claims the same row again, moving its ``attempt`` up by a
compare-and-set, so each attempt is started once too.

With a lease (several replicas on PostgreSQL) the claim is also fenced: it is written only
while the lease row names this replica, and only while :meth:`Lease.leading` says its renew
deadline has not passed. The unique key alone already stops two replicas from running the
same fire, even two that both believe they lead; the fence keeps a replica that has been
replaced from claiming fires it would then not run.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

from rolechain.scheduler.lease import LEASE_NAME, Database, Lease, _wall
from rolechain.scheduler.types import Claim, iso

_FENCE = " AND EXISTS (SELECT 1 FROM scheduler_lease WHERE name=? AND holder=?)"


class Claims:
    """Claims fires in ``db`` for ``holder`` (this replica), fenced by ``lease`` if any."""

    def __init__(self, db: Database, *, holder: str, lease: Lease | None = None) -> None:
        self.db = db
        self.holder = holder
        self.lease = lease

    def leading(self) -> bool:
        return self.lease is None or self.lease.leading()

    def claim(self, claim: Claim) -> bool:
        """True if this replica now owns the fire (and its run's row is written). A
        connection the server had ended (idle timeout, restart) is opened again once."""
        try:
            return self._claim(claim)
        except Exception:
            if not self.db.lost:
                raise
        return self._claim(claim)

    def _claim(self, claim: Claim) -> bool:
        if not self.leading():
            return False
        trigger = claim.trigger
        scheduled = iso(trigger.scheduled_for)
        fence: tuple[str, ...] = ()
        where = ""
        if self.lease is not None:
            where, fence = _FENCE, (LEASE_NAME, self.holder)
        stamp = _wall()
        with self.db.transaction():
            count = 0
            if trigger.attempt > 0:
                _, count = self.db.execute(
                    "UPDATE fires SET attempt=?, run_id=?, holder=?, claimed_at=? "  # noqa: S608
                    f"WHERE job=? AND scheduled_for=? AND attempt<?{where}",
                    (trigger.attempt, claim.run_id, self.holder, stamp, claim.job, scheduled,
                     trigger.attempt, *fence),
                )  # fmt: skip
            if count != 1:
                # A first attempt, or a retry whose claim was pruned (or predates claims).
                _, count = self.db.execute(
                    "INSERT INTO fires (job, scheduled_for, attempt, run_id, holder, "
                    f"claimed_at) SELECT ?, ?, ?, ?, ?, ? WHERE 1=1{where} "
                    "ON CONFLICT (job, scheduled_for) DO NOTHING",
                    (claim.job, scheduled, trigger.attempt, claim.run_id, self.holder, stamp,
                     *fence),
                )  # fmt: skip
            if count != 1:
                return False
            # A starting row is stamped with the real time now, as the launcher stamps
            # it: another host's store judges a run without a heartbeat by it.
            started = iso(claim.started_at or datetime.now(UTC))
            skipped = claim.status == "skipped"
            self.db.execute(
                "INSERT INTO runs (run_id, job, status, trigger, scheduled_for, attempt, "
                "retry_of, reason, started_at, finished_at, targets, targets_ok, "
                "targets_failed, records, records_failed, pid, host) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, ?, ?)",
                (claim.run_id, claim.job, claim.status, trigger.kind, scheduled,
                 trigger.attempt, trigger.retry_of, claim.reason, started,
                 started if skipped else None, None if skipped else os.getpid(),
                 socket.gethostname()),
            )  # fmt: skip
        return True

    def prune(self, job: str) -> int:
        """Forget the job's claims older than its oldest scheduled run still stored (the
        newest run always stays, and catch-up looks only after it)."""
        _, count = self.db.execute(
            "DELETE FROM fires WHERE job=? AND scheduled_for < (SELECT min(scheduled_for) "
            "FROM runs WHERE job=? AND trigger IN ('schedule', 'catch-up', 'retry'))",
            (job, job),
        )
        return max(0, count)

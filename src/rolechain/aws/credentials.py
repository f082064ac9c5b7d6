"""The hop tree: credentials for every hop of a plan, assumed once and refreshed in place.

Credentials of a hop are assumed lazily, the first time anything below the hop needs them,
and exactly once per run: every target under a hub shares the hub's credentials, so a
fan-out to 1,000 accounts through one hub costs 1,001 AssumeRole calls.

Each hop's credentials are a :class:`HopCredentials`, a botocore
:class:`~botocore.credentials.RefreshableCredentials` whose refresh re-assumes the hop with
its parent's credentials. The parent is itself refreshable, so a refresh walks up to the
nearest ancestor that is still valid and back down. botocore refreshes on access (every
signed request calls ``get_frozen_credentials``) and only one thread refreshes at a time.

Refresh windows are proportional to the session's length (:func:`refresh_windows`):
botocore's fixed windows (refresh when 15 minutes are left, block when 10 are) would
refresh a 15-minute session on every call. rolechain uses a quarter of the session
(at most 15 minutes) as the advisory window and a sixth (at most 10 minutes) as the
mandatory one: a 1-hour session refreshes with 15 minutes left, a 15-minute session with
3m45s left and blocks callers only in its last 2m30s.

A hop that fails is failed for the whole run: the error is kept and raised to every target
below it, without calling AWS again. ``ExpiredToken`` from AssumeRole means the *caller*
expired: the tree refreshes the caller (the parent hop) and asks again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.credentials import Credentials, RefreshableCredentials

from rolechain.aws.assumer import Assumer, Clock, IssuedCredentials, mask, utc_now
from rolechain.errors import AwsError, CredentialsError, ExpiredTokenError, RolechainError
from rolechain.planner.plan import Hop, Plan, Target

TokenProvider = Callable[[Hop], str]

ADVISORY_FRACTION = 1 / 4
MANDATORY_FRACTION = 1 / 6
MAX_ADVISORY = 15 * 60
MAX_MANDATORY = 10 * 60


def refresh_windows(lifetime_seconds: float) -> tuple[float, float]:
    """(advisory, mandatory) refresh windows, in seconds before expiry, for a session."""
    lifetime = max(0.0, float(lifetime_seconds))
    return (
        min(MAX_ADVISORY, lifetime * ADVISORY_FRACTION),
        min(MAX_MANDATORY, lifetime * MANDATORY_FRACTION),
    )


class HopCredentials(RefreshableCredentials):
    """Refreshable credentials of one hop. Never shows its secret in ``repr``."""

    def __init__(
        self,
        hop: Hop,
        issued: IssuedCredentials,
        refresh: Callable[[], dict[str, Any]],
        clock: Clock,
    ) -> None:
        lifetime = issued.lifetime_seconds or hop.duration_seconds
        advisory, mandatory = refresh_windows(lifetime)
        super().__init__(
            issued.access_key,
            issued.secret_key,
            issued.token,
            issued.expiration,
            refresh,
            "rolechain-assume-role",
            time_fetcher=clock,
            advisory_timeout=advisory,  # type: ignore[arg-type]
            mandatory_timeout=mandatory,  # type: ignore[arg-type]
        )
        self.hop = hop
        self.assumed_role_arn = issued.assumed_role_arn
        self.refreshes = 0

    @property
    def expiry_time(self) -> datetime:
        expiry: datetime = _raw(self)._expiry_time
        return expiry

    @property
    def advisory_window(self) -> float:
        return float(_raw(self)._advisory_refresh_timeout)

    @property
    def mandatory_window(self) -> float:
        return float(_raw(self)._mandatory_refresh_timeout)

    def seconds_remaining(self) -> float:
        return float(_raw(self)._seconds_remaining())

    def force_refresh(self, stale_access_key: str | None = None) -> None:
        """Re-assume now (after an ExpiredToken), whatever the clock says.

        With ``stale_access_key``, nothing happens if another thread already replaced
        that key: many children seeing one expired parent refresh it once.
        """
        raw = _raw(self)
        with raw._refresh_lock:
            if stale_access_key is not None and raw._access_key != stale_access_key:
                return
            raw._protected_refresh(is_mandatory=True)

    def __repr__(self) -> str:
        return (
            f"HopCredentials(hop={self.hop.id!r}, access_key={mask(_raw(self)._access_key)!r}, "
            f"expires={self.expiry_time.isoformat()!r})"
        )

    __str__ = __repr__


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    credentials: HopCredentials | None = None
    error: RolechainError | None = None


class HopTree:
    """Credentials of every hop of ``plan``, starting from ``root`` (the principal's).

    ``clock`` returns an aware datetime (tests compress time with it); ``token_provider``
    returns an MFA code for a hop with an ``mfa_serial`` (the CLI prompts; unattended runs
    have none and such hops fail with a clear error).
    """

    def __init__(
        self,
        plan: Plan,
        root: Credentials,
        assumer: Assumer,
        *,
        clock: Clock = utc_now,
        token_provider: TokenProvider | None = None,
        expired_token_retries: int = 2,
    ) -> None:
        self.plan = plan
        self.root = root
        self.assumer = assumer
        self.clock = clock
        self.token_provider = token_provider
        self.expired_token_retries = expired_token_retries
        self._entries = {hop.id: _Entry() for hop in plan.hops}
        self._lock = threading.Lock()
        self.assumed = 0  # first assumptions
        self.refreshed = 0  # refreshes (re-assumptions)

    def credentials(self, hop_id: str) -> HopCredentials:
        """The hop's refreshable credentials, assuming it (and its parents) if needed."""
        entry = self._entries[hop_id]
        if entry.credentials is not None:
            return entry.credentials
        with entry.lock:
            ready = _current(entry)  # another thread may have assumed it meanwhile
            if ready is not None:
                return ready
            if entry.error is None:  # first use: assume it
                hop = self.plan.hop(hop_id)
                try:
                    issued = self._assume(hop)
                except RolechainError as exc:
                    entry.error = exc
                else:
                    entry.credentials = HopCredentials(
                        hop, issued, self._refresher(hop), self.clock
                    )
                    with self._lock:
                        self.assumed += 1
                    return entry.credentials
            raise _copy(entry.error)

    def adopt(self, other: HopTree) -> None:
        """Share ``other``'s hops that this plan has too (same id, same parameters).

        Used after Organizations discovery re-plans a run: hops already assumed to list
        the accounts are not assumed again.
        """
        for hop in self.plan.hops:
            entry = other._entries.get(hop.id)
            if entry is not None and other._hop_or_none(hop.id) == hop:
                self._entries[hop.id] = entry
        with self._lock:
            self.assumed += other.assumed

    def _hop_or_none(self, hop_id: str) -> Hop | None:
        try:
            return self.plan.hop(hop_id)
        except KeyError:
            return None

    def for_target(self, target: Target) -> HopCredentials:
        return self.credentials(target.hop_id)

    def peek(self, hop_id: str) -> HopCredentials | None:
        """The hop's credentials if it was assumed already; never calls AWS."""
        return self._entries[hop_id].credentials

    def failed(self, hop_id: str) -> RolechainError | None:
        """The error of a hop that failed, if it did."""
        return self._entries[hop_id].error

    def caller(self, hop: Hop) -> Credentials:
        """The credentials that assume ``hop``: its parent's, or the principal's."""
        if hop.parent is None:
            return self.root
        return self.credentials(hop.parent)

    def _token(self, hop: Hop) -> str | None:
        if hop.mfa_serial is None:
            return None
        if self.token_provider is None:
            raise CredentialsError(
                f"hop {hop.label} needs an MFA code (mfa_serial {hop.mfa_serial}) and this run "
                "is unattended",
                hint="run it from a terminal to be prompted, or start from credentials that "
                "already passed MFA and drop 'mfa_serial' from the role",
            )
        return self.token_provider(hop)

    def _assume(self, hop: Hop) -> IssuedCredentials:
        token = self._token(hop)
        tries = self.expired_token_retries
        while True:
            caller = self.caller(hop)
            used = caller.get_frozen_credentials().access_key
            try:
                return self.assumer.assume(hop, caller, token)
            except ExpiredTokenError:
                if tries <= 0:
                    raise
                tries -= 1
                self._refresh_caller(hop, caller, used)

    def _refresh_caller(self, hop: Hop, caller: Credentials, used: str | None) -> None:
        if isinstance(caller, HopCredentials):
            caller.force_refresh(stale_access_key=used)
            return
        if isinstance(caller, RefreshableCredentials):
            raw = _raw(caller)
            with raw._refresh_lock:
                if raw._access_key == used:
                    raw._protected_refresh(is_mandatory=True)
            return
        raise CredentialsError(
            f"the principal's credentials expired while assuming {hop.label}",
            hint="start the run with fresh credentials (or a source that refreshes, such as "
            "a profile with SSO or an instance role)",
        )

    def _refresher(self, hop: Hop) -> Callable[[], dict[str, Any]]:
        def refresh() -> dict[str, Any]:
            issued = self._assume(hop)
            with self._lock:
                self.refreshed += 1
            creds = self._entries[hop.id].credentials
            if creds is not None:
                creds.refreshes += 1
                creds.assumed_role_arn = issued.assumed_role_arn or creds.assumed_role_arn
            return {
                "access_key": issued.access_key,
                "secret_key": issued.secret_key,
                "token": issued.token,
                "expiry_time": issued.expiration.astimezone(UTC).isoformat(),
            }

        return refresh


def _current(entry: _Entry) -> HopCredentials | None:
    return entry.credentials


def _raw(obj: object) -> Any:
    """``obj`` untyped, to reach botocore's documented-by-source private refresh state."""
    return obj


def _copy(error: RolechainError | None) -> RolechainError:
    """A fresh instance of a kept error (one exception object must not be raised twice)."""
    assert error is not None
    if isinstance(error, AwsError):
        return error.with_context(error.context)
    return error

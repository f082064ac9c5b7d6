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

Refreshing never storms STS. botocore asks for a refresh on every signed request inside
the advisory window, but lets only one thread refresh while the others use the current
keys. An *advisory* refresh makes one AssumeRole attempt (:func:`~rolechain.aws.retry.
attempts_at_most`), and only if the calling account's pacer has a slot free at once (it
never queues behind the calls the run needs); if it fails or is put off, the still-valid
keys are kept and the hop cools down (:func:`cooldown_seconds`: a fifth of the advisory
window, at most 30 s) before the next attempt. A *mandatory* refresh (the last sixth of
the session, or an ``ExpiredToken``) runs the full retry policy while every other thread
waits for it; if it fails, threads asking within the cool-down get the same error instead
of starting another round of retries.

A hop that fails is failed for the whole run: the error is kept and raised to every target
below it, without calling AWS again. ``ExpiredToken`` from AssumeRole means the *caller*
expired: the tree refreshes the caller (the parent hop) and asks again.

botocore's private refresh state is reached only through
:mod:`rolechain.aws.botocore_adapter`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.credentials import Credentials, RefreshableCredentials

from rolechain.aws.assumer import Assumer, Clock, IssuedCredentials, mask, utc_now
from rolechain.aws.botocore_adapter import RefreshHooks, force_refresh
from rolechain.aws.calls import attempts_at_most
from rolechain.aws.pacer import PacingTimeout
from rolechain.aws.retry import CallStats
from rolechain.errors import AwsError, CredentialsError, ExpiredTokenError, RolechainError
from rolechain.planner.plan import Hop, Plan, Target

TokenProvider = Callable[[Hop], str]

ADVISORY_FRACTION = 1 / 4
MANDATORY_FRACTION = 1 / 6
MAX_ADVISORY = 15 * 60
MAX_MANDATORY = 10 * 60
COOLDOWN_FRACTION = 1 / 5  # of the advisory window
MAX_COOLDOWN = 30.0


def refresh_windows(lifetime_seconds: float) -> tuple[float, float]:
    """(advisory, mandatory) refresh windows, in seconds before expiry, for a session."""
    lifetime = max(0.0, float(lifetime_seconds))
    return (
        min(MAX_ADVISORY, lifetime * ADVISORY_FRACTION),
        min(MAX_MANDATORY, lifetime * MANDATORY_FRACTION),
    )


def cooldown_seconds(advisory_window: float) -> float:
    """How long a hop waits after a failed refresh before trying again."""
    return max(0.0, min(MAX_COOLDOWN, advisory_window * COOLDOWN_FRACTION))


class HopCredentials(RefreshHooks):
    """Refreshable credentials of one hop. Never shows its secret in ``repr``.

    ``fetch()`` assumes the hop again and returns the new keys; it is called with botocore's
    refresh lock held, so at most one refresh of a hop runs at a time.
    """

    def __init__(
        self,
        hop: Hop,
        issued: IssuedCredentials,
        fetch: Callable[[], IssuedCredentials],
        clock: Clock,
    ) -> None:
        lifetime = issued.lifetime_seconds or hop.duration_seconds
        advisory, mandatory = refresh_windows(lifetime)
        super().__init__(
            issued.access_key,
            issued.secret_key,
            issued.token,
            issued.expiration,
            self._refresh_metadata,
            "rolechain-assume-role",
            time_fetcher=clock,
            advisory_timeout=advisory,  # type: ignore[arg-type]
            mandatory_timeout=mandatory,  # type: ignore[arg-type]
        )
        self.hop = hop
        self.assumed_role_arn = issued.assumed_role_arn
        self.refreshes = 0
        self.advisory_failures = 0  # advisory refreshes that failed (keys kept)
        self.advisory_deferred = 0  # advisory refreshes put off: the pacer had no free slot
        self.cooldown = cooldown_seconds(advisory)
        self._fetch = fetch
        self._clock = clock
        self._mandatory = False  # the kind of refresh in progress (lock held)
        self._advisory_retry_at: datetime | None = None
        self._failure: tuple[datetime, RolechainError] | None = None

    def refresh_locked(self, *, mandatory: bool) -> None:
        now = self._clock()
        if not mandatory:
            if self._advisory_retry_at is not None and now < self._advisory_retry_at:
                return  # cooling down: keep the current, still valid keys
        elif self._failure is not None:
            failed_at, error = self._failure
            if now < failed_at + timedelta(seconds=self.cooldown):
                raise fresh_error(error)  # the refresh this thread waited for failed
        self._mandatory = mandatory
        self.botocore_refresh(mandatory=mandatory)

    def _refresh_metadata(self) -> dict[str, Any]:
        """botocore's refresh function: the hop's new keys (lock held)."""
        if self._mandatory:
            try:
                with attempts_at_most(None):
                    issued = self._fetch()
            except RolechainError as exc:
                self._failure = (self._clock(), exc)
                raise
        else:
            try:
                with attempts_at_most(1):
                    issued = self._fetch()
            except RolechainError as exc:
                # Keep the current keys: they are valid beyond the mandatory window.
                if isinstance(exc, PacingTimeout):
                    self.advisory_deferred += 1  # no free pacer slot: no call was made
                else:
                    self.advisory_failures += 1
                self._advisory_retry_at = self._clock() + timedelta(seconds=self.cooldown)
                return self._current_metadata()
        self._failure = None
        self._advisory_retry_at = None
        self.refreshes += 1
        self.assumed_role_arn = issued.assumed_role_arn or self.assumed_role_arn
        return {
            "access_key": issued.access_key,
            "secret_key": issued.secret_key,
            "token": issued.token,
            "expiry_time": issued.expiration.astimezone(UTC).isoformat(),
        }

    def _current_metadata(self) -> dict[str, Any]:
        frozen = self.current_frozen()
        return {
            "access_key": frozen.access_key,
            "secret_key": frozen.secret_key,
            "token": frozen.token,
            "expiry_time": self.expiry_time.astimezone(UTC).isoformat(),
        }

    def force_refresh(self, stale_access_key: str | None = None) -> None:
        """Re-assume now (after an ExpiredToken), whatever the clock says.

        With ``stale_access_key``, nothing happens if another thread already replaced
        that key: many children seeing one expired parent refresh it once.
        """
        force_refresh(self, stale_access_key)

    def __repr__(self) -> str:
        return (
            f"HopCredentials(hop={self.hop.id!r}, access_key={mask(self.current_access_key)!r}, "
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
    have none and such hops fail with a clear error); ``stats`` counts ExpiredToken answers
    recovered from (``expired_token_refreshes``).
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
        stats: CallStats | None = None,
    ) -> None:
        self.plan = plan
        self.root = root
        self.assumer = assumer
        self.clock = clock
        self.token_provider = token_provider
        self.expired_token_retries = expired_token_retries
        self.stats = stats
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
                if self.stats is not None:
                    self.stats.add_expired_token_refresh()

    def _refresh_caller(self, hop: Hop, caller: Credentials, used: str | None) -> None:
        if isinstance(caller, RefreshableCredentials):
            force_refresh(caller, used)
            return
        raise CredentialsError(
            f"the principal's credentials expired while assuming {hop.label}",
            hint="start the run with fresh credentials (or a source that refreshes, such as "
            "a profile with SSO or an instance role)",
        )

    def _refresher(self, hop: Hop) -> Callable[[], IssuedCredentials]:
        def refresh() -> IssuedCredentials:
            issued = self._assume(hop)
            with self._lock:
                self.refreshed += 1
            return issued

        return refresh


def _current(entry: _Entry) -> HopCredentials | None:
    return entry.credentials


def fresh_error(error: RolechainError) -> RolechainError:
    """A new instance of a kept error: one exception object must not be raised from many
    threads (each raise rewrites its traceback and chains the others' contexts)."""
    if isinstance(error, AwsError):
        return error.with_context(error.context)
    cls = type(error)
    fresh = cls.__new__(cls, *error.args)
    fresh.__dict__.update(error.__dict__)
    return fresh


def _copy(error: RolechainError | None) -> RolechainError:
    assert error is not None
    return fresh_error(error)

"""Assuming one hop: the :class:`Assumer` protocol and its STS implementation.

An assumer turns (hop, the caller's credentials) into issued credentials. The hop tree
(:mod:`rolechain.aws.credentials`) decides *when* to assume; an assumer only knows *how*.
That seam lets a fake assumer (tests), the on-disk credential cache (a wrapper around an
assumer) and :class:`StsAssumer` plug into the same tree.

:class:`StsAssumer` paces calls per *calling account* with the run's pacer
(:mod:`rolechain.aws.pacer`: STS charges a call to the account whose credentials make it),
retries throttles within the time-bounded throttle budget and other transient errors with
exponential backoff and full jitter (:mod:`rolechain.aws.retry`), counts requests, retries
and throttles, and converts the returned ``Expiration`` to the local clock using the
response's ``Date`` header, so a skewed local clock (or a test's compressed clock)
refreshes at the right moment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

from botocore.credentials import Credentials

from rolechain.aws.calls import ThrottleBudget, call_paced
from rolechain.aws.errors import aws_call
from rolechain.aws.pacer import Pacing, as_pacing
from rolechain.aws.ratelimit import AssumeLimiter
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import AwsSessions
from rolechain.errors import AwsContext
from rolechain.planner.plan import Hop

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def mask(access_key: str) -> str:
    """``ASIA…WXYZ``: enough to tell keys apart in a log, never the whole key."""
    return f"{access_key[:4]}…{access_key[-4:]}" if len(access_key) > 8 else "…"


@dataclass(frozen=True)
class IssuedCredentials:
    """Credentials AssumeRole issued. ``expiration`` is in the local clock's frame.

    The secret key and session token never appear in ``repr``/``str``.
    """

    access_key: str
    secret_key: str = field(repr=False)
    token: str = field(repr=False)
    expiration: datetime
    assumed_role_arn: str | None = None
    issued_at: datetime | None = None

    def __repr__(self) -> str:
        return (
            f"IssuedCredentials(access_key={mask(self.access_key)!r}, "
            f"expiration={self.expiration.isoformat()!r}, "
            f"assumed_role_arn={self.assumed_role_arn!r})"
        )

    __str__ = __repr__

    @property
    def lifetime_seconds(self) -> float | None:
        if self.issued_at is None:
            return None
        return (self.expiration - self.issued_at).total_seconds()


@runtime_checkable
class Assumer(Protocol):
    """Assumes one hop with the caller's credentials.

    Raises :class:`~rolechain.errors.AwsError` subclasses: transient errors only after its
    retries are spent, :class:`~rolechain.errors.ExpiredTokenError` when the *caller's*
    credentials expired (the hop tree refreshes the caller and asks again).
    """

    def assume(
        self, hop: Hop, caller: Credentials, token_code: str | None = None
    ) -> IssuedCredentials: ...


PRINCIPAL_KEY = "principal"  # the pacing key of first hops when nothing better is known


def parent_key(hop: Hop) -> Hashable:
    """A pacing key for ``hop`` when the plan is not at hand: its parent hop (or the
    principal). :class:`~rolechain.executor.RunContext` keys by the calling *account*."""
    return hop.parent or PRINCIPAL_KEY


class StsAssumer:
    """The real thing: ``sts:AssumeRole``, paced per calling account, with retries, a
    throttle budget and counting.

    ``pacer``: a :class:`~rolechain.aws.pacer.Pacing` (or a plain
    :class:`~rolechain.aws.ratelimit.AssumeLimiter`); None paces nothing.
    ``calling_account(hop)``: the pacing key of the account whose credentials assume
    ``hop`` (default: :func:`parent_key`). ``deadline()``: the run's deadline on
    ``time.monotonic``'s clock, or None; no call waits or retries past it.
    """

    def __init__(
        self,
        sessions: AwsSessions,
        *,
        policy: RetryPolicy | None = None,
        pacer: Pacing | AssumeLimiter | None = None,
        budget: ThrottleBudget | None = None,
        stats: CallStats | None = None,
        default_region: str = "us-east-1",
        clock: Clock = utc_now,
        sleep: Callable[[float], None] | None = None,
        calling_account: Callable[[Hop], Hashable] = parent_key,
        deadline: Callable[[], float | None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy or RetryPolicy()
        self.pacer = as_pacing(pacer) if pacer is not None else None
        self.budget = budget or ThrottleBudget()
        self.stats = stats or CallStats()
        self.default_region = default_region
        self.clock = clock
        self.calling_account = calling_account
        self.deadline = deadline
        self._sleep = sleep
        self._lock = threading.Lock()

    def assume(
        self, hop: Hop, caller: Credentials, token_code: str | None = None
    ) -> IssuedCredentials:
        params = hop.assume_role_params()
        if token_code is not None:
            params["TokenCode"] = token_code
        region = hop.region or self.default_region
        context = AwsContext(hop=hop.label, operation="AssumeRole", region=region)

        def attempt() -> IssuedCredentials:
            self.stats.add_assume_call()
            sent_at = self.clock()
            with aws_call(context):
                client = self.sessions.client("sts", region, caller)
                response = client.assume_role(**params)
            return issued_from_response(response, sent_at)

        kwargs: dict[str, Any] = {"stats": self.stats, "assume": True}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        return call_paced(
            attempt,
            pacer=self.pacer,
            key=self.calling_account(hop),
            policy=self.policy,
            budget=self.budget,
            deadline=self.deadline() if self.deadline is not None else None,
            **kwargs,
        )


def issued_from_response(response: dict[str, Any], sent_at: datetime) -> IssuedCredentials:
    """IssuedCredentials from an AssumeRole response, expiry moved to the local clock.

    ``Expiration`` is in AWS's clock; the response's ``Date`` header is AWS's "now". The
    local expiry is ``sent_at + (Expiration - Date)``: the session's true length from when
    the request left, immune to local clock skew.
    """
    creds = response["Credentials"]
    expiration: datetime = creds["Expiration"]
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    local_expiry = expiration
    date = headers.get("date")
    if date:
        try:
            server_now = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            server_now = None
        if server_now is not None:
            if server_now.tzinfo is None:
                server_now = server_now.replace(tzinfo=UTC)
            lifetime = expiration - server_now
            if lifetime > timedelta(0):
                local_expiry = sent_at + lifetime
    user = response.get("AssumedRoleUser") or {}
    return IssuedCredentials(
        access_key=creds["AccessKeyId"],
        secret_key=creds["SecretAccessKey"],
        token=creds["SessionToken"],
        expiration=local_expiry,
        assumed_role_arn=user.get("Arn"),
        issued_at=sent_at,
    )

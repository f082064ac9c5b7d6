"""Test doubles at rolechain's seams: a fake clock, a fake assumer, hand-built plans, and
botocore event handlers that inject faults into requests to the moto server."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.credentials import Credentials
from botocore.exceptions import EndpointConnectionError

from rolechain.aws.assumer import IssuedCredentials
from rolechain.errors import AwsContext, AwsError, ExpiredTokenError
from rolechain.planner.plan import Hop, Plan, Target, TaskRef

FAST_RETRY = (
    ("assume_rate", 1000.0),
    ("retry_attempts", 4),
    ("retry_initial_wait", 0.001),
    ("retry_max_wait", 0.01),
)
HUB_ACCOUNT = "111111111111"
# The same fake keys tests/conftest.py's ``aws`` fixture puts in the environment.
DEFAULT_ACCOUNT = "123456789012"
FAKE_KEY = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def acct(i: int) -> str:
    return f"{200000000000 + i:012d}"


class FakeClock:
    """A clock tests move by hand. Returns aware UTC datetimes."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


class FakeAssumer:
    """Issues credentials without AWS, like STS would, and checks the caller like STS does.

    ``faults[hop_id]`` is a list of exceptions raised by successive calls for that hop
    (one per call, then success); ``deny`` is a set of hop ids that always fail with
    AccessDenied. The caller's credentials are frozen (as signing a request would, which
    refreshes them) and rejected with ExpiredToken if the fake clock is past their expiry.
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        faults: dict[str, list[AwsError]] | None = None,
        deny: Iterable[str] = (),
        root_expiry: datetime | None = None,
    ) -> None:
        self.clock = clock
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.deny = set(deny)
        self.calls: Counter[str] = Counter()
        self.expired_callers = 0
        self._expiry: dict[str, datetime] = {}
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        from rolechain.aws.retry import CallStats

        self.stats = CallStats()

    def assume(
        self, hop: Hop, caller: Credentials, token_code: str | None = None
    ) -> IssuedCredentials:
        frozen = caller.get_frozen_credentials()
        now = self.clock()
        with self._lock:
            self.calls[hop.id] += 1
            self.stats.add_assume_call()
            expiry = self._expiry.get(frozen.access_key)
            pending = self.faults.get(hop.id)
            fault = pending.pop(0) if pending else None
            serial = next(self._serial)
        if expiry is not None and now >= expiry:
            with self._lock:
                self.expired_callers += 1
            raise ExpiredTokenError(
                "The security token included in the request is expired",
                code="ExpiredToken",
                context=AwsContext(hop=hop.label, operation="AssumeRole"),
            )
        if fault is not None:
            raise fault.with_context(AwsContext(hop=hop.label, operation="AssumeRole"))
        if hop.id in self.deny:
            from rolechain.errors import AccessDeniedError

            raise AccessDeniedError(
                f"User is not authorized to perform: sts:AssumeRole on resource: {hop.role_arn}",
                code="AccessDenied",
                context=AwsContext(hop=hop.label, operation="AssumeRole"),
            )
        expiration = now + timedelta(seconds=hop.duration_seconds)
        key = f"ASIAFAKE{serial:012d}"
        with self._lock:
            self._expiry[key] = expiration
        return IssuedCredentials(
            access_key=key,
            secret_key=f"secret-{serial}",
            token=f"token-{serial}",
            expiration=expiration,
            assumed_role_arn=f"arn:aws:sts::{hop.account_id}:assumed-role/{hop.role}/s",
            issued_at=now,
        )

    def expired(self, credentials: Credentials) -> bool:
        """Would STS reject these (frozen now) credentials as expired?"""
        frozen = credentials.get_frozen_credentials()
        expiry = self._expiry.get(frozen.access_key)
        return expiry is not None and self.clock() >= expiry


def make_hop(
    hop_id: str,
    parent: str | None,
    account: str,
    role: str,
    *,
    depth: int,
    duration: int = 3600,
    caller: str | None = None,
    **extra: Any,
) -> Hop:
    return Hop(
        id=hop_id,
        parent=parent,
        caller=caller or (parent.rsplit(">", 1)[-1] if parent else "ci"),
        role=role,
        role_arn=f"arn:aws:iam::{account}:role/{role.split('@')[0]}",
        account_id=account,
        partition="aws",
        depth=depth,
        chained=depth > 1,
        duration_seconds=duration,
        duration_source="requested",
        session_name="rolechain-test",
        **extra,
    )


def default_tasks() -> tuple[TaskRef, ...]:
    return (TaskRef(id="s3.list_buckets", task="s3.list_buckets"),)


def hub_plan(
    accounts: Sequence[str],
    *,
    tasks: tuple[TaskRef, ...] | None = None,
    regions: tuple[str, ...] = ("us-east-1",),
    duration: int = 3600,
    concurrency: int = 8,
    settings: tuple[tuple[str, Any], ...] = FAST_RETRY,
    principal_kind: str = "user",
    hub_account: str = HUB_ACCOUNT,
) -> Plan:
    """ci -> hub -> audit@<account> for each account."""
    hub = make_hop("ci>hub", None, hub_account, "hub", depth=1, duration=duration)
    hops = [hub]
    targets = []
    for account in accounts:
        name = f"audit@{account}"
        hop = make_hop(f"ci>hub>{name}", hub.id, account, name, depth=2, duration=duration)
        hops.append(hop)
        targets.append(
            Target(
                name=name,
                role_arn=hop.role_arn,
                account_id=account,
                path=(hub.id, hop.id),
                lifetime_seconds=duration,
                needs_refresh=False,
                regions=regions,
            )
        )
    return Plan(
        job="inventory",
        principal="ci",
        principal_kind=principal_kind,  # type: ignore[arg-type]
        run_id="run-test",
        regions=regions,
        hops=tuple(hops),
        targets=tuple(targets),
        tasks=tasks if tasks is not None else default_tasks(),
        concurrency=concurrency,
        settings=settings,
    )


def chain_plan(
    depth: int,
    *,
    tasks: tuple[TaskRef, ...] | None = None,
    duration: int = 3600,
    regions: tuple[str, ...] = ("us-east-1",),
) -> Plan:
    """ci -> r1 -> r2 -> ... -> r<depth> (each in its own account); the last is the target."""
    hops: list[Hop] = []
    parent: str | None = None
    for level in range(1, depth + 1):
        hop_id = (parent + ">" if parent else "ci>") + f"r{level}"
        hops.append(
            make_hop(hop_id, parent, acct(900 + level), f"r{level}", depth=level, duration=duration)
        )
        parent = hop_id
    last = hops[-1]
    target = Target(
        name=last.role,
        role_arn=last.role_arn,
        account_id=last.account_id,
        path=tuple(h.id for h in hops),
        lifetime_seconds=duration,
        needs_refresh=False,
        regions=regions,
    )
    return Plan(
        job="deep",
        principal="ci",
        principal_kind="user",
        run_id="run-deep",
        regions=regions,
        hops=tuple(hops),
        targets=(target,),
        tasks=tasks if tasks is not None else default_tasks(),
        concurrency=4,
        settings=FAST_RETRY,
    )


# -- fault injection into real requests (botocore event handlers on a private session) ---


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterable[bytes]:
        yield self._body


def error_response(request: Any, code: str, message: str, status: int) -> AWSResponse:
    """An AWS query-protocol error response (STS, EC2-style XML)."""
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>fault-injected</RequestId></ErrorResponse>"
    ).encode()
    return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, _Raw(body))


class Faults:
    """before-send handlers: fail chosen requests before they reach the server.

    ``rule(request) -> (code, message, status) | "connection" | None`` decides per request.
    Counts requests seen per operation.
    """

    def __init__(self, rule: Callable[[str, Any], Any]) -> None:
        self.rule = rule
        self.seen: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()

    def install(self, botocore_session: Any) -> None:
        botocore_session.register("before-send", self._before_send)

    def _before_send(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        # event_name is before-send.<service>.<Operation>
        operation = str(kwargs.get("event_name", "")).rsplit(".", 1)[-1] or "?"
        with self._lock:
            self.seen[operation] += 1
            decision = self.rule(operation, request)
            if decision is not None:
                self.injected[operation] += 1
        if decision is None:
            return None
        if decision == "connection":
            raise EndpointConnectionError(endpoint_url=request.url)
        code, message, status = decision
        return error_response(request, code, message, status)


def assume_role_arn(request: Any) -> str:
    """RoleArn of an AssumeRole request (form-encoded body)."""
    from urllib.parse import parse_qs

    body = request.body
    if isinstance(body, bytes):
        body = body.decode()
    return parse_qs(body or "").get("RoleArn", [""])[0]

"""Test doubles at rolechain's seams: a fake clock, a fake assumer that enforces what STS
enforces, hand-built plans, and botocore event handlers that inject faults into requests to
the moto server."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.credentials import Credentials
from botocore.exceptions import EndpointConnectionError

from rolechain.aws.assumer import IssuedCredentials
from rolechain.errors import AwsContext, AwsError, ExpiredTokenError
from rolechain.planner.plan import Hop, Plan, RunSettings, Target, TaskRef

FAST_RETRY = RunSettings(
    assume_rate=1000.0, retry_attempts=4, retry_initial_wait=0.001, retry_max_wait=0.01
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


PRINCIPAL = "principal"  # the trust entry meaning "the starting credentials"
ROOT_KEY = "AKIAROOTROOTROOT"  # tests/aws/test_credentials.py's principal
CHAINING_CAP = 3600
DEFAULT_MAX_SESSION = 3600


@dataclass(frozen=True)
class RoleRules:
    """What STS checks when someone assumes a role: who its trust policy names, its
    MaxSessionDuration, and the ExternalId its trust policy requires (if any)."""

    trusts: frozenset[str]  # role ARNs whose sessions may assume it, or PRINCIPAL
    max_session: int = DEFAULT_MAX_SESSION
    external_id: str | None = None


def trust_of(*plans: Plan, max_session: Mapping[str, int] | None = None) -> dict[str, RoleRules]:
    """Trust policies for the roles of ``plans``, as a correct deployment would have them:
    each role trusts the role above it in the plan (first hops: the principal), requires
    the ExternalId the plan sends, and has ``max_session[role_arn]`` (default: AWS's 3600)."""
    trusts: dict[str, set[str]] = {}
    external: dict[str, str | None] = {}
    for plan in plans:
        for hop in plan.hops:
            caller = plan.hop(hop.parent).role_arn if hop.parent else PRINCIPAL
            trusts.setdefault(hop.role_arn, set()).add(caller)
            external[hop.role_arn] = hop.external_id
    limits = dict(max_session or {})
    return {
        arn: RoleRules(frozenset(callers), limits.get(arn, DEFAULT_MAX_SESSION), external.get(arn))
        for arn, callers in trusts.items()
    }


class FakeAssumer:
    """Issues credentials without AWS, like STS would, and checks the caller like STS does.

    ``roles`` maps role ARNs to their :class:`RoleRules` (:func:`trust_of` builds them from
    a plan). A call is refused as STS would refuse it: AccessDenied when the caller is not
    trusted by the role (or the role is unknown, or the ExternalId is wrong), ValidationError
    when DurationSeconds exceeds the one-hour cap of a chained call (the caller is a role
    session, or the principal's keys carry a session token) or the role's
    MaxSessionDuration, InvalidClientTokenId for keys it never issued that are not the
    principal's (``principal_keys``), and ExpiredToken when the caller's keys (frozen, as
    signing a request would, which refreshes them) are past their expiry on the fake clock.

    ``faults[hop_id]`` is a list of exceptions raised by successive calls for that hop
    (one per call, then success); ``deny`` is a set of hop ids that always fail with
    AccessDenied.
    """

    def __init__(
        self,
        clock: FakeClock,
        roles: Mapping[str, RoleRules],
        *,
        faults: dict[str, list[AwsError]] | None = None,
        deny: Iterable[str] = (),
        principal_keys: Iterable[str] = (FAKE_KEY, ROOT_KEY),
    ) -> None:
        self.clock = clock
        self.roles = dict(roles)
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.deny = set(deny)
        self.principal_keys = set(principal_keys)
        self.calls: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # error code -> calls refused with it
        self.expired_callers = 0
        self._expiry: dict[str, datetime] = {}
        self._issued_for: dict[str, str] = {}  # access key -> role ARN of the session
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        from rolechain.aws.retry import CallStats

        self.stats = CallStats()

    def assume(
        self, hop: Hop, caller: Credentials, token_code: str | None = None
    ) -> IssuedCredentials:
        frozen = caller.get_frozen_credentials()
        now = self.clock()
        context = AwsContext(hop=hop.label, operation="AssumeRole")
        with self._lock:
            self.calls[hop.id] += 1
            self.stats.add_assume_call()
            expiry = self._expiry.get(frozen.access_key)
            session_of = self._issued_for.get(frozen.access_key)
            pending = self.faults.get(hop.id)
            fault = pending.pop(0) if pending else None
            serial = next(self._serial)
        if expiry is not None and now >= expiry:
            with self._lock:
                self.expired_callers += 1
            raise ExpiredTokenError(
                "The security token included in the request is expired",
                code="ExpiredToken",
                context=context,
            )
        if fault is not None:
            raise fault.with_context(context)
        refusal = self._refusal(hop, frozen.access_key, frozen.token, session_of)
        if refusal is not None:
            with self._lock:
                self.refused[refusal.code] += 1
            raise refusal.with_context(context)
        expiration = now + timedelta(seconds=hop.duration_seconds)
        key = f"ASIAFAKE{serial:012d}"
        with self._lock:
            self._expiry[key] = expiration
            self._issued_for[key] = hop.role_arn
        return IssuedCredentials(
            access_key=key,
            secret_key=f"secret-{serial}",
            token=f"token-{serial}",
            expiration=expiration,
            assumed_role_arn=f"arn:aws:sts::{hop.account_id}:assumed-role/{hop.role}/s",
            issued_at=now,
        )

    def _refusal(
        self, hop: Hop, access_key: str, token: str | None, session_of: str | None
    ) -> AwsError | None:
        from rolechain.errors import AccessDeniedError, AwsValidationError, InvalidCredentialsError

        if session_of is None and access_key not in self.principal_keys:
            return InvalidCredentialsError(
                "The security token included in the request is invalid.",
                code="InvalidClientTokenId",
            )
        caller = session_of or PRINCIPAL
        rules = self.roles.get(hop.role_arn)
        params = hop.assume_role_params()
        not_authorized = AccessDeniedError(
            f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: "
            f"{hop.role_arn}",
            code="AccessDenied",
        )
        if hop.id in self.deny or rules is None or caller not in rules.trusts:
            return not_authorized
        if rules.external_id is not None and params.get("ExternalId") != rules.external_id:
            return not_authorized
        duration = int(params.get("DurationSeconds", 3600))
        chained = session_of is not None or bool(token)
        if chained and duration > CHAINING_CAP:
            return AwsValidationError(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles "
                "assumed by role chaining.",
                code="ValidationError",
            )
        if duration > rules.max_session:
            return AwsValidationError(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
                code="ValidationError",
            )
        return None

    def expired(self, credentials: Credentials) -> bool:
        """Would STS reject these (frozen now) credentials as expired?"""
        frozen = credentials.get_frozen_credentials()
        expiry = self._expiry.get(frozen.access_key)
        return expiry is not None and self.clock() >= expiry

    def session_role(self, credentials: Credentials) -> str | None:
        """The role ARN whose session these credentials are (None: not issued here)."""
        return self._issued_for.get(credentials.get_frozen_credentials().access_key)


def fake_for(plan: Plan, clock: FakeClock, **kwargs: Any) -> FakeAssumer:
    """A :class:`FakeAssumer` whose roles trust as ``plan`` says (``max_session=`` too)."""
    max_session = kwargs.pop("max_session", None)
    return FakeAssumer(clock, trust_of(plan, max_session=max_session), **kwargs)


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
    settings: RunSettings = FAST_RETRY,
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

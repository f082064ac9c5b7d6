"""Who the starting credentials are, checked before any hop is assumed.

:func:`caller_identity` calls ``sts:GetCallerIdentity`` with the principal's credentials;
:func:`check_principal` then

* refuses the root user (AWS does not let root assume roles: "Roles may not be assumed by
  root accounts");
* refuses credentials that are not the principal's ``arn`` when the chain file names one;
* when the chain file said ``kind: user`` (long-term keys, first hop not chained) but the
  credentials are a session (a session token, an assumed-role or federated ARN), re-plans
  the job with the principal treated as a session, so every first hop is checked against
  the one-hour chaining cap. The new plan carries a ``principal-is-session`` note (a
  warning: what was detected, and every hop whose duration changed); if the plan no longer
  holds, the PlanError says what was detected and how to fix it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.credentials import Credentials

from rolechain.aws.calls import call_with_retries
from rolechain.aws.errors import aws_call
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import AwsSessions
from rolechain.errors import AwsContext, CredentialsError, PlanError
from rolechain.model.chain import Chain
from rolechain.model.durations import format_duration
from rolechain.planner.plan import Note, Plan

SESSION_NOTE = "principal-is-session"

_ROOT = re.compile(r"^arn:[\w-]+:iam::\d{12}:root$")
_ASSUMED = re.compile(r"^arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/(.+)$")
_ROLE = re.compile(r"^arn:([\w-]+):iam::(\d{12}):role/(?:.*/)?([^/]+)$")


@dataclass(frozen=True)
class CallerIdentity:
    account: str
    arn: str
    user_id: str
    has_token: bool = False

    @property
    def is_root(self) -> bool:
        return bool(_ROOT.match(self.arn))

    @property
    def is_session(self) -> bool:
        """A role session, federated session or any credentials with a session token."""
        return self.has_token or ":assumed-role/" in self.arn or ":federated-user/" in self.arn


def caller_identity(
    sessions: AwsSessions,
    credentials: Credentials,
    *,
    region: str = "us-east-1",
    policy: RetryPolicy | None = None,
    stats: CallStats | None = None,
) -> CallerIdentity:
    """``sts:GetCallerIdentity`` with ``credentials`` (transient errors retried)."""
    context = AwsContext(hop="principal", operation="GetCallerIdentity", region=region)

    def call() -> dict[str, Any]:
        with aws_call(context):
            client = sessions.client("sts", region, credentials)
            response: dict[str, Any] = client.get_caller_identity()
            return response

    response = call_with_retries(call, policy or RetryPolicy(), stats=stats)
    frozen = credentials.get_frozen_credentials()
    return CallerIdentity(
        account=response["Account"],
        arn=response["Arn"],
        user_id=response["UserId"],
        has_token=bool(frozen.token),
    )


def arn_matches(expected: str, actual: str) -> bool:
    """Whether the identity ``actual`` is the ``expected`` principal ARN.

    A role ARN matches any session of that role; an account root ARN matches any identity
    in that account (except that root itself is refused elsewhere).
    """
    if expected == actual:
        return True
    root = re.match(r"^arn:([\w-]+):iam::(\d{12}):root$", expected)
    if root:
        return actual.split(":")[4:5] == [root.group(2)]
    role = _ROLE.match(expected)
    assumed = _ASSUMED.match(actual)
    if role and assumed:
        return role.group(1, 2, 3) == assumed.group(1, 2, 3)
    return False


def as_session_chain(chain: Chain, principal: str) -> Chain:
    """``chain`` with principal ``principal`` declared ``kind: session``."""
    model = chain.model
    principals = dict(model.principals)
    principals[principal] = principals[principal].model_copy(update={"kind": "session"})
    return dataclasses.replace(chain, model=model.model_copy(update={"principals": principals}))


def check_principal(
    plan: Plan,
    identity: CallerIdentity,
    *,
    chain: Chain | None = None,
    targets: Sequence[str] | None = None,
    resolved: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """``plan``, or a new plan if the credentials turned out to be a session.

    Raises CredentialsError for the root user or a principal ARN mismatch, and PlanError if
    the job cannot be planned from a session.
    """
    if identity.is_root:
        raise CredentialsError(
            f"the starting credentials are the root user of account {identity.account}; "
            "the root user cannot assume roles",
            hint="use an IAM user or role in that account as the principal",
        )
    if plan.principal_arn and not arn_matches(plan.principal_arn, identity.arn):
        raise CredentialsError(
            f"the starting credentials are {identity.arn}, but principal {plan.principal!r} "
            f"is declared as {plan.principal_arn}",
            hint="start from the declared identity (AWS_PROFILE, environment) or fix the "
            "principal's 'arn' in the chain file",
        )
    if plan.principal_kind == "user" and identity.is_session:
        if chain is None:
            raise CredentialsError(
                f"principal {plan.principal!r} is declared as user keys, but the credentials "
                f"are a session ({identity.arn}): every first hop is chained and capped at "
                "one hour",
                hint="declare the principal 'kind: session' and plan again",
            )
        from rolechain.planner import plan as make_plan

        detected = (
            f"principal {plan.principal!r} is declared kind: user (long-term IAM user keys), "
            f"but its credentials were detected as a session ({_why_session(identity)}), so "
            "every first hop is role chaining, capped at one hour"
        )
        try:
            new_plan = make_plan(
                as_session_chain(chain, plan.principal),
                plan.job,
                targets=list(targets) if targets is not None else None,
                run_id=plan.run_id,
                resolved=resolved,
            )
        except PlanError as exc:
            violations = [
                dataclasses.replace(v, fix=v.fix.replace(_USER_KEYS_FIX, _SESSION_FIX))
                for v in exc.violations
            ]
            raise PlanError(exc.job, violations, note=detected + "; planned again:") from None
        note = Note(
            kind=SESSION_NOTE,
            message=f"{detected}; planned again as a session: {_changes(plan, new_plan)}",
        )
        return dataclasses.replace(new_plan, notes=(*new_plan.notes, note))
    return plan


_USER_KEYS_FIX = "start from long-term IAM user keys (principal kind: user)"
_SESSION_FIX = (
    "start from the IAM user's own access keys (AKIA..., no session token) instead of the "
    "session credentials given"
)


def _why_session(identity: CallerIdentity) -> str:
    if ":assumed-role/" in identity.arn or ":federated-user/" in identity.arn:
        return identity.arn
    return f"{identity.arn}, with a session token"


def _changes(before: Plan, after: Plan) -> str:
    """What re-planning as a session changed, hop by hop."""
    old = {hop.id: hop for hop in before.hops}
    changed = []
    for hop in after.hops:
        was = old.get(hop.id)
        same = was is not None and was.duration_seconds == hop.duration_seconds
        if was is None or (same and was.chained == hop.chained):
            continue
        changed.append(
            f"{hop.label} now chained, {format_duration(was.duration_seconds)} -> "
            f"{format_duration(hop.duration_seconds)}"
            if was.duration_seconds != hop.duration_seconds
            else f"{hop.label} now chained"
        )
    return "; ".join(changed) if changed else "no hop changed"

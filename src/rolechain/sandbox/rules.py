"""The AssumeRole rules moto does not enforce, as pure functions.

Each check returns the :class:`AwsFault` AWS would answer, or None. Messages are AWS's where
AWS's wording is known (see docs/sandbox.md for which are reconstructions).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rolechain.policy import Caller, ContextValue, assume_role_context, evaluate
from rolechain.policy.trust import RequestContext
from rolechain.sandbox.responses import (
    CHAINING_CAP,
    MAX_SESSION,
    ROOT_REFUSED,
    AwsFault,
    not_authorized,
)
from rolechain.sandbox.state import Identity, RoleRecord

SESSION_NAME_RE = r"[\w+=,.@-]*"
EXTERNAL_ID_RE = r"[\w+=,.@:/-]*"
SOURCE_IDENTITY_RE = r"[\w+=,.@-]*"
TAG_KEY_RE = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+"
TAG_VALUE_RE = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
ROLE_ARN_RE = re.compile(
    r"arn:([\w-]+):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})", re.ASCII
)

MIN_DURATION = 900
MAX_DURATION = 43200
CHAINED_MAX = 3600
DEFAULT_DURATION = 3600
MAX_POLICY_CHARS = 2048
MAX_POLICY_ARNS = 10
MAX_TAGS = 50


@dataclass(frozen=True)
class AssumeRoleRequest:
    """The parameters of one AssumeRole call, as sent on the wire."""

    role_arn: str | None
    session_name: str | None
    duration: int | None = None
    external_id: str | None = None
    source_identity: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    serial_number: str | None = None
    token_code: str | None = None
    raw_duration: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> AssumeRoleRequest:
        """Parse query-protocol parameters (``Tags.member.1.Key`` ...)."""

        def members(prefix: str, suffix: str = "") -> list[str]:
            found: list[tuple[int, str]] = []
            pattern = re.compile(re.escape(prefix) + r"\.member\.(\d+)" + re.escape(suffix) + "$")
            for key, value in params.items():
                m = pattern.match(key)
                if m:
                    found.append((int(m.group(1)), value))
            return [v for _, v in sorted(found)]

        keys = members("Tags", ".Key")
        values = members("Tags", ".Value")
        values += [""] * (len(keys) - len(values))
        raw = params.get("DurationSeconds")
        duration: int | None
        try:
            duration = int(raw) if raw is not None else None
        except ValueError:
            duration = None
        return cls(
            role_arn=params.get("RoleArn"),
            session_name=params.get("RoleSessionName"),
            duration=duration,
            raw_duration=raw,
            external_id=params.get("ExternalId"),
            source_identity=params.get("SourceIdentity"),
            policy=params.get("Policy"),
            policy_arns=tuple(members("PolicyArns", ".arn")),
            tags=tuple(zip(keys, values, strict=True)),
            transitive_tag_keys=tuple(members("TransitiveTagKeys")),
            serial_number=params.get("SerialNumber"),
            token_code=params.get("TokenCode"),
        )


def _separator(ch: str) -> bool:
    """\\p{Z}: spaces and other separators, not newlines or tabs (those are controls)."""
    import unicodedata

    return unicodedata.category(ch).startswith("Z")


def _pattern_ok(value: str, pattern: str) -> bool:
    if "\\p{" in pattern:
        # Python's re has no \p classes: letters, spaces and digits by category.
        allowed = set("_.:/=+-@")
        return all(ch.isalnum() or _separator(ch) or ch in allowed for ch in value) and (
            pattern.endswith("*") or bool(value)
        )
    return re.fullmatch(pattern, value, re.ASCII) is not None


def _constraint(errors: list[str], value: str, field: str, constraint: str) -> None:
    errors.append(f"Value '{value}' at '{field}' failed to satisfy constraint: {constraint}")


def _text(
    errors: list[str], value: str | None, field: str, lo: int, hi: int, pattern: str | None
) -> None:
    if value is None:
        return
    if len(value) < lo:
        _constraint(errors, value, field, f"Member must have length greater than or equal to {lo}")
    if len(value) > hi:
        _constraint(errors, value, field, f"Member must have length less than or equal to {hi}")
    if pattern is not None and not _pattern_ok(value, pattern):
        _constraint(
            errors, value, field, f"Member must satisfy regular expression pattern: {pattern}"
        )


def validation_errors(req: AssumeRoleRequest) -> list[str]:
    """AWS's parameter constraint messages, in parameter order."""
    errors: list[str] = []
    if req.role_arn is None:
        _constraint(errors, "null", "roleArn", "Member must not be null")
    else:
        _text(errors, req.role_arn, "roleArn", 20, 2048, None)
    if req.session_name is None:
        _constraint(errors, "null", "roleSessionName", "Member must not be null")
    else:
        _text(errors, req.session_name, "roleSessionName", 2, 64, SESSION_NAME_RE)
    if req.policy_arns and len(req.policy_arns) > MAX_POLICY_ARNS:
        listed = ", ".join(req.policy_arns)
        _constraint(
            errors,
            f"[{listed}]",
            "policyArns",
            f"Member must have length less than or equal to {MAX_POLICY_ARNS}",
        )
    if req.policy is not None:
        _text(errors, req.policy, "policy", 1, MAX_POLICY_CHARS, None)
    if req.raw_duration is not None:
        if req.duration is None:
            _constraint(errors, req.raw_duration, "durationSeconds", "Member must be an integer")
        elif req.duration < MIN_DURATION:
            _constraint(
                errors,
                str(req.duration),
                "durationSeconds",
                f"Member must have value greater than or equal to {MIN_DURATION}",
            )
        elif req.duration > MAX_DURATION:
            _constraint(
                errors,
                str(req.duration),
                "durationSeconds",
                f"Member must have value less than or equal to {MAX_DURATION}",
            )
    if len(req.tags) > MAX_TAGS:
        _constraint(
            errors,
            "[" + ", ".join(k for k, _ in req.tags) + "]",
            "tags",
            f"Member must have length less than or equal to {MAX_TAGS}",
        )
    for index, (key, value) in enumerate(req.tags, start=1):
        _text(errors, key, f"tags.{index}.member.key", 1, 128, TAG_KEY_RE)
        _text(errors, value, f"tags.{index}.member.value", 0, 256, TAG_VALUE_RE)
    if len(req.transitive_tag_keys) > MAX_TAGS:
        _constraint(
            errors,
            "[" + ", ".join(req.transitive_tag_keys) + "]",
            "transitiveTagKeys",
            f"Member must have length less than or equal to {MAX_TAGS}",
        )
    _text(errors, req.external_id, "externalId", 2, 1224, EXTERNAL_ID_RE)
    _text(errors, req.source_identity, "sourceIdentity", 2, 64, SOURCE_IDENTITY_RE)
    return errors


def validation_fault(errors: Sequence[str]) -> AwsFault:
    count = len(errors)
    head = f"{count} validation error{'s' if count != 1 else ''} detected: "
    return AwsFault("ValidationError", head + "; ".join(errors), 400)


# --- trust policies ---------------------------------------------------------------------------
# Evaluated by rolechain.policy, the evaluator `rolechain verify` uses too.


def as_caller(identity: Identity) -> Caller:
    """The trust-policy caller a sandbox identity is."""
    if identity.kind == "root":
        return Caller("root", identity.account, identity.partition)
    if identity.kind == "session" and identity.role_arn:
        role = Caller.parse(identity.role_arn)
        session = identity.arn.rsplit("/", 1)[-1] if ":assumed-role/" in identity.arn else None
        if role is not None:
            return Caller("role", role.account, role.partition, role.name, role.path, session)
    parsed = Caller.parse(identity.arn)
    if parsed is not None and parsed.kind == "user":
        return parsed
    return Caller("account", identity.account, identity.partition)


def request_context(
    caller: Identity, req: AssumeRoleRequest, *, org_id: str | None = None
) -> RequestContext:
    """The condition keys AWS would put in ``req``'s request context."""
    return assume_role_context(
        as_caller(caller),
        external_id=req.external_id,
        session_name=req.session_name,
        source_identity=req.source_identity,
        inherited_source_identity=caller.source_identity,
        tags=req.tags,
        transitive_tag_keys=req.transitive_tag_keys,
        org_id=org_id,
    )


def trust_allows(
    policy: Mapping[str, Any],
    caller: Identity,
    action: str,
    context: Mapping[str, ContextValue] | RequestContext,
) -> bool:
    """Whether the trust policy allows ``caller`` to perform ``action`` (Deny wins).

    A statement that depends on a condition the sandbox cannot evaluate makes the answer
    unknown, and the sandbox refuses: it can deny access, never grant it.
    """
    return evaluate(policy, as_caller(caller), action, context).allowed


def trust_policy(
    principals: Iterable[str],
    *,
    external_id: str | None = None,
    source_identity: bool = False,
    tag_session: bool = False,
) -> dict[str, Any]:
    """A trust policy document for ``principals`` (ARNs), as the sandbox provisions it."""
    actions = ["sts:AssumeRole"]
    if source_identity:
        actions.append("sts:SetSourceIdentity")
    if tag_session:
        actions.append("sts:TagSession")
    listed = sorted(set(principals))
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": listed},
        "Action": actions,
    }
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    statements = [statement] if listed else []
    return {"Version": "2012-10-17", "Statement": statements}


# --- the whole AssumeRole decision ------------------------------------------------------------


@dataclass(frozen=True)
class Granted:
    """An AssumeRole the sandbox allows: the role, the duration, what the session carries."""

    role: RoleRecord
    duration: int
    source_identity: str | None
    transitive_tags: tuple[tuple[str, str], ...]


def decide_assume_role(
    caller: Identity,
    req: AssumeRoleRequest,
    role: RoleRecord | None,
    *,
    denied_accounts: frozenset[str] = frozenset(),
    org_id: str | None = None,
) -> AwsFault | Granted:
    """What AWS answers ``caller`` calling AssumeRole with ``req`` on ``role``.

    ``org_id`` is the organization of the caller's account (``aws:PrincipalOrgID``).
    """
    errors = validation_errors(req)
    if errors:
        return validation_fault(errors)
    assert req.role_arn is not None
    assert req.session_name is not None
    if caller.kind == "root":
        return AwsFault("AccessDenied", ROOT_REFUSED, 403)
    denied = not_authorized(caller.arn, "sts:AssumeRole", req.role_arn)
    match = ROLE_ARN_RE.fullmatch(req.role_arn)
    if match is None or role is None:
        return denied
    if match.group(2) in denied_accounts:
        return denied
    source_identity = caller.source_identity or req.source_identity
    context = request_context(caller, req, org_id=org_id)
    if not trust_allows(role.trust_policy, caller, "sts:AssumeRole", context):
        return denied
    if (
        caller.source_identity is not None
        and req.source_identity is not None
        and req.source_identity != caller.source_identity
    ):
        return AwsFault(
            "AccessDenied",
            "The source identity of the session cannot be changed: it was set to "
            f"'{caller.source_identity}' earlier in the role chain.",
            403,
        )
    if source_identity is not None and not trust_allows(
        role.trust_policy, caller, "sts:SetSourceIdentity", context
    ):
        return not_authorized(caller.arn, "sts:SetSourceIdentity", req.role_arn)
    if req.tags and not trust_allows(role.trust_policy, caller, "sts:TagSession", context):
        return not_authorized(caller.arn, "sts:TagSession", req.role_arn)
    inherited = caller.transitive_keys
    for key, _ in req.tags:
        if key.lower() in inherited:
            return AwsFault(
                "InvalidParameterValue",
                f"Session tag '{key}' conflicts with the transitive session tag "
                f"'{inherited[key.lower()]}' inherited from the calling session.",
                400,
            )
    tag_keys = {k.lower() for k, _ in req.tags}
    missing = [k for k in req.transitive_tag_keys if k.lower() not in tag_keys]
    if missing:
        return AwsFault(
            "InvalidParameterValue",
            f"Transitive tag keys {missing} are not among the session tags of this request.",
            400,
        )
    duration = req.duration if req.duration is not None else DEFAULT_DURATION
    chained = caller.kind == "session"
    if chained and duration > CHAINED_MAX:
        return AwsFault("ValidationError", CHAINING_CAP, 400)
    if duration > role.max_session_duration:
        return AwsFault("ValidationError", MAX_SESSION, 400)
    transitive = {k.lower() for k in req.transitive_tag_keys}
    carried = caller.transitive_tags + tuple((k, v) for k, v in req.tags if k.lower() in transitive)
    return Granted(role, duration, source_identity, carried)

"""The AWS rules the planner enforces: rule ids, their sources, and per-role checks.

Each rule id is what a :class:`~rolechain.errors.Violation` carries in ``rule``; the AWS
page that states the rule is in :data:`SOURCES`. Checks here look at one role's settings
alone (they do not depend on the path), so the planner runs them once per role or role set
however many hops use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rolechain.model.schema import EXTERNAL_ID_PATTERN, SOURCE_IDENTITY_PATTERN, HopSettings

_STS = "https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html"
_CHAINING = "https://repost.aws/knowledge-center/iam-role-chaining-limit"
_MAX_SESSION = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/"
    "id_roles_update-role-settings.html#id_roles_update-session-duration"
)
_TAGS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_session-tags.html"
_SOURCE_IDENTITY = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/"
    "id_credentials_temp_control-access_monitor.html"
)
_SESSION_POLICY = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies.html#policies_session"
)
_MFA = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_configure-api-require.html"
)
_ROOT = "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_root-user.html"
_TRUST = (
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html"
)

UNKNOWN_JOB = "unknown-job"
UNKNOWN_PRINCIPAL = "unknown-principal"
UNKNOWN_TARGET = "unknown-target"
TARGET_NOT_IN_JOB = "target-not-in-job"
UNKNOWN_VIA = "unknown-via"
ROOT_PRINCIPAL = "root-principal"
UNREACHABLE = "unreachable"
MAX_HOPS = "max-hops"
DURATION_RANGE = "duration-range"
DURATION_OVER_MAX = "duration-over-max-session"
CHAINED_DURATION = "chained-duration"
SESSION_NAME_INVALID = "session-name-invalid"
SESSION_NAME_TOO_SHORT = "session-name-too-short"
SESSION_NAME_COLLISION = "session-name-collision"
EXTERNAL_ID = "external-id"
SOURCE_IDENTITY = "source-identity"
SOURCE_IDENTITY_CHANGED = "source-identity-changed"
SESSION_TAGS = "session-tags"
TRANSITIVE_TAG_KEYS = "transitive-tag-keys"
TRANSITIVE_TAG_REPASSED = "transitive-tag-repassed"
SESSION_POLICY_SIZE = "session-policy-size"
POLICY_ARNS = "policy-arns"
MFA_CALLER = "mfa-caller"
MFA_REFRESH = "mfa-refresh"
MFA_SCHEDULED = "mfa-scheduled"
DISCOVERY_UNREACHABLE = "discovery-unreachable"

RULES: tuple[str, ...] = (
    UNKNOWN_JOB, UNKNOWN_PRINCIPAL, UNKNOWN_TARGET, TARGET_NOT_IN_JOB, UNKNOWN_VIA,
    ROOT_PRINCIPAL, UNREACHABLE, MAX_HOPS, DURATION_RANGE, DURATION_OVER_MAX, CHAINED_DURATION,
    SESSION_NAME_INVALID, SESSION_NAME_TOO_SHORT, SESSION_NAME_COLLISION, EXTERNAL_ID,
    SOURCE_IDENTITY, SOURCE_IDENTITY_CHANGED, SESSION_TAGS, TRANSITIVE_TAG_KEYS,
    TRANSITIVE_TAG_REPASSED, SESSION_POLICY_SIZE, POLICY_ARNS, MFA_CALLER, MFA_REFRESH,
    MFA_SCHEDULED, DISCOVERY_UNREACHABLE,
)  # fmt: skip
"""Every rule id, in the order docs/planning.md describes them."""

# Rules about the chain file itself (unknown names) have no AWS source.
SOURCES: dict[str, str] = {
    ROOT_PRINCIPAL: _ROOT,
    UNREACHABLE: _TRUST,
    DISCOVERY_UNREACHABLE: _TRUST,
    UNKNOWN_VIA: _TRUST,
    MAX_HOPS: _CHAINING,
    DURATION_RANGE: _STS,
    DURATION_OVER_MAX: _MAX_SESSION,
    CHAINED_DURATION: _CHAINING,
    SESSION_NAME_INVALID: _STS,
    SESSION_NAME_TOO_SHORT: _STS,
    SESSION_NAME_COLLISION: _STS,
    EXTERNAL_ID: _STS,
    SOURCE_IDENTITY: _SOURCE_IDENTITY,
    SOURCE_IDENTITY_CHANGED: _SOURCE_IDENTITY,
    SESSION_TAGS: _TAGS,
    TRANSITIVE_TAG_KEYS: _TAGS,
    TRANSITIVE_TAG_REPASSED: _TAGS,
    SESSION_POLICY_SIZE: _SESSION_POLICY,
    POLICY_ARNS: _STS,
    MFA_CALLER: _MFA,
    MFA_REFRESH: _MFA,
    MFA_SCHEDULED: _MFA,
}

MIN_DURATION = 900
CHAINED_MAX_DURATION = 3600
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
MAX_TRANSITIVE_KEYS = 50
MAX_POLICY_CHARS = 2048
MAX_POLICY_ARNS = 10

_EXTERNAL_ID_RE = re.compile(EXTERNAL_ID_PATTERN)
_SOURCE_IDENTITY_RE = re.compile(SOURCE_IDENTITY_PATTERN)


@dataclass(frozen=True)
class Finding:
    """A broken rule of one role's settings; the planner adds hop and location."""

    rule: str
    message: str
    fix: str
    key: str  # the settings key at fault, for the location (e.g. "tags")


def check_settings(settings: HopSettings, account: str, partition: str) -> list[Finding]:
    """Rules that depend only on one role's settings (not on the path to it)."""
    out: list[Finding] = []
    ext = settings.external_id
    if ext is not None and not (2 <= len(ext) <= 1224 and _EXTERNAL_ID_RE.match(ext)):
        out.append(
            Finding(
                EXTERNAL_ID,
                f"external_id must be 2..1224 characters of A-Z a-z 0-9 _+=,.@:/- "
                f"(got {len(ext)} characters)",
                "use the ExternalId exactly as the role's trust policy states it",
                "external_id",
            )
        )
    sid = settings.source_identity
    if sid is not None and (
        not (2 <= len(sid) <= 64 and _SOURCE_IDENTITY_RE.match(sid))
        or sid.lower().startswith("aws:")
    ):
        out.append(
            Finding(
                SOURCE_IDENTITY,
                f"source_identity {sid!r} must be 2..64 characters of A-Z a-z 0-9 _+=,.@- "
                "and may not start with 'aws:'",
                "choose a source identity such as the user's or pipeline's name",
                "source_identity",
            )
        )
    tags = settings.tags
    if len(tags) > MAX_TAGS:
        out.append(
            Finding(
                SESSION_TAGS,
                f"{len(tags)} session tags; AssumeRole accepts at most {MAX_TAGS}",
                f"pass at most {MAX_TAGS} tags",
                "tags",
            )
        )
    for key, value in tags.items():
        if not 1 <= len(key) <= MAX_TAG_KEY:
            out.append(
                Finding(
                    SESSION_TAGS,
                    f"tag key {key[:40]!r} has {len(key)} characters; the limit is 1..128",
                    "shorten the tag key",
                    "tags",
                )
            )
        if len(value) > MAX_TAG_VALUE:
            out.append(
                Finding(
                    SESSION_TAGS,
                    f"tag {key!r} has a value of {len(value)} characters; the limit is 256",
                    "shorten the tag value",
                    "tags",
                )
            )
    lowered = [k.lower() for k in tags]
    dupes = sorted({k for k in lowered if lowered.count(k) > 1})
    if dupes:
        out.append(
            Finding(
                SESSION_TAGS,
                f"tag keys are case-insensitive and these appear twice: {', '.join(dupes)}",
                "keep one spelling of each key",
                "tags",
            )
        )
    transitive = settings.transitive_tag_keys
    if len(transitive) > MAX_TRANSITIVE_KEYS:
        out.append(
            Finding(
                TRANSITIVE_TAG_KEYS,
                f"{len(transitive)} transitive tag keys; the limit is {MAX_TRANSITIVE_KEYS}",
                f"mark at most {MAX_TRANSITIVE_KEYS} keys transitive",
                "transitive_tag_keys",
            )
        )
    missing = sorted({k for k in transitive if k.lower() not in set(lowered)})
    if missing:
        out.append(
            Finding(
                TRANSITIVE_TAG_KEYS,
                f"transitive_tag_keys {missing} are not keys of tags",
                "add the keys to tags or remove them from transitive_tag_keys",
                "transitive_tag_keys",
            )
        )
    policy = settings.session_policy
    if policy is not None:
        inline = policy.inline_json
        if inline is not None and len(inline) > MAX_POLICY_CHARS:
            out.append(
                Finding(
                    SESSION_POLICY_SIZE,
                    f"the inline session policy is {len(inline)} characters minified; "
                    f"AWS allows {MAX_POLICY_CHARS}",
                    "move statements into a managed policy listed under session_policy.managed",
                    "session_policy",
                )
            )
        if len(policy.managed) > MAX_POLICY_ARNS:
            out.append(
                Finding(
                    POLICY_ARNS,
                    f"{len(policy.managed)} managed session policies; the limit is "
                    f"{MAX_POLICY_ARNS}",
                    "combine policies so that at most 10 are listed",
                    "session_policy",
                )
            )
        for arn in policy.managed:
            parts = arn.split(":")
            owner = parts[4] if len(parts) > 4 else ""
            if owner not in (account, "aws") or parts[1] != partition:
                out.append(
                    Finding(
                        POLICY_ARNS,
                        f"session policy {arn} is not in the role's account "
                        f"{account} ({partition}) nor an AWS managed policy",
                        f"use a policy of account {account} or an AWS managed policy "
                        f"(arn:{partition}:iam::aws:policy/...)",
                        "session_policy",
                    )
                )
    return out

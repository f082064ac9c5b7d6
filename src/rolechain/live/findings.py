"""What ``rolechain verify`` can find, how bad each kind is, and how a hop is reported.

Every finding has a kind from :data:`KINDS` with a fixed severity. ``critical``, ``high``,
``medium`` and ``low`` findings are drift: the hop's status is ``drift`` and ``verify`` exits
1. ``info`` findings are shown but are not drift (things a chain file cannot express, or a
condition rolechain cannot evaluate while AWS let the hop through).

A hop's status, worst first:

* ``unassumable``: AssumeRole failed (the AWS error is kept); findings, when the role could
  be read with a reader, say why;
* ``unreadable``: the hop was assumed but ``iam:GetRole`` was refused (declare a
  ``verify.reader``);
* ``drift``: the role differs from the chain file (some finding is not ``info``);
* ``ok``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rolechain.errors import Location

Severity = Literal["critical", "high", "medium", "low", "info"]
Status = Literal["ok", "drift", "unreadable", "unassumable"]

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
STATUSES: tuple[Status, ...] = ("unassumable", "unreadable", "drift", "ok")


@dataclass(frozen=True)
class Kind:
    """One kind of finding: its severity, what it means and the usual fix."""

    name: str
    severity: Severity
    meaning: str
    fix: str


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "role-missing",
            "high",
            "the role does not exist in IAM (GetRole answers NoSuchEntity)",
            "create the role, or remove it from the chain file",
        ),
        Kind(
            "trust-missing",
            "high",
            "the trust policy does not let the hop's caller assume the role: the hop fails",
            "add the caller to the role's trust policy, or change the role's trusts",
        ),
        Kind(
            "external-id-mismatch",
            "high",
            "the trust policy requires an ExternalId, but not the one the chain file passes",
            "set external_id to the value the role's owner expects",
        ),
        Kind(
            "external-id-required",
            "high",
            "the trust policy requires an ExternalId and the chain file passes none",
            "add external_id to the role in the chain file",
        ),
        Kind(
            "external-id-not-required",
            "high",
            "the chain file passes an ExternalId but the trust policy does not check it: every "
            "principal the policy trusts gets in without it (no confused-deputy protection)",
            "add a StringEquals sts:ExternalId condition to the trust policy",
        ),
        Kind(
            "source-identity-denied",
            "high",
            "the hop carries a source identity but the trust policy does not allow "
            "sts:SetSourceIdentity for the caller (or its condition rejects the value)",
            "allow sts:SetSourceIdentity in the trust policy",
        ),
        Kind(
            "session-tags-denied",
            "high",
            "the hop passes session tags but the trust policy does not allow sts:TagSession "
            "for the caller (or its aws:RequestTag conditions reject them)",
            "allow sts:TagSession in the trust policy",
        ),
        Kind(
            "max-session-too-short",
            "high",
            "IAM's MaxSessionDuration is below the DurationSeconds a planned hop requests: "
            "AWS rejects the hop with ValidationError",
            "raise the role's MaxSessionDuration, or lower max_session_duration (and duration) "
            "in the chain file so the plan requests less",
        ),
        Kind(
            "max-session-differs",
            "low",
            "IAM's MaxSessionDuration differs from max_session_duration, but no planned hop "
            "requests more than IAM allows",
            "set max_session_duration to IAM's value",
        ),
        Kind(
            "declared-trust-missing",
            "medium",
            "an entry of trusts (other than the hop's caller) is not in the trust policy",
            "add it to the trust policy, or remove it from trusts",
        ),
        Kind(
            "trust-wildcard",
            "critical",
            'the trust policy trusts every AWS principal ("*") and no condition limits who '
            "(aws:PrincipalOrgID, aws:PrincipalAccount, aws:PrincipalArn)",
            "name the trusted principals, or at least add an aws:PrincipalOrgID condition",
        ),
        Kind(
            "trust-wildcard-conditioned",
            "medium",
            'the trust policy trusts "*" limited by conditions on the caller (organization, '
            "account, ARN) that a chain file cannot declare",
            "name the trusted principals instead",
        ),
        Kind(
            "trust-not-principal",
            "high",
            "the trust policy uses NotPrincipal, which IAM does not allow in a role trust "
            "policy; an Allow with NotPrincipal would trust everyone not listed, so rolechain "
            "counts it as granting nothing",
            "name the trusted principals in Principal instead",
        ),
        Kind(
            "federated-subject-unrestricted",
            "critical",
            "the trust policy lets an OIDC provider's tokens in without a condition that "
            "limits the token's subject (sub) to named values, or with a wildcard in it: for "
            "GitHub Actions any repository, anyone's, may assume the role",
            "add StringEquals/StringLike <provider>:sub with your own subjects "
            "(repo:OWNER/REPO:...)",
        ),
        Kind(
            "federated-audience-unrestricted",
            "high",
            "the trust policy lets an OIDC or SAML provider's tokens in without a condition "
            "that limits their audience (<provider>:aud, SAML:aud) to named values",
            "add StringEquals <provider>:aud (sts.amazonaws.com for GitHub Actions) or SAML:aud",
        ),
        Kind(
            "trust-undeclared-account",
            "high",
            "the trust policy trusts an account root (every identity in that account whose "
            "own policies allow it) that trusts does not declare",
            "remove it from the trust policy, or declare arn:aws:iam::<account>:root in trusts",
        ),
        Kind(
            "trust-undeclared-principal",
            "medium",
            "the trust policy trusts a role, user or session the chain file does not declare",
            "remove it from the trust policy, or add it to trusts",
        ),
        Kind(
            "third-party-without-external-id",
            "medium",
            "the trust policy trusts an identity in an account the chain file does not know "
            "(a third party) without an sts:ExternalId condition",
            "require an ExternalId from third parties (StringEquals sts:ExternalId)",
        ),
        Kind(
            "trust-deleted-principal",
            "low",
            "the trust policy names a principal that was deleted (IAM shows its unique id, "
            "AROA... or AIDA...): it trusts nobody, and a new principal of the same name is "
            "not trusted",
            "remove the entry, or name the new principal again",
        ),
        Kind(
            "policy-unreadable",
            "medium",
            "part of the trust policy could not be read; it was left out of the evaluation",
            "fix the trust policy document",
        ),
        Kind(
            "trust-non-aws-principal",
            "info",
            "the trust policy also trusts a service, an identity provider (SAML, OIDC) or a "
            "canonical user: a chain file cannot declare these",
            "none needed if intended",
        ),
        Kind(
            "condition-unevaluated",
            "info",
            "whether the trust policy allows the caller depends on a condition rolechain "
            "cannot evaluate offline (aws:SourceIp, aws:PrincipalTag, a policy variable...)",
            "none; the live AssumeRole result is what counts",
        ),
    )
}


def severity_rank(severity: Severity) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Finding:
    """One difference between the chain file and IAM, declared and live side by side.

    ``declared`` and ``live`` are short texts; neither ever holds an ExternalId.
    """

    kind: str
    message: str
    declared: str | None = None
    live: str | None = None
    location: Location | None = None

    @property
    def severity(self) -> Severity:
        return KINDS[self.kind].severity

    @property
    def fix(self) -> str:
        return KINDS[self.kind].fix

    @property
    def is_drift(self) -> bool:
        return self.severity != "info"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "declared": self.declared,
            "live": self.live,
            "location": str(self.location) if self.location else None,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class HopReport:
    """What verify found for one hop of one job."""

    job: str
    hop: str  # the hop id, ``principal>hub>audit@222222222222``
    caller: str
    role: str
    role_arn: str
    status: Status
    findings: tuple[Finding, ...] = ()
    error: str | None = None  # the AWS error of AssumeRole or GetRole
    read_with: str | None = None  # whose credentials read the role (a hop id)
    location: Location | None = None

    @property
    def label(self) -> str:
        return f"{self.caller} -> {self.role}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "hop": self.hop,
            "caller": self.caller,
            "role": self.role,
            "role_arn": self.role_arn,
            "status": self.status,
            "location": str(self.location) if self.location else None,
            "error": self.error,
            "read_with": self.read_with,
            "findings": [f.to_dict() for f in self.findings],
        }


def hop_status(*, assumed: bool, read: bool, findings: Iterable[Finding]) -> Status:
    if not assumed:
        return "unassumable"
    if not read:
        return "unreadable"
    return "drift" if any(f.is_drift for f in findings) else "ok"


@dataclass
class VerifyReport:
    """Every hop of every job verified, with the calls it took."""

    hops: list[HopReport] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: int = 0  # jobs that could not start (credentials, identity, discovery)
    assume_calls: int = 0
    iam_calls: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and all(h.status == "ok" for h in self.hops)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(h.status for h in self.hops)
        return {status: found.get(status, 0) for status in ("ok", *STATUSES[:-1])}

    @property
    def finding_counts(self) -> dict[str, int]:
        found = Counter(f.severity for h in self.hops for f in h.findings)
        return {s: found[s] for s in SEVERITIES if found[s]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "jobs": self.jobs,
            "summary": {
                "hops": len(self.hops),
                **self.counts,
                "jobs_failed": self.failures,
                "findings": self.finding_counts,
                "assume_calls": self.assume_calls,
                "iam_calls": self.iam_calls,
            },
            "notes": self.notes,
            "hops": [h.to_dict() for h in self.hops],
        }


def worst(findings: Sequence[Finding]) -> Severity | None:
    if not findings:
        return None
    return min((f.severity for f in findings), key=severity_rank)

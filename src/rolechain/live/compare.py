"""Compare one planned hop with the role IAM has: the findings of ``rolechain verify``.

Pure: the live role was read already, the trust policy is evaluated offline with
:func:`rolechain.policy.evaluate` (the evaluator the sandbox enforces with). For a hop
``caller -> role``:

* the trust policy must let the caller assume the role with the hop's ExternalId, source
  identity and session tags (``trust-missing``, ``external-id-*``, ``source-identity-denied``,
  ``session-tags-denied``);
* an ExternalId condition must be present exactly when the chain file passes one;
* IAM's MaxSessionDuration must equal ``max_session_duration``; a shorter one that breaks the
  hop's DurationSeconds is ``max-session-too-short``;
* every other ``trusts`` entry must be in the policy (``declared-trust-missing``), and every
  principal of the policy must be declared (the over-trust kinds: ``trust-wildcard``,
  ``trust-undeclared-account``, ``trust-undeclared-principal``...), third parties must be
  held to an ExternalId.

Messages never contain an ExternalId: the declared one may come from the environment and the
live one is the role owner's secret. They do contain text from IAM (ARNs, condition keys),
which the CLI escapes before printing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rolechain.aws.iam import LiveRole
from rolechain.errors import Location
from rolechain.live.findings import Finding
from rolechain.live.identities import DeclaredTrust
from rolechain.model.chain import Chain
from rolechain.model.durations import format_duration
from rolechain.model.schema import HopSettings
from rolechain.planner.plan import Hop
from rolechain.policy import (
    ANY,
    Caller,
    PolicyStatement,
    PrincipalRef,
    TrustPolicy,
    evaluate,
    parse_policy,
)
from rolechain.policy.trust import RequestContext, assume_role_context

ASSUME = "sts:AssumeRole"
# Every action a trust policy grants: each one lets its principals in, or shapes a session
ASSUME_ACTIONS = (
    ASSUME,
    "sts:AssumeRoleWithWebIdentity",
    "sts:AssumeRoleWithSAML",
    "sts:TagSession",
    "sts:SetSourceIdentity",
)
WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
SAML = "sts:AssumeRoleWithSAML"
GITHUB_OIDC = "token.actions.githubusercontent.com"
# Positive operators that limit a key to the values they list (absent key: false)
_LIMITING_OPERATORS = frozenset(
    {"stringequals", "stringlike", "stringequalsignorecase", "foranyvalue:stringequals",
     "foranyvalue:stringlike", "foranyvalue:stringequalsignorecase"}
)  # fmt: skip
_CALLER_LIMITING_KEYS = frozenset(
    {
        "aws:principalorgid",
        "aws:principalorgpaths",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:userid",
        "aws:username",
        "aws:sourceaccount",
        "aws:sourcearn",
        "aws:sourceorgid",
    }
)
_LISTED = 5


@dataclass(frozen=True)
class HopFacts:
    """What verify knows of one hop besides the hop itself."""

    hop: Hop
    caller: Caller
    entity: tuple[str, str]  # ("roles", name) or ("role_sets", set)
    settings: HopSettings
    inherited_source_identity: str | None = None


def compare(
    chain: Chain,
    facts: HopFacts,
    live: LiveRole | None,
    *,
    declared: DeclaredTrust,
    known_accounts: set[str],
    assumed: bool,
) -> list[Finding]:
    """The findings for one hop (see the module docs)."""
    hop, entity = facts.hop, facts.entity
    where = _Where(chain, entity)
    if live is None:
        return [
            Finding(
                "role-missing",
                f"{hop.role_arn} does not exist",
                declared=f"role {hop.role_arn}",
                live="no such role (NoSuchEntity)",
                location=where(),
            )
        ]
    policy = parse_policy(live.trust_policy)
    findings: list[Finding] = [
        Finding("policy-unreadable", f"trust policy: {problem}", location=where())
        for problem in policy.problems
    ]
    findings += _caller_findings(chain, facts, policy, where, assumed)
    findings += _duration_findings(facts, live, where)
    findings += _declared_findings(facts, policy, declared, where)
    findings += _overtrust_findings(live, policy, declared, known_accounts, where)
    return findings


class _Where:
    """Locations of an entity's keys in the chain file."""

    def __init__(self, chain: Chain, entity: tuple[str, str]) -> None:
        self.chain = chain
        self.entity = entity

    def __call__(self, key: str | None = None) -> Location | None:
        if key is None:
            return self.chain.locate(*self.entity)
        return self.chain.locate(*self.entity, key)


def _context(facts: HopFacts, **override: object) -> RequestContext:
    hop = facts.hop
    values: dict[str, object] = {
        "external_id": hop.external_id,
        "session_name": hop.session_name,
        "source_identity": hop.source_identity,
        "inherited_source_identity": facts.inherited_source_identity,
        "tags": hop.tags,
        "transitive_tag_keys": hop.transitive_tag_keys,
    }
    values.update(override)
    return assume_role_context(facts.caller, **values)  # type: ignore[arg-type]


def describe_grants(policy: TrustPolicy, action: str = ASSUME) -> str:
    """The principals the policy lets perform ``action``, briefly, with their conditions."""
    parts: list[str] = []
    for statement in policy.grants(action):
        names = ", ".join(ref.value for ref in statement.principals) or "nobody"
        if statement.not_principal:
            names = f"everyone except {names}"
        keys = sorted({key for _, key, _ in statement.conditions()})
        parts.append(names + (f" (if {', '.join(keys)})" if keys else ""))
    if not parts:
        return f"nobody may {action}"
    if len(parts) > _LISTED:
        return "; ".join(parts[:_LISTED]) + f"; ... ({len(parts)} statements)"
    return "; ".join(parts)


def _external_id_source(chain: Chain, entity: tuple[str, str]) -> str:
    """Where the declared ExternalId comes from, without its value."""
    sources = chain.sources
    from_env = getattr(sources, "from_env", {})
    found = from_env.get((*entity, "external_id"))
    if found:
        return "passes an ExternalId from " + ", ".join(f"${{env:{n}}}" for n in found[1])
    return "passes an ExternalId"


def _caller_findings(
    chain: Chain, facts: HopFacts, policy: TrustPolicy, where: _Where, assumed: bool
) -> list[Finding]:
    hop = facts.hop
    context = _context(facts)
    decision = evaluate(policy, facts.caller, ASSUME, context)
    declared_caller = f"trusts {hop.caller} ({facts.caller})"
    if decision.outcome == "unknown":
        keys = ", ".join(sorted(decision.unknown_keys))
        return [
            Finding(
                "condition-unevaluated",
                f"whether {hop.caller} may assume the role depends on {keys}, which rolechain "
                "cannot evaluate offline; AssumeRole " + ("succeeded" if assumed else "failed"),
                declared=declared_caller,
                live=describe_grants(policy),
                location=where("trusts"),
            )
        ]
    if decision.outcome == "deny":
        return [_denied(chain, facts, policy, decision.failed_keys, where)]
    findings: list[Finding] = []
    if hop.external_id is not None:
        without = evaluate(policy, facts.caller, ASSUME, _context(facts, external_id=None))
        if without.allowed:
            findings.append(
                Finding(
                    "external-id-not-required",
                    f"{hop.caller} may assume the role without any ExternalId",
                    declared=_external_id_source(chain, facts.entity),
                    live="no sts:ExternalId condition applies to this caller",
                    location=where("external_id"),
                )
            )
    source_identity = facts.inherited_source_identity or hop.source_identity
    if source_identity is not None:
        allowed = evaluate(policy, facts.caller, "sts:SetSourceIdentity", context)
        if allowed.outcome == "deny":
            findings.append(
                Finding(
                    "source-identity-denied",
                    f"the hop carries source identity {source_identity!r} but the trust policy "
                    f"does not let {hop.caller} set it",
                    declared=f"source_identity {source_identity!r}",
                    live=describe_grants(policy, "sts:SetSourceIdentity"),
                    location=where("source_identity"),
                )
            )
    if hop.tags:
        allowed = evaluate(policy, facts.caller, "sts:TagSession", context)
        if allowed.outcome == "deny":
            keys = ", ".join(k for k, _ in hop.tags)
            findings.append(
                Finding(
                    "session-tags-denied",
                    f"the hop passes session tags ({keys}) but the trust policy does not let "
                    f"{hop.caller} tag the session",
                    declared=f"tags {keys}",
                    live=describe_grants(policy, "sts:TagSession"),
                    location=where("tags"),
                )
            )
    return findings


def _denied(
    chain: Chain,
    facts: HopFacts,
    policy: TrustPolicy,
    failed: frozenset[str],
    where: _Where,
) -> Finding:
    """Why the caller is denied: the ExternalId, the source identity, tags, or trust."""
    hop = facts.hop
    if "sts:externalid" in failed:
        with_any = evaluate(policy, facts.caller, ASSUME, _context(facts, external_id=ANY))
        if with_any.allowed:
            if hop.external_id is None:
                return Finding(
                    "external-id-required",
                    f"the trust policy lets {hop.caller} in only with an ExternalId",
                    declared="passes no ExternalId",
                    live="requires an ExternalId (sts:ExternalId condition)",
                    location=where(),
                )
            return Finding(
                "external-id-mismatch",
                f"the trust policy requires a different ExternalId from {hop.caller}",
                declared=_external_id_source(chain, facts.entity),
                live="requires a different value (not shown)",
                location=where("external_id"),
            )
    if failed & {"sts:sourceidentity", "aws:sourceidentity"}:
        return Finding(
            "source-identity-denied",
            "the trust policy's source-identity condition rejects the hop's source identity",
            declared=f"source_identity {facts.inherited_source_identity or hop.source_identity!r}",
            live=describe_grants(policy),
            location=where("source_identity"),
        )
    if any(
        k.startswith("aws:requesttag/") or k in ("aws:tagkeys", "sts:transitivetagkeys")
        for k in failed
    ):
        return Finding(
            "session-tags-denied",
            "the trust policy's tag conditions reject the hop's session tags",
            declared="tags " + ", ".join(k for k, _ in hop.tags),
            live=describe_grants(policy),
            location=where("tags"),
        )
    conditions = f" (its conditions on {', '.join(sorted(failed))} fail)" if failed else ""
    return Finding(
        "trust-missing",
        f"the trust policy does not let {hop.caller} assume the role{conditions}",
        declared=f"trusts {hop.caller} ({facts.caller})",
        live=describe_grants(policy),
        location=where("trusts"),
    )


def _duration_findings(facts: HopFacts, live: LiveRole, where: _Where) -> list[Finding]:
    hop = facts.hop
    declared = facts.settings.max_session_duration
    actual = live.max_session_duration
    text_declared = f"max_session_duration {format_duration(declared)}"
    text_live = f"MaxSessionDuration {format_duration(actual)}"
    if hop.duration_seconds > actual:
        return [
            Finding(
                "max-session-too-short",
                f"hop {hop.label} requests {format_duration(hop.duration_seconds)} but IAM "
                f"allows {format_duration(actual)}: AssumeRole fails with ValidationError",
                declared=text_declared,
                live=text_live,
                location=where("max_session_duration"),
            )
        ]
    if actual != declared:
        return [
            Finding(
                "max-session-differs",
                f"IAM's MaxSessionDuration is {format_duration(actual)}, the chain file says "
                f"{format_duration(declared)} (the hop requests "
                f"{format_duration(hop.duration_seconds)}, which still fits)",
                declared=text_declared,
                live=text_live,
                location=where("max_session_duration"),
            )
        ]
    return []


def _declared_findings(
    facts: HopFacts, policy: TrustPolicy, declared: DeclaredTrust, where: _Where
) -> list[Finding]:
    """Entries of ``trusts`` (other than the hop's caller) that the policy does not name."""
    missing: list[str] = []
    grants = policy.grants(ASSUME)
    caller = facts.caller
    for entry, identity in declared.callers:
        if _same(identity, caller):
            continue
        if not any(s.covers_principal(identity) is not False for s in grants):
            missing.append(f"{entry} ({identity})")
    if not missing:
        return []
    return [
        Finding(
            "declared-trust-missing",
            f"trusts declares {_brief(missing)}, which the trust policy does not name",
            declared="trusts " + _brief(missing),
            live=describe_grants(policy),
            location=where("trusts"),
        )
    ]


def _same(a: Caller, b: Caller) -> bool:
    return (a.kind, a.partition, a.account, (a.name or "").lower()) == (
        b.kind,
        b.partition,
        b.account,
        (b.name or "").lower(),
    )


def _brief(items: Sequence[str]) -> str:
    if len(items) <= _LISTED:
        return ", ".join(items)
    return ", ".join(items[:_LISTED]) + f", ... ({len(items)} in all)"


def _overtrust_findings(
    live: LiveRole,
    policy: TrustPolicy,
    declared: DeclaredTrust,
    known_accounts: set[str],
    where: _Where,
) -> list[Finding]:
    """Principals the policy trusts that the chain file does not declare, and missing
    conditions (third parties without an ExternalId)."""
    by_kind: dict[str, list[str]] = {}
    third_parties: list[str] = []
    for statement in policy.statements:
        if statement.not_principal:
            by_kind.setdefault("trust-not-principal", []).append(
                f"{statement.label}: {statement.effect} NotPrincipal "
                + ", ".join(r.value for r in statement.principals)
            )
    for statement in _assume_grants(policy):
        keys = statement.condition_keys
        written = sorted({key for _, key, _ in statement.conditions()})
        if statement.not_principal:
            continue  # grants nothing; reported above
        for federated, text in federated_findings(statement):
            by_kind.setdefault(federated, []).append(text)
        for ref in statement.principals:
            kind = _undeclared_kind(ref, declared, keys)
            if kind is not None:
                by_kind.setdefault(kind, []).append(_describe(ref, written))
            if (
                ref.kind in ("account", "role", "user", "session")
                and ref.account not in known_accounts
                and ref.account != live.account
                and "sts:externalid" not in keys
            ):
                third_parties.append(ref.value)
    findings: list[Finding] = []
    texts = {
        "trust-wildcard": "trusts every AWS principal",
        "trust-wildcard-conditioned": "trusts every AWS principal that meets its conditions",
        "trust-undeclared-account": "trusts account roots the chain file's trusts do not list",
        "trust-undeclared-principal": "trusts principals the chain file's trusts do not list",
        "trust-deleted-principal": "names deleted principals",
        "trust-non-aws-principal": "also trusts non-AWS principals",
        "trust-not-principal": "uses NotPrincipal, which IAM refuses in a trust policy",
        "federated-subject-unrestricted": "lets an identity provider's tokens in without "
        "limiting whose (sub)",
        "federated-audience-unrestricted": "lets an identity provider's tokens in without "
        "limiting their audience (aud)",
    }
    for kind, values in by_kind.items():
        unique = list(dict.fromkeys(values))
        findings.append(
            Finding(
                kind,
                f"the trust policy {texts[kind]}: {_brief(unique)}",
                declared="not in trusts",
                live=_brief(unique),
                location=where("trusts"),
            )
        )
    if third_parties:
        unique = list(dict.fromkeys(third_parties))
        findings.append(
            Finding(
                "third-party-without-external-id",
                f"the trust policy trusts {_brief(unique)}, outside the chain file's accounts, "
                "without an sts:ExternalId condition",
                declared="trusts " + _brief(unique),
                live="no sts:ExternalId condition",
                location=where("trusts"),
            )
        )
    return findings


def _assume_grants(policy: TrustPolicy) -> list[PolicyStatement]:
    """The Allow statements that cover any of :data:`ASSUME_ACTIONS`."""
    return [
        s
        for s in policy.statements
        if s.effect == "Allow" and any(s.covers_action(a) for a in ASSUME_ACTIONS)
    ]


def _provider_prefix(ref: PrincipalRef) -> str:
    """The condition-key prefix of a federated principal: ``SAML`` for a SAML provider,
    the provider's URL (``token.actions.githubusercontent.com``) for an OIDC one."""
    if ":saml-provider/" in ref.value:
        return "SAML"
    return ref.value.split(":oidc-provider/", 1)[-1]


def _wide(value: str, *, github_subject: bool = False) -> bool:
    """A condition value that lets everybody in: only wildcards, or for a GitHub ``sub`` a
    wildcard in its owner (``repo:*``, ``repo:*/x:*``)."""
    if not value.strip("*?"):
        return True
    if github_subject:
        if not value.startswith("repo:"):
            return value[0] in "*?"
        owner = value[len("repo:") :].split("/", 1)[0].split(":", 1)[0]
        return not owner or any(ch in owner for ch in "*?")
    return False


def _limited(statement: PolicyStatement, key: str, *, github_subject: bool = False) -> bool:
    """Whether a positive condition limits ``key`` to values none of which is too wide."""
    wanted = key.lower()
    for operator, name, values in statement.conditions():
        if name.lower() != wanted or operator.lower() not in _LIMITING_OPERATORS:
            continue
        if values and not any(_wide(v, github_subject=github_subject) for v in values):
            return True
    return False


def federated_findings(statement: PolicyStatement) -> list[tuple[str, str]]:
    """(kind, text) for the OIDC and SAML providers an Allow statement trusts without
    limiting ``aud`` (and, for OIDC, ``sub``) to named values. GitHub's OIDC provider
    without a ``sub`` condition lets any repository in (IAM user guide, "Configuring a role
    for GitHub OIDC identity provider")."""
    out: list[tuple[str, str]] = []
    web = statement.covers_action(WEB_IDENTITY)
    saml = statement.covers_action(SAML)
    for ref in statement.principals:
        if ref.kind != "federated":
            continue
        prefix = _provider_prefix(ref)
        if prefix == "SAML":
            if saml and not _limited(statement, "SAML:aud"):
                out.append(("federated-audience-unrestricted", f"{ref.value} (SAML:aud)"))
            continue
        if not web:
            continue
        if not _limited(statement, f"{prefix}:aud"):
            out.append(("federated-audience-unrestricted", f"{ref.value} ({prefix}:aud)"))
        if prefix != "cognito-identity.amazonaws.com" and not _limited(
            statement, f"{prefix}:sub", github_subject=prefix == GITHUB_OIDC
        ):
            out.append(("federated-subject-unrestricted", f"{ref.value} ({prefix}:sub)"))
    return out


def _undeclared_kind(ref: PrincipalRef, declared: DeclaredTrust, keys: Iterable[str]) -> str | None:
    if ref.kind == "any":
        limited = _CALLER_LIMITING_KEYS & set(keys)
        return "trust-wildcard-conditioned" if limited else "trust-wildcard"
    if ref.kind in ("service", "federated", "canonical"):
        return "trust-non-aws-principal"
    if ref.kind == "deleted":
        return "trust-deleted-principal"
    if declared.declares(ref):
        return None
    if ref.kind == "account":
        return "trust-undeclared-account"
    return "trust-undeclared-principal"


def _describe(ref: PrincipalRef, keys: Sequence[str]) -> str:
    return ref.arn + (f" (if {', '.join(keys)})" if keys else "")


def inherited_source_identity(hops_by_id: Mapping[str, Hop], hop: Hop) -> str | None:
    """The source identity a hop's caller carries: the first one set above it."""
    parent = hops_by_id.get(hop.parent) if hop.parent else None
    found: str | None = None
    while parent is not None:
        if parent.source_identity is not None:
            found = parent.source_identity
        parent = hops_by_id.get(parent.parent) if parent.parent else None
    return found

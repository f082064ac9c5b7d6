"""IAM trust policies, evaluated offline (pure: no boto3).

:func:`evaluate` decides whether a role's trust policy lets a caller perform an action
(``sts:AssumeRole``, ``sts:TagSession``, ``sts:SetSourceIdentity``) given what is known of
the request. It answers ``allow``, ``deny`` or ``unknown`` (a condition on a key nobody
told it), and says which statements and condition keys decided. ``rolechain verify``,
``rolechain discover`` and the sandbox all use it.
"""

from __future__ import annotations

from rolechain.policy.trust import (
    ANY,
    Caller,
    ContextValue,
    Decision,
    PolicyStatement,
    PrincipalRef,
    TrustPolicy,
    assume_role_context,
    evaluate,
    parse_policy,
    parse_principal,
)

__all__ = [
    "ANY",
    "Caller",
    "ContextValue",
    "Decision",
    "PolicyStatement",
    "PrincipalRef",
    "TrustPolicy",
    "assume_role_context",
    "evaluate",
    "parse_policy",
    "parse_principal",
]

"""Chain-file names as IAM identities.

The trust evaluator (:mod:`rolechain.policy`) works on :class:`~rolechain.policy.Caller`
and :class:`~rolechain.policy.PrincipalRef`; a chain file works on names. This module maps
one to the other: the caller a node is (a principal, a role, a role-set member), and the
identities a role's ``trusts`` declares, so a live trust policy can be compared with it.

Roles and users are compared by account and name (IAM names are unique within an account,
whatever the path), so a principal known only from a role session's ARN, which carries no
path, still matches the role ARN a trust policy names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rolechain.model.schema import ChainFile, HopSettings
from rolechain.model.targets import DISCOVERED, split_member
from rolechain.policy import Caller, PrincipalRef, parse_principal

_STS_USER = re.compile(r"^arn:([\w-]+):sts::(\d{12}):user/(.+)$")


def identity_caller(arn: str) -> Caller | None:
    """The caller a GetCallerIdentity ARN names (moto's ``sts::...:user/`` form included)."""
    found = _STS_USER.match(arn)
    if found:
        arn = f"arn:{found.group(1)}:iam::{found.group(2)}:user/{found.group(3)}"
    return Caller.parse(arn)


def principal_caller(model: ChainFile, name: str, identity_arn: str | None = None) -> Caller:
    """The caller principal ``name`` is: its live identity when known, else what the chain
    file declares (an ARN, or only an account)."""
    if identity_arn:
        found = identity_caller(identity_arn)
        if found is not None:
            return found
    spec = model.principals[name]
    if spec.arn:
        found = identity_caller(spec.arn)
        if found is not None:
            return found
    return Caller("account", spec.account_id)


def node_arn(model: ChainFile, node: str) -> str | None:
    """The role ARN of a role or member node (None for principals and ``set@*``)."""
    if node in model.roles:
        return model.roles[node].arn
    member = split_member(node)
    if member is not None and member[0] in model.role_sets and member[1] != DISCOVERED:
        return model.role_sets[member[0]].member_arn(member[1])
    return None


def node_settings(model: ChainFile, node: str) -> tuple[tuple[str, str], HopSettings] | None:
    """(entity path, settings) of a role or member: ``("roles", name)`` or
    ``("role_sets", set)``."""
    if node in model.roles:
        return ("roles", node), model.roles[node]
    member = split_member(node)
    if member is not None and member[0] in model.role_sets:
        return ("role_sets", member[0]), model.role_sets[member[0]]
    return None


def node_caller(
    model: ChainFile,
    node: str,
    *,
    session: str | None = None,
    identities: Mapping[str, str] | None = None,
) -> Caller:
    """The caller ``node`` is; ``session`` names a role's session, ``identities`` maps
    principals to the ARN GetCallerIdentity gave them."""
    if node in model.principals:
        return principal_caller(model, node, (identities or {}).get(node))
    arn = node_arn(model, node)
    found = Caller.parse(arn, session=session) if arn else None
    if found is None:
        account = node.rpartition("@")[2] if "@" in node else None
        return Caller("account", account if account != DISCOVERED else None)
    return found


def caller_key(caller: Caller) -> tuple[str, ...] | None:
    """The identity key of a caller, comparable with :attr:`PrincipalRef.key`."""
    if caller.account is None:
        return None
    if caller.kind == "root":
        return ("account", caller.partition, caller.account)
    if caller.kind in ("role", "user") and caller.name:
        return (caller.kind, caller.partition, caller.account, caller.name.lower())
    return None


@dataclass(frozen=True)
class DeclaredTrust:
    """The identities a role's ``trusts`` declares.

    ``keys`` are exact identities; ``accounts`` are accounts any role or user of which may be
    declared (a principal known only by its account); ``role_names`` are role names (any
    account) of organization role sets whose accounts are not known. ``callers`` pairs each
    exactly-known declared identity with the ``trusts`` entry that declared it.
    """

    keys: frozenset[tuple[str, ...]]
    accounts: frozenset[str]
    role_names: frozenset[str]
    callers: tuple[tuple[str, Caller], ...]

    def declares(self, ref: PrincipalRef) -> bool:
        if ref.key in self.keys:
            return True
        if ref.kind in ("role", "user", "session") and ref.account in self.accounts:
            return True
        if ref.kind in ("role", "session") and (ref.name or "").lower() in self.role_names:
            return True
        if ref.kind == "session":  # a session of a declared role
            role = ("role", ref.partition, ref.account or "", (ref.name or "").lower())
            return role in self.keys
        return False


def declared_trust(
    model: ChainFile,
    entries: Sequence[str],
    *,
    resolved: Mapping[str, Sequence[str]] | None = None,
    identities: Mapping[str, str] | None = None,
) -> DeclaredTrust:
    """What ``entries`` (a role's ``trusts``) declare; ``resolved`` gives organization role
    sets' accounts, ``identities`` the principals' live ARNs."""
    keys: set[tuple[str, ...]] = set()
    accounts: set[str] = set()
    role_names: set[str] = set()
    callers: list[tuple[str, Caller]] = []

    def add(entry: str, caller: Caller) -> None:
        key = caller_key(caller)
        if key is None:
            if caller.kind == "account" and caller.account:
                accounts.add(caller.account)
            return
        keys.add(key)
        callers.append((entry, caller))

    for entry in entries:
        if entry.startswith("arn:"):
            ref = parse_principal(entry)
            keys.add(ref.key)
            if ref.kind == "account" and ref.account:
                callers.append((entry, Caller("root", ref.account, ref.partition)))
            elif ref.kind in ("role", "user"):
                found = Caller.parse(entry)
                if found is not None:
                    callers.append((entry, found))
            continue
        if entry in model.principals or entry in model.roles:
            add(entry, node_caller(model, entry, identities=identities))
            continue
        if entry in model.role_sets:
            spec = model.role_sets[entry]
            if spec.accounts is not None:
                members: Iterable[str] = spec.members
            elif resolved is not None and entry in resolved:
                members = resolved[entry]
            else:
                role_names.add(spec.role_name.rsplit("/", 1)[-1].lower())
                continue
            for account in members:
                add(f"{entry}@{account}", node_caller(model, f"{entry}@{account}"))
            continue
        member = split_member(entry)
        if member is not None and member[0] in model.role_sets:
            add(entry, node_caller(model, entry))
    return DeclaredTrust(
        frozenset(keys), frozenset(accounts), frozenset(role_names), tuple(callers)
    )


def known_accounts(
    model: ChainFile, resolved: Mapping[str, Sequence[str]] | None = None
) -> set[str]:
    """The accounts that are the chain file's own: those of its principals, roles and
    role-set members. An account named only in ``trusts`` (a vendor's) is a third party."""
    found = {p.account_id for p in model.principals.values() if p.account_id}
    found |= {r.account_id for r in model.roles.values()}
    for name, spec in model.role_sets.items():
        found |= set(spec.accounts or ())
        found |= set((resolved or {}).get(name, ()))
    return {a for a in found if a}

"""Names of the things a job can target, and expansion of a job's ``to`` selectors.

Every role is a node named by its key in ``roles``. A role set's members are named
``set@account``; an organization role set, whose accounts are only known at run time, is one
placeholder member ``set@*`` until its accounts are resolved.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

from rolechain.model.schema import ChainFile

DISCOVERED = "*"


def member_name(role_set: str, account: str) -> str:
    return f"{role_set}@{account}"


def split_member(name: str) -> tuple[str, str] | None:
    """``("audit", "222222222222")`` for ``audit@222222222222``, else None."""
    if "@" not in name:
        return None
    role_set, _, account = name.rpartition("@")
    return role_set, account


def set_members(
    model: ChainFile, role_set: str, resolved: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Member names of ``role_set``: listed accounts, resolved accounts, or ``set@*``."""
    spec = model.role_sets[role_set]
    if spec.accounts is not None:
        accounts: Sequence[str] = spec.members
    elif resolved is not None and role_set in resolved:
        excluded = set(spec.exclude) | set(spec.organization.exclude if spec.organization else ())
        accounts = [a for a in resolved[role_set] if a not in excluded]
    else:
        return [member_name(role_set, DISCOVERED)]
    return [member_name(role_set, a) for a in accounts]


def is_discoverable_member(model: ChainFile, name: str) -> bool:
    """Whether ``name`` can be a member of an organization role set found at run time:
    ``set@account`` with a 12-digit account that the set does not exclude."""
    member = split_member(name)
    if member is None:
        return False
    spec = model.role_sets.get(member[0])
    if spec is None or spec.organization is None:
        return False
    account = member[1]
    excluded = set(spec.exclude) | set(spec.organization.exclude)
    return re.fullmatch(r"[0-9]{12}", account) is not None and account not in excluded


def is_open_glob(
    model: ChainFile, selector: str, resolved: Mapping[str, Sequence[str]] | None = None
) -> bool:
    """Whether ``selector`` is a glob over the members of an organization role set whose
    accounts are not listed yet (``audit@4444*`` before discovery). A glob over a listed
    set, or over a set already resolved, is matched against its members like any other."""
    member = split_member(selector)
    if member is None or not any(ch in member[1] for ch in "*?["):
        return False
    spec = model.role_sets.get(member[0])
    if spec is None or spec.organization is None:
        return False
    return resolved is None or member[0] not in resolved


def target_names(
    model: ChainFile, resolved: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Every name a job may target: roles, then role-set members, each group sorted."""
    members = [m for name in sorted(model.role_sets) for m in set_members(model, name, resolved)]
    return sorted(model.roles) + members


def expand_targets(
    model: ChainFile,
    selectors: Sequence[str],
    resolved: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """Expand ``to`` selectors into target names.

    A selector is a role name, a role-set name (all its members), a member ``set@account``,
    or an fnmatch glob (``*``, ``?``, ``[...]``) over role and member names. A glob that
    matches nothing is unmatched, except a glob over the members of an organization role set
    not resolved yet, which selects the set's placeholder (see :func:`is_open_glob`). Returns
    the targets in selector order without duplicates, and the selectors that matched nothing.
    """
    names = target_names(model, resolved)
    known = set(names)
    out: dict[str, None] = {}
    unmatched: list[str] = []
    for selector in selectors:
        if selector in model.role_sets:
            matched = set_members(model, selector, resolved)
        elif selector in known:
            matched = [selector]
        elif any(ch in selector for ch in "*?["):
            matched = fnmatch.filter(names, selector)
            if not matched and is_open_glob(model, selector, resolved):
                # An organization set's members are unknown offline: a glob such as
                # 'audit@4444*' over such a set stands for its placeholder until the accounts
                # are listed; the run then plans again and applies the glob to them.
                matched = set_members(model, selector.rpartition("@")[0], resolved)
        else:
            matched = [selector] if is_discoverable_member(model, selector) else []
        if not matched:
            unmatched.append(selector)
        for name in matched:
            out.setdefault(name, None)
    return list(out), unmatched


def is_glob(selector: str) -> bool:
    return any(ch in selector for ch in "*?[")


def no_match_message(
    model: ChainFile,
    selector: str,
    resolved: Mapping[str, Sequence[str]] | None = None,
    *,
    limit: int = 20,
) -> str | None:
    """Why the glob ``selector`` over a role set's members matched none of them, naming the
    members (None if ``selector`` is not such a glob)."""
    member = split_member(selector)
    if member is None or not is_glob(member[1]) or member[0] not in model.role_sets:
        return None
    name = member[0]
    members = set_members(model, name, resolved)
    listed = ", ".join(members[:limit]) + (
        f", ... (+{len(members) - limit} more)" if len(members) > limit else ""
    )
    if model.role_sets[name].organization is not None:
        source = f"accounts AWS Organizations listed for role set {name}"
    else:
        source = f"members of role set {name}"
    return f"glob {selector!r} matches none of the {len(members)} {source}: {listed or 'none'}"

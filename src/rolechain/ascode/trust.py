"""What each role a chain file declares should look like in IAM: its trust policy.

:func:`role_specs` turns a chain file into one :class:`RoleSpec` per role and per role set
(a role set's members share one trust policy, rendered once), and :func:`trust_document`
writes the trust policy of one: the principals its ``trusts`` name, as exact ARNs; an
``sts:ExternalId`` condition when the file passes an ExternalId (its value is never
written: the caller says what stands in for it: a Terraform variable, a CloudFormation
parameter, a ``${env:NAME}`` placeholder); ``sts:TagSession`` when sessions of the role are
tagged (the role's own ``tags``, or transitive tags set upstream); ``sts:SetSourceIdentity``
when the role sets a source identity or one is set upstream (it persists down the chain).

Pure: the model only. The renderers (Terraform, CloudFormation, IAM JSON) are in
:mod:`rolechain.ascode.render`.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rolechain.errors import UsageError
from rolechain.graph.build import trust_graph
from rolechain.model.chain import Chain
from rolechain.model.schema import ChainFile, HopSettings, unknown_choice
from rolechain.model.targets import split_member
from rolechain.model.writer import external_id_variable

WILDCARD = "*"
ASSUME = "sts:AssumeRole"
TAG_SESSION = "sts:TagSession"
SET_SOURCE_IDENTITY = "sts:SetSourceIdentity"
_SESSION_ARN = re.compile(r"^arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/[^/]+$")


@dataclass(frozen=True)
class RoleSpec:
    """One role, or one role set (its members share the policy), as IAM should have it."""

    kind: str  # "role" or "role set"
    name: str  # its key in the chain file
    role_name: str  # IAM's RoleName (no path)
    path: str  # IAM's Path: "/" or "/a/b/"
    partition: str
    accounts: tuple[str, ...] | None  # None: an organization role set (accounts unknown)
    principals: tuple[str, ...]  # trusted ARNs (or "*"), sorted
    external_id: str | None  # the NAME of the variable that holds the ExternalId
    tag_session: bool
    set_source_identity: bool
    max_session_duration: int
    description: str | None

    @property
    def section(self) -> str:
        return "roles" if self.kind == "role" else "role_sets"

    def arn(self, account: str) -> str:
        return f"arn:{self.partition}:iam::{account}:role{self.path}{self.role_name}"

    @property
    def actions(self) -> tuple[str, ...]:
        found = [ASSUME]
        if self.tag_session:
            found.append(TAG_SESSION)
        if self.set_source_identity:
            found.append(SET_SOURCE_IDENTITY)
        return tuple(found)


def trust_document(spec: RoleSpec, external_id: Any = None) -> dict[str, Any]:
    """The trust policy of ``spec``; ``external_id`` stands in the ``sts:ExternalId``
    condition (required when the spec has one). One statement per action, so that a
    reader sees at a glance which may tag sessions or set a source identity."""
    if spec.external_id is not None and external_id is None:
        raise ValueError(f"{spec.kind} {spec.name} needs a stand-in for its ExternalId")
    principal: Any = (
        WILDCARD
        if WILDCARD in spec.principals
        else {"AWS": spec.principals[0] if len(spec.principals) == 1 else list(spec.principals)}
    )
    statements: list[dict[str, Any]] = []
    if spec.principals:
        for action in spec.actions:
            statement: dict[str, Any] = {
                "Sid": action.split(":")[1],
                "Effect": "Allow",
                "Principal": principal,
                "Action": action,
            }
            if spec.external_id is not None:
                statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
            statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def role_specs(chain: Chain, only: Sequence[str] = ()) -> list[RoleSpec]:
    """A :class:`RoleSpec` per role and role set of ``chain`` (or those named in ``only``:
    roles, role sets, or members ``set@account``, which select their set). Raises
    UsageError for an unknown name or a trust that cannot be named by ARN."""
    model = chain.model
    wanted = _selected(model, only)
    upstream_si, upstream_tags = _inherited(chain)
    names = _ExternalIdNames(chain)
    specs: list[RoleSpec] = []
    problems: list[str] = []
    for name, role in model.roles.items():
        if wanted is not None and ("roles", name) not in wanted:
            continue
        path, _, role_name = role.arn.split(":role", 1)[1].rpartition("/")
        specs.append(
            _spec(
                "role", name, role, role_name, path + "/", role.partition, (role.account_id,),
                model, names, problems, name in upstream_si, name in upstream_tags,
            )
        )  # fmt: skip
    for name, spec in model.role_sets.items():
        if wanted is not None and ("role_sets", name) not in wanted:
            continue
        path, _, role_name = ("/" + spec.role_name).rpartition("/")
        accounts = tuple(spec.members) if spec.accounts is not None else None
        picked = wanted.get(("role_sets", name)) if wanted is not None else None
        if picked and accounts is not None:
            accounts = tuple(a for a in accounts if a in picked)
        elif picked:
            accounts = tuple(sorted(picked))
        specs.append(
            _spec(
                "role set", name, spec, role_name, path + "/", spec.partition, accounts,
                model, names, problems, name in upstream_si, name in upstream_tags,
            )
        )  # fmt: skip
    if problems:
        raise UsageError("; ".join(problems), hint="name every trusted identity by its ARN")
    return specs


def _spec(
    kind: str,
    name: str,
    settings: HopSettings,
    role_name: str,
    path: str,
    partition: str,
    accounts: tuple[str, ...] | None,
    model: ChainFile,
    names: _ExternalIdNames,
    problems: list[str],
    inherits_source_identity: bool,
    inherits_tags: bool,
) -> RoleSpec:
    principals = trusted_arns(model, settings.trusts, problems, f"{kind} {name}")
    section = "roles" if kind == "role" else "role_sets"
    return RoleSpec(
        kind=kind,
        name=name,
        role_name=role_name,
        path=path,
        partition=partition,
        accounts=accounts,
        principals=principals,
        external_id=names.name(section, name, role_name) if settings.external_id else None,
        tag_session=bool(settings.tags) or inherits_tags,
        set_source_identity=settings.source_identity is not None or inherits_source_identity,
        max_session_duration=settings.max_session_duration,
        description=settings.description,
    )


def trusted_arns(
    model: ChainFile, entries: Iterable[str], problems: list[str], what: str
) -> tuple[str, ...]:
    """The exact ARNs (or ``*``) that ``entries`` (a ``trusts`` list) name."""
    out: set[str] = set()
    for entry in entries:
        if entry == WILDCARD:
            out.add(WILDCARD)
        elif entry.startswith("arn:"):
            out.add(entry)
        elif entry in model.principals:
            principal = model.principals[entry]
            if principal.arn is None:
                problems.append(
                    f"{what} trusts principal {entry}, which declares no 'arn': rolechain "
                    "cannot name it in a trust policy"
                )
                continue
            session = _SESSION_ARN.match(principal.arn)
            # A trust policy names the role, not one of its sessions (a session's ARN
            # carries no path: the role is named without one).
            out.add(
                f"arn:{session.group(1)}:iam::{session.group(2)}:role/{session.group(3)}"
                if session
                else principal.arn
            )
        elif entry in model.roles:
            out.add(model.roles[entry].arn)
        elif entry in model.role_sets:
            spec = model.role_sets[entry]
            if spec.accounts is None:
                problems.append(
                    f"{what} trusts role set {entry}, whose accounts come from AWS "
                    "Organizations at run time: list its accounts to render the trust"
                )
                continue
            out.update(spec.member_arn(a) for a in spec.members)
        elif (member := split_member(entry)) is not None and member[0] in model.role_sets:
            out.add(model.role_sets[member[0]].member_arn(member[1]))
        else:
            problems.append(f"{what} trusts {entry!r}, which names nothing declared")
    return tuple(sorted(out))


class _ExternalIdNames:
    """The variable that holds each ExternalId: the ``${env:NAME}`` the file reads it from,
    else ``<ROLE_NAME>_EXTERNAL_ID`` (as ``rolechain discover`` names it)."""

    def __init__(self, chain: Chain) -> None:
        self.from_env: Mapping[Any, tuple[str, tuple[str, ...]]] = getattr(
            chain.sources, "from_env", {}
        )
        self.taken: dict[str, tuple[str, str]] = {}

    def name(self, section: str, entity: str, role_name: str) -> str:
        found = self.from_env.get((section, entity, "external_id"))
        if found is not None and len(found[1]) == 1:  # read from ${env:NAME}: keep the name
            return found[1][0]
        wanted = external_id_variable(role_name)
        if self.taken.setdefault(wanted, (section, entity)) != (section, entity):
            wanted = external_id_variable(f"{role_name}_{entity}")
            self.taken[wanted] = (section, entity)
        return wanted


def _inherited(chain: Chain) -> tuple[set[str], set[str]]:
    """Roles and role sets below (reachable from) one that sets a source identity, and
    below one that passes transitive tags: sessions of those carry them on."""
    graph = trust_graph(chain)
    model = chain.model

    def below(starts: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        queue = deque(starts)
        while queue:
            node = queue.popleft()
            for child in graph.succ.get(node, ()):
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        entities: set[str] = set()
        for node in seen:
            attrs = graph.nodes[node]
            entities.add(attrs.get("role_set") or node)
        return entities

    def nodes_of(names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            if name in model.roles:
                out.append(name)
            else:
                out.extend(n for n, a in graph.nodes.items() if a.get("role_set") == name)
        return out

    hops = {**model.roles, **model.role_sets}
    with_si = [n for n, s in hops.items() if s.source_identity]
    with_tags = [n for n, s in hops.items() if s.transitive_tag_keys]
    return below(nodes_of(with_si)), below(nodes_of(with_tags))


def _selected(model: ChainFile, only: Sequence[str]) -> dict[tuple[str, str], set[str]] | None:
    """The entities ``only`` names, each with the members' accounts it names (empty: all)."""
    if not only:
        return None
    wanted: dict[tuple[str, str], set[str]] = {}
    whole: set[tuple[str, str]] = set()
    for name in only:
        member = split_member(name)
        if name in model.roles:
            wanted.setdefault(("roles", name), set())
        elif name in model.role_sets:
            whole.add(("role_sets", name))
        elif member is not None and member[0] in model.role_sets:
            wanted.setdefault(("role_sets", member[0]), set()).add(member[1])
        else:
            raise UsageError(
                unknown_choice("role or role set", name, [*model.roles, *model.role_sets])
            )
    for key in whole:
        wanted[key] = set()
    return wanted

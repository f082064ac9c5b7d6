"""``rolechain discover``: write a chain file from what IAM has.

Walking:

1. the accounts: listed, and/or every active account of the organization (Organizations,
   called with the credentials of ``--via``, or of the principal itself);
2. in each account, the ``--reader`` role (a read-only audit role that trusts the principal),
   assumed once per account, exactly as a run assumes hops
   (:func:`rolechain.live.prepare.prepare_hops`: identity check, Organizations, retries, rate
   limit), and ``iam:ListRoles`` with every role's trust policy.

Writing (pure, :func:`build_chain`):

* every role whose trust policy lets in the principal, or a role already reached, is a role
  of the file (a breadth-first walk over trust policies, evaluated by the evaluator the
  sandbox and ``verify`` use; an ExternalId condition counts as satisfiable, a condition
  rolechain cannot evaluate counts as maybe and is named in a comment);
* the same role name and path with the same trusts, ExternalId requirement and
  MaxSessionDuration in several accounts is a role set;
* ``trusts`` lists every AWS principal of the role's trust policy: names for what the file
  declares (a role set when every member is trusted), ARNs otherwise. ``"*"``, services,
  identity providers and conditions a chain file cannot express are comments;
* an ExternalId is a placeholder, ``${env:<ROLE>_EXTERNAL_ID}``; the live value is never
  read into the file, nor printed;
* one job per role and role set, from the principal, running ``sts.get_caller_identity``;
  ``settings.verify.reader`` names the reader, so ``rolechain verify`` reads each account
  the same way.

Everything taken from IAM (names, descriptions, conditions) is quoted so that YAML and
``${env:...}`` interpolation read it as text, and comments cannot be broken out of.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.credentials import Credentials
from pydantic import ValidationError

from rolechain.aws.iam import Iam, IamCalls, LiveRole
from rolechain.aws.identity import CallerIdentity
from rolechain.aws.organizations import Organizations
from rolechain.aws.session import AwsSessions, principal_credentials
from rolechain.errors import AwsError, RolechainError, UsageError
from rolechain.live.identities import caller_key, identity_caller
from rolechain.live.prepare import prepare_hops
from rolechain.model.chain import Chain
from rolechain.model.schema import (
    NAME_PATTERN,
    ROLE_NAME_PATTERN,
    ChainFile,
)
from rolechain.model.writer import Placeholder, comment, emit, external_id_variable, scalar
from rolechain.planner import plan as make_plan
from rolechain.policy import (
    ANY,
    Caller,
    Decision,
    PrincipalRef,
    TrustPolicy,
    assume_role_context,
    evaluate,
    parse_policy,
)

ASSUME = "sts:AssumeRole"
PRINCIPAL = "start"
READERS = "readers"
ORG_READERS = "org-readers"
VIA = "via"
JOB = "discover"
MAX_COMMENT = 160
DEFAULT_ASSUME_RATE: float | Literal["auto"] = "auto"
_NAME = re.compile(NAME_PATTERN)
Source = Literal["default", "profile", "env"]


@dataclass(frozen=True)
class DiscoverRequest:
    """What to discover and how.

    ``source``/``profile``: where the principal's credentials come from (as a chain file's
    principal says). ``via``: a role ARN, or a role name (with its path) in the principal's
    account, whose credentials call Organizations. ``reader``: the role name (with its path)
    assumed in every account to read IAM.
    """

    reader: str
    source: Source = "default"
    profile: str | None = None
    accounts: tuple[str, ...] = ()
    organization: bool = False
    via: str | None = None
    region: str = "us-east-1"
    concurrency: int = 16
    assume_rate: float | Literal["auto"] = DEFAULT_ASSUME_RATE  # a ceiling, or adaptive
    principal: str | None = None  # the principal's name in the file


@dataclass
class DiscoverResult:
    """The chain file and what it took."""

    text: str
    principal_arn: str
    accounts: list[str] = field(default_factory=list)  # read
    unreadable: dict[str, str] = field(default_factory=dict)  # account -> error
    roles_read: int = 0
    roles_written: int = 0
    role_sets: int = 0
    jobs: int = 0
    env: list[str] = field(default_factory=list)  # variables the file's placeholders need
    assume_calls: int = 0
    iam_calls: int = 0

    @property
    def ok(self) -> bool:
        return not self.unreadable


def parse_source(value: str) -> tuple[Source, str | None]:
    """``--from``: ``env``, ``default``, or a profile name (``profile:NAME`` forces one)."""
    if value.startswith("profile:"):
        return "profile", value[len("profile:") :]
    if value in ("env", "default"):
        return value, None  # type: ignore[return-value]
    return "profile", value


def discover(
    request: DiscoverRequest,
    *,
    credentials: Credentials | None = None,
    aws_sessions: AwsSessions | None = None,
    now: datetime | None = None,
) -> DiscoverResult:
    """Walk the accounts and write a chain file (see the module docs).

    ``credentials`` replaces the principal's (tests, the sandbox). Raises UsageError for bad
    arguments and what a run raises before its first task (CredentialsError, AwsError);
    accounts that cannot be read are in ``unreadable``.
    """
    if not request.accounts and not request.organization:
        raise UsageError("nothing to discover: give --account ACCOUNT... and/or --organization")
    start = credentials or principal_credentials(request.source, request.profile)
    chain = walking_chain(request, start, aws_sessions)
    planned = make_plan(chain, JOB)
    prepared = prepare_hops(
        planned,
        chain,
        credentials=start,
        concurrency=request.concurrency,
        aws_sessions=aws_sessions,
    )
    assert prepared.identity is not None
    calls = IamCalls()
    org_id: str | None = None
    org_accounts: set[str] = set()
    if planned.discoveries:
        via_hop = planned.discoveries[0].via_hop
        orgs = Organizations(
            prepared.sessions,
            prepared.credentials(prepared.plan.target(VIA).hop_id) if via_hop else start,
            region=request.region,
            policy=prepared.policy,
            stats=prepared.stats,
            hop=via_hop or PRINCIPAL,
        )
        org_id = orgs.organization_id()
        org_accounts = {
            t.account_id for t in prepared.plan.targets if t.name.startswith(ORG_READERS)
        }

    def read(account_target: tuple[str, str]) -> tuple[str, list[LiveRole] | str]:
        account, hop_id = account_target
        try:
            iam = Iam(
                prepared.sessions,
                prepared.credentials(hop_id),
                region=request.region,
                policy=prepared.policy,
                stats=prepared.stats,
                calls=calls,
                hop=hop_id,
            )
            return account, iam.list_roles()
        except RolechainError as exc:
            text = f"{exc.code}: {exc.aws_message}" if isinstance(exc, AwsError) else exc.message
            return account, text

    targets = sorted({(t.account_id, t.hop_id) for t in prepared.plan.targets if t.name != VIA})
    roles: list[LiveRole] = []
    unreadable: dict[str, str] = {}
    read_accounts: list[str] = []
    with ThreadPoolExecutor(max_workers=request.concurrency) as pool:
        for account, found in pool.map(read, targets):
            if isinstance(found, str):
                unreadable[account] = found
            else:
                read_accounts.append(account)
                roles.extend(found)
    built = build_chain(
        roles,
        identity=prepared.identity,
        request=request,
        org_id=org_id,
        org_accounts=org_accounts,
        accounts=read_accounts,
        unreadable=unreadable,
        now=now,
    )
    built.assume_calls = prepared.stats.assume_calls
    built.iam_calls = calls.total
    return built


def walking_chain(
    request: DiscoverRequest, start: Credentials, aws_sessions: AwsSessions | None
) -> Chain:
    """The chain discover walks with: the principal, the via role, the reader in every
    account (listed, and/or from Organizations), and one job to all readers."""
    via = request.via
    if via is not None and not via.startswith("arn:"):
        via = _via_arn(via, start, request, aws_sessions)
    role_sets: dict[str, Any] = {}
    if request.accounts:
        role_sets[READERS] = {
            "role_name": request.reader,
            "trusts": [PRINCIPAL],
            "accounts": list(dict.fromkeys(request.accounts)),
        }
    if request.organization:
        role_sets[ORG_READERS] = {
            "role_name": request.reader,
            "trusts": [PRINCIPAL],
            "organization": {"via": VIA if via else PRINCIPAL, "region": request.region},
            "exclude": list(dict.fromkeys(request.accounts)),
        }
    data: dict[str, Any] = {
        "settings": {
            "region": request.region,
            "assume_rate": request.assume_rate,
            "concurrency": request.concurrency,
            "session_name": "rolechain-discover-{run_id}",
        },
        "principals": {
            PRINCIPAL: {"source": request.source, "profile": request.profile, "kind": "user"}
        },
        "roles": {VIA: {"arn": via, "trusts": [PRINCIPAL]}} if via else {},
        "role_sets": role_sets,
        # The via role is a target too, so that its hop stays in the plan once the
        # organization's accounts are resolved (its credentials describe the organization).
        "jobs": {JOB: {"from": PRINCIPAL, "to": [*role_sets, *([VIA] if via else [])]}},
    }
    try:
        model = ChainFile.model_validate(data)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][-2:])}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(f"cannot discover with these options: {details}") from None
    return Chain(model)


def _via_arn(
    name: str, start: Credentials, request: DiscoverRequest, aws_sessions: AwsSessions | None
) -> str:
    """The ARN of role ``name`` (with its path) in the principal's own account."""
    from rolechain.aws.identity import caller_identity

    if not re.fullmatch(ROLE_NAME_PATTERN, name):
        raise UsageError(f"--via {name!r} is neither a role ARN nor a role name")
    who = caller_identity(aws_sessions or AwsSessions(), start, region=request.region)
    partition = who.arn.split(":")[1]
    return f"arn:{partition}:iam::{who.account}:role/{name}"


# --- from roles to a chain file -----------------------------------------------------------


@dataclass
class _Role:
    """A reached role and what the file says of it."""

    live: LiveRole
    policy: TrustPolicy
    caller: Caller
    depth: int
    decision: Decision
    entries: tuple[PrincipalRef, ...] = ()  # AWS principals of its AssumeRole grants
    unexpressed: tuple[str, ...] = ()  # comment lines
    external_id: str | None = None  # a fingerprint of the required ExternalId, never written

    @property
    def group_key(self) -> tuple[object, ...]:
        return (
            self.live.path_name,
            frozenset(e.key for e in self.entries),
            self.external_id,
            self.live.max_session_duration,
            self.unexpressed,
        )


@dataclass
class _Node:
    name: str
    kind: Literal["role", "role_set"]
    members: list[_Role]
    body: dict[str, Any] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)


class _Names:
    """Unique chain-file names made from IAM names."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def take(self, wanted: str, fallback: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]", "-", wanted).strip("-._")[:60] or fallback
        if not _NAME.match(base):
            base = f"{fallback}-{base}"[:60]
        name, n = base, 2
        while name in self.taken:
            name, n = f"{base}-{n}", n + 1
        self.taken.add(name)
        return name


def _context(caller: Caller, org_id: str | None, org_accounts: set[str]) -> Any:
    extra: dict[str, Any] = {}
    if org_id is not None and caller.account in org_accounts:
        extra["org_id"] = org_id
    return assume_role_context(caller, external_id=ANY, session_name=ANY, **extra)


def reachable(
    roles: Sequence[LiveRole],
    start: Caller,
    *,
    org_id: str | None = None,
    org_accounts: set[str] | None = None,
) -> list[_Role]:
    """Roles whose trust policy lets in ``start`` or a role reached before (breadth first)."""
    members = org_accounts or set()
    policies = {r.arn: parse_policy(r.trust_policy) for r in roles}
    index: dict[tuple[str, ...], list[LiveRole]] = {}
    for role in roles:
        for statement in policies[role.arn].grants(ASSUME):
            refs = statement.principals if not statement.not_principal else ()
            if statement.not_principal or not refs:
                index.setdefault(("any",), []).append(role)
            for ref in refs:
                key = ref.key
                if ref.kind == "session":  # found through its role
                    key = ("role", ref.partition, ref.account or "", (ref.name or "").lower())
                elif ref.any_partition:  # a bare account id: in the role's own partition
                    key = ("account", role.arn.split(":")[1], ref.account or "")
                index.setdefault(key, []).append(role)
    reached: dict[str, _Role] = {}
    queue: deque[tuple[Caller, int]] = deque([(start, 0)])
    while queue:
        caller, depth = queue.popleft()
        keys = [("any",), ("account", caller.partition, caller.account or "")]
        own = caller_key(caller)
        if own is not None:
            keys.append(own)
        context = _context(caller, org_id, members)
        for key in keys:
            for role in index.get(key, ()):
                if role.arn in reached:
                    continue
                decision = evaluate(policies[role.arn], caller, ASSUME, context)
                if decision.outcome == "deny":
                    continue
                found = Caller.parse(role.arn)
                assert found is not None
                reached[role.arn] = _Role(role, policies[role.arn], caller, depth + 1, decision)
                queue.append((found, depth + 1))
    return list(reached.values())


def _fingerprint(values: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(sorted(values)).encode()).hexdigest()[:16]


def _describe_role(role: _Role) -> None:
    """Fill what the file says: AWS principals, the ExternalId need, and what it cannot."""
    entries: dict[tuple[str, ...], PrincipalRef] = {}
    notes: list[str] = []
    external_ids: list[str] = []
    caller_context = assume_role_context(role.caller, external_id=None, session_name=ANY)
    needs_external_id = not evaluate(role.policy, role.caller, ASSUME, caller_context).allowed
    for statement in role.policy.grants(ASSUME):
        label = statement.label
        if statement.not_principal:
            notes.append(f"{label} trusts everyone except: " + _values(statement.principals))
        for ref in statement.principals if not statement.not_principal else ():
            if ref.kind in ("account", "role", "user", "session"):
                entries.setdefault(ref.key, ref)
            elif ref.kind == "any":
                notes.append(f'{label} trusts every AWS principal ("*")')
            elif ref.kind == "deleted":
                notes.append(f"{label} names a deleted principal: {ref.value}")
            else:
                notes.append(f"{label} also trusts {ref.kind} {ref.value}")
        for operator, key, values in statement.conditions():
            if key.lower() == "sts:externalid":
                if statement.covers_principal(role.caller) is not False:
                    external_ids.extend(values)
                continue
            notes.append(f"{label} condition {operator} {key}: {', '.join(values)}")
    for problem in role.policy.problems:
        notes.append(f"trust policy: {problem}")
    if role.decision.outcome == "unknown":
        keys = ", ".join(sorted(role.decision.unknown_keys))
        notes.append(f"reached only if conditions on {keys} hold (not evaluated offline)")
    role.entries = tuple(entries.values())
    role.unexpressed = tuple(dict.fromkeys(_clip(n) for n in notes))
    role.external_id = _fingerprint(external_ids) if needs_external_id else None


def _values(refs: Iterable[PrincipalRef]) -> str:
    return ", ".join(r.value for r in refs)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_COMMENT else text[: MAX_COMMENT - 3] + "..."


def build_chain(
    roles: Sequence[LiveRole],
    *,
    identity: CallerIdentity,
    request: DiscoverRequest,
    org_id: str | None = None,
    org_accounts: set[str] | None = None,
    accounts: Sequence[str] = (),
    unreadable: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> DiscoverResult:
    """The chain file for ``roles`` read from ``accounts`` (pure)."""
    start = identity_caller(identity.arn) or Caller("account", identity.account)
    by_name = {(r.account, r.name.lower()): r for r in roles}
    if start.kind == "role" and start.path is None:
        own = by_name.get((start.account or "", (start.name or "").lower()))
        if own is not None:
            start = Caller("role", start.account, start.partition, start.name, own.path)
    reached = reachable(roles, start, org_id=org_id, org_accounts=org_accounts)
    for role in reached:
        _describe_role(role)
    names = _Names()
    principal = names.take(request.principal or start.name or "principal", "principal")

    # Group: same name and path, same trusts, ExternalId need and MaxSessionDuration.
    groups: dict[tuple[object, ...], list[_Role]] = {}
    for role in sorted(reached, key=lambda r: (r.live.path_name, r.live.account)):
        groups.setdefault(role.group_key, []).append(role)
    # The largest group of a name gets the plain name; the others a number.
    ordered = sorted(
        groups.values(), key=lambda m: (m[0].live.path_name, -len(m), m[0].live.account)
    )
    nodes: list[_Node] = []
    for members in ordered:
        if len(members) > 1:
            nodes.append(_Node(names.take(members[0].live.name, "role-set"), "role_set", members))
    for members in ordered:
        if len(members) == 1:
            live = members[0].live
            taken = live.name if live.name not in names.taken else f"{live.name}-{live.account}"
            nodes.append(_Node(names.take(taken, "role"), "role", members))

    # What each trusted identity is called in the file.
    node_of: dict[tuple[str, ...], str] = {}
    set_members: dict[str, set[tuple[str, ...]]] = {}
    for node in nodes:
        for member in node.members:
            key = ("role", member.live.partition, member.live.account, member.live.name.lower())
            node_of[key] = (
                node.name if node.kind == "role" else f"{node.name}@{member.live.account}"
            )
            if node.kind == "role_set":
                set_members.setdefault(node.name, set()).add(key)
    start_key = caller_key(start)
    if start_key is not None:
        # A trust naming the principal's own role means the principal (its session), even
        # when that role is written too.
        node_of[start_key] = principal
        for keys in set_members.values():
            keys.discard(start_key)

    env: list[str] = []
    for node in nodes:
        first = node.members[0]
        trusts = _trusts(first.entries, node_of, set_members)
        body: dict[str, Any] = {}
        if node.kind == "role":
            body["arn"] = first.live.arn
        else:
            body["role_name"] = first.live.path_name
            if first.live.partition != "aws":
                body["partition"] = first.live.partition
            body["accounts"] = [m.live.account for m in node.members]
        body["trusts"] = trusts
        body["max_session_duration"] = first.live.max_session_duration
        if first.external_id is not None:
            variable = external_id_variable(node.name)
            env.append(variable)
            body["external_id"] = Placeholder.env(variable)
        node.body = body
        where = (
            f"account {first.live.account}"
            if node.kind == "role"
            else f"{len(node.members)} accounts"
        )
        node.comments.append(f"{first.live.path_name} in {where}")
        if first.live.description:
            node.comments.append(_clip(f"IAM description: {first.live.description}"))
        if first.unexpressed:
            node.comments.append("not expressed in this file:")
            node.comments.extend(f"  {line}" for line in first.unexpressed)

    reader_sets = [n for n in nodes if n.members[0].live.path_name == request.reader.strip("/")]
    reader = max(reader_sets, key=lambda n: len(n.members)).name if reader_sets else None
    depth = max((r.depth for r in reached), default=1)
    text = _render(
        request=request,
        identity=identity,
        start=start,
        principal=principal,
        nodes=nodes,
        reader=reader,
        max_hops=min(50, max(10, depth)),
        header=_header(
            identity=identity,
            request=request,
            org_id=org_id,
            accounts=accounts,
            unreadable=unreadable or {},
            roles=len(roles),
            written=len(reached),
            env=env,
            now=now,
        ),
    )
    return DiscoverResult(
        text=text,
        principal_arn=identity.arn,
        accounts=sorted(accounts),
        unreadable=dict(unreadable or {}),
        roles_read=len(roles),
        roles_written=len(reached),
        role_sets=sum(1 for n in nodes if n.kind == "role_set"),
        jobs=len(nodes),
        env=env,
    )


def _trusts(
    entries: Sequence[PrincipalRef],
    node_of: Mapping[tuple[str, ...], str],
    set_members: Mapping[str, set[tuple[str, ...]]],
) -> list[str]:
    """``trusts`` of a role: names where the file declares the identity, a role set's
    name when every member is trusted, ARNs otherwise."""
    keys = {e.key for e in entries}
    out: list[str] = []
    covered: set[tuple[str, ...]] = set()
    for name, members in sorted(set_members.items()):
        if members and members <= keys:
            out.append(name)
            covered |= members
    for entry in entries:
        if entry.key in covered:
            continue
        named = node_of.get(entry.key)  # a session ARN has no node: it stays an ARN
        out.append(named if named is not None else entry.arn)
    return list(dict.fromkeys(out))


def _header(
    *,
    identity: CallerIdentity,
    request: DiscoverRequest,
    org_id: str | None,
    accounts: Sequence[str],
    unreadable: Mapping[str, str],
    roles: int,
    written: int,
    env: Sequence[str],
    now: datetime | None,
) -> list[str]:
    moment = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sources = []
    if request.organization:
        via = f" through {request.via}" if request.via else ""
        sources.append(f"organization {org_id}{via}")
    if request.accounts:
        sources.append(f"{len(request.accounts)} listed")
    lines = [
        f"Discovered by `rolechain discover` at {moment}",
        f"from {identity.arn}, reading each account through role {request.reader}.",
        f"Accounts: {len(accounts)} read ({', '.join(sources)}).",
    ]
    for account, error in sorted(unreadable.items()):
        lines.append(_clip(f"NOT READ: account {account}: {error}"))
    lines.append(
        f"Roles: {roles} read, {written} written (those the principal can reach), "
        f"{roles - written} left out."
    )
    if env:
        lines.append("ExternalIds are never written; set these before using this file:")
        lines.extend(f"  {name}" for name in env)
    lines += [
        "A chain file is code: its jobs run tasks with these roles. Review it before use;",
        "check it with `rolechain validate` and compare it with IAM with `rolechain verify`.",
    ]
    return lines


def _render(
    *,
    request: DiscoverRequest,
    identity: CallerIdentity,
    start: Caller,
    principal: str,
    nodes: Sequence[_Node],
    reader: str | None,
    max_hops: int,
    header: Sequence[str],
) -> str:
    out = [comment(line) for line in header]
    out.append("version: 1")
    settings: dict[str, Any] = {"region": request.region, "max_hops": max_hops}
    if request.assume_rate != DEFAULT_ASSUME_RATE:
        settings["assume_rate"] = request.assume_rate  # the pace chosen for these accounts
    if reader is not None:
        settings["verify"] = {"reader": reader}
    out.append("settings:")
    emit(settings, 1, out)
    spec: dict[str, Any] = {"source": request.source}
    if request.source == "profile":
        spec["profile"] = request.profile
    spec["kind"] = "session" if identity.is_session else "user"
    arn = start.arn
    if arn is not None and start.kind in ("user", "role"):
        spec["arn"] = arn
    spec["account"] = identity.account
    out += [
        "",
        "principals:",
        "  " + comment(f"the credentials discover started from: {identity.arn}"),
    ]
    out.append(f"  {scalar(principal)}:")
    emit(spec, 2, out)
    nodes = sorted(nodes, key=lambda n: n.name.lower())
    for section, kind in (("roles", "role"), ("role_sets", "role_set")):
        chosen = [n for n in nodes if n.kind == kind]
        if not chosen:
            continue
        out += ["", f"{section}:"]
        for node in chosen:
            out.extend("  " + comment(line) for line in node.comments)
            out.append(f"  {scalar(node.name)}:")
            emit(node.body, 2, out)
    if nodes:
        out += ["", "jobs:"]
        for node in nodes:
            out.append(f"  {scalar(node.name)}:")
            emit(
                {"from": principal, "to": node.name, "tasks": ["sts.get_caller_identity"]},
                2,
                out,
            )
    return "\n".join(out) + "\n"

"""Evaluate an IAM trust policy offline: may this caller assume the role?

A trust policy is a role's resource policy. :func:`evaluate` applies AWS's evaluation
logic for one action (``sts:AssumeRole``, ``sts:TagSession``, ``sts:SetSourceIdentity``):

* a statement applies when its ``Action`` (or ``NotAction``) covers the action, its
  ``Principal`` (or ``NotPrincipal``) covers the caller, and every condition holds;
* an explicit ``Deny`` that applies wins; otherwise an ``Allow`` that applies allows;
  otherwise the request is implicitly denied.

Principals: ``"*"`` and ``{"AWS": "*"}`` (anyone), an account id or its ``:root`` ARN (any
identity of that account), role ARNs (with or without a path: role names are unique in an
account, so a role is matched by account and name), user ARNs, role-session ARNs
(``arn:aws:sts::<account>:assumed-role/<role>/<session>``). ``Service``, ``Federated`` and
``CanonicalUser`` principals never cover an AssumeRole caller. A unique id (``AROA...``) is
what IAM shows once the principal it named was deleted; it covers nobody.

Conditions: the ``String*``, ``Arn*``, ``Bool`` and ``Null`` operators, with ``IfExists`` and
the ``ForAnyValue:``/``ForAllValues:`` set qualifiers, over any key the request context
holds (``sts:ExternalId``, ``sts:SourceIdentity``, ``sts:RoleSessionName``,
``aws:PrincipalOrgID``, ``aws:PrincipalAccount``, ``aws:PrincipalArn``, ``aws:RequestTag/*``,
``aws:TagKeys``, ``sts:TransitiveTagKeys``...). Blocks are ANDed, keys within a block are
ANDed, a key's values are ORed (negated operators: the value matches none of them); a key
missing from the request makes a positive operator false and a negated one true
(``...IfExists``: true either way). See the IAM user guide, "Condition operators" and
"Policy evaluation logic".

The result has three values. ``unknown`` means a statement that matters depends on a key
the context does not hold (``aws:SourceIp``, a policy variable, a numeric operator...): the
caller of :func:`evaluate` decides what that means. The sandbox refuses (an unknown
condition can deny access, never grant it); ``rolechain verify`` reports it.

Context values are strings, tuples of strings (multi-valued keys), ``None`` (the key is
known to be absent) or :data:`ANY` (the caller will pass whatever the policy wants, for
instance an ExternalId that is still a placeholder); a key that is not in the context at
all is unknown.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from operator import eq, ge, gt, le, lt
from typing import Any, Final, Literal
from urllib.parse import unquote

Outcome = Literal["allow", "deny", "unknown"]
CallerKind = Literal["user", "role", "root", "account"]
PrincipalKind = Literal[
    "any", "account", "role", "user", "session", "service", "federated", "canonical",
    "deleted", "unknown",
]  # fmt: skip


class _Any:
    """The type of :data:`ANY`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()
"""A context value that satisfies every positive condition on its key."""

ContextValue = str | tuple[str, ...] | _Any | None

_ACCOUNT = re.compile(r"^\d{12}$")
_IAM_ARN = re.compile(
    r"^arn:(?P<partition>[\w-]+):iam::(?P<account>\d{12}):"
    r"(?:(?P<root>root)|(?P<kind>user|role)/(?P<path>(?:[^/]+/)*)(?P<name>[^/]+))$"
)
_SESSION_ARN = re.compile(
    r"^arn:(?P<partition>[\w-]+):sts::(?P<account>\d{12}):assumed-role/(?P<name>[^/]+)/"
    r"(?P<session>[^/]+)$"
)
_UNIQUE_ID = re.compile(r"^(AROA|AIDA|AGPA|AIPA|ANPA|ANVA|ASIA|AKIA)[A-Z0-9]{12,}$")
_SET_QUALIFIERS = ("forallvalues:", "foranyvalue:")


# --- who -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who calls: an IAM user, a role (its sessions), a root user, or only an account.

    ``path`` is the role's or user's path (``/security/``), ``None`` when unknown (a role
    session's ARN does not carry it). ``session`` is a role session's name, if known.
    ``kind="account"`` is an identity of which only the account is known.
    """

    kind: CallerKind
    account: str | None
    partition: str = "aws"
    name: str | None = None
    path: str | None = None
    session: str | None = None

    @classmethod
    def parse(cls, arn: str, *, session: str | None = None) -> Caller | None:
        """The caller an identity ARN names (IAM user, role, root, or a role session)."""
        found = _IAM_ARN.match(arn)
        if found:
            partition, account = found.group("partition", "account")
            if found.group("root"):
                return cls("root", account, partition)
            kind: CallerKind = "user" if found.group("kind") == "user" else "role"
            path = "/" + found.group("path")
            return cls(kind, account, partition, found.group("name"), path, session)
        found = _SESSION_ARN.match(arn)
        if found:
            return cls(
                "role",
                found.group("account"),
                found.group("partition"),
                found.group("name"),
                None,
                found.group("session"),
            )
        return None

    @property
    def arn(self) -> str | None:
        """The IAM ARN (a session's role, with its path when known)."""
        if self.account is None:
            return None
        prefix = f"arn:{self.partition}:iam::{self.account}:"
        if self.kind == "root":
            return prefix + "root"
        if self.kind in ("user", "role") and self.name:
            return f"{prefix}{self.kind}{self.path or '/'}{self.name}"
        return None

    @property
    def principal_type(self) -> str | None:
        """``aws:PrincipalType``: User, AssumedRole or Account."""
        return {"user": "User", "role": "AssumedRole", "root": "Account"}.get(self.kind)

    def __str__(self) -> str:
        if self.kind == "account":
            return f"an identity in account {self.account}"
        return self.arn or f"{self.kind} {self.name}"


@dataclass(frozen=True)
class PrincipalRef:
    """One entry of a statement's ``Principal``, read as an identity."""

    kind: PrincipalKind
    value: str  # as written in the policy
    partition: str = "aws"
    account: str | None = None
    name: str | None = None
    session: str | None = None
    any_partition: bool = False  # a bare account id: that account in the caller's partition

    @property
    def key(self) -> tuple[str, ...]:
        """Identity key: the same identity written two ways has the same key."""
        if self.kind == "any":
            return ("any",)
        if self.kind == "account":
            return ("account", self.partition, self.account or "")
        if self.kind in ("role", "user"):
            return (self.kind, self.partition, self.account or "", (self.name or "").lower())
        if self.kind == "session":
            return (
                "session",
                self.partition,
                self.account or "",
                (self.name or "").lower(),
                self.session or "",
            )
        return (self.kind, self.value)

    @property
    def arn(self) -> str:
        """The entry as an ARN (an account id becomes its root ARN)."""
        if self.kind == "account":
            return f"arn:{self.partition}:iam::{self.account}:root"
        return self.value

    @property
    def is_aws(self) -> bool:
        """An AWS identity (not a service, federation or canonical user)."""
        return self.kind in ("any", "account", "role", "user", "session", "deleted", "unknown")


def parse_principal(value: str, kind: str = "AWS") -> PrincipalRef:
    """``value`` from a ``Principal`` block of type ``kind`` (AWS, Service, Federated...)."""
    if kind == "Service":
        return PrincipalRef("service", value)
    if kind == "Federated":
        return PrincipalRef("federated", value)
    if kind == "CanonicalUser":
        return PrincipalRef("canonical", value)
    if kind != "AWS":
        return PrincipalRef("unknown", value)
    if value == "*":
        return PrincipalRef("any", value)
    if _ACCOUNT.match(value):
        # IAM reads a bare account id as that account's root in the caller's partition.
        return PrincipalRef("account", value, account=value, any_partition=True)
    found = _IAM_ARN.match(value)
    if found:
        partition, account = found.group("partition", "account")
        if found.group("root"):
            return PrincipalRef("account", value, partition, account)
        role_or_user: PrincipalKind = "role" if found.group("kind") == "role" else "user"
        return PrincipalRef(role_or_user, value, partition, account, found.group("name"))
    found = _SESSION_ARN.match(value)
    if found:
        return PrincipalRef(
            "session",
            value,
            found.group("partition"),
            found.group("account"),
            found.group("name"),
            found.group("session"),
        )
    if _UNIQUE_ID.match(value):
        return PrincipalRef("deleted", value)
    return PrincipalRef("unknown", value)


def principal_covers(ref: PrincipalRef, caller: Caller) -> bool | None:
    """Whether a principal entry names ``caller`` (None: cannot tell from what is known)."""
    if ref.kind == "any":
        return True
    if not ref.is_aws or ref.kind in ("deleted", "unknown"):
        return False
    if caller.account is None:
        return None
    if ref.account != caller.account:
        return False
    if ref.partition != caller.partition and not ref.any_partition:
        return False
    if ref.kind == "account":
        return True
    if caller.kind == "account":
        return None  # some identity of the account: maybe this one
    if ref.kind in ("role", "user"):
        return caller.kind == ref.kind and (caller.name or "").lower() == (ref.name or "").lower()
    # a role session ARN: that role, that session name only
    if caller.kind != "role" or (caller.name or "").lower() != (ref.name or "").lower():
        return False
    if caller.session is None:
        return None
    return caller.session == ref.session


# --- the document ----------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyStatement:
    """One statement, normalized: lists are tuples, condition values are strings."""

    index: int
    effect: str
    sid: str | None = None
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] | None = None
    principals: tuple[PrincipalRef, ...] = ()
    not_principal: bool = False  # the principals came from NotPrincipal
    condition: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    variables: bool = True  # Version 2012-10-17: ${...} in condition values are variables

    def covers_action(self, action: str) -> bool:
        wanted = action.lower()
        if self.not_actions is not None:
            return not any(glob_match(wanted, a.lower()) for a in self.not_actions)
        return any(glob_match(wanted, a.lower()) for a in self.actions)

    def covers_principal(self, caller: Caller) -> bool | None:
        found = _tri_any(principal_covers(ref, caller) for ref in self.principals)
        if self.not_principal:
            if self.effect == "Allow":
                return False  # IAM refuses NotPrincipal in a trust policy: it grants nothing
            return None if found is None else not found
        return found

    @property
    def condition_keys(self) -> frozenset[str]:
        """Every condition key of the statement, lower-cased."""
        return frozenset(key.lower() for block in self.condition.values() for key in block)

    def conditions(self) -> Iterator[tuple[str, str, tuple[str, ...]]]:
        """(operator, key, values) of every clause."""
        for operator, block in self.condition.items():
            for key, values in block.items():
                yield operator, key, values

    @property
    def label(self) -> str:
        return f"statement {self.index + 1}" + (f" ({self.sid})" if self.sid else "")


@dataclass(frozen=True)
class TrustPolicy:
    """A parsed trust policy; ``problems`` lists what could not be read."""

    statements: tuple[PolicyStatement, ...] = ()
    problems: tuple[str, ...] = ()

    def grants(self, action: str = "sts:AssumeRole") -> list[PolicyStatement]:
        """The Allow statements that cover ``action``."""
        return [s for s in self.statements if s.effect == "Allow" and s.covers_action(action)]


class _Unreadable(Exception):
    """A part of the document that cannot be read (reported as a problem)."""


class _Rejected(Exception):
    """A document IAM refuses as a whole (a wildcard principal ARN...)."""


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        try:
            return str(value)
        except ValueError:  # an integer of more digits than str() converts
            raise _Unreadable("holds a number too long to read") from None
    raise _Unreadable(f"holds a {type(value).__name__} where a string is expected")


def parse_policy(document: Mapping[str, Any] | str | TrustPolicy) -> TrustPolicy:
    """Read a trust policy: a mapping, JSON text, or URL-encoded JSON text (as IAM's raw
    API returns it). Parts that are not a valid policy are listed in ``problems`` and left
    out (they grant nothing); a document IAM would refuse as a whole (a wildcard in a
    principal ARN) has no statements. Never raises on what the document holds."""
    if isinstance(document, TrustPolicy):
        return document
    data: Any = document
    if isinstance(document, str):
        data = _load_json(document)
        if data is None:
            return TrustPolicy(problems=("the trust policy is not JSON",))
    if not isinstance(data, Mapping):
        return TrustPolicy(problems=("the trust policy is not a JSON object",))
    statements: list[PolicyStatement] = []
    problems: list[str] = []
    variables = data.get("Version") == "2012-10-17"
    try:
        for index, raw in enumerate(_as_tuple(data.get("Statement"))):
            if not isinstance(raw, Mapping):
                problems.append(f"statement {index + 1} is not an object")
                continue
            try:
                statement = _statement(index, raw, problems, variables)
            except (_Unreadable, ValueError, TypeError, RecursionError) as exc:
                detail = str(exc) if isinstance(exc, _Unreadable) else "cannot be read"
                problems.append(f"statement {index + 1} {detail}")
                continue
            if statement is not None:
                statements.append(statement)
    except _Rejected as exc:
        return TrustPolicy(problems=(f"IAM refuses this trust policy: {exc}",))
    return TrustPolicy(tuple(statements), tuple(problems))


def _load_json(text: str) -> Any:
    for candidate in (text, unquote(text)):
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    return None


def _principals(label: str, block: Any, problems: list[str]) -> list[PrincipalRef]:
    if block == "*":
        return [PrincipalRef("any", "*")]
    if block is None:
        return []
    if not isinstance(block, Mapping):
        problems.append(f"{label} has a Principal that is neither '*' nor an object")
        return []
    out: list[PrincipalRef] = []
    for kind, values in block.items():
        for raw in _as_tuple(values):
            value = _text(raw)
            if ("*" in value and not (kind == "AWS" and value == "*")) or "?" in value:
                # IAM: no wildcards in a principal, except the whole "*" (and {"AWS": "*"})
                raise _Rejected(f"{label} names principal {value!r} with a wildcard")
            out.append(parse_principal(value, str(kind)))
    return out


def _statement(
    index: int, raw: Mapping[str, Any], problems: list[str], variables: bool = True
) -> PolicyStatement | None:
    label = f"statement {index + 1}"
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        problems.append(f"{label} has Effect {str(effect)[:40]!r}, not Allow or Deny")
        return None
    not_principal = "NotPrincipal" in raw
    principals = _principals(
        label, raw.get("NotPrincipal") if not_principal else raw.get("Principal"), problems
    )
    condition: dict[str, dict[str, tuple[str, ...]]] = {}
    raw_condition = raw.get("Condition")
    if isinstance(raw_condition, Mapping):
        for operator, clauses in raw_condition.items():
            if not isinstance(clauses, Mapping):
                problems.append(f"{label}: condition {_text(operator)!r} is not an object")
                clauses = {"\0malformed": ()}
            condition[_text(operator)] = {
                _text(key): tuple(_text(v) for v in _as_tuple(values))
                for key, values in clauses.items()
            }
    elif raw_condition is not None:
        problems.append(f"{label}: Condition is not an object")
        condition["\0malformed"] = {"\0malformed": ()}
    not_actions = raw.get("NotAction")
    return PolicyStatement(
        index=index,
        effect=str(effect),
        sid=_text(raw["Sid"]) if raw.get("Sid") is not None else None,
        actions=tuple(_text(a) for a in _as_tuple(raw.get("Action"))),
        not_actions=None
        if not_actions is None
        else tuple(_text(a) for a in _as_tuple(not_actions)),
        principals=tuple(principals),
        not_principal=not_principal,
        condition=condition,
        variables=variables,
    )


# --- conditions ------------------------------------------------------------------------

_STAR: Final = object()  # a wildcard in a pattern; a literal '*' (from ${*}) stays a str
_ONE: Final = object()
_Unit = object  # one pattern unit: a character, _STAR or _ONE


def _units(pattern: str) -> list[_Unit]:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one character."""
    return [_STAR if ch == "*" else _ONE if ch == "?" else ch for ch in pattern]


def _segment_at(text: str, start: int, segment: Sequence[_Unit]) -> bool:
    if start + len(segment) > len(text):
        return False
    return all(u is _ONE or u == text[start + i] for i, u in enumerate(segment))


def glob_match(text: str, pattern: str | Sequence[_Unit]) -> bool:
    """Whether ``text`` matches ``pattern`` (``*`` and ``?``), in O(len(text) x len(pattern))
    steps at worst: the pattern is cut at its stars and each piece is matched at the first
    place it fits, never backtracking (a regex engine can take exponential time on
    ``*a*a*a...b``, and a third party writes the trust policies rolechain reads)."""
    units = _units(pattern) if isinstance(pattern, str) else list(pattern)
    segments: list[list[_Unit]] = [[]]
    for unit in units:
        if unit is _STAR:
            segments.append([])
        else:
            segments[-1].append(unit)
    if len(segments) == 1:
        return len(text) == len(segments[0]) and _segment_at(text, 0, segments[0])
    first, *middle, last = segments
    if len(first) + len(last) > len(text):
        return False
    if not _segment_at(text, 0, first) or not _segment_at(text, len(text) - len(last), last):
        return False
    position, end = len(first), len(text) - len(last)
    for segment in middle:
        while position + len(segment) <= end and not _segment_at(text, position, segment):
            position += 1
        if position + len(segment) > end:
            return False
        position += len(segment)
    return True


def _like(actual: str, wanted: str | Sequence[_Unit]) -> bool:
    return glob_match(actual, wanted)


def _split_arn(value: str | Sequence[_Unit]) -> list[Any] | None:
    """The six ':'-separated parts of an ARN (pattern units or text)."""
    parts: list[list[_Unit]] = [[]]
    for unit in value:
        if unit == ":" and len(parts) < 6:
            parts.append([])
        else:
            parts[-1].append(unit)
    return parts if len(parts) == 6 else None


def _arn_like(actual: str, wanted: str | Sequence[_Unit]) -> bool:
    """ARN operators compare each of the six ':'-separated parts on its own."""
    have = actual.split(":", 5)
    want = _split_arn(_units(wanted) if isinstance(wanted, str) else wanted)
    if len(have) != 6 or want is None:
        return False
    return all(glob_match(a, w) for a, w in zip(have, want, strict=True))


def _literal(wanted: str | Sequence[_Unit]) -> str | None:
    """A pattern's text when it is all literal characters (an equality operand)."""
    if isinstance(wanted, str):
        return wanted
    if all(isinstance(u, str) for u in wanted):
        return "".join(u for u in wanted if isinstance(u, str))
    return "".join("*" if u is _STAR else "?" if u is _ONE else str(u) for u in wanted)


def _equals(actual: str, wanted: str | Sequence[_Unit]) -> bool:
    return actual == _literal(wanted)


def _equals_ignore_case(actual: str, wanted: str | Sequence[_Unit]) -> bool:
    return actual.lower() == (_literal(wanted) or "").lower()


def _bool(actual: str, wanted: str | Sequence[_Unit]) -> bool:
    return actual.lower() == (_literal(wanted) or "").lower()


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _moment(text: str) -> datetime | None:
    """A date condition value: ISO 8601 (W3C) or seconds since the epoch."""
    text = text.strip()
    number = _number(text)
    try:
        if number is not None:
            return datetime.fromtimestamp(float(number), UTC)
        moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ordered(parse: Any, test: Any) -> Any:
    def compare(actual: str, wanted: str | Sequence[_Unit]) -> bool:
        have, want = parse(actual), parse(_literal(wanted) or "")
        return have is not None and want is not None and bool(test(have, want))

    return compare


def _ip(actual: str, wanted: str | Sequence[_Unit]) -> bool:
    try:
        address = ipaddress.ip_address(actual.strip())
        network = ipaddress.ip_network((_literal(wanted) or "").strip(), strict=False)
    except ValueError:
        return False
    return address.version == network.version and address in network


_EQ, _LT, _LE, _GT, _GE = eq, lt, le, gt, ge
_Compare = Callable[[str, Any], bool]

# operator (lower-case, without IfExists and set qualifier) -> (compare, negated)
_OPERATORS: dict[str, tuple[_Compare, bool]] = {
    "stringequals": (_equals, False),
    "stringnotequals": (_equals, True),
    "stringequalsignorecase": (_equals_ignore_case, False),
    "stringnotequalsignorecase": (_equals_ignore_case, True),
    "stringlike": (_like, False),
    "stringnotlike": (_like, True),
    "arnequals": (_arn_like, False),
    "arnlike": (_arn_like, False),
    "arnnotequals": (_arn_like, True),
    "arnnotlike": (_arn_like, True),
    "bool": (_bool, False),
    "binaryequals": (_equals, False),
    "ipaddress": (_ip, False),
    "notipaddress": (_ip, True),
    "numericequals": (_ordered(_number, _EQ), False),
    "numericnotequals": (_ordered(_number, _EQ), True),
    "numericlessthan": (_ordered(_number, _LT), False),
    "numericlessthanequals": (_ordered(_number, _LE), False),
    "numericgreaterthan": (_ordered(_number, _GT), False),
    "numericgreaterthanequals": (_ordered(_number, _GE), False),
    "dateequals": (_ordered(_moment, _EQ), False),
    "datenotequals": (_ordered(_moment, _EQ), True),
    "datelessthan": (_ordered(_moment, _LT), False),
    "datelessthanequals": (_ordered(_moment, _LE), False),
    "dategreaterthan": (_ordered(_moment, _GT), False),
    "dategreaterthanequals": (_ordered(_moment, _GE), False),
}
_PATTERN_OPERATORS = frozenset({"stringlike", "stringnotlike", "arnlike", "arnnotlike",
                                "arnequals", "arnnotequals"})  # fmt: skip


def _context_value(value: Any) -> ContextValue:
    """A context value as the evaluator holds it (lists become tuples, scalars strings)."""
    if value is None or isinstance(value, _Any):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_scalar(v) for v in value)
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:  # a huge integer: no condition value can equal it
        return "\0unreadable"


class RequestContext:
    """Condition keys of one request, lower-cased.

    A key listed is known (``None``: known to be absent). A key not listed is unknown,
    except under ``known_prefixes`` (``aws:requesttag/``): every such key is known, and
    absent unless listed.
    """

    __slots__ = ("known_prefixes", "values")

    def __init__(
        self, values: Mapping[str, ContextValue], known_prefixes: Sequence[str] = ()
    ) -> None:
        self.values = {str(k).lower(): _context_value(v) for k, v in values.items()}
        self.known_prefixes = tuple(p.lower() for p in known_prefixes)

    def lookup(self, key: str) -> tuple[bool, ContextValue]:
        """(known, value) of ``key``."""
        lowered = key.lower()
        if lowered in self.values:
            return True, self.values[lowered]
        if lowered.startswith(self.known_prefixes) and self.known_prefixes:
            return True, None
        return False, None


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}


class _Unresolved(Exception):
    """A policy variable whose key the context does not know."""


def _substitute(wanted: str, context: RequestContext) -> list[_Unit] | None:
    """``wanted`` with its policy variables replaced from the context, as pattern units
    (text from a variable, and ``${*}``, ``${?}``, ``${$}``, is literal). None: a variable's
    key is absent and has no default, so the value matches nothing. Raises
    :class:`_Unresolved` when a key is unknown."""
    out: list[_Unit] = []
    position = 0
    for found in _VARIABLE.finditer(wanted):
        out.extend(_units(wanted[position : found.start()]))
        position = found.end()
        inner = found.group(1).strip()
        if inner in _SPECIAL:
            out.extend(_SPECIAL[inner])
            continue
        key, _, default = inner.partition(",")
        default = default.strip()
        known, actual = context.lookup(key.strip())
        if not known or isinstance(actual, _Any | tuple):
            raise _Unresolved(key)
        if actual is None:
            if len(default) >= 2 and default[0] == default[-1] == "'":
                out.extend(default[1:-1])
                continue
            return None
        out.extend(actual)
    out.extend(_units(wanted[position:]))
    return out


def _operands(
    op: str, wanted: tuple[str, ...], context: RequestContext, variables: bool
) -> list[str | list[_Unit]] | None:
    """The condition's values ready to compare (None: a variable cannot be resolved)."""
    out: list[str | list[_Unit]] = []
    for value in wanted:
        if variables and "${" in value:
            try:
                units = _substitute(value, context)
            except _Unresolved:
                return None
            if units is not None:
                out.append(units if op in _PATTERN_OPERATORS else _literal(units) or "")
        else:
            out.append(value)
    return out


def _clause(
    operator_name: str,
    key: str,
    wanted: tuple[str, ...],
    context: RequestContext,
    variables: bool = True,
) -> bool | None:
    """One (operator, key) clause: True, False, or None when it cannot be decided."""
    op = operator_name.lower()
    qualifier = ""
    for prefix in _SET_QUALIFIERS:
        if op.startswith(prefix):
            qualifier, op = prefix, op[len(prefix) :]
    if_exists = op.endswith("ifexists")
    op = op.removesuffix("ifexists")
    known, actual = context.lookup(key)
    if not known:
        return None  # a key the context does not know
    present = actual is not None and actual != ()
    if op == "null":
        if not wanted:
            return None
        if isinstance(actual, _Any):
            return True  # the caller may pass the key or not
        # several values are ORed: ["true", "false"] holds whatever the request
        return any(present != (w.lower() == "true") for w in wanted)
    spec = _OPERATORS.get(op)
    if spec is None:
        return None
    compare, negated = spec
    if not present:
        # IAM user guide, "Multivalued context keys": ForAnyValue over a missing or empty
        # key is false, negated operator or IfExists notwithstanding; ForAllValues is true.
        if qualifier == "foranyvalue:":
            return False
        if qualifier == "forallvalues:" or if_exists:
            return True
        return negated
    if isinstance(actual, _Any):
        return None if negated else True
    operands = _operands(op, wanted, context, variables)
    if operands is None:
        return None
    items = actual if isinstance(actual, tuple) else (actual or "",)
    results = [any(compare(item, w) for w in operands) != negated for item in items]
    return all(results) if qualifier == "forallvalues:" else any(results)


def _tri_any(values: Iterable[bool | None]) -> bool | None:
    unknown = False
    for value in values:
        if value is True:
            return True
        if value is None:
            unknown = True
    return None if unknown else False


@dataclass(frozen=True)
class _Conditions:
    result: bool | None
    failed: frozenset[str]
    unknown: frozenset[str]


def _conditions(statement: PolicyStatement, context: RequestContext) -> _Conditions:
    failed: set[str] = set()
    unknown: set[str] = set()
    for operator, key, values in statement.conditions():
        outcome = _clause(operator, key, values, context, statement.variables)
        if outcome is False:
            failed.add(key.lower())
        elif outcome is None:
            unknown.add(key.lower())
    result = False if failed else None if unknown else True
    return _Conditions(result, frozenset(failed), frozenset(unknown))


# --- the decision ----------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What a trust policy answers, and why.

    ``allowed_by`` / ``denied_by``: indexes of the statements that apply for certain.
    ``unknown_keys``: condition keys (or ``"principal"``) whose value was unknown in a
    statement that could have changed the outcome. ``failed_keys``: condition keys that were
    false in Allow statements naming this caller and action (``sts:externalid`` when only the
    ExternalId was wrong).
    """

    outcome: Outcome
    allowed_by: tuple[int, ...] = ()
    denied_by: tuple[int, ...] = ()
    unknown_keys: frozenset[str] = frozenset()
    failed_keys: frozenset[str] = frozenset()

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"


def evaluate(
    policy: Mapping[str, Any] | str | TrustPolicy,
    caller: Caller,
    action: str,
    context: Mapping[str, ContextValue] | RequestContext,
) -> Decision:
    """Whether ``policy`` lets ``caller`` perform ``action`` in a request with ``context``."""
    parsed = parse_policy(policy)
    ctx = context if isinstance(context, RequestContext) else RequestContext(context)
    allowed: list[int] = []
    denied: list[int] = []
    maybe_allow = maybe_deny = False
    unknown: set[str] = set()
    failed: set[str] = set()
    for statement in parsed.statements:
        if not statement.covers_action(action):
            continue
        principal = statement.covers_principal(caller)
        if principal is False:
            continue
        conditions = _conditions(statement, ctx)
        applies = (
            False
            if conditions.result is False
            else None
            if principal is None or conditions.result is None
            else True
        )
        open_keys = set(conditions.unknown) | ({"principal"} if principal is None else set())
        if statement.effect == "Allow":
            if applies is True:
                allowed.append(statement.index)
            elif applies is None:
                maybe_allow = True
                unknown |= open_keys
            elif principal is True:
                failed |= conditions.failed
        elif applies is True:
            denied.append(statement.index)
        elif applies is None:
            maybe_deny = True
            unknown |= open_keys
    outcome: Outcome
    if denied:
        outcome, unknown = "deny", set()
    elif allowed:
        outcome = "unknown" if maybe_deny else "allow"
    elif maybe_allow:
        outcome = "unknown"
    else:
        outcome = "deny"
    return Decision(
        outcome,
        tuple(allowed),
        tuple(denied),
        frozenset(unknown) if outcome == "unknown" else frozenset(),
        frozenset(failed),
    )


_UNSET: Final = object()
REQUEST_TAG_PREFIX = "aws:requesttag/"


def assume_role_context(
    caller: Caller,
    *,
    external_id: str | _Any | None = None,
    session_name: str | _Any | None = None,
    source_identity: str | None = None,
    inherited_source_identity: str | None = None,
    tags: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    transitive_tag_keys: Sequence[str] = (),
    org_id: object = _UNSET,
) -> RequestContext:
    """The condition keys of an AssumeRole request by ``caller``.

    ``source_identity`` is the one this request passes (``sts:SourceIdentity``);
    ``inherited_source_identity`` the one the caller's session already carries (it persists
    and wins). ``aws:SourceIdentity`` is only in the context when the calling session
    carries one (IAM user guide, "AWS global condition context keys", aws:SourceIdentity).
    ``org_id`` is the caller's organization (``None``: in none); leave it out when it is not known.
    """
    pairs = list(tags.items()) if isinstance(tags, Mapping) else list(tags)
    values: dict[str, ContextValue] = {
        "sts:externalid": external_id,
        "sts:rolesessionname": session_name,
        # the source identity the request sets (a session that carries one passes it on)
        "sts:sourceidentity": inherited_source_identity or source_identity,
        # only a calling session that already carries a source identity has this key
        "aws:sourceidentity": inherited_source_identity,
        "aws:tagkeys": tuple(k for k, _ in pairs) or None,
        "sts:transitivetagkeys": tuple(transitive_tag_keys) or None,
    }
    for key, value in pairs:
        values[REQUEST_TAG_PREFIX + key.lower()] = value
    if caller.account is not None:
        values["aws:principalaccount"] = caller.account
    if caller.principal_type is not None:
        values["aws:principaltype"] = caller.principal_type
    if caller.kind == "user" or (caller.kind == "role" and caller.path is not None):
        values["aws:principalarn"] = caller.arn
    if org_id is not _UNSET:
        values["aws:principalorgid"] = org_id if isinstance(org_id, str) else None
    return RequestContext(values, known_prefixes=(REQUEST_TAG_PREFIX,))

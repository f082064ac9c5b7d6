"""Checks that need the whole chain file: names, references and globs.

The pydantic models check each value on its own; :func:`check` checks what one value says
about the others:

* principals, roles and role sets share one namespace: a name is defined once;
* every ``trusts`` entry names a principal, role, role set or role-set member
  (``set@account``), or is an IAM principal ARN (``arn:<partition>:iam::<account>:root``,
  ``...:user/<name>``, ``...:role/<name>``, ``arn:<partition>:sts::<account>:assumed-role/...``);
* a job's ``from`` is a principal; its ``to`` selectors each match at least one target;
  its ``via`` entries are roles, role sets or members;
* an organization query's ``via`` is a principal or a role;
* a ``verify.reader`` is a role or a role set;
* a job's regions (and its tasks') belong to the partition of its targets, once each.

Rules that need a path of hops (durations, chaining, session names...) are the planner's.
An unknown name is reported with the valid choices and the closest match.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from rolechain.errors import Location, Problem, escape_controls
from rolechain.model.schema import (
    MAX_ROLE_PATH,
    PARTITIONS,
    PRINCIPAL_ARN_PATTERN,
    ROLE_ARN_PATTERN,
    ChainFile,
    Job,
    closest,
)
from rolechain.model.targets import DISCOVERED, expand_targets, no_match_message, split_member
from rolechain.model.yamlsource import PathKey, SourceMap, dotted

MAX_LISTED = 20
MAX_EXPLAINED = 100
MAX_QUOTED = 80

PRINCIPAL_ARN = re.compile(PRINCIPAL_ARN_PATTERN)


def quote(word: str) -> str:
    """``repr(word)``, cut short when the word is long (a hostile file's 1 MB name)."""
    if len(word) <= MAX_QUOTED:
        return repr(word)
    return repr(word[:MAX_QUOTED]) + f"... ({len(word):,} characters)"


def choices_text(choices: Iterable[str]) -> str:
    """Sorted choices, shortened to the first few when there are many."""
    listed = list(choices)
    ordered = [
        escape_controls(c, newlines=True) if len(c) <= MAX_QUOTED else quote(c)
        for c in heapq.nsmallest(MAX_LISTED + 1, listed)
    ]
    if not ordered:
        return "(none defined)"
    if len(listed) > MAX_LISTED:
        return ", ".join(ordered[:MAX_LISTED]) + f", ... ({len(listed)} in all)"
    return ", ".join(ordered)


def unknown(kind: str, word: str, choices: Collection[str]) -> str:
    """``unknown principal 'cj'; valid: ci, dev; did you mean 'ci'?``"""
    text = f"unknown {kind} {quote(word)}; valid: {choices_text(choices)}"
    guess = closest(word, list(choices))
    if guess:
        text += f"; did you mean {guess!r}?"
    return text


def diagnose_arn(value: str, kind: str = "role") -> str | None:
    """What is wrong with ``value`` as an IAM ARN of ``kind`` (role, principal), or None.

    >>> diagnose_arn("arn:aws:iam::12345678901:role/x")
    "the account '12345678901' is not 12 digits"
    >>> diagnose_arn("arn:aws:iam::123456789012:role/x") is None
    True
    """
    if kind == "role" and re.match(ROLE_ARN_PATTERN, value):
        return None
    parts = value.split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return "an ARN has six ':'-separated parts: arn:<partition>:iam::<account>:<resource>"
    _, partition, service, region, account, resource = parts
    if partition not in PARTITIONS:
        guess = closest(partition, PARTITIONS)
        text = f"unknown partition {partition!r} (valid: {', '.join(PARTITIONS)})"
        return text + (f"; did you mean {guess!r}?" if guess else "")
    if service == "sts" and resource.startswith("assumed-role/") and kind == "role":
        return (
            "this is a role session (sts assumed-role) ARN; give the role's ARN, "
            f"arn:{partition}:iam::{account}:role/<name>"
        )
    if service not in ("iam", "sts") or (service == "sts" and kind == "role"):
        return f"the service is {service!r}; IAM ARNs have 'iam'"
    if region:
        return f"IAM ARNs have no region (found {region!r} between 'iam:' and the account)"
    if not re.fullmatch(r"[0-9]{12}", account):
        return f"the account {account!r} is not 12 digits (0-9)"
    if kind == "role":
        if not resource.startswith("role/"):
            return f"the resource {resource!r} is not 'role/<name>'"
        path, _, name = resource.removeprefix("role/").rpartition("/")
        if not 1 <= len(name) <= 64:
            return f"the role name is {len(name)} characters; IAM allows 1 to 64"
        if len(path) + 2 > MAX_ROLE_PATH:
            return f"the role's path is {len(path) + 2:,} characters; IAM allows {MAX_ROLE_PATH}"
        return "the role name or path has characters IAM does not allow ([A-Za-z0-9_+=,.@-])"
    if not PRINCIPAL_ARN.match(value):
        return (
            f"the resource {resource!r} is not root, user/<name>, role/<name> "
            "or (sts) assumed-role/<role>/<session>"
        )
    return None


def region_partition(region: str) -> str:
    """The partition a region belongs to (``cn-north-1`` -> ``aws-cn``)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-iso"):
        return "aws-iso" + region[6:].split("-", 1)[0]
    return "aws"


class _Checker:
    def __init__(
        self, model: ChainFile, sources: Mapping[PathKey, Location], ignore: Collection[str]
    ):
        self.model = model
        self.sources = sources
        self.ignore = set(ignore)
        self.problems: list[Problem] = []
        self.explained = 0  # unknown names given their valid choices so far

    def unknown(self, kind: str, word: str, choices: Callable[[], Collection[str]]) -> str:
        """:func:`unknown`, for the first :data:`MAX_EXPLAINED` unknown names of a chain;
        after that just the name (listing and guessing among thousands of names for
        thousands of bad references would take minutes)."""
        self.explained += 1
        if self.explained > MAX_EXPLAINED:
            return f"unknown {kind} {quote(word)}"
        return unknown(kind, word, choices())

    def where(self, path: PathKey) -> Location | None:
        if isinstance(self.sources, SourceMap):
            return self.sources.locate(path, value=True)
        key = path
        while key:
            found = self.sources.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return None

    def add(self, path: PathKey, message: str, hint: str | None = None) -> None:
        self.problems.append(
            Problem(f"{dotted(path)}: {message}", self.where(path), key=dotted(path), hint=hint)
        )

    # -- names ----------------------------------------------------------------------

    def unique_names(self) -> None:
        kinds = (
            ("principals", "principal", self.model.principals),
            ("roles", "role", self.model.roles),
            ("role_sets", "role set", self.model.role_sets),
        )
        first: dict[str, tuple[str, str]] = {}
        for section, kind, names in kinds:
            for name in names:
                if name in first:
                    other_section, other_kind = first[name]
                    a = self.where((other_section, name))
                    b = self.where((section, name))
                    # Report at the later definition, naming the earlier one.
                    (early_kind, early_loc), (late_section, _late_kind) = (
                        ((other_kind, a), (section, kind))
                        if (a or Location("", 0)) <= (b or Location("", 0))
                        else ((kind, b), (other_section, other_kind))
                    )
                    at = f" at {early_loc}" if early_loc else ""
                    self.add(
                        (late_section, name),
                        f"{name!r} is also defined as a {early_kind}{at}; principals, roles "
                        "and role sets share one namespace",
                        hint="rename one of them",
                    )
                else:
                    first[name] = (section, kind)

    def member_ok(self, name: str) -> bool | str:
        """True if ``set@account`` names a member; an explanation if it almost does."""
        member = split_member(name)
        if member is None:
            return False
        set_name, account = member
        spec = self.model.role_sets.get(set_name)
        if spec is None:
            return False
        if spec.organization is not None:
            if account == DISCOVERED or re.fullmatch(r"[0-9]{12}", account):
                return True
            return f"{quote(account)} is not a 12-digit account id"
        if account in spec.members:
            return True
        if account in spec.exclude:
            return f"account {account} is excluded from role set {set_name!r}"
        return (
            f"account {account} is not in role set {set_name!r}; its accounts: "
            f"{choices_text(spec.members)}"
        )

    def node_names(self) -> list[str]:
        return [*self.model.principals, *self.model.roles, *self.model.role_sets, *self.ignore]

    # -- trusts ---------------------------------------------------------------------

    def trusts(self) -> None:
        for section, items in (("roles", self.model.roles), ("role_sets", self.model.role_sets)):
            for name, spec in items.items():
                for index, entry in enumerate(spec.trusts):
                    self.trust_entry((section, name, "trusts", index), entry)

    def trust_entry(self, path: PathKey, entry: str) -> None:
        if entry == "*":  # every AWS identity, as "Principal": "*" says (over-trust, but legal)
            return
        if entry.startswith("arn:"):
            problem = diagnose_arn(entry, "principal")
            if problem:
                self.add(path, f"{quote(entry)} is not an IAM principal ARN: {problem}")
            return
        if entry in self.ignore or entry in self.model.principals:
            return
        if entry in self.model.roles or entry in self.model.role_sets:
            return
        member = self.member_ok(entry)
        if member is True:
            return
        if isinstance(member, str):
            self.add(path, f"{quote(entry)}: {member}")
            return
        if self.ignored_selector(entry):
            return
        self.add(
            path,
            self.unknown("principal, role or role set", entry, self.node_names),
            hint="trust a name defined in this chain, or an IAM ARN",
        )

    # -- jobs -----------------------------------------------------------------------

    def jobs(self) -> None:
        for name, job in self.model.jobs.items():
            base: PathKey = ("jobs", name)
            self.job_from(base, job.from_)
            self.job_to(base, job.to, job.targets)
            for index, entry in enumerate(job.via):
                self.via_entry((*base, "via", index), entry)
            self.regions(base, job)

    def job_from(self, base: PathKey, name: str) -> None:
        path = (*base, "from")
        if name in self.model.principals or name in self.ignore:
            return
        if name in self.model.roles or name in self.model.role_sets or self.member_ok(name) is True:
            kind = "role" if name in self.model.roles else "role set or member"
            self.add(
                path,
                f"{name!r} is a {kind}, not a principal; a job starts from a principal, "
                "the credentials you already hold",
                hint=f"set 'from' to a principal that {name} trusts and add {name!r} to 'via' "
                "to pass through it",
            )
            return
        self.add(
            path,
            self.unknown("principal", name, lambda: [*self.model.principals, *self.ignore]),
        )

    def job_to(self, base: PathKey, to: str | list[str], selectors: Sequence[str]) -> None:
        if not selectors:
            self.add((*base, "to"), "names no targets; give a role, role set, member or glob")
            return
        live = [s for s in selectors if not self.ignored_selector(s)]
        _, unmatched = expand_targets(self.model, live)
        for selector in unmatched:
            index = selectors.index(selector)
            path: PathKey = (*base, "to") if isinstance(to, str) else (*base, "to", index)
            self.add(path, self.unmatched_message(selector))

    def ignored_selector(self, selector: str) -> bool:
        member = split_member(selector)
        return selector in self.ignore or bool(member and member[0] in self.ignore)

    def unmatched_message(self, selector: str) -> str:
        if any(ch in selector for ch in "*?["):
            return no_match_message(self.model, selector) or (
                f"glob {quote(selector)} matches no role or role-set member"
            )
        if selector in self.model.principals:
            return f"{quote(selector)} is a principal; 'to' names roles, role sets or members"
        member = self.member_ok(selector)
        if isinstance(member, str):
            return f"{quote(selector)}: {member}"
        owner = split_member(selector)
        if owner:
            return self.unknown("role set", owner[0], lambda: [*self.model.role_sets, *self.ignore])
        return self.unknown(
            "target", selector, lambda: [*self.model.roles, *self.model.role_sets, *self.ignore]
        )

    def via_entry(self, path: PathKey, entry: str) -> None:
        if entry in self.ignore or entry in self.model.roles or entry in self.model.role_sets:
            return
        member = self.member_ok(entry)
        if member is True or self.ignored_selector(entry):
            return
        if isinstance(member, str):
            self.add(path, f"{quote(entry)}: {member}")
        elif entry in self.model.principals:
            self.add(
                path,
                f"{quote(entry)} is a principal; 'via' lists the roles between 'from' and the "
                "target",
            )
        else:
            self.add(
                path,
                self.unknown(
                    "role", entry, lambda: [*self.model.roles, *self.model.role_sets, *self.ignore]
                ),
            )

    def regions(self, base: PathKey, job: Job) -> None:
        targets, _ = expand_targets(
            self.model, [s for s in job.targets if not self.ignored_selector(s)]
        )
        partitions = set()
        for target in targets:
            if target in self.model.roles:
                partitions.add(self.model.roles[target].partition)
            else:
                member = split_member(target)
                if member and member[0] in self.model.role_sets:
                    partitions.add(self.model.role_sets[member[0]].partition)
        lists: list[tuple[PathKey, object]] = [((*base, "regions"), job.regions)]
        lists += [((*base, "tasks", i, "regions"), t.regions) for i, t in enumerate(job.tasks)]
        for path, regions in lists:
            if not isinstance(regions, list):
                continue
            seen: set[str] = set()
            for index, region in enumerate(regions):
                if region in seen:
                    self.add((*path, index), f"region {region!r} is listed twice")
                seen.add(region)
                part = region_partition(region)
                if len(partitions) == 1 and part not in partitions:
                    (target_partition,) = partitions
                    self.add(
                        (*path, index),
                        f"region {region!r} is in partition {part}, but the job's targets "
                        f"are in {target_partition}",
                    )

    # -- verify readers -------------------------------------------------------------

    def readers(self) -> None:
        entries: list[tuple[PathKey, str | None]] = [
            (("settings", "verify", "reader"), self.model.settings.verify.reader)
        ]
        for section, items in (("roles", self.model.roles), ("role_sets", self.model.role_sets)):
            for name, spec in items.items():
                reader = spec.verify.reader if spec.verify else None
                entries.append(((section, name, "verify", "reader"), reader))
        for path, reader in entries:
            if reader is None or reader in self.ignore:
                continue
            if reader in self.model.roles or reader in self.model.role_sets:
                continue
            self.add(
                path,
                unknown("role or role set", reader, [*self.model.roles, *self.model.role_sets]),
                hint="name a role, or a role set with a member in every account it reads",
            )

    # -- organizations --------------------------------------------------------------

    def organizations(self) -> None:
        for name, spec in self.model.role_sets.items():
            if spec.organization is None:
                continue
            via = spec.organization.via
            if via in self.ignore or via in self.model.principals or via in self.model.roles:
                continue
            path: PathKey = ("role_sets", name, "organization", "via")
            self.add(
                path,
                self.unknown(
                    "principal or role",
                    via,
                    lambda: [*self.model.principals, *self.model.roles, *self.ignore],
                ),
                hint="name the principal or role that can call Organizations: the management "
                "account or a delegated administrator",
            )


def check(
    model: ChainFile, sources: Mapping[PathKey, Location], *, ignore: Collection[str] = ()
) -> list[Problem]:
    """Every cross-reference problem in ``model``, located through ``sources``.

    ``sources`` is the loader's :class:`~rolechain.model.yamlsource.SourceMap` (or any
    mapping of key paths to locations). Names in ``ignore`` are taken to exist: the loader
    passes the names of entries that failed validation, so that one bad role does not also
    produce a "dangling reference" for every role that trusts it.
    """
    checker = _Checker(model, sources, ignore)
    checker.unique_names()
    checker.trusts()
    checker.organizations()
    checker.readers()
    checker.jobs()
    return checker.problems

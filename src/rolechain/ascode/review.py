"""What a change to chain files does to access, not to text.

:func:`review_chains` compares two loaded chains:

* **reach**: every (principal, role) pair such that the principal's credentials can reach
  the role through the trust graph, hop by hop (a breadth-first walk from each principal,
  fewest hops first). Principals are the chain's own and the identities outside it that
  some role trusts (an account root, a vendor's role, ``"*"``); an outside identity trusted
  only under an ``sts:ExternalId`` condition is a different principal from the same one
  trusted without (dropping the ExternalId lets in whoever can make it call: the confused
  deputy). Roles and principals are matched across the two files by ARN, so renaming a key
  changes nothing. Pairs reachable in NEW and not in OLD are **gained**: access widened;
  pairs the other way are **lost**; pairs in both whose fewest hops changed are **paths
  changed**. Each gained pair from a declared principal is checked by
  :func:`rolechain.planner.reach.reach` (does a job pinned to the path fit AWS's rules?);
* **over-trust introduced**: ``"*"``, another account's root, a third party (an account the
  file declares nothing in) without an ExternalId, an ExternalId dropped;
* **trust changes**: entries added to and removed from each role's ``trusts`` (as ARNs);
* **jobs** whose plans change: targets added or removed, violations introduced (above all a
  hop newly over the one-hour cap on chained sessions), DurationSeconds changed;
* **schedules** whose timing changes (``schedule``, ``timezone``, ``jitter``, ``runtime``...).

Pure: the model, the graph and the planner.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rolechain.ascode.trust import WILDCARD, trusted_arns
from rolechain.errors import PlanError, RolechainError, Violation, printable
from rolechain.graph.build import PRINCIPAL, TrustGraph, trust_graph
from rolechain.model.chain import Chain
from rolechain.model.durations import format_duration
from rolechain.model.schema import HopSettings, Job
from rolechain.planner.plan import Plan
from rolechain.planner.planner import plan
from rolechain.planner.rules import CHAINED_DURATION

ReviewFormat = Literal["text", "markdown", "json"]
CHECKED_PATHS = 25  # gained pairs whose path the planner checks (reach), fewest hops first
LISTED = 50  # rows per section in text and markdown (json lists everything)
WITH_EXTERNAL_ID = " (with ExternalId)"
SCHEDULE_KEYS = (
    "schedule", "timezone", "jitter", "runtime", "starting_deadline", "overlap", "catch_up",
)  # fmt: skip


@dataclass(frozen=True)
class Access:
    """A principal that can reach a role, in so many hops, along ``path``."""

    principal: str
    role: str
    hops: int
    path: tuple[str, ...]
    fits: bool | None = None  # does a job pinned to the path fit AWS's rules (None: unchecked)
    rules: tuple[str, ...] = ()  # the rules it breaks


@dataclass(frozen=True)
class PathChange:
    principal: str
    role: str
    old_hops: int
    new_hops: int
    old_path: tuple[str, ...]
    new_path: tuple[str, ...]


@dataclass(frozen=True)
class OverTrust:
    role: str  # "role NAME" or "role set NAME"
    kind: Literal["wildcard", "foreign-root", "third-party-without-external-id",
                  "external-id-dropped"]  # fmt: skip
    entry: str
    message: str
    location: str | None = None


@dataclass(frozen=True)
class TrustChange:
    role: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class JobChange:
    job: str
    changes: tuple[str, ...]


@dataclass
class Review:
    """Everything :func:`review_chains` found."""

    old: str
    new: str
    gained: list[Access] = field(default_factory=list)
    lost: list[Access] = field(default_factory=list)
    paths_changed: list[PathChange] = field(default_factory=list)
    overtrust: list[OverTrust] = field(default_factory=list)
    trust_changes: list[TrustChange] = field(default_factory=list)
    jobs: list[JobChange] = field(default_factory=list)
    schedules: list[JobChange] = field(default_factory=list)

    @property
    def widened(self) -> bool:
        """Access widened: some principal can reach a role it could not."""
        return bool(self.gained)

    @property
    def verdict(self) -> str:
        if self.widened:
            roles = len({a.role for a in self.gained})
            return (
                f"access widened: {_n(len(self.gained), 'principal -> role pair')} newly "
                f"reachable ({_n(roles, 'role')})"
            )
        if self.lost:
            pairs = _n(len(self.lost), "principal -> role pair")
            return f"access narrowed: {pairs} no longer reachable"
        return "access unchanged: no principal gains or loses reach to any role"

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "widened": self.widened,
            "verdict": self.verdict,
            "gained": [asdict(a) for a in self.gained],
            "lost": [asdict(a) for a in self.lost],
            "paths_changed": [asdict(p) for p in self.paths_changed],
            "overtrust": [asdict(o) for o in self.overtrust],
            "trust_changes": [asdict(t) for t in self.trust_changes],
            "jobs": [asdict(j) for j in self.jobs],
            "schedules": [asdict(s) for s in self.schedules],
        }


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


# --- reach --------------------------------------------------------------------------------


@dataclass
class _Side:
    """One chain's trust graph, with names and ARNs to match the other side by."""

    chain: Chain
    graph: TrustGraph = field(init=False)
    key: dict[str, str] = field(init=False)  # node -> identity key
    reach: dict[tuple[str, str], tuple[int, str, str]] = field(init=False)
    # (source key, role key) -> (hops, source id, role node); paths come from _parents
    _parents: dict[str, dict[str, str | None]] = field(init=False)
    labels: dict[str, str] = field(init=False)  # identity key -> name shown

    def __post_init__(self) -> None:
        self.graph = trust_graph(self.chain)
        self.key = {}
        self.labels = {}
        for node, attrs in self.graph.nodes.items():
            arn = attrs.get("arn")
            if attrs["kind"] == PRINCIPAL:
                key = f"principal:{arn}" if arn else f"principal-name:{node}"
            else:
                key = arn if arn and attrs.get("account") != "*" else f"node:{node}"
            self.key[node] = key
            self.labels[key] = node
        self.reach = {}
        self._parents = {}
        for source, source_key, starts in self._sources():
            self.labels.setdefault(source_key, source)
            parents = self._walk(starts)
            self._parents[source] = parents
            for node in parents:
                if node.startswith("\0") or self.graph.nodes[node]["kind"] == PRINCIPAL:
                    continue
                hops = self._depth(parents, node)
                pair = (source_key, self.key[node])
                if pair not in self.reach or self.reach[pair][0] > hops:
                    self.reach[pair] = (hops, source, node)

    def _sources(self) -> Iterator[tuple[str, str, list[str]]]:
        """(source id, identity key, where its walk starts) for every principal and outside
        identity. A principal starts at itself; an outside identity at the roles that trust
        it (one hop in)."""
        for node, attrs in self.graph.nodes.items():
            if attrs["kind"] == PRINCIPAL:
                yield node, self.key[node], [node]
        model = self.chain.model
        outside: dict[str, list[str]] = defaultdict(list)
        for node, entry in self.graph.external_trusts:
            role_set = self.graph.nodes[node].get("role_set")
            settings: HopSettings = model.role_sets[role_set] if role_set else model.roles[node]
            guarded = settings.external_id is not None and entry != WILDCARD
            outside[entry + (WITH_EXTERNAL_ID if guarded else "")].append(node)
        for name, starts in outside.items():
            yield name, f"outside:{name}", [f"\0{name}", *starts]

    def _walk(self, starts: list[str]) -> dict[str, str | None]:
        """Breadth-first from ``starts``: each reached node's parent on a fewest-hops path.
        An outside identity's walk starts at a virtual node (``\\0name``) whose children
        are the roles that trust it."""
        first, *rest = starts
        parents: dict[str, str | None] = {first: None}
        queue: deque[str] = deque([first])
        if rest:
            for node in rest:
                if node not in parents:
                    parents[node] = first
            queue = deque(n for n in dict.fromkeys(rest))
        succ = self.graph.succ
        while queue:
            node = queue.popleft()
            for child in succ.get(node, ()):
                if child not in parents:
                    parents[child] = node
                    queue.append(child)
        return parents

    @staticmethod
    def _depth(parents: Mapping[str, str | None], node: str) -> int:
        depth = 0
        step: str | None = node
        while (step := parents[step]) is not None:  # type: ignore[index]
            depth += 1
        return depth

    def path(self, source: str, node: str) -> tuple[str, ...]:
        parents = self._parents[source]
        out = [node]
        step: str | None = parents[node]
        while step is not None:
            out.append(step[1:] if step.startswith("\0") else step)
            step = parents[step]
        return tuple(reversed(out))

    def access(self, pair: tuple[str, str]) -> Access:
        hops, source, node = self.reach[pair]
        return Access(self.labels[pair[0]], node, hops, self.path(source, node))


def reachable_pairs(chain: Chain) -> set[tuple[str, str]]:
    """Every (principal, role) identity pair of ``chain`` that is reachable (see the module
    docs): the pairs :func:`review_chains` compares."""
    return set(_Side(chain).reach)


# --- trusts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trusted:
    """What one IAM role (a role, or one member of a role set) trusts."""

    label: str  # "role NAME" or "role set NAME"
    where: tuple[str, str]  # (section, name), for locations
    entries: frozenset[str]  # trusted ARNs (or "*", or an entry naming nothing declared)
    guarded: bool  # held to an ExternalId
    account: str | None


def _trusted_roles(chain: Chain) -> dict[str, _Trusted]:
    """Every IAM role of ``chain`` by ARN (an organization role set by its name), with what
    it trusts; a role set's trusts are resolved once for all its members."""
    model = chain.model
    found: dict[str, _Trusted] = {}
    for name, role in model.roles.items():
        found[role.arn] = _Trusted(
            f"role {name}", ("roles", name), _resolved(chain, role.trusts),
            role.external_id is not None, role.account_id,
        )  # fmt: skip
    for name, spec in model.role_sets.items():
        entries = _resolved(chain, spec.trusts)
        guarded = spec.external_id is not None
        label, where = f"role set {name}", ("role_sets", name)
        if spec.accounts is None:
            found[f"role set {name}"] = _Trusted(label, where, entries, guarded, None)
        for account in spec.members:
            found[spec.member_arn(account)] = _Trusted(label, where, entries, guarded, account)
    return found


def _owned_accounts(chain: Chain) -> set[str]:
    model = chain.model
    owned = {p.account_id for p in model.principals.values() if p.account_id}
    owned |= {r.account_id for r in model.roles.values()}
    for spec in model.role_sets.values():
        owned |= set(spec.members)
    return owned


def _resolved(chain: Chain, entries: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for entry in entries:
        problems: list[str] = []
        arns = trusted_arns(chain.model, [entry], problems, "")
        out.update(arns if arns else (entry,))
    return frozenset(out)


def _account(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else None


def _members(count: int, total: int) -> str:
    return "" if count == total else f" ({count} of {total} members)"


def _trust_review(old: Chain, new: Chain, review: Review) -> None:
    """Trust entries added and removed, and over-trust introduced, per role; the members of
    a role set that change alike are one row."""
    before, after = _trusted_roles(old), _trusted_roles(new)
    owned = _owned_accounts(new)
    sizes: dict[str, int] = defaultdict(int)
    for trusted in after.values():
        sizes[trusted.label] += 1
    changes: dict[tuple[str, tuple[str, ...], tuple[str, ...]], int] = defaultdict(int)
    risks: dict[tuple[str, str, str, str], int] = defaultdict(int)
    places: dict[str, tuple[str, str]] = {}
    for arn, now in after.items():
        was = before.get(arn)
        previous = was.entries if was else frozenset()
        added = tuple(sorted(now.entries - previous))
        removed = tuple(sorted(previous - now.entries))
        places[now.label] = now.where
        if added or removed:
            changes[(now.label, added, removed)] += 1
        for entry in added:
            account = _account(entry)
            if entry == WILDCARD:
                risks[(now.label, "wildcard", entry, 'trusts every AWS identity ("*")')] += 1
            elif entry.endswith(":root") and account and account != now.account:
                message = (
                    f"trusts another account's root ({account}): every identity of that "
                    "account its own policies allow"
                    + ("" if now.guarded else ", without an ExternalId")
                )
                risks[(now.label, "foreign-root", entry, message)] += 1
            elif account and account not in owned and not now.guarded:
                message = (
                    f"trusts {entry} in account {account}, which the chain files declare "
                    "nothing in, without an ExternalId"
                )
                risks[(now.label, "third-party-without-external-id", entry, message)] += 1
        if was is not None and was.guarded and not now.guarded:
            message = "no longer requires an ExternalId: whoever it trusts gets in without one"
            risks[(now.label, "external-id-dropped", "sts:ExternalId", message)] += 1
    for (label, added, removed), count in changes.items():
        review.trust_changes.append(
            TrustChange(label + _members(count, sizes[label]), added, removed)
        )
    for (label, kind, entry, message), count in risks.items():
        section, name = places[label]
        keys = (section, name) if kind == "external-id-dropped" else (section, name, "trusts")
        where = new.locate(*keys)
        review.overtrust.append(
            OverTrust(
                label + _members(count, sizes[label]),
                kind,  # type: ignore[arg-type]
                entry,
                message,
                str(where) if where else None,
            )
        )


# --- jobs --------------------------------------------------------------------------------


def _plan(side: _Side, job: str) -> tuple[Plan | None, tuple[Violation, ...]]:
    try:
        return plan(side.chain, job, run_id="review", graph=side.graph), ()
    except PlanError as exc:
        return None, exc.violations
    except RolechainError as exc:
        return None, (Violation("invalid", str(exc), ""),)


def _hop_groups(planned: Plan) -> dict[tuple[str, str], set[int]]:
    """DurationSeconds by (caller, role or role set): members of a set are one row."""
    groups: dict[tuple[str, str], set[int]] = defaultdict(set)
    for hop in planned.hops:
        role = hop.role.rpartition("@")[0] + "@*" if "@" in hop.role else hop.role
        caller = hop.caller.rpartition("@")[0] + "@*" if "@" in hop.caller else hop.caller
        groups[(caller, role)].add(hop.duration_seconds)
    return groups


def _durations(values: set[int]) -> str:
    return "/".join(format_duration(v) for v in sorted(values))


def _job_review(old: _Side, new: _Side, review: Review) -> None:
    old_jobs, new_jobs = old.chain.model.jobs, new.chain.model.jobs
    for name in sorted(set(old_jobs) | set(new_jobs)):
        if name not in new_jobs:
            review.jobs.append(JobChange(name, ("job removed",)))
            continue
        after, after_violations = _plan(new, name)
        if name not in old_jobs:
            count = len(after.targets) if after else 0
            changes = [f"job added ({_n(count, 'target')})"]
            changes += [_violation(v) for v in after_violations]
            review.jobs.append(JobChange(name, tuple(changes)))
            continue
        _schedule_review(name, old_jobs[name], new_jobs[name], review)
        before, before_violations = _plan(old, name)
        changes = []
        old_targets = {t.name for t in before.targets} if before else set()
        new_targets = {t.name for t in after.targets} if after else set()
        if before and after:
            if added := sorted(new_targets - old_targets):
                changes.append(f"targets added: {_listed(added)}")
            if removed := sorted(old_targets - new_targets):
                changes.append(f"targets removed: {_listed(removed)}")
        known = {(v.rule, v.hop, v.target) for v in before_violations}
        changes += [
            _violation(v) for v in after_violations if (v.rule, v.hop, v.target) not in known
        ]
        if before and not after and not after_violations:
            changes.append("no longer plans")
        if after and before_violations and not before:
            changes.append(f"plans again ({_n(len(new_targets), 'target')})")
        if before and after:
            old_groups, new_groups = _hop_groups(before), _hop_groups(after)
            for key in sorted(set(old_groups) & set(new_groups)):
                if old_groups[key] != new_groups[key]:
                    changes.append(
                        f"hop {key[0]} -> {key[1]}: DurationSeconds "
                        f"{_durations(old_groups[key])} -> {_durations(new_groups[key])}"
                    )
            for key in sorted(set(new_groups) - set(old_groups)):
                changes.append(f"new hop {key[0]} -> {key[1]} ({_durations(new_groups[key])})")
            for key in sorted(set(old_groups) - set(new_groups)):
                changes.append(f"hop {key[0]} -> {key[1]} no longer taken")
        if changes:
            review.jobs.append(JobChange(name, tuple(changes)))


def _violation(v: Violation) -> str:
    hop = f" (hop {v.hop})" if v.hop else ""
    what = (
        "newly over the one-hour cap on chained sessions"
        if v.rule == CHAINED_DURATION
        else (f"newly breaks {v.rule}")
    )
    return f"{what}{hop}: {v.message}"


def _listed(items: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def _schedule_review(name: str, old: Job, new: Job, review: Review) -> None:
    changes = []
    for key in SCHEDULE_KEYS:
        before, after = getattr(old, key, None), getattr(new, key, None)
        if before != after:
            changes.append(f"{key}: {_shown(before)} -> {_shown(after)}")
    if changes:
        review.schedules.append(JobChange(name, tuple(changes)))


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, int) and not isinstance(value, bool):
        return format_duration(value)
    return json.dumps(value) if isinstance(value, str) else str(value)


# --- all of it ---------------------------------------------------------------------------


def review_chains(
    old: Chain, new: Chain, *, old_name: str = "OLD", new_name: str = "NEW"
) -> Review:
    """What changing ``old`` into ``new`` does to access (see the module docs)."""
    before, after = _Side(old), _Side(new)
    review = Review(old_name, new_name)
    gained = sorted(set(after.reach) - set(before.reach), key=lambda p: _order(after, p))
    lost = sorted(set(before.reach) - set(after.reach), key=lambda p: _order(before, p))
    review.gained = _checked(new, after, gained)
    review.lost = [before.access(p) for p in lost]
    for pair in sorted(set(before.reach) & set(after.reach), key=lambda p: _order(after, p)):
        if before.reach[pair][0] != after.reach[pair][0]:
            was, now = before.access(pair), after.access(pair)
            review.paths_changed.append(
                PathChange(now.principal, now.role, was.hops, now.hops, was.path, now.path)
            )
    _trust_review(old, new, review)
    _job_review(before, after, review)
    return review


def _order(side: _Side, pair: tuple[str, str]) -> tuple[str, int, str]:
    hops, _source, node = side.reach[pair]
    return (node, hops, side.labels[pair[0]])


def _checked(chain: Chain, side: _Side, pairs: Sequence[tuple[str, str]]) -> list[Access]:
    """Gained access, the first :data:`CHECKED_PATHS` from declared principals checked by
    the planner through :func:`rolechain.planner.reach.reach`."""
    out = [side.access(p) for p in pairs]
    from_principals = [i for i, a in enumerate(out) if a.principal in chain.model.principals][
        :CHECKED_PATHS
    ]
    if not from_principals:
        return out
    from rolechain.graph.build import as_networkx
    from rolechain.planner.reach import reach

    graph = as_networkx(side.graph)
    for index in from_principals:
        access = out[index]
        try:
            found = reach(chain, access.role, principals=[access.principal], limit=1, graph=graph)
        except RolechainError:
            continue
        if found.paths:
            first = found.paths[0]
            out[index] = Access(
                access.principal, access.role, access.hops, access.path, first.fits, first.rules
            )
    return out


# --- formats -----------------------------------------------------------------------------


def format_review(review: Review, fmt: ReviewFormat = "text") -> str:
    if fmt == "json":
        return json.dumps(review.to_dict(), indent=2) + "\n"
    markdown = fmt == "markdown"
    lines: list[str] = []
    if markdown:
        mark = ":warning:" if review.widened else ":white_check_mark:"
        lines += [f"### rolechain review: {mark} {review.verdict}", ""]
        lines += [f"`{review.old}` -> `{review.new}`", ""]
    else:
        lines += [f"review {review.old} -> {review.new}: {review.verdict}"]

    def section(title: str, rows: list[str]) -> None:
        if not rows:
            return
        shown = rows[:LISTED]
        if len(rows) > LISTED:
            shown.append(f"... and {len(rows) - LISTED} more (--format json lists all)")
        if markdown:
            lines.extend([f"#### {title}", "", *(f"- {_md(r)}" for r in shown), ""])
        else:
            lines.extend(["", f"{title}:", *(f"  {r}" for r in shown)])

    section("Reach gained", [_access_row("+", a) for a in review.gained])
    section("Reach lost", [_access_row("-", a) for a in review.lost])
    section(
        "Paths changed",
        [
            f"{p.principal} -> {p.role}: {_n(p.old_hops, 'hop')} -> {_n(p.new_hops, 'hop')} "
            f"({' -> '.join(p.new_path)})"
            for p in review.paths_changed
        ],
    )
    section(
        "Over-trust introduced",
        [
            f"{o.role}: {o.message}" + (f" [{o.location}]" if o.location else "")
            for o in review.overtrust
        ],
    )
    section(
        "Trust changes",
        [
            f"{t.role}: "
            + "; ".join(
                part
                for part in (
                    f"+ {', '.join(t.added)}" if t.added else "",
                    f"- {', '.join(t.removed)}" if t.removed else "",
                )
                if part
            )
            for t in review.trust_changes
        ],
    )
    section("Jobs", [f"{j.job}: {c}" for j in review.jobs for c in j.changes])
    section("Schedules", [f"{s.job}: {c}" for s in review.schedules for c in s.changes])
    return printable("\n".join(lines).rstrip("\n") + "\n")


def _access_row(sign: str, access: Access) -> str:
    row = f"{sign} {access.principal} -> {access.role} ({_n(access.hops, 'hop')}"
    if access.hops > 1:
        row += f": {' -> '.join(access.path)}"
    row += ")"
    if access.fits is True:
        row += "; a job can take this path"
    elif access.fits is False:
        row += f"; a job pinned to it would break {', '.join(access.rules)}"
    return row


def _md(text: str) -> str:
    """Markdown-safe: backticks and angle brackets cannot start code or HTML."""
    text = text.replace("\\", "\\\\").replace("`", "'").replace("*", "\\*").replace("_", "\\_")
    return text.replace("<", "&lt;").replace(" -> ", " → ").replace(">", "&gt;")

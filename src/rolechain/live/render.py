"""Text renderings of verify reports and reach results (the CLI prints them).

Everything that came from AWS (ARNs, error messages, policy text) or from the chain file is
passed through :func:`printable` (redacted, control characters and newlines escaped): a role
name or a condition value cannot move the cursor, rewrite the terminal or forge a line.
"""

from __future__ import annotations

from collections.abc import Iterator

from rolechain.errors import printable as _printable
from rolechain.live.findings import HopReport, VerifyReport
from rolechain.model.durations import format_duration
from rolechain.model.targets import split_member
from rolechain.planner.reach import Reach, ReachPath

_STATUS_WIDTH = 12


def printable(text: object) -> str:
    """``text`` as one printable line."""
    return _printable(text, newlines=True)


def plural(n: int, noun: str) -> str:
    """``1 hop``, ``3 hops``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verify_lines(report: VerifyReport) -> Iterator[str]:
    """The verify report, hop by hop, then a summary line."""
    for job in report.jobs:
        hops = [h for h in report.hops if h.job == job]
        yield f"job {printable(job)}: {plural(len(hops), 'hop')}"
        for hop in hops:
            yield from _hop_lines(hop)
    for note in report.notes:
        yield f"note: {printable(note)}"
    counts = report.counts
    parts = [f"{counts[s]} {s}" for s in ("ok", "drift", "unassumable", "unreadable")]
    findings = ", ".join(f"{n} {s}" for s, n in report.finding_counts.items()) or "none"
    failed = f", {plural(report.failures, 'job')} could not start" if report.failures else ""
    calls = (
        f"{plural(report.assume_calls, 'AssumeRole call')}, {plural(report.iam_calls, 'IAM call')}"
    )
    yield (
        f"verified {plural(len(report.hops), 'hop')} of {plural(len(report.jobs), 'job')}: "
        f"{', '.join(parts)}{failed}; findings: {findings}; {calls}"
    )


def _hop_lines(hop: HopReport) -> Iterator[str]:
    head = f"  {hop.status:<{_STATUS_WIDTH}}{printable(hop.label)}"
    if hop.status in ("unassumable", "unreadable") and hop.error:
        head += f": {printable(hop.error)}"
    yield head
    pad = " " * (4 + 10)
    for finding in hop.findings:
        where = f"  {finding.location}" if finding.location else ""
        yield f"    {finding.severity:<10}{finding.kind}{printable(where)}"
        yield f"{pad}{printable(finding.message)}"
        if finding.declared is not None:
            yield f"{pad}chain file: {printable(finding.declared)}"
        if finding.live is not None:
            yield f"{pad}IAM:        {printable(finding.live)}"
        yield f"{pad}fix:        {finding.fix}"


def _path_lines(path: ReachPath, route: list[str]) -> Iterator[str]:
    """One path of a reach report: hops, verdict, route, then sessions or violations."""
    verdict = "fits" if path.fits else "DOES NOT FIT"
    yield f"  {plural(path.length, 'hop'):<8} {verdict:<13}{' -> '.join(route)}"
    if path.fits:
        sessions = ", ".join(
            f"{format_duration(h.duration_seconds)}{' chained' if h.chained else ''}"
            for h in path.hops
        )
        yield f"{' ' * 24}sessions: {sessions}"
    for violation in path.violations:
        yield f"{' ' * 24}{violation.rule}: {printable(violation.message)}"


def reach_all_lines(results: list[Reach]) -> Iterator[str]:
    """:func:`reach_lines` for one target; for several (a role set, a glob), the paths that
    differ only in the member they end at are one line: ``... -> audit@{3333..., 4444...}``."""
    if len(results) == 1:
        yield from reach_lines(results[0])
        return
    max_hops = max(r.max_hops for r in results)
    yield f"who can reach {plural(len(results), 'role')}, up to {max_hops} hops:"
    groups: dict[tuple[object, ...], list[tuple[str, ReachPath]]] = {}
    for found in results:
        for path in found.paths:
            member = split_member(path.nodes[-1])
            key = (
                path.principal,
                path.nodes[:-1],
                member[0] if member else path.nodes[-1],
                path.fits,
                tuple((v.rule, v.message.replace(path.nodes[-1], "*")) for v in path.violations),
                tuple((h.duration_seconds, h.chained) for h in path.hops),
            )
            groups.setdefault(key, []).append((found.target, path))
    if not groups:
        yield "  no principal of the chain file can reach them"
    for members in groups.values():
        path = members[0][1]
        ends = [name for name, _ in members]
        split = [split_member(name) for name in ends]
        if len(ends) > 1 and all(split) and len({m[0] for m in split if m}) == 1:
            accounts = [m[1] for m in split if m]
            shown = ", ".join(accounts[:5]) + (
                f", ... (+{len(accounts) - 5})" if len(accounts) > 5 else ""
            )
            end = f"{split[0][0] if split[0] else ''}@{{{shown}}} ({len(ends)} accounts)"
        else:
            end = ", ".join(ends)
        yield from _path_lines(path, [*(printable(n) for n in path.nodes[:-1]), printable(end)])
    paths = sum(len(r.paths) for r in results)
    fitting = sum(1 for r in results for p in r.paths if p.fits)
    reached = sum(1 for r in results if r.paths)
    yield (
        f"{plural(paths, 'path')} to {reached} of {plural(len(results), 'role')}; "
        f"{fitting} fit AWS's rules (the one-hour chaining cap included)"
    )


def reach_lines(found: Reach) -> Iterator[str]:
    """Who can reach the target: paths fewest hops first, then outside identities."""
    arn = f" ({printable(found.target_arn)})" if found.target_arn else ""
    yield f"who can reach {printable(found.target)}{arn}, up to {found.max_hops} hops:"
    if not found.paths:
        yield "  no principal of the chain file can reach it"
    for path in found.paths:
        yield from _path_lines(path, [printable(n) for n in path.nodes])
    if found.external:
        yield "trusted from outside the chain file (not plannable from here):"
        for entry in found.external:
            route = " -> ".join(printable(n) for n in entry.nodes)
            yield f"  {plural(entry.length, 'hop'):<8} {printable(entry.entry)} -> {route}"
    for principal in found.truncated:
        yield f"note: more paths from {printable(principal)} than listed (raise --limit)"
    fitting = sum(1 for p in found.paths if p.fits)
    principals = len({p.principal for p in found.paths})
    yield (
        f"{plural(len(found.paths), 'path')} from {plural(principals, 'principal')}; "
        f"{fitting} fit AWS's rules (the one-hour chaining cap included)"
    )

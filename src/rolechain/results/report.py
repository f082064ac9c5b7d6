"""``rolechain report``: one run as one self-contained HTML page.

The page opens from disk with nothing fetched (CSS, script and the graph are inline): the
run's summary, a sortable, filterable table of every target (status, error code, failing
hop, duration), failures grouped by cause with the hop and the fix, the diff against the
job's previous complete run, and the plan drawn as an inline SVG tree from the principal
through the hub to the targets, failed targets in red. Targets of one role set under the
same hop are drawn as one node once there are more than :data:`COLLAPSE_AT` of them (the
failed ones are still drawn one by one, up to :data:`FAILED_SHOWN`), so a run of 1,000
targets draws a handful of nodes.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rolechain.aws.errors import fix_for
from rolechain.errors import RolechainError
from rolechain.planner.plan import Plan
from rolechain.results.inventory import Diff, diff, previous_complete
from rolechain.results.store import COMPLETE, Store

COLLAPSE_AT = 12
FAILED_SHOWN = 20
CHANGES_SHOWN = 500
_ACCOUNT = re.compile(r"@\d{12}\b")


@dataclass
class TargetRow:
    name: str
    account_id: str
    status: str = "ok"
    error_code: str = ""
    error_hop: str = ""
    message: str = ""
    duration_ms: int = 0
    records: int = 0
    rows: int = 0


@dataclass
class Cause:
    code: str
    where: str  # the hop pattern or the task
    fix: str | None
    message: str
    targets: list[str] = field(default_factory=list)


def _targets(store: Store, run_id: str, plan: Plan | None) -> dict[str, TargetRow]:
    rows: dict[str, TargetRow] = {}
    if plan is not None:
        for target in plan.targets:
            rows[target.name] = TargetRow(target.name, target.account_id, status="not run")
    for target, account, task, status, code, message, hop, ms, count in store.tuples(
        "SELECT target, account_id, task, status, error_code, error_message, error_hop, "
        "duration_ms, rows FROM records WHERE run_id = ? ORDER BY id",
        (run_id,),
    ):
        row = rows.get(target)
        if row is None:
            row = rows[target] = TargetRow(target, account or "")
        if row.status == "not run":
            row.status = "ok"
        row.records += 1
        row.duration_ms += int(ms or 0)
        row.rows += int(count or 0)
        if status != "ok" and row.status == "ok":
            row.status = "unfinished" if code in ("Interrupted", "DeadlineExceeded") else "failed"
            row.error_code = code or ""
            row.error_hop = hop or ("" if task is None else f"task {task}")
            row.message = message or ""
    return rows


def _causes(store: Store, run_id: str) -> list[Cause]:
    causes: dict[tuple[str, str], Cause] = {}
    for target, task, code, message, hop in store.tuples(
        "SELECT target, task, error_code, error_message, error_hop FROM records "
        "WHERE run_id = ? AND status != 'ok' ORDER BY id",
        (run_id,),
    ):
        where = _ACCOUNT.sub("@*", hop) if hop else f"task {task}"
        found = causes.get((code, where))
        if found is None:
            fix = fix_for(code or "", message or "", hop=where, assume=hop is not None)
            found = causes[(code, where)] = Cause(code or "", where, fix, message or "")
        found.targets.append(target)
    return sorted(causes.values(), key=lambda c: (-len(c.targets), c.code, c.where))


# -- the plan as SVG -------------------------------------------------------------------


@dataclass
class _Node:
    label: str
    kind: str  # principal, hop, target, group
    failed: int = 0
    children: list[_Node] = field(default_factory=list)
    title: str = ""
    y: float = 0.0
    depth: int = 0


def _set_of(name: str) -> str:
    return name.split("@", 1)[0] + "@*" if "@" in name else name


def plan_tree(plan: Plan, failed: set[str]) -> _Node:
    """The plan as a tree to draw: principal, hops, targets; big role sets collapsed."""
    targets = {t.hop_id: t.name for t in plan.targets}
    children: dict[str | None, list[str]] = defaultdict(list)
    for hop in plan.hops:
        children[hop.parent].append(hop.id)
    labels = {hop.id: hop.role for hop in plan.hops}

    def subtree_targets(hop_id: str) -> list[str]:
        out = [targets[hop_id]] if hop_id in targets else []
        for child in children.get(hop_id, ()):
            out.extend(subtree_targets(child))
        return out

    def build(hop_id: str) -> _Node:
        name = targets.get(hop_id)
        node = _Node(
            labels[hop_id],
            "target" if name is not None else "hop",
            failed=int(name in failed) if name else 0,
            title=labels[hop_id],
        )
        node.children = expand(children.get(hop_id, []))
        node.failed += sum(c.failed for c in node.children if c.kind != "target")
        return node

    def expand(hop_ids: list[str]) -> list[_Node]:
        groups: dict[str, list[str]] = defaultdict(list)
        for hop_id in hop_ids:
            groups[_set_of(labels[hop_id])].append(hop_id)
        out: list[_Node] = []
        for group, members in groups.items():
            if len(members) <= COLLAPSE_AT:
                out.extend(build(m) for m in members)
                continue
            under = [t for m in members for t in subtree_targets(m)]
            bad = sorted(t for t in under if t in failed)
            out.append(
                _Node(
                    f"{group} ({len(under):,} targets, {len(bad):,} failed)",
                    "group",
                    failed=len(bad),
                    title=f"{len(members):,} hops into role set {group}",
                )
            )
            for name in bad[:FAILED_SHOWN]:
                out.append(_Node(name, "target", failed=1, title=name))
            if len(bad) > FAILED_SHOWN:
                more = len(bad) - FAILED_SHOWN
                out.append(_Node(f"... and {more:,} more failed", "group", failed=more))
        return out

    root = _Node(plan.principal, "principal", title=f"principal {plan.principal}")
    root.children = expand(children.get(None, []))
    return root


def svg(root: _Node) -> str:
    """The tree drawn left to right: a column per depth, a line per leaf."""
    line, width, gap, height = 30, 250, 40, 22
    leaves = 0
    deepest = 0

    def place(node: _Node, depth: int) -> None:
        nonlocal leaves, deepest
        node.depth = depth
        deepest = max(deepest, depth)
        if not node.children:
            node.y = leaves * line + 10
            leaves += 1
            return
        for child in node.children:
            place(child, depth + 1)
        node.y = (node.children[0].y + node.children[-1].y) / 2

    place(root, 0)
    parts: list[str] = []

    def draw(node: _Node) -> None:
        x = node.depth * (width + gap) + 10
        for child in node.children:
            cx = child.depth * (width + gap) + 10
            parts.append(
                f'<path class="edge" d="M{x + width},{node.y + height / 2} '
                f"C{x + width + gap / 2},{node.y + height / 2} {cx - gap / 2},"
                f'{child.y + height / 2} {cx},{child.y + height / 2}"/>'
            )
            draw(child)
        marked = node.failed and node.kind in ("target", "group")
        css = f"node {node.kind}" + (" failed" if marked else "")
        label = node.label if len(node.label) <= 38 else node.label[:37] + "\u2026"
        parts.append(
            f'<g class="{css}"><title>{html.escape(node.title or node.label)}</title>'
            f'<rect x="{x}" y="{node.y}" width="{width}" height="{height}" rx="5"/>'
            f'<text x="{x + 8}" y="{node.y + 15}">{html.escape(label)}</text></g>'
        )

    draw(root)
    total_w = (deepest + 1) * (width + gap) + 10
    total_h = max(leaves, 1) * line + 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="plan" width="{total_w}" '
        f'height="{total_h}" viewBox="0 0 {total_w} {total_h}" role="img" '
        f'aria-label="the plan: principal, hops and targets">{"".join(parts)}</svg>'
    )


# -- the page --------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde}
.muted{color:#667}.ok{color:#17733a}.failed{color:#b3261e}.unfinished,.not-run{color:#8a5a00}
dl.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));
 gap:8px;margin:12px 0}
dl.summary div{background:#f4f6fa;border-radius:6px;padding:8px 10px}
dl.summary dt{font-size:12px;color:#667}dl.summary dd{margin:0;font-size:18px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f4f6fa;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
input#filter{padding:5px 8px;width:320px;margin:6px 0;border:1px solid #ccd;border-radius:5px}
.cause{border-left:4px solid #b3261e;background:#fdf3f2;padding:8px 12px;margin:8px 0;
 border-radius:4px}
.cause code{background:#fff;padding:1px 4px;border-radius:3px}
.graph{overflow:auto;border:1px solid #eef;border-radius:6px;max-height:640px}
svg .edge{fill:none;stroke:#99a;stroke-width:1.2}
svg .node rect{fill:#eef3ff;stroke:#4a6fd8}svg .node.principal rect{fill:#e8f6ec;stroke:#17733a}
svg .node.group rect{fill:#f4f6fa;stroke:#667;stroke-dasharray:4 2}
svg .node.failed rect{fill:#fdecea;stroke:#b3261e;stroke-width:2}
svg text{font:12px system-ui,sans-serif;fill:#1d2330}
.added{color:#17733a}.removed{color:#b3261e}.changed{color:#8a5a00}
"""

_SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("targets");
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;
  function value(row, index, numeric) {
    var text = row.cells[index].textContent;
    return numeric ? parseFloat(text.replace(/,/g, "")) || 0 : text.toLowerCase();
  }
  Array.prototype.forEach.call(headers, function (th, index) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      var numeric = th.dataset.type === "number";
      Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = value(a, index, numeric), y = value(b, index, numeric);
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      var fragment = document.createDocumentFragment();
      rows.forEach(function (row) { fragment.appendChild(row); });
      body.appendChild(fragment);
    });
  });
  var filter = document.getElementById("filter");
  filter.addEventListener("input", function () {
    var needle = filter.value.toLowerCase();
    var shown = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var match = row.textContent.toLowerCase().indexOf(needle) !== -1;
      row.hidden = !match;
      if (match) { shown += 1; }
    });
    document.getElementById("shown").textContent = shown;
  });
  document.documentElement.dataset.ready = "1";
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _summary(run: dict[str, Any], targets: dict[str, TargetRow]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for row in targets.values():
        counts[row.status] += 1
    items = [
        ("status", run.get("status")),
        ("targets", len(targets)),
        ("ok", counts["ok"]),
        ("failed", counts["failed"]),
        ("unfinished / not run", counts["unfinished"] + counts["not run"]),
        ("records", run.get("records")),
        ("rows", sum(r.rows for r in targets.values())),
        ("AssumeRole calls", run.get("assume_calls")),
        ("throttled", run.get("throttled")),
        ("seconds", f"{run['elapsed_seconds']:.1f}" if run.get("elapsed_seconds") else ""),
    ]
    cells = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in items)
    return f'<dl class="summary">{cells}</dl>'


def _table(targets: dict[str, TargetRow]) -> str:
    head = (
        "<tr><th>target</th><th>account</th><th>status</th><th>error code</th>"
        '<th>failing hop</th><th data-type="number">duration (ms)</th>'
        '<th data-type="number">rows</th><th>message</th></tr>'
    )
    body = "".join(
        f'<tr class="target"><td>{_e(r.name)}</td><td>{_e(r.account_id)}</td>'
        f'<td class="{_e(r.status.replace(" ", "-"))}">{_e(r.status)}</td>'
        f"<td>{_e(r.error_code)}</td><td>{_e(r.error_hop)}</td>"
        f'<td class="num">{r.duration_ms:,}</td><td class="num">{r.rows:,}</td>'
        f"<td>{_e(r.message[:300])}</td></tr>"
        for r in sorted(targets.values(), key=lambda r: (r.status == "ok", r.name))
    )
    return (
        '<input id="filter" type="search" placeholder="filter targets (name, code, hop...)" '
        f'aria-label="filter targets"> <span class="muted"><span id="shown">{len(targets)}'
        f"</span> of {len(targets)} shown; click a column to sort</span>"
        f'<table id="targets"><thead>{head}</thead><tbody>{body}</tbody></table>'
    )


def _causes_html(causes: list[Cause]) -> str:
    if not causes:
        return '<p class="ok">No failures.</p>'
    out = []
    for cause in causes:
        names = ", ".join(cause.targets[:10])
        more = f" and {len(cause.targets) - 10:,} more" if len(cause.targets) > 10 else ""
        fix = f"<p><b>Fix:</b> {_e(cause.fix)}</p>" if cause.fix else ""
        out.append(
            f'<div class="cause"><p><b>{_e(cause.code)}</b> at <code>{_e(cause.where)}</code>'
            f" \u2014 {len(cause.targets):,} target(s)</p>"
            f'<p class="muted">{_e(cause.message[:500])}</p>{fix}'
            f"<p>Targets: {_e(names)}{_e(more)}</p></div>"
        )
    return "".join(out)


def _diff_html(found: Diff | None, why: str) -> str:
    if found is None:
        return f'<p class="muted">{_e(why)}</p>'
    rows = []
    for change in found.changes[:CHANGES_SHOWN]:
        detail = (
            "; ".join(
                f"{name}: {json.dumps(old, default=str)} \u2192 {json.dumps(new, default=str)}"
                for name, old, new in change.fields
            )
            if change.kind == "changed"
            else json.dumps(change.row, default=str, sort_keys=True)[:300]
        )
        rows.append(
            f'<tr><td class="{change.kind}">{change.kind}</td><td>{_e(change.task)}</td>'
            f"<td>{_e(change.target)}</td><td>{_e(change.region)}</td><td>{_e(change.key)}</td>"
            f"<td>{_e(detail)}</td></tr>"
        )
    unknown = "".join(
        f"<li>{_e(u.target)} {_e(u.region)} {_e(u.task)}: {_e(u.reason)}</li>"
        for u in found.unknown[:CHANGES_SHOWN]
    )
    more = (
        f'<p class="muted">{len(found.changes) - CHANGES_SHOWN:,} more changes: '
        "see rolechain diff</p>"
        if len(found.changes) > CHANGES_SHOWN
        else ""
    )
    table = (
        '<table id="changes"><thead><tr><th>change</th><th>task</th><th>target</th>'
        f"<th>region</th><th>key</th><th>fields</th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table>"
        if rows
        else '<p class="ok">No rows changed.</p>'
    )
    unknown_html = (
        f"<p>Unknown (not compared: failed or not run in one of the runs):</p><ul>{unknown}</ul>"
        if unknown
        else ""
    )
    return f"<p>{_e(found.summary_line())}</p>{table}{more}{unknown_html}"


def render(store: Store, run_id: str) -> str:
    """The report of ``run_id`` as one HTML document."""
    runs = {r["run_id"]: r for r in store.query("SELECT * FROM runs WHERE run_id = ?", run_id)}
    run = runs.get(run_id)
    if run is None:
        raise RolechainError(
            f"no run {run_id!r} in {store.name}", hint="'rolechain history' lists the runs"
        )
    plan = store.plan(run_id)
    targets = _targets(store, run_id, plan)
    failed = {r.name for r in targets.values() if r.status != "ok"}
    previous = previous_complete(store, run_id) if run["status"] in COMPLETE else None
    changes: Diff | None = None
    why = "No earlier complete run of this job to compare with."
    if run["status"] not in COMPLETE:
        why = f"The run is {run['status']}: it is not compared."
    elif previous is not None:
        changes = diff(store, run["job"], previous, run_id)
    graph = (
        svg(plan_tree(plan, failed))
        if plan is not None
        else '<p class="muted">No plan was stored for this run.</p>'
    )
    title = f"rolechain report: {run['job']} {run_id}"
    started = run.get("started_at") or run.get("scheduled_for") or ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(run['job'])} <span class='muted'>run {_e(run_id)}</span></h1>"
        f'<p class="muted">started {_e(started)}, finished {_e(run.get("finished_at"))}, '
        f"principal {_e(run.get('principal'))}, trigger {_e(run.get('trigger'))}</p>"
        f"{_summary(run, targets)}"
        f"<h2>Failures by cause</h2>{_causes_html(_causes(store, run_id))}"
        f"<h2>Changes since the previous run</h2>{_diff_html(changes, why)}"
        f'<h2>Plan</h2><div class="graph">{graph}</div>'
        f"<h2>Targets</h2>{_table(targets)}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )

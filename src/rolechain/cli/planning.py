"""``validate``, ``plan``, ``graph`` and ``schema``: everything that works offline.

These commands check a chain without its secrets: an unset ``${env:NAME}`` is read as a
placeholder with a warning on stderr (``--strict-env`` makes it an error), while the
commands that call AWS require every variable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rolechain.cli._common import (
    EXIT_INVALID,
    chain_path_argument,
    dumps,
    echo,
    handle_errors,
    write_text,
)
from rolechain.cli._jobs import JobOption

if TYPE_CHECKING:
    from rolechain.model.chain import Chain
    from rolechain.planner.plan import Plan

SCHEMA_ID = "https://rolechain.dev/schema/chain-file-v1.json"


strict_env_option = click.option(
    "--strict-env",
    is_flag=True,
    help="An unset ${env:NAME} is an error (by default it is read as a placeholder, with a "
    "warning, so a chain can be checked without its secrets).",
)


def _load(path: Path | tuple[Path, ...], *, strict_env: bool, allow_empty: bool = False) -> Chain:
    from rolechain.model.loader import load

    chain = load(path, unset_env="error" if strict_env else "placeholder", allow_empty=allow_empty)
    for warning in chain.warnings:
        echo(f"warning: {warning}", err=True)
    return chain


@click.command()
@chain_path_argument("paths", many=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per PATH with its problems, violations and warnings, on stdout.",
)
@strict_env_option
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Accept a chain that declares nothing (an empty or comment-only file).",
)
@handle_errors
def validate(paths: tuple[Path, ...], fmt: str, strict_env: bool, allow_empty: bool) -> None:
    """Check chain files and plan every job in them.

    Each PATH is one chain: a file, or a directory whose files share one namespace. All
    problems are reported at once as file:line:column: message. Problems and warnings go
    to stderr, one "ok:" line per valid PATH to stdout; with --format json the whole report
    (problems included) goes to stdout. Exit status 2 if any PATH has a problem.

    \b
    Example:
      rolechain validate chains/org-inventory.yaml chains/platform/
    """
    from rolechain.errors import ChainFileError, PlanError, escape_controls
    from rolechain.model.loader import load
    from rolechain.planner import plan as make_plan

    failed = False
    reports: list[dict[str, Any]] = []
    for path in paths:
        report: dict[str, Any] = {
            "path": str(path),
            "ok": True,
            "problems": [],
            "warnings": [],
            "jobs": {},
        }
        try:
            chain = load(
                path, unset_env="error" if strict_env else "placeholder", allow_empty=allow_empty
            )
        except ChainFileError as exc:
            report["ok"] = False
            report["problems"] = [_problem_dict(p) for p in exc.problems]
            report["omitted_problems"] = exc.omitted
            if fmt == "text":
                echo(str(exc), err=True)
            reports.append(report)
            failed = True
            continue
        report["warnings"] = [_problem_dict(p) for p in chain.warnings]
        if fmt == "text":
            for warning in chain.warnings:
                echo(f"warning: {warning}", err=True)
        # A violation of a role set (or role) is hit by every job that uses it: say it once.
        said: dict[str, str] = {}
        for job in chain.model.jobs:
            try:
                planned = make_plan(chain, job)
            except PlanError as exc:
                report["ok"] = False
                report["jobs"][job] = {"violations": [_violation_dict(v) for v in exc.violations]}
                if fmt == "text":
                    fresh = [v for v in exc.violations if str(v) not in said]
                    repeats = sorted({said[str(v)] for v in exc.violations if str(v) in said})
                    same = len(exc.violations) - len(fresh)
                    where = f"as job {', '.join(repeats)} (above)"
                    said.update({str(v): job for v in fresh})
                    if not fresh:
                        echo(f"job {job!r} cannot be planned: the same {_count(same, 'violation')} "
                             f"{where}", err=True)  # fmt: skip
                    else:
                        note = f"and {same} more, the same {where}" if same else None
                        echo(str(PlanError(job, fresh, note=note)), err=True)
                continue
            report["jobs"][job] = {
                "targets": len(planned.targets),
                "assume_calls": planned.assume_calls,
            }
        failed = failed or not report["ok"]
        reports.append(report)
        if fmt == "text" and report["ok"]:
            model = chain.model
            jobs = ", ".join(
                f"{name} ({_count(info['targets'], 'target')}, "
                f"{_count(info['assume_calls'], 'AssumeRole call')})"
                for name, info in report["jobs"].items()
            )
            counts = ", ".join(
                _count(len(section), noun)
                for section, noun in (
                    (model.principals, "principal"),
                    (model.roles, "role"),
                    (model.role_sets, "role set"),
                    (model.jobs, "job"),
                )
            )
            shown = escape_controls(str(path), newlines=True)
            echo(f"ok: {shown}: {counts}" + (f": {jobs}" if jobs else ""))
    if fmt == "json":
        echo(dumps(reports))
    if failed:
        sys.exit(EXIT_INVALID)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _location_dict(location: Any) -> dict[str, Any] | None:
    if location is None:
        return None
    return {"file": location.file, "line": location.line, "column": location.column}


def _problem_dict(problem: Any) -> dict[str, Any]:
    return {
        "message": problem.message,
        "location": _location_dict(problem.location),
        "key": problem.key,
        "hint": problem.hint,
    }


def _violation_dict(violation: Any) -> dict[str, Any]:
    return {
        "rule": violation.rule,
        "message": violation.message,
        "fix": violation.fix,
        "hop": violation.hop,
        "target": violation.target,
        "location": _location_dict(violation.location),
        "source": violation.source,
    }


@click.command()
@chain_path_argument()
@click.option("--job", "-j", required=True, cls=JobOption, help="The job to plan.")
@click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    help="Plan only these targets (names or globs); repeatable.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: a readable tree; json: the documented plan shape (docs/planning.md).",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to FILE.")
@strict_env_option
@handle_errors
def plan(
    path: Path,
    job: str,
    targets: tuple[str, ...],
    fmt: str,
    output: Path | None,
    strict_env: bool,
) -> None:
    """Show the hops a job takes to every target, checked against AWS's rules.

    No AWS call is made. Violations are reported with the hop, the file and line, the rule
    and its AWS source, and the fix; the exit status is then 2.

    \b
    Examples:
      rolechain plan chains/org-inventory.yaml --job inventory
      rolechain plan chains/org-inventory.yaml --job inventory --target 'audit@2*' --format json
    """
    planned = _plan(path, job, targets, strict_env=strict_env)
    if fmt == "json":
        write_text(dumps(planned.to_dict()), output)
    else:
        from rolechain.planner.render import render_plan_text

        write_text(render_plan_text(planned), output)


def _plan(path: Path, job: str, targets: tuple[str, ...], *, strict_env: bool) -> Plan:
    from rolechain.planner import plan as make_plan

    chain = _load(path, strict_env=strict_env)
    return make_plan(chain, job, targets=list(targets) or None)


@click.command()
@chain_path_argument()
@click.option("--job", "-j", help="Highlight the hops this job's plan uses.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to FILE.")
@click.option("--expand", is_flag=True, help="One node per role-set member, never collapsed.")
@strict_env_option
@handle_errors
def graph(
    path: Path, job: str | None, fmt: str, output: Path | None, strict_env: bool, expand: bool
) -> None:
    """Draw the trust graph: an arrow from each trusted identity to the role that trusts it.

    With --job, the hops of that job's plan are highlighted, and the members of a role set
    that the job reaches alike are one node ('audit (5 accounts)'), as 'plan' shows them;
    --expand draws one node per account. A whole graph collapses groups of 8 or more.

    \b
    Examples:
      rolechain graph chains/org-inventory.yaml --job inventory --format mermaid
      rolechain graph chains/three-hop-deploy.yaml --format dot -o graph.dot
    """
    from rolechain.graph import build_graph
    from rolechain.graph.render import COLLAPSE_AT, to_dot, to_mermaid

    chain = _load(path, strict_env=strict_env)
    planned = None
    if job is not None:
        from rolechain.planner import plan as make_plan

        planned = make_plan(chain, job)
    trust_graph = build_graph(chain)
    # A job's role-set members collapse as the plan shows them (from two alike); a whole
    # graph from COLLAPSE_AT; --expand draws every member.
    collapse_at = None if expand else (2 if planned is not None else COLLAPSE_AT)
    render = to_mermaid if fmt == "mermaid" else to_dot
    text = render(trust_graph, planned, collapse_at=collapse_at)
    write_text(text, output)


def chain_file_schema() -> dict[str, Any]:
    """The JSON Schema of a chain file, with a stable $id."""
    from rolechain.model.schema import ChainFile

    schema = ChainFile.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "rolechain chain file",
        **schema,
    }


@click.command()
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to FILE.")
def schema(output: Path | None) -> None:
    """Print the JSON Schema of chain files, for editors and CI checks.

    \b
    Example (VS Code with the YAML extension, in .vscode/settings.json):
      rolechain schema -o rolechain.schema.json
      "yaml.schemas": {"./rolechain.schema.json": "chains/*.yaml"}
    """
    write_text(dumps(chain_file_schema()), output)

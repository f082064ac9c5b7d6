"""``validate``, ``plan``, ``graph`` and ``schema``: everything that works offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rolechain.cli._common import EXIT_INVALID, handle_errors

if TYPE_CHECKING:
    from rolechain.model.chain import Chain
    from rolechain.planner.plan import Plan

SCHEMA_ID = "https://rolechain.dev/schema/chain-file-v1.json"

path_argument = click.argument(
    "path", type=click.Path(exists=True, dir_okay=True, path_type=Path), metavar="PATH"
)


def _load(path: Path | tuple[Path, ...]) -> Chain:
    from rolechain.model.loader import load

    return load(path)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


@click.command()
@click.argument(
    "paths",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=True, path_type=Path),
    metavar="PATH...",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per PATH with its problems and violations.",
)
def validate(paths: tuple[Path, ...], fmt: str) -> None:
    """Check chain files and plan every job in them.

    Each PATH is one chain: a file, or a directory whose files share one namespace. All
    problems are reported at once as file:line:column: message. Exit status 2 if any PATH
    has a problem.

    \b
    Example:
      rolechain validate chains/org-inventory.yaml chains/platform/
    """
    from rolechain.errors import ChainFileError, PlanError
    from rolechain.planner import plan as make_plan

    failed = False
    reports: list[dict[str, Any]] = []
    for path in paths:
        report: dict[str, Any] = {"path": str(path), "ok": True, "problems": [], "jobs": {}}
        try:
            chain = _load(path)
        except ChainFileError as exc:
            report["ok"] = False
            report["problems"] = [_problem_dict(p) for p in exc.problems]
            if fmt == "text":
                click.echo(str(exc))
            reports.append(report)
            failed = True
            continue
        for job in chain.model.jobs:
            try:
                planned = make_plan(chain, job)
            except PlanError as exc:
                report["ok"] = False
                report["jobs"][job] = {"violations": [_violation_dict(v) for v in exc.violations]}
                if fmt == "text":
                    click.echo(str(exc))
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
            click.echo(f"ok: {path}: {counts}" + (f": {jobs}" if jobs else ""))
    if fmt == "json":
        click.echo(json.dumps(reports, indent=2))
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
@path_argument
@click.option("--job", "-j", required=True, help="The job to plan.")
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
@handle_errors
def plan(path: Path, job: str, targets: tuple[str, ...], fmt: str, output: Path | None) -> None:
    """Show the hops a job takes to every target, checked against AWS's rules.

    No AWS call is made. Violations are reported with the hop, the file and line, the rule
    and its AWS source, and the fix; the exit status is then 2.

    \b
    Examples:
      rolechain plan chains/org-inventory.yaml --job inventory
      rolechain plan chains/org-inventory.yaml --job inventory --target 'audit@2*' --format json
    """
    planned = _plan(path, job, targets)
    if fmt == "json":
        _write(json.dumps(planned.to_dict(), indent=2), output)
    else:
        from rolechain.planner.render import render_plan_text

        _write(render_plan_text(planned), output)


def _plan(path: Path, job: str, targets: tuple[str, ...]) -> Plan:
    from rolechain.planner import plan as make_plan

    chain = _load(path)
    return make_plan(chain, job, targets=list(targets) or None)


@click.command()
@path_argument
@click.option("--job", "-j", help="Highlight the hops this job's plan uses.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to FILE.")
@handle_errors
def graph(path: Path, job: str | None, fmt: str, output: Path | None) -> None:
    """Draw the trust graph: an arrow from each trusted identity to the role that trusts it.

    With --job, the hops of that job's plan are highlighted.

    \b
    Examples:
      rolechain graph chains/org-inventory.yaml --job inventory --format mermaid
      rolechain graph chains/three-hop-deploy.yaml --format dot -o graph.dot
    """
    from rolechain.graph import build_graph
    from rolechain.graph.render import to_dot, to_mermaid

    chain = _load(path)
    planned = None
    if job is not None:
        from rolechain.planner import plan as make_plan

        planned = make_plan(chain, job)
    trust_graph = build_graph(chain)
    text = to_mermaid(trust_graph, planned) if fmt == "mermaid" else to_dot(trust_graph, planned)
    _write(text, output)


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
    _write(json.dumps(chain_file_schema(), indent=2), output)

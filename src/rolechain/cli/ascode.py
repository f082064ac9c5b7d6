"""``render`` and ``review``: paths as code, both directions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rolechain.cli._common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, echo, handle_errors

if TYPE_CHECKING:
    from rolechain.ascode.review import Review
    from rolechain.model.chain import Chain

chain_path = click.Path(exists=True, dir_okay=True, path_type=Path)


@click.command()
@click.argument("path", type=chain_path, metavar="PATH")
@click.option(
    "--to",
    "fmt",
    type=click.Choice(["terraform", "cloudformation", "iam-json"]),
    required=True,
    help="terraform: providers, modules and sensitive variables; cloudformation: templates "
    "(StackSets-ready for role sets); iam-json: IAM's own role and policy documents.",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    metavar="R",
    help="Only this role, role set or member 'set@account' (repeatable). Default: all.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    metavar="DIR",
    help="Directory to write the files to (created if needed).",
)
@handle_errors
def render(path: Path, fmt: str, roles: tuple[str, ...], output: Path) -> None:
    """Render every role and role-set member PATH declares as infrastructure code.

    Each role gets the trust policy its 'trusts' say (exact ARNs), an sts:ExternalId
    condition when it has an ExternalId, sts:TagSession and sts:SetSourceIdentity
    statements when the chain tags sessions or sets a source identity, and its
    MaxSessionDuration. ExternalIds are never written: Terraform reads them from sensitive
    variables, CloudFormation from NoEcho parameters, and the JSON holds ${env:NAME}
    placeholders. Role sets are rendered once and deployed per account.

    \b
    Example:
      rolechain render chains/demo.yaml --to terraform --output infra
      rolechain render chains/demo.yaml --to iam-json --role audit --output iam
    """
    from rolechain.ascode.render import render as render_files
    from rolechain.model.loader import load

    # ExternalIds are not needed to render (they are never written): unset ${env:...}
    # references stand in as placeholders.
    chain = load(path, unset_env="placeholder")
    rendered = render_files(chain, fmt, roles, source=path.as_posix())  # type: ignore[arg-type]
    for name, text in sorted(rendered.files.items()):
        target = output / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    echo(
        f"rendered {rendered.roles} roles ({rendered.policies} trust policies) as {fmt} "
        f"in {len(rendered.files)} files under {output}",
        err=True,
    )
    if rendered.variables:
        echo(
            "ExternalIds are not written; pass them at apply time: "
            + ", ".join(f"{name} ({how})" for name, how in sorted(rendered.variables.items())),
            err=True,
        )


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[OLD] NEW")
@click.option(
    "--git",
    "base",
    metavar="BASE",
    help="Compare NEW (default: chains/) in the working tree with the same path at git "
    "revision BASE (e.g. origin/main).",
)
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="markdown: a pull-request comment; json: one document for tools.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the review to FILE instead of stdout.",
)
def review(paths: tuple[Path, ...], base: str | None, fmt: str, output: Path | None) -> None:
    """What a change to chain files does to access: who gains or loses the power to reach
    which role, over-trust introduced, and jobs and schedules that change.

    Compares OLD with NEW (files or directories), or with --git BASE the working tree's
    NEW with the same path at revision BASE. Offline: chain files only.

    Exit status: 0 access did not widen; 1 it did (some principal can reach a role it
    could not); 2 an error (a file does not load, git fails).

    \b
    Example:
      rolechain review old.yaml chains/demo.yaml
      rolechain review --git origin/main chains/demo.yaml --format markdown
    """
    from rolechain.errors import RolechainError

    # Exit 1 means "access widened" to a CI check: every failure must be 2, never 1.
    try:
        report = _review(paths, base)
    except RolechainError as exc:
        echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    except (OSError, UnicodeError, RecursionError, MemoryError) as exc:
        echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    from rolechain.ascode.review import format_review
    from rolechain.cli._common import write_text

    write_text(format_review(report, fmt), output)  # type: ignore[arg-type]
    sys.exit(EXIT_FAILED if report.widened else EXIT_OK)


def _review(paths: tuple[Path, ...], base: str | None) -> Review:
    from rolechain.ascode.review import review_chains
    from rolechain.errors import UsageError
    from rolechain.model.loader import load

    def read(path: Path, label: str) -> Chain:
        if not path.exists():
            raise UsageError(f"{label} {path} does not exist")
        return load(path, unset_env="placeholder")

    if base is not None:
        if len(paths) > 1:
            raise UsageError("with --git BASE give at most one path (default: chains/)")
        from rolechain.ascode.gitrev import at_revision

        new_path = paths[0] if paths else Path("chains")
        new = read(new_path, "NEW")
        with at_revision(base, new_path) as old_path:
            if old_path is None:  # the change adds it: everything it declares is new
                from rolechain.model.chain import Chain
                from rolechain.model.schema import ChainFile

                old = Chain(ChainFile())
            else:
                old = load(old_path, unset_env="placeholder", allow_empty=True)
        return review_chains(old, new, old_name=f"{base}:{new_path}", new_name=str(new_path))
    if len(paths) != 2:
        raise UsageError("give OLD and NEW chain files, or --git BASE [NEW]")
    old_path, new_path = paths
    return review_chains(
        read(old_path, "OLD"), read(new_path, "NEW"), old_name=str(old_path), new_name=str(new_path)
    )

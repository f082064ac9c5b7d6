"""``verify``, ``discover`` and ``reach``: chain files against what IAM has."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from rolechain.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    AssumeRateType,
    chain_path,
    chain_path_argument,
    check_sandbox_options,
    echo,
    handle_errors,
    sandbox_credentials,
    sandbox_environment,
    sandbox_options,
)
from rolechain.cli._regions import check_regions

if TYPE_CHECKING:
    from botocore.credentials import Credentials

    from rolechain.model.chain import Chain


@contextlib.contextmanager
def _sandbox(chain: Chain, provision: Path | None) -> Iterator[dict[str, Credentials]]:
    """A sandbox provisioned from ``chain`` (or ``provision``), with this process pointed at
    it; yields every principal's sandbox credentials by name."""
    with sandbox_environment(chain, provision) as info:
        echo(f"sandbox: {info.endpoint}", err=True)
        found = {name: sandbox_credentials(env) for name, env in info.principals.items()}
        yield {name: credentials for name, credentials in found.items() if credentials}


@click.command()
@chain_path_argument()
@click.option(
    "--job",
    "-j",
    "jobs",
    multiple=True,
    metavar="J",
    help="Only this job (repeatable). Default: every job.",
)
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one document for CI.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the report to FILE instead of stdout.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 1024),
    default=None,
    help="Hops verified at once [default: the job's, else settings].",
)
@sandbox_options(
    what="Verify", provision="instead (what is really deployed), to see the drift from PATH."
)
@handle_errors
def verify(
    path: Path,
    jobs: tuple[str, ...],
    fmt: str,
    output: Path | None,
    concurrency: int | None,
    use_sandbox: bool,
    provision: Path | None,
) -> None:
    """Check every hop of the chain file's jobs against IAM: drift, hop by hop.

    Each hop is assumed as a run would assume it (each distinct hop once), its role is read
    with iam:GetRole (with the hop's own credentials, or the verify.reader declared for the
    role's account) and compared with the chain file: who the trust policy lets in, the
    ExternalId condition, MaxSessionDuration, and principals the role trusts that the file
    does not declare (over-trust). Each hop is ok, drift, unreadable or unassumable; each
    finding has a severity (docs/verify-and-discover.md lists them all).

    Exit status: 0 every hop ok; 1 drift, or a hop or job failed; 2 the chain file or a
    job is invalid (nothing was called).

    \b
    Example:
      rolechain verify chains/demo.yaml
      rolechain verify chains/demo.yaml --job inventory --format json --output drift.json
      rolechain verify chains/demo.yaml --sandbox --provision chains/demo-drifted.yaml  # exits 1
    """
    from rolechain.live.render import verify_lines
    from rolechain.live.verify import verify as run_verify
    from rolechain.model.loader import load

    check_sandbox_options(use_sandbox, provision=provision is not None)
    chain = load(path)
    with contextlib.ExitStack() as stack:
        credentials: dict[str, Any] | None = None
        if use_sandbox:
            credentials = stack.enter_context(_sandbox(chain, provision))
        report = run_verify(
            chain,
            jobs=list(jobs) or None,
            credentials=credentials.get if credentials is not None else None,
            concurrency=concurrency,
        )
    if fmt == "json":
        text = json.dumps(report.to_dict(), indent=2) + "\n"
    else:
        text = "\n".join(verify_lines(report)) + "\n"
    _write(text, output)
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        from rolechain.private import write_private

        write_private(output, text)


_ACCOUNT = re.compile(r"^\d{12}$")


def _accounts(values: tuple[str, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        for part in value.replace(",", " ").split():
            if not _ACCOUNT.match(part):
                raise click.BadParameter(
                    f"{part!r} is not a 12-digit account id", param_hint="--account"
                )
            found.append(part)
    return tuple(dict.fromkeys(found))


@click.command()
@click.option(
    "--from",
    "start",
    required=True,
    metavar="PRINCIPAL_OR_PROFILE",
    help="Where to start: an AWS profile, 'env' (the AWS_* variables) or 'default' "
    "(boto3's default chain); with --sandbox, a principal of the sandbox's chain.",
)
@click.option(
    "--account",
    "-a",
    "accounts",
    multiple=True,
    metavar="ACCOUNT",
    help="An account to read (repeatable; commas allowed).",
)
@click.option(
    "--organization", is_flag=True, help="Read every active account of the organization too."
)
@click.option(
    "--via",
    metavar="ROLE",
    help="With --organization: the role (ARN, or name in the principal's account) "
    "whose credentials call Organizations. Default: the principal itself.",
)
@click.option(
    "--reader",
    required=True,
    metavar="ROLE_NAME",
    help="The role (name, with its path) assumed in every account to read IAM; it "
    "must trust the principal (a read-only audit role).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the chain file to FILE instead of stdout.",
)
@click.option(
    "--name",
    "principal_name",
    metavar="NAME",
    help="The principal's name in the chain file [default: from its identity].",
)
@click.option(
    "--region",
    default=None,
    metavar="REGION",
    help="Region for STS, IAM and Organizations calls [default: us-east-1].",
    callback=check_regions,
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Accounts read at once.",
)
@click.option(
    "--assume-rate",
    type=AssumeRateType(),
    default="auto",
    show_default=True,
    help="AssumeRole pacing: 'auto' adapts to the calling account's STS quota (slows down "
    "when throttled); a number is a ceiling in calls per second.",
)
@click.option(
    "--sandbox",
    "sandbox_chain",
    type=chain_path,
    default=None,
    metavar="CHAIN",
    help="Discover in a local sandbox provisioned from CHAIN instead of AWS.",
)
@click.option(
    "--provision",
    type=chain_path,
    default=None,
    metavar="OTHER",
    help="With --sandbox: provision the sandbox's roles from OTHER instead (a chain file, "
    "or IAM JSON such as 'rolechain render --to iam-json' writes).",
)
@handle_errors
def discover(
    start: str,
    accounts: tuple[str, ...],
    organization: bool,
    via: str | None,
    reader: str,
    output: Path | None,
    principal_name: str | None,
    region: str | None,
    concurrency: int,
    assume_rate: float | Literal["auto"],
    sandbox_chain: Path | None,
    provision: Path | None,
) -> None:
    """Write a chain file from what IAM has.

    Reads the accounts (listed with --account, and/or every active account of the
    organization with --organization), assuming the --reader role once in each and listing
    its roles with their trust policies. Every role the principal can reach, directly or
    through other roles, is written with its trusts and MaxSessionDuration; the same role
    in several accounts with the same trusts becomes a role set; each gets a job. An
    ExternalId is written as a ${env:...} placeholder, never its value. Conditions and
    principals a chain file cannot express are comments.

    Exit status: 0 every account read; 1 some account could not be read (the file is
    written without it, and says so); 2 bad arguments.

    \b
    Example:
      rolechain discover --from env --account 333333333333,444444444444 --reader audit/Reader \\
          --output discovered.yaml
      rolechain discover --sandbox chains/demo.yaml --from inventory-bot --reader audit/Reader \\
          -a 555555555555 -a 666666666666
    """
    from rolechain.live.discover import DiscoverRequest, parse_source
    from rolechain.live.discover import discover as run_discover
    from rolechain.live.render import plural as _plural

    listed = _accounts(accounts)
    if via is not None and not organization:
        raise click.UsageError("--via needs --organization")
    if not listed and not organization:
        raise click.UsageError("give --account ACCOUNT (repeatable) and/or --organization")
    if provision is not None and sandbox_chain is None:
        raise click.UsageError("--provision needs --sandbox")
    options: dict[str, Any] = dict(
        reader=reader.strip("/"),
        accounts=listed,
        organization=organization,
        via=via,
        concurrency=concurrency,
        assume_rate=assume_rate,
        principal=principal_name,
    )
    with contextlib.ExitStack() as stack:
        credentials = None
        if sandbox_chain is not None:
            from rolechain.errors import UsageError
            from rolechain.model.loader import load

            chain = load(sandbox_chain)
            spec = chain.model.principals.get(start)
            if spec is None:
                known = ", ".join(sorted(chain.model.principals)) or "(none)"
                raise UsageError(f"no principal {start!r} in {sandbox_chain}; declared: {known}")
            credentials = stack.enter_context(_sandbox(chain, provision))[start]
            options.update(source=spec.source, profile=spec.profile)
            options.setdefault("principal", None)
            options["principal"] = principal_name or start
            options["region"] = region or chain.model.settings.region
        else:
            source, profile = parse_source(start)
            options.update(source=source, profile=profile, region=region or "us-east-1")
        result = run_discover(DiscoverRequest(**options), credentials=credentials)
    _write(result.text, output)
    where = f" to {output}" if output else ""
    click.echo(
        f"discovered {result.roles_written} of {result.roles_read} roles "
        f"({_plural(result.role_sets, 'role set')}, "
        f"{_plural(result.jobs - result.role_sets, 'role')}, {_plural(result.jobs, 'job')}) "
        f"in {_plural(len(result.accounts), 'account')}{where}; "
        f"{result.assume_calls} AssumeRole calls, {result.iam_calls} IAM calls",
        err=True,
    )
    for account, error in sorted(result.unreadable.items()):
        from rolechain.errors import printable

        click.echo(f"error: account {account} not read: {printable(error)}", err=True)
    if result.env:
        click.echo(
            "set before using the file (ExternalIds are not written): " + ", ".join(result.env),
            err=True,
        )
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


@click.command()
@chain_path_argument()
@click.argument("target", metavar="TARGET")
@click.option(
    "--from",
    "principals",
    multiple=True,
    metavar="P",
    help="Only paths from this principal (repeatable). Default: every principal.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10000),
    default=100,
    show_default=True,
    help="Most paths listed per principal (fewest hops first).",
)
@click.option(
    "--format", "-f", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@handle_errors
def reach(path: Path, target: str, principals: tuple[str, ...], limit: int, fmt: str) -> None:
    """Who can reach TARGET: every principal and path in the trust graph that ends at it.

    Offline, from the chain file (declared, or written by 'rolechain discover'). TARGET is
    a role, a role-set member ('set@account'), a role ARN, or a role set or glob ('audit',
    'audit@3*'): then paths that differ only in the member they end at are one line
    (with --format json, a list of one object per role). Paths never repeat a role, so
    trust cycles are harmless; each is listed with its hop count and checked by the
    planner as a job pinned to it would be (the one-hour cap on chained sessions,
    MaxSessionDuration, MFA...). Identities outside the file that roles on the way trust
    (an account root, a vendor) are listed too.

    \b
    Example:
      rolechain reach chains/demo.yaml audit@333333333333
      rolechain reach chains/demo.yaml 'audit@*'
      rolechain reach chains/org-inventory.yaml security-hub --from scheduler --format json
    """
    from rolechain.live.render import reach_all_lines
    from rolechain.model.loader import load
    from rolechain.planner.reach import reach_all

    chain = load(path)
    found = reach_all(chain, target, principals=list(principals) or None, limit=limit)
    many = target in chain.model.role_sets or any(ch in target for ch in "*?[")
    if fmt == "json":
        document: Any = [r.to_dict() for r in found] if many else found[0].to_dict()
        click.echo(json.dumps(document, indent=2))
    else:
        for line in reach_all_lines(found):
            click.echo(line)

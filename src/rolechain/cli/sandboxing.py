"""``rolechain sandbox``: serve a local AWS that enforces the role rules."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from rolechain.cli._common import (
    EXIT_OK,
    chain_path,
    chain_path_argument,
    echo,
    echo_secret,
    handle_errors,
    quota_options,
)


@click.command()
@chain_path_argument()
@click.option(
    "--provision",
    "provision_path",
    type=chain_path,
    metavar="OTHER",
    help="Provision roles and trusts from this chain file instead, to rehearse drift "
    "between what PATH declares and what exists.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")  # fmt: skip
@click.option("--time-scale", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, metavar="N",
              help="Run sandbox time N times faster: sessions expire after "
              "DurationSeconds / N real seconds.")  # fmt: skip
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, metavar="MS",
              help="Milliseconds added to every request.")  # fmt: skip
@click.option("--throttle", type=click.FloatRange(0, 1), default=0.0, metavar="RATE",
              help="Fraction of STS calls answered Throttling 'Rate exceeded' (0..1).")  # fmt: skip
@click.option("--drop", type=click.FloatRange(0, 1), default=0.0, metavar="RATE",
              help="Fraction of requests dropped mid-response (0..1).")  # fmt: skip
@click.option("--deny", "deny", multiple=True, metavar="ACCOUNT",
              help="Refuse every AssumeRole into this account (repeatable).")  # fmt: skip
@click.option("--principal", metavar="NAME",
              help="Whose credentials to print (default: the first principal).")  # fmt: skip
@quota_options
@handle_errors
def sandbox(
    path: Path,
    provision_path: Path | None,
    port: int,
    time_scale: float,
    latency: float,
    throttle: float,
    drop: float,
    deny: tuple[str, ...],
    principal: str | None,
    sts_rate: tuple[float, float | None] | None,
    connect_latency: float,
) -> None:
    """Serve a local AWS (moto) on 127.0.0.1 that enforces the role rules, provisioned
    from the chain file PATH, until interrupted.

    Every account, role and trust policy PATH declares is created, with its ExternalId and
    MaxSessionDuration, plus a principal with sandbox credentials and a few S3 buckets per
    account. The sandbox enforces trust policies, ExternalId, the one-hour chaining cap,
    MaxSessionDuration, the root-user refusal, parameter patterns and limits and credential
    expiry, with AWS's error codes and messages (see docs/sandbox.md).

    The export lines printed on stdout are fake sandbox credentials: paste them into
    another shell to point any AWS SDK or the AWS CLI at the sandbox.

    \b
    Example:
      rolechain sandbox chains/demo.yaml --port 4566 --time-scale 60
      rolechain sandbox chains/demo.yaml --sts-rate 50 --connect-latency 50
      # in another shell, paste the export lines, then:
      rolechain run chains/demo.yaml --job inventory
      aws sts get-caller-identity
    """
    import re

    from rolechain.credentials.shells import Exports, render
    from rolechain.errors import RolechainError
    from rolechain.model.loader import load
    from rolechain.sandbox import Faults
    from rolechain.sandbox import sandbox as serve
    from rolechain.sandbox.middleware import ADMIN_HEADER

    for account in deny:
        if not re.fullmatch(r"[0-9]{12}", account):
            raise click.BadParameter(
                f"{account!r} is not a 12-digit account id", param_hint="--deny"
            )
    chain = load(path)
    from rolechain.sandbox.sources import provision_source

    other = provision_source(provision_path) if provision_path else None
    if principal is not None and principal not in chain.model.principals:
        known = ", ".join(sorted(chain.model.principals)) or "(none)"
        raise RolechainError(f"no principal {principal!r} in {path}; declared: {known}")
    faults = Faults(
        throttle=throttle,
        latency=latency / 1000.0,
        deny_accounts=frozenset(deny),
        drop=drop,
        sts_rate=sts_rate[0] if sts_rate else None,
        sts_burst=sts_rate[1] if sts_rate else None,
        connect_latency=connect_latency / 1000.0,
    )
    with serve(chain, provision=other, time_scale=time_scale, faults=faults, port=port) as info:
        name = principal or next(iter(info.principals), None)
        env = info.principals.get(name, info.env) if name else info.env
        made = info.provisioned
        source = f"{path}" + (f" (roles provisioned from {provision_path})" if other else "")
        echo(f"rolechain sandbox serving {info.endpoint}, provisioned from {source}", err=True)
        echo(
            f"  {len(made.accounts)} accounts, {len(made.roles)} roles, "
            f"{sum(len(b) for b in made.buckets.values())} buckets"
            + (f", time x{time_scale:g}" if time_scale != 1.0 else "")
            + (f", faults: {_describe(faults)}" if faults.active else ""),
            err=True,
        )
        for set_name, accounts in made.organization_accounts.items():
            echo(f"  organization accounts for {set_name}: {', '.join(accounts)}", err=True)
        if name:
            arn = made.principals[name].arn
            echo(f"# sandbox credentials of principal {name!r} ({arn})")
        # The same lines `rolechain env` prints: the conflicting variables are unset first,
        # so a pasted shell cannot keep using another profile or token.
        echo_secret(render("sh", Exports(set=tuple(env.items()))), nl=False)
        echo(
            "  moto's admin API (/moto-api/) needs the header "
            f"{ADMIN_HEADER}: {info.admin_token}; the sandbox sends no CORS headers",
            err=True,
        )
        echo("Press Ctrl-C to stop.", err=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            echo("sandbox stopped", err=True)
    raise SystemExit(EXIT_OK)


def _describe(faults: object) -> str:
    from rolechain.sandbox import Faults

    assert isinstance(faults, Faults)
    parts = []
    if faults.throttle:
        parts.append(f"throttle {faults.throttle:g}")
    if faults.sts_rate:
        burst = f" burst {faults.sts_burst:g}" if faults.sts_burst else ""
        parts.append(f"STS {faults.sts_rate:g}/s per calling account{burst}")
    if faults.latency:
        parts.append(f"latency {faults.latency * 1000:g} ms")
    if faults.connect_latency:
        parts.append(f"connect latency {faults.connect_latency * 1000:g} ms")
    if faults.deny_accounts:
        parts.append("deny " + ",".join(sorted(faults.deny_accounts)))
    if faults.drop:
        parts.append(f"drop {faults.drop:g}")
    return "; ".join(parts)

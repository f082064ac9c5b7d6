"""``credentials``, ``cache``, ``exec``, ``env``, ``import-aws-config``, ``export-aws-config``.

These commands hand a planned target's credentials to other tools. ``credentials`` (the
credential_process JSON), ``env`` (export lines) and ``exec`` (a child's environment) are
the only places rolechain ever outputs a secret; everything they print to stderr is free of
secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from rolechain.cli._common import (
    EXIT_FAILED,
    EXIT_INVALID,
    chain_path_argument,
    dumps,
    duration,
    echo,
    echo_secret,
    handle_errors,
    write_text,
)

if TYPE_CHECKING:
    from rolechain.credentials.cache import CredentialCache
    from rolechain.credentials.process import TargetCredentials
    from rolechain.model.chain import Chain
    from rolechain.planner.plan import Hop


def _target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--target",
            "-t",
            required=True,
            help="A target: a role, or a role-set member set@account.",
        ),
        click.option(
            "--job",
            "-j",
            help="The job whose path to take; optional when exactly one job reaches the target.",
        ),
        click.option(
            "--no-cache",
            is_flag=True,
            help="Neither read nor write the credential cache (also: ROLECHAIN_NO_CACHE=1).",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Cache directory (default: $ROLECHAIN_CACHE_DIR, else the user cache dir).",
        ),
        click.option(
            "--verbose", "-v", is_flag=True, help="Say on stderr where the credentials came from."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _cache(no_cache: bool, cache_dir: Path | None) -> CredentialCache | None:
    from rolechain.credentials.cache import (
        CredentialCache,
        cache_disabled_by_env,
        default_cache_dir,
    )

    if no_cache or cache_disabled_by_env():
        return None
    return CredentialCache(cache_dir or default_cache_dir())


def _load(path: Path) -> Chain:
    from rolechain.model.loader import load

    return load(path)


def _tty_token_provider() -> Callable[[Hop], str] | None:
    """Prompts for MFA codes on the controlling terminal, if there is one.

    ``credential_process`` runs with stdout captured by the AWS tool, so the prompt goes to
    the terminal itself (``/dev/tty``), never to stdout. The terminal is opened only when a
    code is needed.
    """
    if not os.path.exists("/dev/tty"):
        return None

    def provide(hop: Hop) -> str:
        from rolechain.errors import CredentialsError, printable

        try:
            with open("/dev/tty", "r+", encoding="utf-8") as tty:
                tty.write(printable(f"MFA code for {hop.mfa_serial} (hop {hop.label}): "))
                tty.flush()
                return tty.readline().strip()
        except OSError as exc:
            raise CredentialsError(
                f"hop {hop.label} needs an MFA code and the terminal cannot be opened: "
                f"{exc.strerror or exc}",
                hint="run the command from a terminal once: the MFA session is then cached",
            ) from None

    return provide


def _resolve(
    path: Path,
    target: str,
    job: str | None,
    no_cache: bool,
    cache_dir: Path | None,
    verbose: bool,
    *,
    at_least: float = 0.0,
) -> TargetCredentials:
    from rolechain.credentials.process import target_credentials

    chain = _load(path)
    cache = _cache(no_cache, cache_dir)
    creds = target_credentials(
        chain,
        target,
        job=job,
        cache=cache,
        at_least=at_least,
        token_provider=_tty_token_provider(),
    )
    if cache is not None:
        for problem in cache.problems:
            echo(f"warning: {problem}", err=True)
    if verbose:
        _describe(creds, cache)
    else:
        for note in creds.warnings:
            echo(f"warning: {note}", err=True)
    return creds


def _describe(creds: TargetCredentials, cache: CredentialCache | None) -> None:
    from rolechain.model.durations import format_duration

    remaining = max(0, int(creds.remaining()))
    if creds.from_cache:
        source = "from the cache"
    elif cache is None:
        source = f"assumed ({creds.assume_calls} AssumeRole calls, cache off)"
    else:
        source = f"assumed ({creds.assume_calls} AssumeRole calls; cached in {cache.directory})"
    echo(
        f"job {creds.job}, target {creds.target} ({creds.role_arn}): {source}; "
        f"expires {_iso(creds.expiration)} (in {format_duration(remaining)})",
        err=True,
    )
    for hop in creds.hops:
        echo(f"  hop {hop}", err=True)
    for note in creds.notes:
        echo(f"  note: {note}", err=True)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- credentials ---------------------------------------------------------------------------


@click.command()
@chain_path_argument()
@_target_options
@handle_errors
def credentials(
    path: Path,
    target: str,
    job: str | None,
    no_cache: bool,
    cache_dir: Path | None,
    verbose: bool,
) -> None:
    """Print credential_process JSON for a target (the AWS CLI, SDKs and Terraform run this).

    The JSON (Version 1, AccessKeyId, SecretAccessKey, SessionToken, Expiration) goes to
    stdout; errors go to stderr with exit status 1 for an AWS error, 2 for an invalid chain
    file or plan or an unknown or ambiguous job or target (then nothing was called).
    Every hop on the path is cached (see `rolechain cache list`), so repeated calls make no
    AWS call while the credentials stay fresh.

    \b
    In ~/.aws/config (or write it with `rolechain export-aws-config`):
      [profile prod-deploy]
      credential_process = rolechain credentials /abs/chains/deploy.yaml --target prod-deploy
      region = eu-west-1
    \b
    Example:
      rolechain credentials chains/three-hop-deploy.yaml --target prod-deploy --job deploy
    """
    creds = _resolve(path, target, job, no_cache, cache_dir, verbose)
    echo_secret(json.dumps(creds.credential_process(), indent=2))


# -- cache ---------------------------------------------------------------------------------


@click.group()
def cache() -> None:
    """List or clear the credential cache (no secrets are shown).

    \b
    Examples:
      rolechain cache list
      rolechain cache list --format json
      rolechain cache clear --expired
    """


cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Cache directory (default: $ROLECHAIN_CACHE_DIR, else the user cache dir).",
)


@cache.command("list")
@cache_dir_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@handle_errors
def cache_list(cache_dir: Path | None, fmt: str) -> None:
    """List cached hops: key prefix, role ARN, session name, expiry. No secrets."""
    from rolechain.credentials.cache import CredentialCache, default_cache_dir
    from rolechain.model.durations import format_duration

    store = CredentialCache(cache_dir or default_cache_dir())
    entries = list(store.entries())
    now = datetime.now(UTC)
    if fmt == "json":
        echo(
            dumps(
                {
                    "directory": str(store.directory),
                    "entries": [e.to_dict(now) for e in entries],
                    "problems": store.problems,
                }
            )
        )
        return
    for problem in store.problems:
        echo(f"warning: {problem}", err=True)
    if not entries:
        echo(f"no cached credentials in {store.directory}")
        return
    rows = [("KEY", "ROLE ARN", "SESSION NAME", "EXPIRES", "LEFT")]
    for entry in entries:
        left = int(entry.remaining(now))
        rows.append(
            (
                entry.key[:12],
                entry.role_arn,
                entry.session_name,
                _iso(entry.expiration),
                format_duration(left) if left > 0 else "expired",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    echo(f"{len(entries)} entries in {store.directory}")


@cache.command("clear")
@cache_dir_option
@click.option("--expired", is_flag=True, help="Remove only expired (and unreadable) entries.")
@handle_errors
def cache_clear(cache_dir: Path | None, expired: bool) -> None:
    """Delete cached credentials (all, or only expired ones)."""
    from rolechain.credentials.cache import CredentialCache, default_cache_dir

    store = CredentialCache(cache_dir or default_cache_dir())
    removed = store.clear(expired_only=expired)
    for problem in store.problems:
        echo(f"warning: {problem}", err=True)
    echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {store.directory}")


# -- exec ----------------------------------------------------------------------------------


@click.command(name="exec")
@chain_path_argument()
@_target_options
@click.option(
    "--expect-runtime",
    callback=duration,
    metavar="DURATION",
    help="How long the command may run ('45m', '2h'): cached credentials that would expire "
    "sooner are not used, and a warning says when even fresh ones will not last.",
)
@click.option(
    "--server",
    "serve",
    is_flag=True,
    help="Serve the credentials to the command through the container-credentials endpoint "
    "(AWS_CONTAINER_CREDENTIALS_FULL_URI on loopback, with a token) instead of keys in its "
    "environment: SDKs ask again before they expire and get fresh ones, for as long as it runs.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@handle_errors
def exec_(
    path: Path,
    target: str,
    job: str | None,
    no_cache: bool,
    cache_dir: Path | None,
    verbose: bool,
    expect_runtime: int | None,
    serve: bool,
    command: tuple[str, ...],
) -> None:
    """Run a command with a target's credentials and region in its environment.

    Put the command after `--`. The child gets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN, AWS_CREDENTIAL_EXPIRATION, AWS_REGION and AWS_DEFAULT_REGION;
    variables that would make an SDK pick other credentials (AWS_PROFILE,
    AWS_SECURITY_TOKEN, AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, container credentials...)
    are removed. Its exit
    status is passed through; SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to it. Keys
    in the environment do not refresh inside the child: for long commands pass --server
    (the child's SDK fetches fresh credentials from rolechain as they run out), or
    --expect-runtime to get keys that last that long.

    \b
    Examples:
      rolechain exec chains/three-hop-deploy.yaml -t prod-deploy -- aws sts get-caller-identity
      rolechain exec chains/demo.yaml -t audit@333333333333 -j inventory --expect-runtime 2h \\
          -- ./inventory.sh
      rolechain exec chains/demo.yaml -t audit@333333333333 -j inventory --server -- ./inventory.sh
    """
    from rolechain.credentials.process import RECURSION_MARKER
    from rolechain.credentials.shells import apply, environment_for
    from rolechain.model.durations import format_duration

    if shutil.which(command[0]) is None and not os.path.exists(command[0]):
        echo(f"error: command not found: {command[0]}", err=True)
        sys.exit(127)
    if serve:

        def resolve(at_least: float) -> TargetCredentials:
            return _resolve(path, target, job, no_cache, cache_dir, verbose, at_least=at_least)

        sys.exit(_exec_serving(resolve, verbose, list(command)))
    creds = _resolve(
        path, target, job, no_cache, cache_dir, verbose, at_least=float(expect_runtime or 0)
    )
    remaining = int(creds.remaining())
    if expect_runtime is not None and remaining < expect_runtime:
        echo(
            f"warning: the credentials of {creds.target} expire in "
            f"{format_duration(max(remaining, 0))} ({_iso(creds.expiration)}), before the "
            f"expected runtime of {format_duration(expect_runtime)} ends; AWS calls after "
            "that fail with ExpiredToken. Use a credential_process profile (SDKs refresh it) "
            "or `rolechain run` with an exec task for long commands.",
            err=True,
        )
    exports = environment_for(
        creds.access_key_id,
        creds.secret_access_key,
        creds.session_token,
        creds.expiration,
        creds.region,
    )
    env = apply(exports, os.environ)
    env.pop(RECURSION_MARKER, None)
    env["ROLECHAIN_TARGET"] = creds.target
    sys.exit(run_forwarding_signals(list(command), env))


def _exec_serving(
    resolve: Callable[[float], TargetCredentials], verbose: bool, command: list[str]
) -> int:
    """``exec --server``: the child's SDK gets the target's credentials from a loopback
    endpoint that refreshes them (through ``resolve(at_least)``)."""
    from rolechain.credentials.process import RECURSION_MARKER
    from rolechain.credentials.server import RefreshingCredentials, serve_credentials

    source = RefreshingCredentials(resolve)
    first = source.get()  # fail here, before the child starts, if there are none
    errors: list[BaseException] = []
    with serve_credentials(source, errors) as served:
        env = served.environment(dict(os.environ), first.region)
        env.pop(RECURSION_MARKER, None)
        env["ROLECHAIN_TARGET"] = first.target
        if verbose:
            echo(f"serving the credentials of {first.target} at {served.uri}", err=True)
        code = run_forwarding_signals(command, env)
    for exc in errors[:1]:
        echo(f"warning: a refresh for the command failed: {exc}", err=True)
    return code


FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)


def _terminal_sent_it() -> bool:
    """Whether our process group is the terminal's foreground group (then a ^C from the
    terminal reached the child already and must not be sent twice)."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def run_forwarding_signals(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv``; forward signals to it; return its exit status (128+N if killed by N)."""
    try:
        child = subprocess.Popen(argv, env=env)
    except OSError as exc:
        echo(f"error: cannot run {shlex.join(argv)}: {exc.strerror or exc}", err=True)
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_sent_it():
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # pragma: no cover - handler replaced above
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code < 0:
        return 128 - code
    return code


# -- console -------------------------------------------------------------------------------


@click.command()
@chain_path_argument()
@_target_options
@click.option(
    "--open",
    "open_",
    is_flag=True,
    help="Open the URL in the default web browser instead of printing it.",
)
@click.option(
    "--duration",
    "session_duration",
    callback=duration,
    metavar="DURATION",
    help="How long the console session lasts ('1h', 15m..12h) [default: AWS's]. AWS refuses "
    "it for credentials from role chaining, whose console session lasts as long as they do.",
)
@click.option(
    "--destination",
    metavar="URL",
    default=None,
    help="The console page to open [default: the console home in the target's region].",
)
@handle_errors
def console(
    path: Path,
    target: str,
    job: str | None,
    no_cache: bool,
    cache_dir: Path | None,
    verbose: bool,
    open_: bool,
    session_duration: int | None,
    destination: str | None,
) -> None:
    """Print (or --open) an AWS console sign-in URL for a target's role session.

    The target's credentials (cached like 'rolechain credentials') go to the AWS federation
    endpoint (Action=getSigninToken) and come back as a sign-in URL (Action=login). The URL
    signs in whoever opens it in the next 15 minutes: treat it as a secret. With a
    sandbox's AWS_ENDPOINT_URL set, the sandbox answers the federation endpoint.

    \b
    Example:
      rolechain console chains/demo.yaml -t audit@333333333333 -j inventory
      rolechain console chains/three-hop-deploy.yaml -t prod-deploy \\
          --destination https://console.aws.amazon.com/s3/home
    """
    from rolechain.credentials.console import signin_url
    from rolechain.credentials.process import choose_job, plan_target

    chain = _load(path)
    job = choose_job(chain, target, job)
    planned, planned_target = plan_target(chain, job, target)
    chained = planned.hop(planned_target.hop_id).chained
    creds = _resolve(path, target, job, no_cache, cache_dir, verbose, at_least=60.0)
    url = signin_url(
        creds,
        chained=chained,
        duration=session_duration,
        destination=destination,
        environ=os.environ,
    )
    if open_:
        import webbrowser

        if webbrowser.open(url):
            echo(f"opened the console as {creds.target} ({creds.role_arn})", err=True)
            return
        echo("warning: no web browser could be opened; the URL:", err=True)
    echo(url)


# -- env -----------------------------------------------------------------------------------


@click.command()
@chain_path_argument()
@_target_options
@click.option(
    "--shell",
    type=click.Choice(["sh", "bash", "zsh", "fish", "powershell"]),
    help="Quoting to use (default: from $SHELL, else sh).",
)
@handle_errors
def env(
    path: Path,
    target: str,
    job: str | None,
    no_cache: bool,
    cache_dir: Path | None,
    verbose: bool,
    shell: str | None,
) -> None:
    """Print shell lines that export a target's credentials and region.

    Values are single-quoted for the chosen shell, so nothing in them is ever expanded.
    Variables that would make an SDK pick other credentials (AWS_PROFILE,
    AWS_SECURITY_TOKEN, AWS_ROLE_ARN, ...) are unset first.

    \b
    Examples:
      eval "$(rolechain env chains/three-hop-deploy.yaml --target prod-deploy)"   # sh, bash, zsh
      rolechain env chains/three-hop-deploy.yaml --target prod-deploy --shell fish | source
      rolechain env chains/three-hop-deploy.yaml -t prod-deploy --shell powershell | iex
    """
    from rolechain.credentials.shells import detect_shell, environment_for, render, usage_hint

    chosen = shell or detect_shell()
    creds = _resolve(path, target, job, no_cache, cache_dir, verbose)
    exports = environment_for(
        creds.access_key_id,
        creds.secret_access_key,
        creds.session_token,
        creds.expiration,
        creds.region,
    )
    echo_secret(render(chosen, exports), nl=False)  # type: ignore[arg-type]
    if sys.stdout.isatty():
        hint = usage_hint(chosen, ["rolechain", "env", *sys.argv[2:]])  # type: ignore[arg-type]
        echo(f"# load these into your shell with: {hint}", err=True)


# -- import / export -----------------------------------------------------------------------


def _default_config_file() -> Path:
    return Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser()


def _default_credentials_file() -> Path:
    return Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials").expanduser()


def _read(path: Path, what: str) -> str:
    from rolechain.errors import RolechainError

    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RolechainError(
            f"cannot read the {what} {path}: {exc.strerror or exc}",
            hint="pass the file explicitly",
        ) from None


def _write_output(text: str, output: Path | None, force: bool) -> None:
    if output is not None and output.exists() and not force:
        echo(f"error: {output} exists; pass --force to overwrite it", err=True)
        sys.exit(EXIT_FAILED)
    write_text(text, output)
    if output is not None:
        echo(f"wrote {output}", err=True)


@click.command(name="import-aws-config")
@click.argument(
    "file", required=False, type=click.Path(dir_okay=False, path_type=Path), metavar="[FILE]"
)
@click.option(
    "--credentials-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The shared credentials file (default: $AWS_SHARED_CREDENTIALS_FILE or "
    "~/.aws/credentials, when it exists). Only which profiles hold keys is used.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@handle_errors
def import_aws_config(
    file: Path | None, credentials_file: Path | None, output: Path | None, force: bool
) -> None:
    """Turn the profiles of an AWS config file into a chain file.

    FILE defaults to $AWS_CONFIG_FILE, else ~/.aws/config. Profiles with keys or SSO become
    principals (still read from those profiles), role profiles become roles and one job per
    role profile that takes exactly the profile's path. What cannot be mapped is listed on
    stderr. The generated file is validated and planned; problems are reported as warnings.
    No secret is read into the output.

    \b
    Example:
      rolechain import-aws-config --output chains/from-aws-config.yaml
      rolechain validate chains/from-aws-config.yaml
    """
    from rolechain.credentials.awsconfig import import_aws_config as do_import
    from rolechain.credentials.awsconfig import resolve_with_chain

    config_path = file or _default_config_file()
    config_text = _read(config_path, "AWS config file")
    creds_path = credentials_file or _default_credentials_file()
    creds_text: str | None = None
    if credentials_file is not None or creds_path.exists():
        creds_text = _read(creds_path, "AWS credentials file")

    def plan_one(chain: Any, job: str, target: str) -> Any:
        from rolechain.credentials.process import plan_target

        return plan_target(chain, job, target)[0]

    result = do_import(
        config_text,
        creds_text,
        source=str(config_path),
        credentials_source=str(creds_path) if creds_text is not None else None,
        resolver=resolve_with_chain(lambda p: _load(Path(p)), plan_one),
    )
    for item in result.unmapped:
        echo(f"not mapped: {item}", err=True)
    for item in result.warnings:
        echo(f"warning: {item}", err=True)
    _check_generated(result.text)
    _write_output(result.text, output, force)
    echo(
        f"imported {len(result.principals)} principals, {len(result.roles)} roles and "
        f"{len(result.jobs)} jobs; {len(result.unmapped)} "
        f"item{'' if len(result.unmapped) == 1 else 's'} not mapped",
        err=True,
    )


def _check_generated(text: str) -> None:
    """Warn (stderr) when the generated chain does not load or plan."""
    from rolechain.errors import ChainFileError, PlanError
    from rolechain.model.loader import loads
    from rolechain.planner import plan as make_plan

    try:
        chain = loads(text, file="<generated>")
    except ChainFileError as exc:
        echo(f"warning: the generated chain file has problems:\n{exc}", err=True)
        return
    for job in chain.model.jobs:
        try:
            make_plan(chain, job, run_id="check")
        except PlanError as exc:
            echo(f"warning: {exc}", err=True)


def _rolechain_command() -> list[str]:
    """How a credential_process line should start this program."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "rolechain":
        found = shutil.which("rolechain")
        resolved = argv0.resolve() if argv0.exists() else None
        if found and resolved is not None and Path(found).resolve() == resolved:
            return ["rolechain"]
        if resolved is not None:
            return [str(resolved)]
    return [sys.executable, "-m", "rolechain"]


@click.command(name="export-aws-config")
@chain_path_argument()
@click.option("--job", "-j", "jobs", multiple=True, help="Export this job's targets; repeatable.")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
@click.option(
    "--command",
    "command",
    help="How profiles start rolechain (default: 'rolechain' when it is on PATH, else its "
    "absolute path).",
)
@handle_errors
def export_aws_config(
    path: Path, jobs: tuple[str, ...], output: Path | None, force: bool, command: str | None
) -> None:
    """Write AWS config profiles that get their credentials from rolechain.

    One [profile NAME] per target of each job (all jobs unless --job), with
    `credential_process = rolechain credentials <absolute PATH> --target T --job J` and the
    target's region. NAME is the target, or JOB.TARGET when several jobs reach it. Members
    of Organizations role sets are only known at run time and are skipped (named on stderr).

    \b
    Examples:
      rolechain export-aws-config chains/three-hop-deploy.yaml >> ~/.aws/config
      rolechain export-aws-config chains/org-inventory.yaml --job legacy-buckets -o aws-config
      AWS_CONFIG_FILE=aws-config aws sts get-caller-identity --profile legacy@555555555555
    """
    from rolechain.credentials.awsconfig import (
        ExportedProfile,
        profile_names_for,
    )
    from rolechain.credentials.awsconfig import (
        export_aws_config as do_export,
    )
    from rolechain.credentials.process import CREDENTIALS_RUN_ID, target_region
    from rolechain.errors import UsageError
    from rolechain.model.schema import unknown_choice
    from rolechain.model.targets import DISCOVERED, split_member
    from rolechain.planner import plan as make_plan

    chain = _load(path)
    names = list(jobs) or list(chain.model.jobs)
    for name in names:
        if name not in chain.model.jobs:
            raise UsageError(unknown_choice("job", name, list(chain.model.jobs)))
    found: list[tuple[str, Any, Any]] = []
    skipped: list[str] = []
    for name in names:
        planned = make_plan(chain, name, run_id=CREDENTIALS_RUN_ID)
        for target in planned.targets:
            member = split_member(target.name)
            if member and member[1] == DISCOVERED:
                skipped.append(f"{target.name} (job {name})")
                continue
            found.append((name, planned, target))
    profile_names = profile_names_for((job, t.name) for job, _, t in found)
    profiles = [
        ExportedProfile(
            name=profile_names[(job, t.name)],
            job=job,
            target=t.name,
            region=target_region(planned, t),
            role_arn=t.role_arn,
        )
        for job, planned, t in found
    ]
    argv = shlex.split(command) if command else _rolechain_command()
    try:
        text = do_export(profiles, chain_path=str(path.resolve()), command=argv)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for item in skipped:
        echo(
            f"skipped {item}: its accounts come from AWS Organizations at run time; export a "
            "member by name with --target in `rolechain credentials`",
            err=True,
        )
    if not profiles:
        echo("error: no target to export", err=True)
        sys.exit(EXIT_INVALID)
    _write_output(text, output, force)

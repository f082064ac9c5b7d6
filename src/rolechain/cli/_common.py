"""What every command shares: printing safely, turning errors into exit codes, and the
words every command uses: the PATH argument (:func:`chain_path_argument`), ``--sandbox``
and ``--provision`` (:func:`sandbox_options`) and the one way a command points itself at a
sandbox (:func:`sandbox_environment`).

Everything the CLI prints goes through :func:`echo` (or :func:`write_text` for ``--output``
files): values that came from ``${env:...}`` are redacted and control characters are
escaped (:func:`rolechain.errors.printable`), so a chain file cannot put a secret or a
terminal escape sequence on the screen. :func:`echo_secret` is the one exception, for the
output whose job is to hand credentials over (``credentials``, ``env``); it only refuses
control characters.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from rolechain.errors import RolechainError, escape_controls, printable, redact_data

if TYPE_CHECKING:
    from botocore.credentials import Credentials

    from rolechain.model.chain import Chain
    from rolechain.sandbox.server import SandboxInfo

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_STORE = 3  # the run went on, but --store could not be written (disk full, read-only, locked)
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
DEFAULT_STORE_ENV = "ROLECHAIN_STORE"  # the store of run, history and schedule


def echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    """Print ``text`` redacted and with control characters escaped."""
    click.echo(printable(text), err=err, nl=nl)


def dumps(data: Any) -> str:
    """``data`` as indented JSON, redacted (JSON escapes control characters itself)."""
    return json.dumps(redact_data(data), indent=2)


def write_text(text: str, output: Path | None) -> None:
    """``text`` to stdout, or to the file ``output``, as :func:`echo` prints it."""
    if output is None:
        echo(text, nl=not text.endswith("\n"))
    else:
        from rolechain.private import write_private

        shown = printable(text)
        write_private(output, shown if shown.endswith("\n") else shown + "\n")


def echo_secret(text: str, *, nl: bool = True) -> None:
    """Print output that carries credentials (unredacted: it is what the user asked for)."""
    if escape_controls(text) != text:  # AWS credentials never hold control characters
        raise RolechainError("refusing to print credentials that hold control characters")
    click.echo(text, nl=nl)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print a RolechainError to stderr and exit with its code (2 for invalid input)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RolechainError as exc:
            echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper


class RateType(click.ParamType):  # type: ignore[type-arg]
    """``R`` or ``R:BURST``: calls per second and, optionally, how many may be saved up."""

    name = "R[:BURST]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, tuple):
            return value
        from rolechain.sandbox.faults import parse_rate

        try:
            return parse_rate(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AssumeRateType(click.ParamType):  # type: ignore[type-arg]
    """``auto`` or a positive number of AssumeRole calls per second (a ceiling)."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float) or value == "auto":
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        try:
            rate = float(text)
        except ValueError:
            rate = math.nan
        if not 0 < rate < math.inf:
            self.fail(f"{value!r} is neither 'auto' nor a positive number", param, ctx)
        return rate


def quota_options(func: Callable[P, R]) -> Callable[P, R]:
    """``--sts-rate`` and ``--connect-latency``: the sandbox's STS quota and connection cost,
    shared by ``rolechain sandbox`` and ``rolechain run --sandbox``."""
    func = click.option(
        "--connect-latency",
        type=click.FloatRange(min=0),
        default=0.0,
        metavar="MS",
        help="Milliseconds the first request on each new TCP connection waits (a TLS "
        "handshake to a real endpoint).",
    )(func)
    return click.option(
        "--sts-rate",
        type=RateType(),
        default=None,
        help="STS calls per second each calling account may make (a token bucket of BURST "
        "calls, default one second's worth); above it STS answers Throttling 'Rate exceeded'.",
    )(func)


def duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """A click callback: '45m', '2h', '90s' or seconds, as seconds."""
    if value is None:
        return None
    from rolechain.model.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def duration_or_none(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """Like :func:`duration`, and 'none' means unbounded (``math.inf``)."""
    if value is not None and value.strip().lower() in ("none", "off"):
        return math.inf
    return duration(ctx, param, value)


# -- chain files and the sandbox, as every command takes them -------------------------------

chain_path = click.Path(exists=True, dir_okay=True, path_type=Path)
"""A chain file or a folder of them (click parameter type)."""


def chain_path_argument(name: str = "path", *, many: bool = False) -> Callable[[F], F]:
    """The PATH argument (``PATH...`` with ``many``): a chain file or a folder of them."""
    if many:
        return click.argument(name, nargs=-1, required=True, type=chain_path, metavar="PATH...")
    return click.argument(name, type=chain_path, metavar="PATH")


def sandbox_options(*, what: str, provision: str) -> Callable[[F], F]:
    """``--sandbox`` (``use_sandbox``) and ``--provision OTHER`` (``provision``): run against
    a local sandbox provisioned from PATH (or from OTHER). ``what`` and ``provision`` end
    the help texts; :func:`check_sandbox_options` refuses ``--provision`` alone."""

    def decorate(func: F) -> F:
        func = click.option(
            "--provision",
            type=chain_path,
            default=None,
            metavar="OTHER",
            help=f"With --sandbox: provision the sandbox's roles from this chain file {provision}",
        )(func)
        return click.option(
            "--sandbox",
            "use_sandbox",
            is_flag=True,
            help=f"{what} against a local sandbox provisioned from PATH instead of AWS.",
        )(func)

    return decorate


def check_sandbox_options(use_sandbox: bool, **given: bool) -> None:
    """Refuse options that only mean something with ``--sandbox`` (``name=was_given``)."""
    used = [name for name, was_given in given.items() if was_given]
    if used and not use_sandbox:
        names = ", ".join(f"--{name.replace('_', '-')}" for name in used)
        raise click.UsageError(f"{names} {'needs' if len(used) == 1 else 'need'} --sandbox")


@contextlib.contextmanager
def environment(values: Mapping[str, str], remove: Iterable[str] = ()) -> Iterator[None]:
    """``os.environ`` with ``remove`` removed and ``values`` applied, restored afterwards."""
    removed = tuple(remove)
    saved = {k: os.environ.get(k) for k in (*values, *removed)}
    for key in removed:
        os.environ.pop(key, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# What a sandbox principal's environment may leave out, and must not be taken from the
# user's: another identity's session token would be sent with the sandbox's keys.
_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@contextlib.contextmanager
def sandbox_environment(
    chain: Chain,
    provision: Path | None = None,
    *,
    principal: str | None = None,
    **options: Any,
) -> Iterator[SandboxInfo]:
    """A sandbox provisioned from ``chain`` (or from ``provision``: a chain file or IAM
    JSON, :func:`~rolechain.sandbox.sources.provision_source`), with
    this process pointed at it as ``principal`` (default: the chain's first) until it
    stops: the sandbox's endpoint, region and keys set, and every variable that would make
    an AWS SDK pick other credentials removed (a profile, a session token of the user's,
    web identity, container credentials; :data:`~rolechain.aws.environment.
    CONFLICTING_VARIABLES`), as ``rolechain env`` does for a target. ``options`` go to
    :func:`rolechain.sandbox.sandbox` (``time_scale``, ``faults``). Yields the sandbox."""
    from rolechain.aws.environment import CONFLICTING_VARIABLES
    from rolechain.sandbox import sandbox
    from rolechain.sandbox.sources import provision_source

    other = provision_source(provision) if provision is not None else None
    with sandbox(chain, provision=other, **options) as info:
        values = info.principals.get(principal, info.env) if principal else info.env
        stale = [name for name in _CREDENTIAL_VARIABLES if name not in values]
        with environment(dict(values), remove=(*CONFLICTING_VARIABLES, *stale)):
            yield info


def sandbox_credentials(values: Mapping[str, str]) -> Credentials | None:
    """The static credentials in a sandbox principal's environment (None: it has none)."""
    from rolechain.aws.session import static_credentials

    if not (values.get("AWS_ACCESS_KEY_ID") and values.get("AWS_SECRET_ACCESS_KEY")):
        return None
    return static_credentials(
        values["AWS_ACCESS_KEY_ID"],
        values["AWS_SECRET_ACCESS_KEY"],
        values.get("AWS_SESSION_TOKEN"),
    )

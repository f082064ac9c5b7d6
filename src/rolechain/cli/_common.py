"""What every command shares: printing safely, and turning errors into exit codes.

Everything the CLI prints goes through :func:`echo` (or :func:`write_text` for ``--output``
files): values that came from ``${env:...}`` are redacted and control characters are
escaped (:func:`rolechain.errors.printable`), so a chain file cannot put a secret or a
terminal escape sequence on the screen. :func:`echo_secret` is the one exception, for the
output whose job is to hand credentials over (``credentials``, ``env``); it only refuses
control characters.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from rolechain.errors import RolechainError, escape_controls, printable, redact_data

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_STORE = 3  # the run went on, but --store could not be written (disk full, read-only, locked)
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


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
        shown = printable(text)
        output.write_text(shown if shown.endswith("\n") else shown + "\n", encoding="utf-8")


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

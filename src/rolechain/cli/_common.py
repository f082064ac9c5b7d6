"""What every command shares: turning rolechain errors into messages and exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

from rolechain.errors import RolechainError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print a RolechainError to stderr and exit with its code (2 for invalid input)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except RolechainError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
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

"""What every command shares: turning rolechain errors into messages and exit codes."""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click

from rolechain.errors import RolechainError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


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

"""``--store``: one option for every command that reads or writes the store.

A store is a SQLite file (a path) or a PostgreSQL database (a ``postgresql://`` URL; see
:mod:`rolechain.results.backend`). Where it comes from, first found wins: the ``--store``
flag, the ``ROLECHAIN_STORE`` environment variable, then (for the commands that read a
chain file: ``run``, ``schedule``) the chain file's ``settings.store``. A relative path in
``settings.store`` is relative to the chain file's directory. Neither the value of
``ROLECHAIN_STORE`` nor a password in a URL is ever printed (``--help`` names the variable
only; messages show the URL with ``***`` for its password).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rolechain.errors import RolechainError
from rolechain.locations import Location, is_url

STORE_ENV = "ROLECHAIN_STORE"
METAVAR = "PATH|URL"
F = TypeVar("F", bound=Callable[..., Any])


class StoreType(click.ParamType):  # type: ignore[type-arg]
    """A SQLite path, or a ``postgresql://`` URL kept as text."""

    name = "store"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Path):
            return value
        text = str(value)
        if not text:
            self.fail("is empty: give a file path or a postgresql:// URL", param, ctx)
        if is_url(text):
            return text
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
            scheme = text.split(":", 1)[0]
            self.fail(
                f"{scheme}: is not a store rolechain knows; give a SQLite file path or a "
                "postgresql://user@host/database URL",
                param,
                ctx,
            )
        return Path(text)


def store_option(*, required: bool = False, help: str, settings: bool = False) -> Callable[[F], F]:
    """``--store PATH|URL``, else ``$ROLECHAIN_STORE`` (else, with ``settings``, the chain
    file's ``settings.store``: the command resolves that with :func:`from_settings`)."""
    fallback = f"else ${STORE_ENV}" + (", else the chain file's settings.store" if settings else "")
    return click.option(
        "--store",
        type=StoreType(),
        envvar=STORE_ENV,
        metavar=METAVAR,
        required=required,
        default=None,
        show_envvar=False,  # the help names it; its value is never shown
        help=f"{help} A SQLite file or a postgresql:// URL; {fallback}.",
    )


def from_settings(store: Location | None, chain: Any) -> Location | None:
    """``store`` as given (flag or environment), else the chain file's ``settings.store``
    (a relative path is relative to the chain file's directory)."""
    if store is not None:
        return store
    configured = chain.model.settings.store
    if not configured:
        return None
    if is_url(configured):
        return str(configured)
    path = Path(os.path.expanduser(configured))
    if not path.is_absolute() and chain.files:
        first = Path(chain.files[0])
        path = (first if first.is_dir() else first.parent) / path
    return path


def name(store: Location) -> str:
    """How messages name a store (a URL without its password)."""
    if isinstance(store, str):
        from rolechain.errors import redact_url

        return redact_url(store)
    return str(store)


def exists(store: Location) -> bool:
    """Whether the store has been made: a SQLite file exists; a database URL is taken to
    (opening it says when it cannot be reached)."""
    return isinstance(store, str) or store.exists()


def require_existing(store: Location) -> None:
    if not exists(store):
        raise RolechainError(
            f"no run database at {name(store)}",
            hint="record runs with 'rolechain run --store PATH|URL'",
        )


def check_directory(store: Location) -> None:
    """A SQLite file's directory must exist (a URL has none)."""
    if isinstance(store, Path) and not store.parent.is_dir():
        raise click.BadParameter(f"no directory {str(store.parent)!r}", param_hint="--store")

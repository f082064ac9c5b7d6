"""What names a store: a path (a SQLite file) or a ``postgresql://`` URL.

At the bottom layer, apart from :mod:`rolechain.results.backend`, so that the command line
and the scheduler's pure modules (its exports, its lease) tell one from the other without
importing a database driver or the store.
"""

from __future__ import annotations

from pathlib import Path

SCHEMES = ("postgresql://", "postgres://")

Location = str | Path  # a URL (str) or a SQLite file (Path)


def is_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


def location_of(value: str | Path) -> Location:
    """A ``--store`` value as a location: a URL stays text, anything else is a path."""
    text = str(value)
    return text if is_url(text) else Path(text)

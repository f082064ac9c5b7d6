"""A loaded chain: the validated model plus where each value came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rolechain.errors import Location, Problem
from rolechain.model.schema import ChainFile

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Chain:
    """A validated chain file (or directory) and its source map.

    ``sources`` maps a key path such as ``("roles", "hub", "duration")`` to the location of
    that key in its file; ``("roles", "hub")`` is where the role is defined. ``warnings``
    are what the loader noticed without refusing the chain.
    """

    model: ChainFile
    sources: Mapping[PathKey, Location] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    warnings: tuple[Problem, ...] = ()  # e.g. unset ${env:NAME} read as placeholders

    def locate(self, *path: str | int) -> Location | None:
        """The location of ``path``, or of its nearest enclosing key that has one."""
        key: PathKey = tuple(path)
        while key:
            found = self.sources.get(key)
            if found is not None:
                return found
            key = key[:-1]
        return None

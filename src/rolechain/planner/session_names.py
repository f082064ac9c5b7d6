"""RoleSessionName templates: rendering, checking, and deterministic shortening.

AWS accepts a RoleSessionName of 2..64 characters from ``[\\w+=,.@-]`` (STS API reference,
AssumeRole). A template such as ``rolechain-{job}-{target}`` is rendered per hop; the
variables describe the hop being assumed (see :data:`VARIABLES`).

A rendered name longer than 64 characters is shortened deterministically: its first 47
characters, ``-``, and the first 16 hex digits of the SHA-256 of the whole name (64 in all).
A prefix of a valid name is valid and ``-``/hex digits are valid, so a shortened name is
always valid; two different long names share a short name only if their 47-character
prefixes and 64-bit hashes both match, and :class:`NameRegistry` reports it if that ever
happens rather than letting two sessions share a name silently.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from rolechain.model.schema import SESSION_NAME_VARIABLES

VARIABLES = SESSION_NAME_VARIABLES
MIN_LENGTH = 2
MAX_LENGTH = 64
HASH_LENGTH = 16
ALLOWED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+=,.@-")
VALID_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{2,64}$")
_FIELD = re.compile(r"{([^{}]*)}")


_INVALID = re.compile(r"[^A-Za-z0-9_+=,.@-]")


def invalid_chars(text: str) -> list[str]:
    """The characters of ``text`` a session name may not contain, sorted, each once."""
    if _INVALID.search(text) is None:
        return []
    return sorted(set(text) - ALLOWED)


def shorten(name: str) -> str:
    """``name`` if it fits in 64 characters, else its prefix plus a hash (always valid)."""
    if len(name) <= MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:HASH_LENGTH]
    return f"{name[: MAX_LENGTH - HASH_LENGTH - 1]}-{digest}"


@dataclass(frozen=True)
class Template:
    """A parsed session-name template."""

    text: str
    parts: tuple[tuple[bool, str], ...]  # (is_variable, literal text or variable name)
    variables: tuple[str, ...]  # variables used, in order of first use
    unknown_variables: tuple[str, ...]
    literal_invalid_chars: tuple[str, ...]  # characters outside {...} no name may contain

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[tuple[bool, str]] = []
        pos = 0
        for match in _FIELD.finditer(text):
            if match.start() > pos:
                parts.append((False, text[pos : match.start()]))
            parts.append((True, match.group(1)))
            pos = match.end()
        if pos < len(text):
            parts.append((False, text[pos:]))
        variables = tuple(dict.fromkeys(p for is_var, p in parts if is_var))
        return cls(
            text=text,
            parts=tuple(parts),
            variables=variables,
            unknown_variables=tuple(v for v in variables if v not in VARIABLES),
            literal_invalid_chars=tuple(
                invalid_chars("".join(p for is_var, p in parts if not is_var))
            ),
        )

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(values[p] if is_var else p for is_var, p in self.parts)


class NameRegistry:
    """Remembers which full name each final (possibly shortened) name came from."""

    def __init__(self) -> None:
        self._full: dict[str, str] = {}

    def register(self, full: str) -> tuple[str, str | None]:
        """The final name of ``full`` and, if it collides, the other full name."""
        final = shorten(full)
        previous = self._full.setdefault(final, full)
        return final, (previous if previous != full else None)

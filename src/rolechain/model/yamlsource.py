"""Reading one chain file: YAML to plain Python, with the location of every key and value.

PyYAML composes the document into nodes (which carry line and column marks) with a safe
loader; this module then builds plain dicts, lists and scalars from the nodes itself and
records a :class:`SourceMap` on the way, so a problem found later (by pydantic, by the
reference checks or by the planner) can point at ``file:line:column``.

Differences from ``yaml.safe_load``, all deliberate:

* Scalars resolve as in YAML 1.2's core schema: only ``true``/``false`` are booleans
  (``yes``, ``no``, ``on``, ``off`` stay strings), there are no sexagesimal numbers, and a
  plain number with a leading zero (``0123``) is a string. A plain scalar of exactly 12
  digits is a string too, so account ids such as ``012345678901`` keep their leading zero
  whether or not they are quoted. Dates stay strings.
* Mapping keys are always strings (``on:`` is the key ``"on"``, ``123:`` is ``"123"``).
* A key given twice in one mapping is a problem (PyYAML silently keeps the last).
* ``${env:NAME}`` in a string value is replaced by the environment variable ``NAME``
  (``${env:NAME:-default}`` when it may be unset); ``$${`` is a literal ``${``. Values that
  came from the environment are never echoed in messages (they may be secrets such as
  external ids): messages say "the value from ${env:NAME}" instead.
* Anchors, aliases and merge keys (``<<: *defaults``) work; a recursive alias, or aliases
  that expand into more than a million nodes, is a problem rather than a hang.

Every problem is collected; reading a file never stops at the first one (except at a YAML
syntax error, after which the parser cannot go on).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rolechain.errors import Location, Problem

PathKey = tuple[str | int, ...]

MAX_NODES = 1_000_000

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


def dotted(path: PathKey) -> str:
    """``roles.hub.tags`` for ``("roles", "hub", "tags")``; list items as ``tasks[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "the top level"


class SourceMap(Mapping[PathKey, Location]):
    """Where each key path of a chain file was written.

    As a mapping, a key path such as ``("roles", "hub", "duration")`` maps to the location
    of the *key* ``duration``; a list item's path (``(..., "trusts", 0)``) maps to the item.
    :meth:`value` gives the location of the value instead (``duration: 1h`` -> the ``1h``).
    :attr:`from_env` names the environment variables each interpolated value came from.
    """

    __slots__ = ("_keys", "_values", "from_env", "unresolved")

    def __init__(self) -> None:
        self._keys: dict[PathKey, Location] = {}
        self._values: dict[PathKey, Location] = {}
        self.from_env: dict[PathKey, tuple[str, tuple[str, ...]]] = {}
        self.unresolved: set[PathKey] = set()

    def __getitem__(self, path: PathKey) -> Location:
        return self._keys[path]

    def __iter__(self) -> Iterator[PathKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, path: PathKey, key: Location, value: Location) -> None:
        self._keys[path] = key
        self._values[path] = value

    def value(self, path: PathKey) -> Location | None:
        """The location of the value at ``path`` (or of its key, if only that is known)."""
        return self._values.get(path) or self._keys.get(path)

    def locate(self, path: PathKey, *, value: bool = False) -> Location | None:
        """The location of ``path``, or of its nearest enclosing key that has one."""
        key = tuple(path)
        while key:
            found = self.value(key) if value else self._keys.get(key)
            if found is not None:
                return found
            key = key[:-1]
            value = False
        return None

    def take(self, other: SourceMap, accepted: set[PathKey]) -> None:
        """Copy ``other``'s entries under the paths in ``accepted`` (each 1 or 2 keys long).

        Top-level keys (``("roles",)``) are copied when this map has none yet.
        """
        for key, loc in other._keys.items():
            if (key[:2] in accepted or key[:1] in accepted) or (
                len(key) == 1 and key not in self._keys
            ):
                self._keys[key] = loc
                self._values[key] = other._values.get(key, loc)
        for key, env in other.from_env.items():
            if key[:2] in accepted or key[:1] in accepted:
                self.from_env[key] = env
        self.unresolved.update(
            key for key in other.unresolved if key[:2] in accepted or key[:1] in accepted
        )


# -- scalar resolution: YAML 1.2 core schema, plus 12-digit account ids as strings ------

_IMPLICIT: list[tuple[str, re.Pattern[str], list[str]]] = [
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")),
    (_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]),
    (
        _INT,
        re.compile(r"^(?!\d{12}$)(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+|0x[0-9a-fA-F]+)$"),
        list("-+0123456789"),
    ),
    (
        _FLOAT,
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+)"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        list("-+.0123456789"),
    ),
    (_MERGE, re.compile(r"^<<$"), ["<"]),
]


def _implicit_resolvers() -> dict[str | None, list[tuple[str, re.Pattern[str]]]]:
    table: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}
    for tag, pattern, first in _IMPLICIT:
        for ch in first:
            table.setdefault(ch or None, []).append((tag, pattern))
    return table


class SourceLoader(yaml.SafeLoader):
    """A safe loader that resolves scalars as described in the module docstring."""

    yaml_implicit_resolvers = _implicit_resolvers()


_CLoader: Any = None
# yaml.cyaml exists when PyYAML was built with libyaml.
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)
if _CParser is not None:  # pragma: no branch

    class _CSourceLoader(_CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        """libyaml's parser (about 3x faster) with the same resolution rules."""

        yaml_implicit_resolvers = _implicit_resolvers()

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _CLoader = _CSourceLoader


# -- ${env:NAME} interpolation --------------------------------------------------------

_REF = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, tuple[str, ...], list[str]]:
    """``text`` with ``${env:NAME}`` references replaced.

    Returns the new text, the variables used, and error messages (unset variables,
    malformed references). ``$${`` stands for a literal ``${``.
    """
    if "$" not in text:
        return text, (), []
    used: list[str] = []
    errors: list[str] = []

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            errors.append("'${' is not closed; write $${ for a literal '${'")
            return whole
        ref = _ENV_REF.match(body)
        if ref is None:
            errors.append(
                f"unsupported reference '${{{body}}}': write ${{env:NAME}} for an environment "
                "variable, or $${ for a literal '${'"
            )
            return whole
        name, default = ref.group(1), ref.group(2)
        used.append(name)
        value = env.get(name)
        if value is None:
            if default is not None:
                return default
            errors.append(
                f"environment variable {name} is not set: export {name}=... before running "
                f"rolechain, or give a default with ${{env:{name}:-value}}"
            )
            return whole
        return value

    return _REF.sub(replace, text), tuple(used), errors


# -- building plain Python from nodes ---------------------------------------------------


@dataclass
class Document:
    """One chain file read into plain Python, with its source map and problems."""

    file: str
    data: Any
    sources: SourceMap
    problems: list[Problem] = field(default_factory=list)
    root: Location | None = None


class _Builder:
    def __init__(self, file: str, loader: Any, env: Mapping[str, str], sources: SourceMap) -> None:
        self.file = file
        self.loader = loader
        self.env = env
        self.sources = sources
        self.problems: list[Problem] = []
        self.count = 0
        self.active: set[int] = set()
        self.too_big = False

    def loc(self, node: Node) -> Location:
        mark = node.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def problem(self, node: Node, message: str, path: PathKey, hint: str | None = None) -> None:
        self.problems.append(Problem(message, self.loc(node), key=dotted(path), hint=hint))

    def build(self, node: Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            if not self.too_big:
                self.too_big = True
                self.problem(
                    node,
                    f"aliases expand to more than {MAX_NODES:,} values; is an alias "
                    "repeated by mistake?",
                    path,
                )
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active:
            self.problem(node, f"{dotted(path)}: an alias refers to itself (recursive)", path)
            self.sources.unresolved.add(path)
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            if isinstance(node, SequenceNode):
                return self.sequence(node, path)
        finally:
            self.active.discard(id(node))
        return None  # pragma: no cover - PyYAML has no other node kinds

    def scalar(self, node: ScalarNode, path: PathKey) -> Any:
        tag = node.tag
        value: Any
        if tag == _STR:
            value = node.value
        elif tag == _NULL:
            return None
        elif tag == _BOOL:
            return node.value.lower() == "true"
        elif tag == _INT:
            try:
                return int(node.value.replace("_", ""), 0)
            except ValueError:
                return self.construct(node, path)
        elif tag == _FLOAT:
            return self.construct(node, path)
        else:
            value = self.construct(node, path)
        if isinstance(value, str) and "$" in value:
            text, names, errors = interpolate(value, self.env)
            for message in errors:
                self.problem(node, f"{dotted(path)}: {message}", path)
            if errors:
                self.sources.unresolved.add(path)
            if names:
                self.sources.from_env[path] = (text, names)
            return text
        return value

    def construct(self, node: Node, path: PathKey) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.problem(node, f"{dotted(path)}: {problem}", path)
            self.sources.unresolved.add(path)
            return None

    def key_of(self, node: Node, path: PathKey) -> str | None:
        if isinstance(node, ScalarNode):
            return str(node.value)
        self.problem(node, f"{dotted(path)}: a key must be a name, not a list or mapping", path)
        return None

    def mapping(self, node: MappingNode, path: PathKey) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[Node] = []
        own: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
            else:
                own.append((key_node, value_node))
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            # Earlier mappings in a merge list win, so apply them last.
            for source in reversed(sources):
                if not isinstance(source, MappingNode):
                    self.problem(
                        source, f"{dotted(path)}: '<<' merges a mapping or a list of mappings", path
                    )
                    continue
                merged = self.build(source, path)
                if isinstance(merged, dict):
                    out.update(merged)
        seen: dict[str, Node] = {}
        for key_node, value_node in own:
            key = self.key_of(key_node, path)
            if key is None:
                continue
            if key in seen:
                first = self.loc(seen[key])
                where = f"in {dotted(path)}" if path else "at the top level"
                self.problem(
                    key_node,
                    f"duplicate key {key!r} {where} (first at line {first.line}); "
                    "the second is ignored",
                    (*path, key),
                )
                continue
            seen[key] = key_node
            sub = (*path, key)
            self.sources.add(sub, self.loc(key_node), self.loc(value_node))
            out[key] = self.build(value_node, sub)
        return out

    def sequence(self, node: SequenceNode, path: PathKey) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(node.value):
            sub = (*path, index)
            where = self.loc(item)
            self.sources.add(sub, where, where)
            out.append(self.build(item, sub))
        return out


def _syntax_problem(file: str, exc: yaml.YAMLError, text: str) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    location = Location(file, mark.line + 1, mark.column + 1) if mark is not None else None
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        return Problem(
            "YAML syntax error: a tab character; YAML indents with spaces only", location
        )
    if "single document" in f"{problem} {context}":
        return Problem(
            "YAML syntax error: a second document ('---'); a chain file holds one document "
            "(split it into several files in a directory instead)",
            location,
        )
    message = f"YAML syntax error: {problem}"
    if context:
        message += f" ({context}"
        if context_mark is not None and (mark is None or context_mark.line != mark.line):
            message += f" started at line {context_mark.line + 1}"
        message += ")"
    return Problem(message, location)


def read_document(
    file: str, text: str, env: Mapping[str, str], *, use_libyaml: bool = True
) -> Document:
    """Read chain-file ``text`` (named ``file`` in locations) into plain Python.

    Never raises for a bad document: problems are returned in :attr:`Document.problems`.
    ``use_libyaml=False`` forces PyYAML's pure-Python parser (the same results, slower).
    """
    sources = SourceMap()
    loader_class = _CLoader if (use_libyaml and _CLoader is not None) else SourceLoader
    loader = loader_class(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            return Document(file, None, sources, [_syntax_problem(file, exc, text)])
        if node is None:
            return Document(file, None, sources)
        builder = _Builder(file, loader, env, sources)
        data = builder.build(node, ())
        return Document(file, data, sources, builder.problems, builder.loc(node))
    finally:
        loader.dispose()

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
  With ``unset_env="placeholder"`` (``validate``, ``plan`` and ``graph``: a chain file is
  checkable in CI without its secrets) an unset variable becomes a placeholder and a
  warning instead of a problem; see :func:`placeholder_for`.
* Anchors, aliases and merge keys (``<<: *defaults``) work. What aliases may cost is
  capped, not what the file holds: every value an alias re-reads counts against
  :data:`MAX_EXPANSIONS`, so a billion-laughs file stops early while an honest file of
  any size (it has no aliases) is read in time proportional to its length. A recursive
  alias is a problem rather than a hang.
* Only YAML's core types are read: strings, integers, floats, ``true``/``false``, null,
  lists and mappings. Other tags (``!!binary``, ``!!timestamp``, ``!!set``, custom
  ``!Ref``) are problems. Integers have at most :data:`MAX_INT_DIGITS` digits; one written
  with a sign, in hex or in octal remembers its spelling (:class:`SpelledInt`), so that an
  account id cannot be written as ``0x1CBE991A14``.
* Values nest at most :data:`MAX_DEPTH` levels.

Every problem is collected; reading a file never stops at the first one (except at a YAML
syntax error, after which the parser cannot go on). Problems that only differ by the path
an alias was read through are reported once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rolechain.errors import Location, Problem, escape_controls, remember_env_value

PathKey = tuple[str | int, ...]

MAX_EXPANSIONS = 50_000
# Problems of one file kept to be sorted, deduplicated and listed (the loader lists 1,000);
# past it they are only counted (``Document.more``): a file with 100,000 duplicate keys is
# answered in a second, not in the time it takes to build and sort 100,000 messages.
KEEP_PROBLEMS = 10_000
MAX_DEPTH = 64
MAX_INT_DIGITS = 20

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


def dotted(path: PathKey) -> str:
    """``roles.hub.tags`` for ``("roles", "hub", "tags")``; list items as ``tasks[0]``.

    Control characters in keys are shown escaped (a key may hold a newline or ESC)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = escape_controls(part, newlines=True) if _CONTROL.search(part) else part
            out += f".{text}" if out else text
    return out or "the top level"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


class SourceMap(Mapping[PathKey, Location]):
    """Where each key path of a chain file was written.

    As a mapping, a key path such as ``("roles", "hub", "duration")`` maps to the location
    of the *key* ``duration``; a list item's path (``(..., "trusts", 0)``) maps to the item.
    :meth:`value` gives the location of the value instead (``duration: 1h`` -> the ``1h``).
    :attr:`from_env` names the environment variables each interpolated value came from.

    Each entry is kept as one small tuple (file, key line and column, value line and
    column); :class:`Location` objects are made when asked for, which keeps a file of
    hundreds of thousands of roles affordable.
    """

    __slots__ = ("_marks", "from_env", "placeholders", "unresolved")

    def __init__(self) -> None:
        self._marks: dict[PathKey, tuple[str, int, int, int, int]] = {}
        self.from_env: dict[PathKey, tuple[str, tuple[str, ...]]] = {}
        # paths whose value holds a placeholder for an unset variable -> the variables
        self.placeholders: dict[PathKey, tuple[str, ...]] = {}
        self.unresolved: set[PathKey] = set()

    def __getitem__(self, path: PathKey) -> Location:
        file, line, column, _, _ = self._marks[path]
        return Location(file, line, column)

    def __contains__(self, path: object) -> bool:
        return path in self._marks

    def __iter__(self) -> Iterator[PathKey]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)

    def add(self, path: PathKey, key: Location, value: Location) -> None:
        self._marks[path] = (key.file, key.line, key.column, value.line, value.column)

    def mark(self, path: PathKey, file: str, key: Node, value: Node) -> None:
        """Record ``path`` from the nodes of its key and value (0-based marks)."""
        k, v = key.start_mark, value.start_mark
        self._marks[path] = (file, k.line + 1, k.column + 1, v.line + 1, v.column + 1)

    def value(self, path: PathKey) -> Location | None:
        """The location of the value at ``path`` (or of its key, if only that is known)."""
        found = self._marks.get(path)
        return Location(found[0], found[3], found[4]) if found is not None else None

    def locate(self, path: PathKey, *, value: bool = False) -> Location | None:
        """The location of ``path``, or of its nearest enclosing key that has one."""
        key = tuple(path)
        while key:
            found = self.value(key) if value else self.get(key)
            if found is not None:
                return found
            key = key[:-1]
            value = False
        return None

    def take(self, other: SourceMap, accepted: set[PathKey]) -> None:
        """Copy ``other``'s entries under the paths in ``accepted`` (each 1 or 2 keys long).

        Top-level keys (``("roles",)``) are copied when this map has none yet.
        """
        mine = self._marks
        for key, marks in other._marks.items():
            if (key[:2] in accepted or key[:1] in accepted) or (len(key) == 1 and key not in mine):
                mine[key] = marks
        for key, env in other.from_env.items():
            if key[:2] in accepted or key[:1] in accepted:
                self.from_env[key] = env
        for key, names in other.placeholders.items():
            if key[:2] in accepted or key[:1] in accepted:
                self.placeholders[key] = names
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


_RESOLVERS = _implicit_resolvers()
_BY_FIRST: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    ch: tuple(found + _RESOLVERS.get(None, [])) for ch, found in _RESOLVERS.items() if ch
}
_WILDCARD = tuple(_RESOLVERS.get(None, []))


def _resolve(kind: type[Node], value: str, implicit: tuple[bool, bool]) -> str:
    """PyYAML's Resolver.resolve for our table, without its per-call overhead (libyaml
    calls it for every scalar: on a large file it was a quarter of the reading time)."""
    if kind is ScalarNode:
        if implicit[0]:
            for tag, pattern in _BY_FIRST.get(value[:1], _WILDCARD):
                if pattern.match(value):
                    return tag
        return _STR
    return _SEQ if kind is SequenceNode else _MAP


class SourceLoader(yaml.SafeLoader):
    """A safe loader that resolves scalars as described in the module docstring."""

    yaml_implicit_resolvers = _RESOLVERS

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        return _resolve(kind, value, implicit)


_CLoader: Any = None
# yaml.cyaml exists when PyYAML was built with libyaml.
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)
if _CParser is not None:  # pragma: no branch

    class _CSourceLoader(_CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        """libyaml's parser (about 3x faster) with the same resolution rules."""

        yaml_implicit_resolvers = _RESOLVERS

        def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
            return _resolve(kind, value, implicit)

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    _CLoader = _CSourceLoader


# -- ${env:NAME} interpolation --------------------------------------------------------

_REF = re.compile(r"\$\$\{|\$\{([^{}]*)\}|\$\{")
_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
_ARN_ACCOUNT_FIELD = re.compile(r"arn:[^:]*:[^:]*:[^:]*:$")
_ACCOUNT_KEYS = frozenset({"account", "accounts", "exclude"})
_REGION_KEYS = frozenset({"region", "regions"})

Placeholder = Callable[[str, str], str]


def placeholder_for(path: PathKey) -> Placeholder:
    """What stands in for an unset ``${env:NAME}`` at ``path`` when placeholders are on.

    The placeholder is chosen to pass the checks of where it stands, so that the rest of
    the file is still checked: twelve zeros for an account id (also in an ARN's account
    field), ``us-east-1`` for a region, ``env-NAME`` elsewhere (a valid external id, source
    identity, tag or session name).
    """
    key = next((p for p in reversed(path) if isinstance(p, str)), "")

    def choose(name: str, before: str) -> str:
        if key in _ACCOUNT_KEYS or _ARN_ACCOUNT_FIELD.search(before):
            return "000000000000"
        if key in _REGION_KEYS:
            return "us-east-1"
        return f"env-{name}"

    return choose


@dataclass
class Interpolated:
    """The result of :func:`interpolate`."""

    text: str
    used: tuple[str, ...] = ()
    errors: list[str] = field(default_factory=list)
    unset: tuple[tuple[str, str], ...] = ()  # (variable, placeholder) for unset variables


def interpolate(
    text: str, env: Mapping[str, str], placeholder: Placeholder | None = None
) -> Interpolated:
    """``text`` with ``${env:NAME}`` references replaced.

    Returns the new text, the variables used, error messages (unset variables, malformed
    references) and, when ``placeholder`` is given, the unset variables it stood in for.
    ``$${`` stands for a literal ``${``. Every value taken from ``env`` is recorded with
    :func:`rolechain.errors.remember_env_value`, so no message ever shows it.
    """
    if "$" not in text:
        return Interpolated(text)
    used: list[str] = []
    errors: list[str] = []
    unset: list[tuple[str, str]] = []

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
            if placeholder is not None:
                stand_in = placeholder(name, text[: match.start()])
                unset.append((name, stand_in))
                return stand_in
            errors.append(
                f"environment variable {name} is not set: export {name}=... before running "
                f"rolechain, or give a default with ${{env:{name}:-value}}"
            )
            return whole
        remember_env_value(name, value)
        return value

    return Interpolated(_REF.sub(replace, text), tuple(used), errors, tuple(unset))


# -- building plain Python from nodes ---------------------------------------------------


class SpelledInt(int):
    """An integer written other than in plain decimal (``+5``, ``0x1F``, ``0o17``).

    It is an ``int`` everywhere; :attr:`spelling` keeps how it was written, so that a value
    AWS wants as decimal digits (an account id) can refuse it.
    """

    spelling: str

    def __new__(cls, value: int, spelling: str) -> SpelledInt:
        made = super().__new__(cls, value)
        made.spelling = spelling
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return (SpelledInt, (int(self), self.spelling))


_DECIMAL = re.compile(r"[-+]?[0-9]+")
_HEX_OR_OCTAL = re.compile(r"0x[0-9a-fA-F]+|0o[0-7]+")
_CORE_SCALARS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})
_COLLECTIONS: dict[type[Node], str] = {MappingNode: _MAP, SequenceNode: _SEQ}


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml") else tag


@dataclass
class Document:
    """One chain file read into plain Python, with its source map and problems.

    ``warnings`` are what does not stop the file from loading (unset variables read as
    placeholders).
    """

    file: str
    data: Any
    sources: SourceMap
    problems: list[Problem] = field(default_factory=list)
    root: Location | None = None
    warnings: list[Problem] = field(default_factory=list)
    more: int = 0  # problems past KEEP_PROBLEMS: counted, not kept (nor deduplicated)


class _TooManyExpansions(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


class _Builder:
    def __init__(
        self,
        file: str,
        loader: Any,
        env: Mapping[str, str],
        sources: SourceMap,
        placeholders: bool = False,
    ) -> None:
        self.file = file
        self.loader = loader
        self.env = env
        self.sources = sources
        self.placeholders = placeholders
        self.problems: list[Problem] = []
        self.more = 0  # problems past KEEP_PROBLEMS
        self.warnings: list[Problem] = []
        self._said: set[tuple[Location, str]] = set()
        self.active: set[int] = set()
        self.expanding = 0  # > 0 while re-reading a node through an alias
        self.expanded = 0  # values produced through aliases
        self.too_deep = False

    def loc(self, node: Node) -> Location:
        mark = node.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def problem(
        self,
        node: Node,
        message: str,
        path: PathKey,
        hint: str | None = None,
        *,
        warning: bool = False,
    ) -> None:
        if not warning and len(self.problems) >= KEEP_PROBLEMS:
            self.more += 1
            return
        where = self.loc(node)
        # The same problem read again through an alias is said once (at the node itself).
        prefix = dotted(path) + ": "
        said = (where, message.removeprefix(prefix))
        if said in self._said:
            return
        self._said.add(said)
        made = Problem(message, where, key=dotted(path), hint=hint)
        (self.warnings if warning else self.problems).append(made)

    def build(self, node: Node, path: PathKey) -> Any:
        alias = getattr(node, "_rolechain_built", False)
        if alias:
            self.expanding += 1
        else:
            node._rolechain_built = True  # type: ignore[attr-defined]
        try:
            if self.expanding:
                self.expanded += 1
                if self.expanded > MAX_EXPANSIONS:
                    # Stop reading: what else the file says is noise next to this.
                    raise _TooManyExpansions(
                        Problem(
                            f"{dotted(path)}: aliases expand to more than {MAX_EXPANSIONS:,} "
                            "values; is an alias repeated by mistake? (the rest of the file "
                            "was not read)",
                            self.loc(node),
                            key=dotted(path),
                        )
                    )
            if len(path) > MAX_DEPTH:
                if not self.too_deep:
                    self.too_deep = True
                    self.problem(
                        node,
                        f"{dotted(path[:3])}: values nest more than {MAX_DEPTH} levels deep",
                        path,
                    )
                self.sources.unresolved.add(path)
                return None
            if isinstance(node, ScalarNode):
                return self.scalar(node, path)
            expected = _COLLECTIONS.get(type(node))
            if expected is not None and node.tag != expected:
                return self.unsupported(node, path)
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
        finally:
            if alias:
                self.expanding -= 1

    def unsupported(self, node: Node, path: PathKey) -> None:
        self.problem(
            node,
            f"{dotted(path)}: the tag {_short_tag(str(node.tag))} is not supported; a chain file "
            "holds strings, numbers, true/false, null, lists and mappings",
            path,
        )
        self.sources.unresolved.add(path)
        return None

    def scalar(self, node: ScalarNode, path: PathKey) -> Any:
        tag = node.tag
        if tag not in _CORE_SCALARS:
            return self.unsupported(node, path)
        if tag == _NULL:
            return None
        if tag == _BOOL:
            word = node.value.lower()
            if word in ("true", "false"):
                return word == "true"
            self.bad(node, path, f"{node.value!r} is not true or false")
            return None
        if tag == _INT:
            return self.integer(node, path)
        if tag == _FLOAT:
            return self.floating(node, path)
        value: str = node.value
        if "$" in value:
            found = interpolate(
                value, self.env, placeholder_for(path) if self.placeholders else None
            )
            for message in found.errors:
                self.problem(node, f"{dotted(path)}: {message}", path)
            if found.errors:
                self.sources.unresolved.add(path)
            if found.used:
                self.sources.from_env[path] = (found.text, found.used)
            if found.unset:
                self.sources.placeholders[path] = tuple(name for name, _ in found.unset)
                for name, stand_in in found.unset:
                    self.problem(
                        node,
                        f"{dotted(path)}: environment variable {name} is not set; checked "
                        f"with the placeholder {stand_in!r} (set it, or pass --strict-env to "
                        "make this an error)",
                        path,
                        warning=True,
                    )
            return found.text
        return value

    def bad(self, node: Node, path: PathKey, message: str) -> None:
        """Report ``message`` for the value at ``path`` (whose value is then None)."""
        self.problem(node, f"{dotted(path)}: {message}", path)
        self.sources.unresolved.add(path)

    def integer(self, node: ScalarNode, path: PathKey) -> int | None:
        text = str(node.value).strip()
        digits = sum(ch.isdigit() for ch in text)
        if digits > MAX_INT_DIGITS:
            self.bad(
                node,
                path,
                f"a number of {digits:,} digits is too large (at most {MAX_INT_DIGITS}); "
                "quote it if it is text",
            )
            return None
        if _DECIMAL.fullmatch(text):
            value = int(text)
            canonical = text.lstrip("-").lstrip("0") or "0"
            plain = not text.startswith("+") and (canonical == text.lstrip("-"))
            return value if plain else SpelledInt(value, text)
        if _HEX_OR_OCTAL.fullmatch(text):
            return SpelledInt(int(text, 0), text)
        self.bad(node, path, f"{text!r} is not an integer")
        return None

    def floating(self, node: ScalarNode, path: PathKey) -> float | None:
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            problem = getattr(exc, "problem", None) or f"{node.value!r} is not a number"
            self.bad(node, path, str(problem))
            return None
        return float(value)

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
            self.sources.mark(sub, self.file, key_node, value_node)
            out[key] = self.build(value_node, sub)
        return out

    def sequence(self, node: SequenceNode, path: PathKey) -> list[Any]:
        out: list[Any] = []
        for index, item in enumerate(node.value):
            sub = (*path, index)
            self.sources.mark(sub, self.file, item, item)
            out.append(self.build(item, sub))
        return out


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index`` of ``text``."""
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def _syntax_problem(
    file: str, exc: yaml.YAMLError, text: str, *, byte_offsets: bool = False
) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML does not allow (NUL, other control characters): the reader
        # knows only its offset (libyaml counts UTF-8 bytes, PyYAML characters).
        index = int(exc.position)
        if byte_offsets:
            index = len(text.encode("utf-8")[:index].decode("utf-8", "ignore"))
        index = max(0, min(index, len(text)))
        line, column = _position(text, index)
        character = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return Problem(
            f"YAML syntax error: the control character U+{character:04X} is not allowed "
            "in a chain file; write it as an escape in a double-quoted string if you mean it",
            Location(file, line, column),
        )
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
    file: str,
    text: str,
    env: Mapping[str, str],
    *,
    use_libyaml: bool = True,
    placeholders: bool = False,
) -> Document:
    """Read chain-file ``text`` (named ``file`` in locations) into plain Python.

    Never raises for a bad document: problems are returned in :attr:`Document.problems`.
    ``use_libyaml=False`` forces PyYAML's pure-Python parser (the same results, slower).
    ``placeholders``: an unset ``${env:NAME}`` becomes a placeholder and a warning.
    """
    sources = SourceMap()
    loader_class = _CLoader if (use_libyaml and _CLoader is not None) else SourceLoader
    byte_offsets = loader_class is not SourceLoader
    try:
        loader = loader_class(text)
    except yaml.YAMLError as exc:  # PyYAML's reader checks every character first
        return Document(file, None, sources, [_syntax_problem(file, exc, text)])
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            problem = _syntax_problem(file, exc, text, byte_offsets=byte_offsets)
            return Document(file, None, sources, [problem])
        except RecursionError:
            # PyYAML's pure-Python composer recurses once per level (libyaml stops at
            # 1000 levels with a YAMLError of its own).
            mark = loader.get_mark() if hasattr(loader, "get_mark") else None
            where = Location(file, mark.line + 1, mark.column + 1) if mark else None
            problem = Problem(f"values nest too deeply (more than {MAX_DEPTH} levels)", where)
            return Document(file, None, sources, [problem])
        if node is None:
            return Document(file, None, sources)
        builder = _Builder(file, loader, env, sources, placeholders)
        try:
            data = builder.build(node, ())
        except _TooManyExpansions as stop:
            return Document(file, None, SourceMap(), [stop.problem])
        return Document(
            file,
            data,
            sources,
            builder.problems,
            builder.loc(node),
            builder.warnings,
            more=builder.more,
        )
    finally:
        loader.dispose()

"""Loading chain files: YAML -> validated :class:`~rolechain.model.chain.Chain`.

:func:`load` reads one file, every ``*.yaml``/``*.yml`` file of a directory, or several
paths, merges them into one namespace, validates the result with the pydantic models of
:mod:`rolechain.model.schema`, then runs the whole-file checks of
:mod:`rolechain.model.references`. It reports every problem at once, each at
``file:line:column``, in one :class:`~rolechain.errors.ChainFileError`.

Merging several files:

* ``principals``, ``roles`` and ``role_sets`` share one namespace, ``jobs`` have their own;
  a name defined in two files is a problem that names both places;
* ``settings`` keys merge; the same setting in two files is a problem;
* ``version``, when given in several files, must agree.

Files of a directory are read in name order; subdirectories and hidden files (names
starting with ``.``) are skipped, and a ``.yaml`` symlink to a missing file is a problem.
Planning (hops, durations, chaining) is not done here: the planner raises
:class:`~rolechain.errors.PlanError` for that.

Hostile input gets a located problem in bounded time and memory: a path that is not a
regular file (a FIFO, a device such as ``/dev/zero``, or a symlink to one) is refused
before it is opened, a file is opened without blocking and at most :data:`MAX_FILE_BYTES`
are read, and the YAML reader caps depth, alias expansion and number sizes
(:mod:`rolechain.model.yamlsource`). A file (or chain) that declares nothing is a problem
unless ``allow_empty``. At most :data:`MAX_PROBLEMS` problems are listed, then a count of
the rest.

Problems (:class:`~rolechain.errors.Problem`) print as ``file:line:column: message``. A
message starts with the dotted key it is about (``roles.hub.duration: ...``, list items as
``tasks[0]``); the location is the offending value, or the key itself for an unknown or
duplicate key, or the enclosing key for a missing one. Examples::

    chain.yaml:9:5: unknown key 'duraton' in roles.hub; valid keys: ...; did you mean 'duration'?
    chain.yaml:6:3: roles.hub: missing required key 'arn'
    chain.yaml:9:15: roles.hub.duration: 10m (600 s) is below the minimum 15m (900 s)
    chain.yaml:11:11: jobs.inv.from: unknown principal 'cj'; valid: ci

When some entries are invalid, the reference checks still run on the valid rest, and a
reference to an invalid entry is not reported again as unknown.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import stat
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from rolechain.errors import ChainFileError, Location, Problem, escape_controls, redact
from rolechain.model import schema
from rolechain.model.chain import Chain
from rolechain.model.durations import format_duration, parse_duration
from rolechain.model.references import check, diagnose_arn
from rolechain.model.schema import ChainFile, closest
from rolechain.model.yamlsource import Document, PathKey, SourceMap, dotted, read_document

NODE_SECTIONS = ("principals", "roles", "role_sets")
SECTIONS = ("version", "settings", "principals", "roles", "role_sets", "jobs")
_KIND = {"principals": "principal", "roles": "role", "role_sets": "role set", "jobs": "job"}

PathLike = str | os.PathLike[str]
UnsetEnv = Literal["error", "placeholder"]

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PROBLEMS = 1000
_READ_CHUNK = 1 << 20


def load(
    paths: PathLike | Sequence[PathLike],
    *,
    env: Mapping[str, str] | None = None,
    allow_empty: bool = False,
    unset_env: UnsetEnv = "error",
) -> Chain:
    """Load and validate chain files into one :class:`Chain`.

    ``paths`` is a file, a directory (its ``*.yaml`` and ``*.yml`` files, not recursive), or a
    list of files and directories. ``env`` is where ``${env:NAME}`` references are looked up
    (default: ``os.environ``); ``${env:NAME:-default}`` gives a default and ``$${`` a literal
    ``${``. An unset variable is a problem, or with ``unset_env="placeholder"`` a placeholder
    and a warning in :attr:`Chain.warnings` (for checking a chain without its secrets).
    Locations name each file as it was given (a directory's files as
    ``directory/name.yaml``). An empty file, or a chain that declares no principal, role,
    role set or job, is a problem unless ``allow_empty``.

    >>> chain = load("chains/org-inventory.yaml")                   # doctest: +SKIP
    >>> chain.model.roles["hub"].duration, chain.locate("roles", "hub")  # doctest: +SKIP
    (3600, Location(file='chains/org-inventory.yaml', line=12, column=3))

    Raises :class:`~rolechain.errors.ChainFileError` listing every problem found.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    files, problems = _collect_files(paths)
    documents: list[Document] = []
    placeholders = unset_env == "placeholder"
    with _collector_paused():
        for file in files:
            text, problem = read_chain_text(file)
            if problem is not None:
                problems.append(problem)
                continue
            assert text is not None
            shown = _shown(file)
            documents.append(read_document(shown, text, environ, placeholders=placeholders))
        return _finish(documents, problems, tuple(files), allow_empty=allow_empty)


def loads(
    text: str,
    *,
    file: str = "<string>",
    env: Mapping[str, str] | None = None,
    allow_empty: bool = False,
    unset_env: UnsetEnv = "error",
) -> Chain:
    """Like :func:`load`, for chain-file text; locations name it ``file``."""
    environ: Mapping[str, str] = os.environ if env is None else env
    with _collector_paused():
        document = read_document(file, text, environ, placeholders=unset_env == "placeholder")
        return _finish([document], [], (file,), allow_empty=allow_empty)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a chain is read.

    Reading builds millions of small objects that all stay alive; each of them would count
    towards the next collection, which then walks them all again. Measured on a 50,000-role
    file: 7.6 s with the collector, 2.2 s without (reading makes no reference cycles worth
    collecting; reference counting still frees everything as usual)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _shown(file: str) -> str:
    """A file name as messages show it: no control character, newline or undecodable byte
    in a name may start a line of its own or reach the terminal."""
    return escape_controls(file, newlines=True)


def _kind(mode: int) -> str:
    return next((word for test, word in _KINDS if test(mode)), "not a regular file")


def read_chain_text(file: str) -> tuple[str | None, Problem | None]:
    """The text of chain file ``file``, or the problem that stops it being read.

    The path is checked before it is opened (a FIFO would block, ``/dev/zero`` never ends),
    opened without blocking and checked again (it may have been swapped), and at most
    :data:`MAX_FILE_BYTES` are read.
    """

    def refuse(message: str, line: int = 0, column: int = 0) -> tuple[None, Problem]:
        where = Location(_shown(file), line, column) if line else None
        return None, Problem(f"{_shown(file)}: {message}", where)

    try:
        info = os.stat(file)
    except FileNotFoundError:
        if os.path.islink(file):
            return refuse(f"a symlink to {_shown(os.readlink(file))!r}, which does not exist")
        return refuse("no such file or directory")
    except OSError as exc:
        return refuse(f"cannot read: {exc.strerror or exc}")

    def too_big(size: int) -> tuple[None, Problem]:
        return refuse(
            f"{size:,} bytes; a chain file is at most {MAX_FILE_BYTES // (1024 * 1024)} MiB "
            "(split a larger chain into several files in a directory)"
        )

    if not stat.S_ISREG(info.st_mode):
        return refuse(f"{_kind(info.st_mode)}, not a chain file; a chain file is a regular file")
    if info.st_size > MAX_FILE_BYTES:
        return too_big(info.st_size)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(file, flags)
    except OSError as exc:
        return refuse(f"cannot read: {exc.strerror or exc}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return refuse(
                f"{_kind(info.st_mode)}, not a chain file; a chain file is a regular file"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        return refuse(f"cannot read: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        return too_big(size)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        return refuse(
            f"not UTF-8 text ({exc.reason} at byte {exc.start:,}); save the file as UTF-8",
            line,
            column,
        )


def _finish(
    documents: list[Document],
    problems: list[Problem],
    files: tuple[str, ...],
    *,
    allow_empty: bool = False,
) -> Chain:
    warnings: list[Problem] = []
    for document in documents:
        problems.extend(document.problems)
        warnings.extend(document.warnings)
    data, sources, merge_problems = merge(documents)
    problems.extend(merge_problems)
    model, model_problems, invalid = validate(data, sources)
    problems.extend(model_problems)
    if model is not None:
        problems.extend(check(model, sources, ignore=invalid))
        declared = model.principals or model.roles or model.role_sets or model.jobs
        if documents and not (declared or allow_empty or problems or invalid):
            problems.append(_declares_nothing(documents))
    if problems or model is None:
        shown, omitted = _presented(problems, sources)
        raise ChainFileError(shown, omitted=omitted + sum(d.more for d in documents))
    return Chain(model, sources, files, tuple(_presented(warnings, sources)[0]))


def _declares_nothing(documents: list[Document]) -> Problem:
    hint = "declare principals, roles and jobs, or accept an empty chain with --allow-empty"
    written = [d for d in documents if d.data is not None]
    if not written:
        what = "the file is" if len(documents) == 1 else "every file is"
        return Problem(
            f"{what} empty (nothing but comments and blank lines): the chain declares nothing",
            Location(documents[0].file, 1, 1),
            hint=hint,
        )
    return Problem(
        "the chain declares no principal, role, role set or job", written[0].root, hint=hint
    )


def _presented(problems: list[Problem], sources: SourceMap) -> tuple[list[Problem], int]:
    """``problems`` as reported: ``${env:}`` values redacted, placeholders explained, the
    same problem read through several aliases said once, at most MAX_PROBLEMS listed (and
    how many more there are)."""
    placeholders = {dotted(path): names for path, names in sources.placeholders.items()}
    seen: set[tuple[Location | None, str]] = set()
    kept: list[Problem] = []
    for problem in sorted(problems, key=lambda p: (p.location or Location("", 0), p.message)):
        tail = problem.message
        if problem.key and tail.startswith(problem.key + ": "):
            tail = tail[len(problem.key) + 2 :]
        if (problem.location, tail) not in seen:
            seen.add((problem.location, tail))
            kept.append(problem)
    out: list[Problem] = []
    for problem in kept[:MAX_PROBLEMS]:
        message = _shortened(redact(problem.message))
        names = placeholders.get(problem.key or "")
        if names and "placeholder" not in message:
            unset = ", ".join(f"${{env:{name}}}" for name in names)
            message += f" ({unset} is not set: this was checked with a placeholder)"
        hint = redact(problem.hint) if problem.hint else None
        out.append(Problem(message, problem.location, key=problem.key, hint=hint))
    return out, max(0, len(kept) - MAX_PROBLEMS)


MAX_MESSAGE_CHARS = 2000


def _shortened(message: str) -> str:
    """A message that quotes a huge value (a 1 MB name) is cut, saying how long it was."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[:MAX_MESSAGE_CHARS] + f"... (cut; {len(message):,} characters in all)"


def _collect_files(paths: PathLike | Sequence[PathLike]) -> tuple[list[str], list[Problem]]:
    given = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    files: list[str] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    if not given:
        problems.append(Problem("no chain files given"))
    for item in given:
        name = os.fspath(item)
        path = Path(name)
        if path.is_dir():
            candidates = []
            dangling = False
            for entry in sorted(path.iterdir(), key=lambda p: p.name):
                if entry.suffix not in (".yaml", ".yml") or entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    continue  # subdirectories are not part of the chain
                if entry.is_symlink() and not entry.exists():
                    dangling = True
                    problems.append(
                        Problem(
                            f"{_shown(os.path.join(name, entry.name))}: a symlink to "
                            f"{_shown(os.readlink(entry))!r}, which does not exist; the chain "
                            "would miss this file"
                        )
                    )
                    continue
                candidates.append(os.path.join(name, entry.name))
            if not candidates and not dangling:
                problems.append(
                    Problem(f"{_shown(name)}: no chain files (*.yaml, *.yml) in directory")
                )
        elif path.exists() or path.is_symlink():
            candidates = [name]
        else:
            problems.append(Problem(f"{_shown(name)}: no such file or directory"))
            candidates = []
        for candidate in candidates:
            resolved = Path(candidate).resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(candidate)
    return files, problems


# -- merging ---------------------------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string" if len(value) > 40 else repr(value)
    return str(value)


def _unknown_key(key: str, parent: PathKey, valid: Sequence[str]) -> str:
    where = f"in {dotted(parent)}" if parent else "at the top level"
    text = f"unknown key {key!r} {where}; valid keys: {', '.join(sorted(valid))}"
    guess = closest(key, list(valid))
    return text + (f"; did you mean {guess!r}?" if guess else "")


def merge(documents: Sequence[Document]) -> tuple[dict[str, Any], SourceMap, list[Problem]]:
    """Merge documents into one chain-file mapping and one source map."""
    data: dict[str, Any] = {}
    sources = SourceMap()
    problems: list[Problem] = []
    node_owner: dict[str, tuple[str, Location | None]] = {}  # name -> (section, where)
    job_owner: dict[str, Location | None] = {}
    setting_owner: dict[str, Location | None] = {}
    version: tuple[object, Location | None] | None = None
    for doc in documents:
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            problems.append(
                Problem(
                    "a chain file is a mapping with the keys "
                    f"{', '.join(SECTIONS)}; found {_type_name(doc.data)}",
                    doc.root,
                )
            )
            continue
        src = doc.sources
        accepted: set[PathKey] = set()
        for key, value in doc.data.items():
            here = src.get((key,))
            if key not in SECTIONS:
                problems.append(Problem(_unknown_key(key, (), SECTIONS), here, key=key))
                continue
            if key == "version":
                if version is None:
                    version = (value, src.value((key,)))
                    data[key] = value
                    accepted.add((key,))
                elif value != version[0]:
                    problems.append(
                        Problem(
                            f"version: {value!r} disagrees with version {version[0]!r} "
                            f"at {version[1]}; all files of a chain use one version",
                            src.value((key,)),
                            key=key,
                        )
                    )
                continue
            if value is None:
                value = {}
            if not isinstance(value, dict):
                what = "setting names to values" if key == "settings" else f"names to {key}"
                problems.append(
                    Problem(
                        f"{key}: expected a mapping of {what}; found {_type_name(value)}",
                        src.value((key,)),
                        key=key,
                    )
                )
                continue
            section = data.setdefault(key, {})
            for name, entry in value.items():
                path: PathKey = (key, name)
                where = src.get(path)
                if key == "settings":
                    if name in setting_owner:
                        problems.append(
                            Problem(
                                f"settings.{name} is also set at {setting_owner[name]}; set "
                                "each setting "
                                "in one file",
                                where,
                                key=dotted(path),
                            )
                        )
                        continue
                    setting_owner[name] = where
                elif key == "jobs":
                    if name in job_owner:
                        problems.append(
                            Problem(
                                f"job {name!r} is also defined at {job_owner[name]}",
                                where,
                                key=dotted(path),
                                hint="rename one of them",
                            )
                        )
                        continue
                    job_owner[name] = where
                else:
                    owner = node_owner.get(name)
                    if (
                        owner is not None
                        and owner[1] is not None
                        and where is not None
                        and (owner[1].file != where.file)
                    ):
                        problems.append(
                            Problem(
                                f"{_KIND[key]} {name!r} is also defined as a "
                                f"{_KIND[owner[0]]} at {owner[1]}; principals, roles and role "
                                "sets share one namespace",
                                where,
                                key=dotted(path),
                                hint="rename one of them",
                            )
                        )
                        continue
                    node_owner.setdefault(name, (key, where))
                section[name] = entry
                accepted.add(path)
        sources.take(src, accepted)
    return data, sources, problems


# -- validation ------------------------------------------------------------------------

_PATTERNS: dict[str, str] = {
    schema.NAME_PATTERN: "a valid name (letters, digits, '_', '.', '-'; starting with a letter "
    "or digit; up to 64 characters)",
    schema.ACCOUNT_PATTERN: "a 12-digit AWS account id",
    schema.ROLE_ARN_PATTERN: "a valid role ARN (arn:<partition>:iam::<account>:role/<name>)",
    schema.PRINCIPAL_ARN_PATTERN: "an IAM principal ARN (user, role, account root or assumed-role)",
    schema.ROLE_NAME_PATTERN: "a valid role name (optionally with a path, 'ops/audit')",
    schema.MFA_SERIAL_PATTERN: "an MFA device ARN (arn:<partition>:iam::<account>:mfa/<name>) "
    "or a hardware serial",
    schema.POLICY_ARN_PATTERN: "a managed policy ARN (arn:<partition>:iam::<account or aws>:"
    "policy/<name>)",
    schema.EXTERNAL_ID_PATTERN: "a valid external id (letters, digits and _+=,.@:/-)",
    schema.SOURCE_IDENTITY_PATTERN: "a valid source identity (letters, digits and _+=,.@-)",
    schema.TAG_KEY_PATTERN: "a valid tag key (letters, digits, spaces and _.:/=+-@)",
    schema.TAG_VALUE_PATTERN: "a valid tag value (letters, digits, spaces and _.:/=+-@)",
    schema.REGION_PATTERN: "a region name such as 'us-east-1'",
    schema.OU_PATTERN: "an OU id ('ou-xxxx-xxxxxxxx') or root id ('r-xxxx')",
}

_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}

_BRANCH = {"str": "a string", "list": "a list", "dict": "a mapping", "literal": "one of"}

_DURATION_FIELDS = frozenset(
    {"duration", "max_session_duration", "max_wait", "timeout", "runtime", "starting_deadline",
     "jitter", "after"}
)  # fmt: skip

_FIELD_WORD = re.compile(r"[A-Za-z_]+")
_QUOTED = re.compile(r"'([^']*)'")


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _model_at(path: PathKey) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` (None if not a model)."""
    tp: Any = ChainFile
    for part in path:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            branches = [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
            tp = _pick_branch(branches, part)
            origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = _fields(tp).get(str(part))
            if field is None:
                return None
            tp = field
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        models = [
            a
            for a in map(_unwrap, typing.get_args(tp))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        tp = models[0] if models else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _pick_branch(branches: list[Any], part: str | int) -> Any:
    for branch in branches:
        origin = typing.get_origin(branch)
        if isinstance(part, int) and origin is list:
            return branch
        if isinstance(part, str) and (
            origin is dict or (isinstance(branch, type) and issubclass(branch, BaseModel))
        ):
            return branch
    return branches[0] if branches else None


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """Field annotations of ``model`` by the key used in YAML (the alias if any)."""
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def _walk(data: Any, loc: tuple[str | int, ...]) -> tuple[PathKey, list[str | int], bool]:
    """The part of ``loc`` that exists in ``data``, the parts skipped, and if a key failed."""
    path: list[str | int] = []
    skipped: list[str | int] = []
    key_error = False
    cur = data
    for part in loc:
        if part == "[key]":
            key_error = True
            continue
        if isinstance(cur, dict):
            found = isinstance(part, str) and part in cur
        else:
            found = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if found:
            cur = cur[part]
            path.append(part)
        else:
            skipped.append(part)
    return tuple(path), skipped, key_error


def _value_at(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


class _Mapper:
    """Turns pydantic's error entries into located, human problems."""

    def __init__(self, data: dict[str, Any], sources: SourceMap) -> None:
        self.data = data
        self.sources = sources

    def problems(self, exc: ValidationError) -> tuple[list[Problem], set[PathKey]]:
        errors = exc.errors(include_url=False)
        out: list[Problem] = []
        failed: set[PathKey] = set()
        unions: dict[PathKey, dict[str, list[Any]]] = {}
        for err in errors:
            loc = tuple(err["loc"])
            path, skipped, _ = _walk(self.data, loc)
            failed.add(path)
            if path in self.sources.unresolved:
                continue  # already reported: an unset ${env:NAME}
            tag = self._union_tag(err, path, skipped)
            if tag is not None:
                unions.setdefault(path[: self._tag_depth(loc, tag)], {}).setdefault(tag, []).append(
                    err
                )
                continue
            out.append(self.one(err))
        for at, branches in unions.items():
            out.extend(self.union(at, branches))
        return out, failed

    @staticmethod
    def _union_tag(err: Any, path: PathKey, skipped: list[str | int]) -> str | None:
        for part in skipped:
            if isinstance(part, str) and (
                part in ("str", "int") or "[" in part or part.startswith("constrained")
            ):
                if err["type"] == "missing" and part == skipped[-1]:
                    return None
                return part
        return None

    @staticmethod
    def _tag_depth(loc: tuple[Any, ...], tag: str) -> int:
        # Number of real path parts before the union tag.
        return sum(1 for p in loc[: loc.index(tag)] if p != "[key]")

    def union(self, at: PathKey, branches: dict[str, list[Any]]) -> list[Problem]:
        value = _value_at(self.data, at)
        shapes: dict[type, str] = {list: "list", dict: "dict", str: "str"}
        shape = shapes.get(type(value), "other")
        matching = [
            tag
            for tag in branches
            if tag.split("[", 1)[0] == shape
            or (shape == "str" and (tag.startswith("constrained-str") or tag == "str"))
        ]
        if len(matching) == 1:
            return [self.one(err) for err in branches[matching[0]]]
        if shape == "str" and isinstance(value, str):
            literals = [t for t in branches if t.startswith("literal[")]
            if literals and all(t.startswith(("literal[", "list[")) for t in branches):
                expected = ", ".join(t[len("literal[") : -1] for t in literals)
                return [
                    self.make(
                        at,
                        f"expected a list or {expected}; found {self.show(at, value)}",
                        value=True,
                    )
                ]
        wanted = []
        for tag in branches:
            word = _BRANCH.get(tag.split("[", 1)[0])
            if word == "one of":
                word = tag[len("literal[") : -1]
            if word and word not in wanted:
                wanted.append(word)
        return [
            self.make(
                at, f"expected {' or '.join(wanted)}; found {self.show(at, value)}", value=True
            )
        ]

    def show(self, path: PathKey, value: object) -> str:
        env = self.sources.from_env.get(path)
        if env is not None:
            return "the value from " + ", ".join(f"${{env:{n}}}" for n in env[1])
        return _type_name(value)

    def redact(self, path: PathKey, message: str) -> str:
        env = self.sources.from_env.get(path)
        if env is None:
            return message
        text, names = env
        shown = "the value from " + ", ".join(f"${{env:{n}}}" for n in names)
        if text and shown not in message:
            # Validators quote the value (repr); a longer value may also appear bare.
            message = message.replace(repr(text), shown)
            if len(text) >= 4:
                message = re.sub(rf"(?<!\w){re.escape(text)}(?!\w)", lambda _: shown, message)
        if shown not in message:
            message += f" ({shown})"  # say where the value came from
        return message

    def make(
        self, path: PathKey, message: str, *, value: bool = False, hint: str | None = None
    ) -> Problem:
        where = self.sources.locate(path, value=value)
        return Problem(
            self.redact(path, f"{dotted(path)}: {message}"), where, key=dotted(path), hint=hint
        )

    def one(self, err: Any) -> Problem:
        kind = err["type"]
        loc = tuple(err["loc"])
        path, skipped, key_error = _walk(self.data, loc)
        ctx = err.get("ctx") or {}
        given = err.get("input")
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if kind == "extra_forbidden":
            model = _model_at(path[:-1])
            valid = list(_fields(model)) if model else []
            where = self.sources.get(path)
            return Problem(_unknown_key(str(path[-1]), path[:-1], valid), where, key=dotted(path))
        if kind == "missing":
            missing = skipped[-1] if skipped else loc[-1]
            return self.make(path, f"missing required key {missing!r}")
        if key_error:
            described = _PATTERNS.get(str(ctx.get("pattern")), "a valid key")
            return self.make(path, f"{given!r} is not {described}")
        if kind == "string_pattern_mismatch":
            return self.pattern(path, str(given), str(ctx.get("pattern")))
        if kind in ("string_too_long", "string_too_short"):
            limit = ctx.get("max_length", ctx.get("min_length"))
            word = "at most" if kind == "string_too_long" else "at least"
            n = len(given) if isinstance(given, str) else "?"
            chars = "character" if n == 1 else "characters"
            return self.make(path, f"is {n} {chars} long; {word} {limit} are allowed", value=True)
        if kind in ("too_long", "too_short"):
            limit = ctx.get("max_length", ctx.get("min_length"))
            word = "at most" if kind == "too_long" else "at least"
            actual = ctx.get("actual_length")
            if actual is None:
                actual = len(given) if isinstance(given, list | dict | str) else "?"
            return self.make(path, f"has {actual} entries; {word} {limit} are allowed", value=True)
        if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            return self.bound(path, kind, given, ctx)
        if kind in _EXPECTED:
            return self.make(
                path,
                f"expected {_EXPECTED[kind]}; found {self.show(path, given)}",
                value=True,
            )
        if kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            text = f"expected {expected}; found {self.show(path, given)}"
            options = _QUOTED.findall(expected)
            guess = closest(str(given), options) if isinstance(given, str) else None
            if guess and path not in self.sources.from_env:
                text += f"; did you mean {guess!r}?"
            return self.make(path, text, value=True)
        if kind == "value_error":
            if msg.startswith("bad parameters for task"):
                found = self.task_params(path)
                if found:
                    return found
            return self.value_error(path, msg)
        return self.make(path, msg, value=True)

    def task_params(self, path: PathKey) -> Problem | None:
        """The first problem in a task's ``with`` block, said in the loader's words."""
        from rolechain.tasks.registry import TASKS, validate_task_params

        spec = _value_at(self.data, path)
        if not isinstance(spec, dict) or spec.get("task") not in TASKS:
            return None
        params = spec.get("with") or {}
        if not isinstance(params, dict):
            return None
        task = str(spec["task"])
        try:
            validate_task_params(task, params)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        else:  # pragma: no cover - pydantic said it failed
            return None
        base: PathKey = (*path, "with") if "with" in spec else path
        valid = list(_fields(TASKS[task].params))
        parts: list[str] = []
        first: PathKey | None = None
        key_loc = False
        # Unknown keys first; a missing key that an unknown key is a typo of says nothing new.
        typos = {
            closest(str(e["loc"][0]), valid)
            for e in errors
            if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
        }
        errors = sorted(errors, key=lambda e: e["type"] != "extra_forbidden")
        errors = [
            e
            for e in errors
            if not (e["type"] == "missing" and len(e["loc"]) == 1 and e["loc"][0] in typos)
        ]
        for err in errors:
            where, skipped, _ = _walk(params, tuple(err["loc"]))
            if first is None:
                first = (*base, *where)
                key_loc = err["type"] == "extra_forbidden" and bool(where)
            text = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "missing":
                parts.append(f"missing required key {(skipped or ['?'])[-1]!r}")
            elif err["type"] == "extra_forbidden" and len(where) == 1:
                key = str(where[0])
                guess = closest(key, valid)
                parts.append(
                    f"unknown key {key!r}; valid keys: {', '.join(sorted(valid))}"
                    + (f"; did you mean {guess!r}?" if guess else "")
                )
            elif err["type"] in _EXPECTED and where:
                parts.append(f"{dotted(where)}: expected {_EXPECTED[err['type']]}")
            else:
                parts.append(f"{dotted(where)}: {text}" if where else text)
        at = first or base
        return Problem(
            self.redact(
                at, f"{dotted(base)}: bad parameters for task {task!r}: " + "; ".join(parts)
            ),
            self.sources.locate(at, value=not key_loc),
            key=dotted(base),
        )

    def pattern(self, path: PathKey, given: str, pattern: str) -> Problem:
        described = _PATTERNS.get(pattern, f"matching {pattern}")
        shown = self.show(path, given)
        if pattern == schema.ROLE_ARN_PATTERN:
            why = diagnose_arn(given, "role")
            return self.make(path, f"{shown} is not a valid role ARN: {why}", value=True)
        if pattern == schema.PRINCIPAL_ARN_PATTERN:
            why = diagnose_arn(given, "principal") or "not a user, role, root or assumed-role ARN"
            return self.make(path, f"{shown} is not an IAM principal ARN: {why}", value=True)
        if pattern == schema.SOURCE_IDENTITY_PATTERN and given.lower().startswith("aws:"):
            return self.make(path, f"{shown} starts with 'aws:', a prefix AWS reserves", value=True)
        if pattern == schema.ACCOUNT_PATTERN and re.fullmatch("[0-9]+", given):
            return self.make(
                path, f"{shown} is {len(given)} digits; an AWS account id has 12", value=True
            )
        return self.make(path, f"{shown} is not {described}", value=True)

    def bound(self, path: PathKey, kind: str, given: object, ctx: Mapping[str, Any]) -> Problem:
        limit = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
        words = {
            "greater_than_equal": "below the minimum",
            "greater_than": "not above",
            "less_than_equal": "above the maximum",
            "less_than": "not below",
        }
        if path in self.sources.from_env:
            text = f"{self.show(path, given)} is {words[kind]} {limit}"
        elif path and path[-1] in _DURATION_FIELDS and isinstance(limit, int):
            seconds = parse_duration(given)
            text = (
                f"{format_duration(seconds)} ({seconds} s) is {words[kind]} "
                f"{format_duration(limit)} ({limit} s)"
            )
        else:
            text = f"{given} is {words[kind]} {limit}"
        return self.make(path, text, value=True)

    def value_error(self, path: PathKey, msg: str) -> Problem:
        value = _value_at(self.data, path)
        model = _model_at(path)
        if isinstance(value, dict) and model is not None:
            sub = self._mentioned(path, value, model, msg)
            if sub is not None:
                return self.make(sub, msg, value=True)
            return self.make(path, msg)
        if isinstance(value, dict):
            keys = [k for k in _QUOTED.findall(msg) if k in value]
            if keys:
                key_path = (*path, keys[-1])
                return Problem(
                    self.redact(path, f"{dotted(path)}: {msg}"),
                    self.sources.get(key_path),
                    key=dotted(key_path),
                )
        return self.make(path, msg, value=True)

    def _mentioned(
        self, path: PathKey, value: dict[str, Any], model: type[BaseModel], msg: str
    ) -> PathKey | None:
        """A key of the mapping at ``path`` that a model-level error is about."""
        fields = _fields(model)
        if msg.startswith("accounts listed twice") and isinstance(value.get("accounts"), list):
            accounts = value["accounts"]
            for index, account in enumerate(accounts):
                if account in accounts[:index]:
                    return (*path, "accounts", index)
        if msg.startswith("bad parameters"):
            params = value.get("with")
            if isinstance(params, dict):
                for match in re.finditer(r"with\.([\w.]+)", msg):
                    name = match.group(1).split(".")[0]
                    if name in params:
                        return (*path, "with", name)
            return (*path, "with") if "with" in value else None
        for match in _FIELD_WORD.finditer(msg):
            word = match.group(0)
            if word in fields and word in value:
                return (*path, word)
        return None


def validate(
    data: dict[str, Any], sources: SourceMap
) -> tuple[ChainFile | None, list[Problem], set[str]]:
    """Validate merged chain-file ``data``.

    Returns the model (of the valid part, when some entries are invalid), the problems, and
    the names of principals, roles, role sets and jobs left out because they were invalid
    (so that reference checks do not also report every reference to them).
    """
    try:
        return ChainFile.model_validate(data), [], set()
    except ValidationError as exc:
        problems, failed = _Mapper(data, sources).problems(exc)
    # Leave out what failed and validate the rest, so that the reference checks can still
    # run: first only the failing fields, then whole entries that still fail.
    invalid: set[str] = set()
    pruned = _prune(data, failed, invalid)
    model: ChainFile | None = None
    for _ in range(4):
        try:
            model = ChainFile.model_validate(pruned)
            break
        except ValidationError as again:
            failed = {_walk(pruned, tuple(e["loc"]))[0] for e in again.errors()}
            pruned = _prune(pruned, failed, invalid, whole=True)
    return model, problems, invalid


def _prune(
    data: dict[str, Any], failed: set[PathKey], invalid: set[str], *, whole: bool = False
) -> dict[str, Any]:
    """A copy of ``data`` without the failing parts (fields, or ``whole`` entries)."""
    out: dict[str, Any] = {
        k: ({n: (dict(e) if isinstance(e, dict) else e) for n, e in v.items()})
        if isinstance(v, dict)
        else v
        for k, v in data.items()
    }
    for path in sorted(failed, key=len):
        if not path:
            continue
        top = str(path[0])
        section = out.get(top)
        if len(path) == 1 or top == "version" or not isinstance(section, dict):
            out.pop(top, None)
            continue
        name = str(path[1])
        entry = section.get(name)
        if path[0] == "settings":
            section.pop(name, None)
        elif len(path) >= 3 and not whole and isinstance(entry, dict):
            entry.pop(str(path[2]), None)
        elif name in section:
            section.pop(name)
            if path[0] in NODE_SECTIONS:
                invalid.add(name)
    return out

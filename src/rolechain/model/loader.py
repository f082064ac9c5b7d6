"""Loading chain files: YAML -> validated :class:`~rolechain.model.chain.Chain`.

:func:`load` reads one file, every ``*.yaml``/``*.yml`` file of a directory, or several
paths, merges them into one namespace, validates the result with the pydantic models of
:mod:`rolechain.model.schema`, then runs the whole-file checks of
:mod:`rolechain.model.references`. It reports every problem at once, each at
``file:line:column``, in one :class:`~rolechain.errors.ChainFileError`.

The steps live in their own modules: :mod:`rolechain.model.reading` (which files a path
names; each file read safely: no FIFO or device, at most :data:`MAX_FILE_BYTES`),
:mod:`rolechain.model.yamlsource` (YAML to data and locations; caps on depth, alias
expansion and number sizes), :mod:`rolechain.model.merging` (several files into one
namespace) and :mod:`rolechain.model.validation` (the pydantic models, and their errors
translated into located problems). Planning (hops, durations, chaining) is not done here:
the planner raises :class:`~rolechain.errors.PlanError` for that.

A file (or chain) that declares nothing is a problem unless ``allow_empty``. At most
:data:`MAX_PROBLEMS` problems are listed, then a count of the rest.

Problems (:class:`~rolechain.errors.Problem`) print as ``file:line:column: message``
(see :mod:`rolechain.model.validation` for how they are worded and located). Examples::

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
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

from rolechain.errors import ChainFileError, Location, Problem, redact
from rolechain.model.chain import Chain
from rolechain.model.merging import NODE_SECTIONS, SECTIONS, merge
from rolechain.model.reading import (
    MAX_FILE_BYTES,
    PathLike,
    collect_files,
    read_chain_text,
    shown_name,
)
from rolechain.model.references import check
from rolechain.model.validation import validate
from rolechain.model.yamlsource import Document, SourceMap, dotted, read_document

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_PROBLEMS",
    "NODE_SECTIONS",
    "SECTIONS",
    "PathLike",
    "UnsetEnv",
    "load",
    "loads",
    "merge",
    "read_chain_text",
    "validate",
]

UnsetEnv = Literal["error", "placeholder"]

MAX_PROBLEMS = 1000


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
    files, problems = collect_files(paths)
    documents: list[Document] = []
    placeholders = unset_env == "placeholder"
    with _collector_paused():
        for file in files:
            text, problem = read_chain_text(file)
            if problem is not None:
                problems.append(problem)
                continue
            assert text is not None
            shown = shown_name(file)
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

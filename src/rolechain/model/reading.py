"""Reading a chain file safely: which files a path names, and each file's text.

Hostile input gets a located problem in bounded time and memory: a path that is not a
regular file (a FIFO, a device such as ``/dev/zero``, or a symlink to one) is refused
before it is opened, a file is opened without blocking and at most :data:`MAX_FILE_BYTES`
are read. Files of a directory are read in name order; subdirectories and hidden files
(names starting with ``.``) are skipped, and a ``.yaml`` symlink to a missing file is a
problem.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from rolechain.errors import Location, Problem, escape_controls

PathLike = str | os.PathLike[str]

MAX_FILE_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 1 << 20


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def shown_name(file: str) -> str:
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
        where = Location(shown_name(file), line, column) if line else None
        return None, Problem(f"{shown_name(file)}: {message}", where)

    try:
        info = os.stat(file)
    except FileNotFoundError:
        if os.path.islink(file):
            return refuse(f"a symlink to {shown_name(os.readlink(file))!r}, which does not exist")
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


def collect_files(paths: PathLike | Sequence[PathLike]) -> tuple[list[str], list[Problem]]:
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
                            f"{shown_name(os.path.join(name, entry.name))}: a symlink to "
                            f"{shown_name(os.readlink(entry))!r}, which does not exist; the chain "
                            "would miss this file"
                        )
                    )
                    continue
                candidates.append(os.path.join(name, entry.name))
            if not candidates and not dangling:
                problems.append(
                    Problem(f"{shown_name(name)}: no chain files (*.yaml, *.yml) in directory")
                )
        elif path.exists() or path.is_symlink():
            candidates = [name]
        else:
            problems.append(Problem(f"{shown_name(name)}: no such file or directory"))
            candidates = []
        for candidate in candidates:
            resolved = Path(candidate).resolve()
            if resolved not in seen:
                seen.add(resolved)
                files.append(candidate)
    return files, problems

"""Files only their owner may read: the run store, its lock, what the scheduler writes.

They hold task output and who ran what, so a file rolechain creates is 0600 and a directory
it creates is 0700; a file that exists keeps the mode its owner gave it. None is ever
opened through a symbolic link: a link planted where the store or its lock will be would
make rolechain truncate or write the file it points to, with rolechain's rights.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from rolechain.errors import RolechainError

FILE_MODE = 0o600
DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _symlink_error(path: Path) -> RolechainError:
    return RolechainError(
        f"{path} is a symbolic link; rolechain does not write through links",
        hint="give the path of the real file (or remove the link)",
    )


def private_parent(path: Path) -> None:
    """Make ``path``'s missing parent directories, 0700 each (existing ones are kept)."""
    parent = path.parent
    missing: list[Path] = []
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        directory.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """A descriptor on ``path`` (created 0600 when missing), never through a symlink."""
    private_parent(path)
    try:
        return os.open(path, flags | os.O_CREAT | _NOFOLLOW, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (path.is_symlink()):
            raise _symlink_error(path) from None
        raise


def ensure_private(path: Path) -> None:
    """Create ``path`` empty and 0600 if it does not exist; refuse a symlink there."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        os.close(open_private(path, os.O_WRONLY))
        return
    if stat.S_ISLNK(info.st_mode):
        raise _symlink_error(path)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``: a new file is 0600 (its missing directories 0700), an
    existing one keeps its mode; a symlink at ``path`` is refused, never followed."""
    fd = open_private(path, os.O_WRONLY)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.truncate(0)
        handle.write(text)

"""Where an exported schedule runs: the paths ``schedule export`` writes into the files it
generates, looked up on the exporting machine (the rendering itself, in
:mod:`rolechain.scheduler.export`, is pure).

- cron and systemd start ``rolechain`` from a fixed directory with a minimal PATH, and
  systemd wants ``ExecStart=`` to be an absolute path: :func:`default_command` finds the
  executable running the export.
- GitHub Actions runs in a checkout of the repository that holds the chain file:
  :func:`repository_path` names the chain file from the repository's root, and
  :func:`installs_rolechain` tells whether ``pip install .`` there installs rolechain
  (rolechain is not on PyPI).
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

from rolechain.errors import UsageError


def default_image() -> str:
    """The tag ``make image`` gives the image: ``rolechain:VERSION``."""
    from rolechain import __version__

    return f"rolechain:{__version__}"


def default_command() -> str:
    """The absolute path of the ``rolechain`` executable running this export: ``argv[0]``
    when it is ``rolechain``, else the one on PATH, else the one beside this Python.

    Raises UsageError when there is none (``python -m rolechain`` without a script).
    """
    candidates: list[str | None] = []
    if Path(sys.argv[0]).name == "rolechain":
        candidates.append(sys.argv[0] if os.sep in sys.argv[0] else shutil.which(sys.argv[0]))
    candidates.append(shutil.which("rolechain"))
    candidates.append(str(Path(sys.executable).parent / "rolechain"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return os.path.abspath(candidate)
    raise UsageError(
        "cannot tell where the rolechain executable is",
        hint="pass --command /absolute/path/to/rolechain (as it is installed where the "
        "exported file runs)",
    )


def repository_root(path: Path) -> Path | None:
    """The nearest directory at or above ``path`` that holds ``.git`` (a directory, or a
    file in a worktree or submodule), or None."""
    start = path.resolve()
    for folder in [start, *start.parents] if start.is_dir() else start.parents:
        if (folder / ".git").exists():
            return folder
    return None


def repository_path(path: Path) -> tuple[str, Path, bool]:
    """``path`` as a workflow in its repository names it: (relative path from the root,
    the root, whether a git repository was found). Outside a repository, the current
    directory stands for the root.

    Raises UsageError when ``path`` is outside the root.
    """
    root = repository_root(path)
    found = root is not None
    base = root if root is not None else Path.cwd().resolve()
    try:
        relative = path.resolve().relative_to(base)
    except ValueError:
        where = f"the repository {base}" if found else "a git repository or the current directory"
        raise UsageError(
            f"{path} is not inside {where}",
            hint="GitHub Actions runs the workflow in a checkout of the repository that "
            "holds the chain file: keep the chain file in it and export from its root",
        ) from None
    return relative.as_posix(), base, found


def installs_rolechain(root: Path) -> bool:
    """Whether ``pip install .`` in ``root`` installs rolechain: its pyproject.toml is
    rolechain's (the repository is rolechain's source or a fork of it)."""
    try:
        with (root / "pyproject.toml").open("rb") as handle:
            project = tomllib.load(handle).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == "rolechain"

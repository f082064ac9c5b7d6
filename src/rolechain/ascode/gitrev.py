"""Chain files as they were at a git revision, for ``rolechain review --git BASE``."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rolechain.errors import UsageError

GIT_TIMEOUT = 60


def _git(*args: str, cwd: Path) -> bytes:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise UsageError("--git needs git, which is not installed") from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"git {args[0]} took more than {GIT_TIMEOUT} s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(f"git {args[0]} failed: {message[-1] if message else done.returncode}")
    return done.stdout


@contextmanager
def at_revision(base: str, path: Path) -> Iterator[Path | None]:
    """``path`` (a chain file or directory of the working tree) as it is at revision
    ``base``, extracted with ``git archive`` into a temporary directory; None when it did
    not exist there (a chain file the change adds)."""
    if base.startswith("-"):
        raise UsageError(f"--git {base!r}: a revision cannot start with '-'")
    here = path.resolve()
    start = here if here.is_dir() else here.parent
    root = Path(_git("rev-parse", "--show-toplevel", cwd=start).decode().strip())
    try:
        relative = here.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{path} is not inside the git repository at {root}") from None
    _git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", cwd=root)
    listed = _git("ls-tree", "-r", "--name-only", base, "--", relative, cwd=root)
    with tempfile.TemporaryDirectory(prefix="rolechain-review-") as scratch:
        if not listed.strip():
            yield None
            return
        archive = _git("archive", "--format=tar", base, "--", relative, cwd=root)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(scratch, filter="data")
        yield Path(scratch) / relative

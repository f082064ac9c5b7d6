"""A throwaway PostgreSQL server for the tests and benchmarks, from the machine's binaries.

``PostgresServer`` runs ``initdb`` into a fresh directory under the system's temporary
directory and ``pg_ctl start`` on 127.0.0.1 and a free port, as the ``postgres`` user when
the caller is root (PostgreSQL refuses to run as root). Connections over its Unix socket are
trusted (the fixtures use them to create databases); connections over TCP, which rolechain
makes, need the password, so a test can check that the password in a URL is never printed.

The binaries come from ``$ROLECHAIN_PG_BINDIR``, ``pg_config --bindir`` or
``/usr/lib/postgresql/*/bin`` (Debian's layout), whichever has ``initdb`` and ``pg_ctl``.

Durability is off by default (``fsync=off``): a test database that a power cut would lose
costs nothing. Benchmarks pass their own settings.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when PostgreSQL is absent."""
    candidates: list[Path] = []
    if os.environ.get("ROLECHAIN_PG_BINDIR"):
        candidates.append(Path(os.environ["ROLECHAIN_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found:
            candidates.append(Path(found))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One server in its own directory; ``start``, ``create_database``, ``stop``."""

    def __init__(self, binaries: Path, settings: Mapping[str, str] | None = None) -> None:
        self.bin = binaries
        self.settings = dict(FAST if settings is None else settings)
        self.password = "pg-" + secrets.token_hex(12)
        self.port = 0
        self.root: Path | None = None
        self._names = itertools.count(1)
        self._user: str | None = "postgres" if os.geteuid() == 0 else None

    @property
    def socket_dir(self) -> str:
        assert self.root is not None
        return str(self.root)

    def _run(self, *argv: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            user=self._user,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout

    def start(self) -> PostgresServer:
        self.root = Path(tempfile.mkdtemp(prefix="rolechain-pg-"))
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        secret = self.root / "pwfile"
        secret.write_text(self.password + "\n")
        if self._user is not None:
            os.chown(secret, pwd.getpwnam(self._user).pw_uid, -1)
        self._run(
            "initdb",
            "--pgdata",
            str(self.root / "data"),
            "--username",
            "postgres",
            f"--pwfile={secret}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        secret.unlink()
        options = [f"-p {self.port_or_pick()}", f"-k {self.root}", "-c listen_addresses=127.0.0.1"]
        options += [f"-c {key}={value}" for key, value in self.settings.items()]
        self._run(
            "pg_ctl",
            "--pgdata",
            str(self.root / "data"),
            "--log",
            str(self.root / "server.log"),
            "--wait",
            "--timeout=120",
            "-o",
            " ".join(options),
            "start",
        )
        atexit.register(self.stop)
        return self

    def port_or_pick(self) -> int:
        if not self.port:
            self.port = _free_port()
        return self.port

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; the output, unaligned."""
        return self._run(
            "psql",
            "-h",
            self.socket_dir,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
            timeout=60,
        )

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL (with the password)."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.root is None:
            return
        root, self.root = self.root, None
        if (root / "data" / "postmaster.pid").exists():
            subprocess.run(
                [
                    str(self.bin / "pg_ctl"),
                    "--pgdata",
                    str(root / "data"),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                check=False,
                timeout=60,
                user=self._user,
                cwd=root,
            )
        shutil.rmtree(root, ignore_errors=True)

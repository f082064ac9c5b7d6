"""Shared fixtures: a moto server on loopback, reached over HTTP like real AWS.

``moto_server`` starts moto's ThreadedMotoServer once per session on 127.0.0.1 and a free
port. ``aws`` (per test) resets moto's state through its reset API and points boto3 at the
server with the standard ``AWS_ENDPOINT_URL`` and fake keys (moto's default account
123456789012). MOTO_ACCOUNT_ID is never set: moto routes each call to the account of the
credentials that sign it.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Test packages share helpers (``aws.fakes``: fake clock, fake assumer, plans, fault
# injection); pytest does not put tests/ itself on sys.path, so do it here.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

# A suite started in the background (`nohup make test &`, some CI runners) inherits SIGINT
# ignored, and so would every child it starts: the Ctrl-C tests need the default action.
signal.signal(signal.SIGINT, signal.default_int_handler)

# `make test` runs the suite on pytest-xdist workers with `--dist loadgroup`, scheduled in
# groups (pytest_xdist_make_scheduler below): each test module is one group (its
# module-scoped servers start once, on one worker); the Dask tests share one group (one
# LocalCluster for the package); the tests that drive real processes with real signals
# share another, so they run one after the other on one worker, never two at once.
# (xdist's own `xdist_group` marks no longer group anything on pytest 9.2: it marks the
# groups in node ids that pytest no longer takes; pytest-xdist issue 1386.)
SIGNAL_TESTS = frozenset(
    {
        "cli/test_signals.py",
        "cli/test_crash_resume.py",
        "credentials/test_end_to_end.py",
        "sandbox/test_cli_sandboxing.py",
        "scheduler/test_cli.py",
        "scheduler/test_cli_alerts.py",
    }
)


def xdist_group_of(nodeid: str) -> str:
    """The group of a test, from its node id (``tests/cli/test_signals.py::test_x``)."""
    path = nodeid.split("::", 1)[0]
    relative = path.removeprefix("tests/")
    if relative in SIGNAL_TESTS:
        return "signals"
    if relative.startswith("dask_engine/"):
        return "dask"
    return path


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist is a dev dependency: without it, no workers
    pass
else:

    class GroupScheduling(LoadScopeScheduling):
        """Whole groups (:func:`xdist_group_of`) to one worker each, as they free up."""

        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    @pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's (-p no:xdist: none)
    def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
        if config.getvalue("dist") != "loadgroup":
            return None
        return GroupScheduling(config, log)


DEFAULT_ACCOUNT = "123456789012"
FAKE_KEY = "AKIAIOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example key


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class MotoServer:
    endpoint: str

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    from moto.server import ThreadedMotoServer

    assert "MOTO_ACCOUNT_ID" not in os.environ, "MOTO_ACCOUNT_ID breaks per-account routing"
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> MotoServer:
    """A clean moto, and an environment whose AWS SDK calls all go to it."""
    moto_server.reset()
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_server


@pytest.fixture(autouse=True)
def _forget_env_values() -> Iterator[None]:
    """Values read from ${env:} are redacted process-wide from then on; start each test
    with none, so one test's environment does not change another's messages."""
    from rolechain.errors import forget_env_values

    forget_env_values()
    yield
    forget_env_values()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A throwaway PostgreSQL server for the session (see tests/postgres.py).

    Without PostgreSQL on the machine the tests that need it are skipped, except under
    ``CI=true``, where a missing server fails them: CI must run them.
    """
    import postgres

    found = postgres.bindir()
    if found is None:
        message = "PostgreSQL's initdb/pg_ctl not found (pg_config --bindir, /usr/lib/postgresql)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true needs them")
        pytest.skip(message)
    server = postgres.PostgresServer(found).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: object) -> str:
    """The URL (password included) of a fresh, empty database on the session's server."""
    import postgres

    assert isinstance(postgres_server, postgres.PostgresServer)
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str | Path]:
    """Where new stores live, once per backend: each call gives a new one, a SQLite file
    under the test's directory or a fresh PostgreSQL database (its URL, password included).
    Every store test takes this or :func:`store_url`, so each runs on both backends."""
    if request.param == "sqlite":
        names = itertools.count(1)
        return lambda: tmp_path / f"runs-{next(names)}.db"
    server = request.getfixturevalue("postgres_server")
    return server.create_database  # type: ignore[no-any-return]


@pytest.fixture
def store_url(make_store: Callable[[], str | Path]) -> str | Path:
    """One new store (see :func:`make_store`)."""
    return make_store()


@pytest.fixture
def backend(store_url: str | Path) -> str:
    """The backend of :func:`store_url`: ``sqlite`` or ``postgresql``."""
    return "postgresql" if str(store_url).startswith("postgresql://") else "sqlite"

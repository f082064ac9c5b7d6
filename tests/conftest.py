"""Shared fixtures: a moto server on loopback, reached over HTTP like real AWS.

``moto_server`` starts moto's ThreadedMotoServer once per session on 127.0.0.1 and a free
port. ``aws`` (per test) resets moto's state through its reset API and points boto3 at the
server with the standard ``AWS_ENDPOINT_URL`` and fake keys (moto's default account
123456789012). MOTO_ACCOUNT_ID is never set: moto routes each call to the account of the
credentials that sign it.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterator
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

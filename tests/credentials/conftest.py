"""A moto server on 127.0.0.1 with a counter of STS actions in front of it.

The counter is WSGI middleware around moto's own application: it reads the form body of
each request for ``Action=...`` (STS speaks the query protocol), counts it, and hands the
body on unchanged. Tests assert exact AssumeRole counts with it, including for calls made
by other processes (the ``rolechain`` console script run as credential_process).
"""

from __future__ import annotations

import io
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


class CountingApp:
    """Counts ``Action`` parameters of requests, then calls moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.actions: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        params = parse_qs(body.decode("utf-8", "replace")) if body else {}
        params.update(parse_qs(environ.get("QUERY_STRING", "")))
        for action in params.get("Action", []):
            with self._lock:
                self.actions[action] += 1
        return self.app(environ, start_response)

    def count(self, action: str) -> int:
        with self._lock:
            return self.actions[action]

    def reset(self) -> None:
        with self._lock:
            self.actions.clear()


class MotoServer:
    """moto's application behind :class:`CountingApp`, on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.app = CountingApp(DomainDispatcherApplication(create_backend_app))
        self.server = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=MotoRequestHandler
        )
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def assume_calls(self) -> int:
        return self.app.count("AssumeRole")


@pytest.fixture(scope="session")
def counting_moto_server() -> Iterator[MotoServer]:
    """Our own server (not tests/conftest.py's ``moto_server``): the AssumeRole counts need
    the counting middleware in front of moto, and calls come from other processes too."""
    server = MotoServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.thread.join(timeout=5)


@pytest.fixture
def aws_env(
    counting_moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> MotoServer:
    """Environment for code under test: the moto endpoint and fake user keys, nothing real."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "ROLECHAIN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", counting_moto_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAROLECHAINTEST01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("ROLECHAIN_CACHE_DIR", str(tmp_path / "rolechain-cache"))
    counting_moto_server.app.reset()
    return counting_moto_server


@pytest.fixture
def chain_file(tmp_path: Any) -> Any:
    """``test_process.CHAIN`` written to a file."""
    from .test_process import CHAIN

    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    return path

"""Webhook alerts never carry their headers anywhere but the URL the chain file names."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from rolechain.errors import ChainFileError
from rolechain.model.schema import Alert
from rolechain.scheduler.alerts import AlertSender
from rolechain.scheduler.logs import EventLog
from scheduler.fakes import chain_with

TOKEN = "Bearer s3cr3t-t0ken"
MARKER = "body-marker-4242"


class _Listener:
    """A loopback HTTP server that records what it got and answers ``status``."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._record()

            def do_GET(self) -> None:
                self._record()

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                listener.received.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length),
                    }
                )
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[_Listener]:
    listener = _Listener()
    yield listener
    listener.close()


def _send(alert: Alert) -> tuple[list[dict[str, Any]], str]:
    stream = io.StringIO()
    log = EventLog(stream, fmt="json")
    log.lines = []
    sender = AlertSender(log, synchronous=True, backoff=0.0)
    sender.send("failure", alert, {"job": "j", "run_id": "r1", "note": MARKER})
    return log.lines, stream.getvalue()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failure_and_is_not_followed(status: int, elsewhere: _Listener) -> None:
    redirector = _Listener(status, location=elsewhere.url)
    try:
        alert = Alert(webhook=redirector.url, headers={"Authorization": TOKEN}, retries=2)
        lines, text = _send(alert)
    finally:
        redirector.close()
    assert len(redirector.received) == 1  # a 3xx is not retried either
    assert redirector.received[0]["headers"]["Authorization"] == TOKEN
    assert elsewhere.received == []  # the second listener got nothing
    (event,) = lines
    assert event["event"] == "alert_failed"
    assert event["status"] == status
    assert event["location"] == elsewhere.url
    assert "redirect" in event["reason"]
    assert "s3cr3t" not in text
    assert MARKER not in text


def test_delivery_logs_neither_body_nor_headers(elsewhere: _Listener) -> None:
    lines, text = _send(Alert(webhook=elsewhere.url, headers={"Authorization": TOKEN}))
    assert [line["event"] for line in lines] == ["alert_sent"]
    assert elsewhere.received[0]["headers"]["Authorization"] == TOKEN
    assert MARKER.encode() in elsewhere.received[0]["body"]
    assert "s3cr3t" not in text
    assert MARKER not in text
    refusing = _Listener(403)
    try:
        lines, text = _send(Alert(webhook=refusing.url, headers={"X-Token": TOKEN}))
    finally:
        refusing.close()
    assert [line["event"] for line in lines] == ["alert_failed"]
    assert "s3cr3t" not in text
    assert MARKER not in text


@pytest.mark.parametrize(
    "url",
    ["http://hooks.example.com/x", "http://127.evil.example/x", "http://10.0.0.1/x"],
)
def test_headers_need_an_https_webhook(url: str) -> None:
    with pytest.raises(ChainFileError) as caught:
        chain_with(
            "schedule: '0 * * * *', "
            f"on_failure: {{webhook: '{url}', headers: {{Authorization: 'Bearer x'}}}}"
        )
    (problem,) = caught.value.problems
    assert "https://" in problem.message
    assert problem.location is not None
    assert problem.location.line > 0
    assert "headers" in str(problem)


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/x", "http://127.0.0.1:8080/x", "http://localhost/x",
     "http://[::1]/x"],
)  # fmt: skip
def test_https_or_loopback_webhooks_may_have_headers(url: str) -> None:
    chain = chain_with(
        f"schedule: '0 * * * *', on_failure: {{webhook: '{url}', headers: {{A: 'x y'}}}}"
    )
    assert json.dumps(chain.model.jobs["j"].on_failure.model_dump())  # type: ignore[union-attr]
    # no headers: fine
    chain_with("schedule: '0 * * * *', on_failure: {webhook: 'http://hooks.example.com/x'}")

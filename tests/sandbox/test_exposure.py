"""A web page in the user's browser must not read or reset the sandbox.

moto's server answers every request with ``Access-Control-Allow-Origin`` echoing the
page's origin, and its admin API (``/moto-api/``) dumps the whole state (trust policies
with their ExternalIds) or resets it. The sandbox strips CORS headers, refuses preflights,
requires its admin token on ``/moto-api/`` and answers loopback host names only.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from rolechain.model.loader import load
from rolechain.sandbox import SandboxInfo, sandbox
from rolechain.sandbox.middleware import ADMIN_HEADER

from .conftest import Clients

VENDOR = Path(__file__).resolve().parents[2] / "chains" / "vendor-access.yaml"
ORIGIN = "https://evil.example"


@pytest.fixture(scope="module")
def running() -> Iterator[SandboxInfo]:
    chain = load(VENDOR, env={"VENDOR_EXTERNAL_ID": "vendor-secret-4242"})
    with sandbox(chain) as info:
        yield info


def request(
    info: SandboxInfo, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    address = urlsplit(info.endpoint)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=30)
    try:
        connection.request(method, path, headers={"Origin": ORIGIN, **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def cors(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("access-control-")}


@pytest.mark.parametrize("path", ["/moto-api/data.json", "/moto-api/", "/moto-api/reset"])
def test_admin_api_needs_the_token(running: SandboxInfo, path: str) -> None:
    status, headers, body = request(running, "GET" if "reset" not in path else "POST", path)
    assert status == 403
    assert cors(headers) == {}
    assert b"vendor-secret-4242" not in body


def test_reset_without_the_token_changes_nothing(running: SandboxInfo) -> None:
    status, _, _ = request(running, "POST", "/moto-api/reset")
    assert status == 403
    sts = Clients(running.endpoint).client("sts", running.env)
    assert sts.get_caller_identity()["Arn"] == "arn:aws:iam::111111111111:user/vendor-ops"


def test_admin_api_works_with_the_token_and_still_sends_no_cors(running: SandboxInfo) -> None:
    status, headers, body = request(
        running, "GET", "/moto-api/data.json", {ADMIN_HEADER: running.admin_token}
    )
    assert status == 200
    assert cors(headers) == {}
    assert body.startswith(b"{")
    status, _, _ = request(running, "GET", "/moto-api/data.json", {ADMIN_HEADER: "guess"})
    assert status == 403


def test_no_cors_headers_and_no_preflight(running: SandboxInfo) -> None:
    status, headers, _ = request(running, "GET", "/")
    assert cors(headers) == {}
    status, headers, _ = request(
        running,
        "OPTIONS",
        "/",
        {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x"},
    )
    assert status == 403
    assert cors(headers) == {}


def test_signed_requests_carry_no_cors_headers(running: SandboxInfo) -> None:
    sts = Clients(running.endpoint).client("sts", running.env)
    seen: list[dict[str, str]] = []
    sts.meta.events.register(
        "after-call.sts.GetCallerIdentity",
        lambda http_response, **_: seen.append(dict(http_response.headers)),
    )
    sts.meta.events.register(
        "before-sign.sts.*", lambda request, **_: request.headers.add_header("Origin", ORIGIN)
    )
    sts.get_caller_identity()
    assert seen
    assert cors(seen[0]) == {}


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example"])
def test_foreign_host_names_are_refused(running: SandboxInfo, host: str) -> None:
    status, _, body = request(running, "GET", "/moto-api/data.json", {"Host": host})
    assert status == 403
    assert b"loopback" in body


def test_loopback_host_names_are_served(running: SandboxInfo) -> None:
    port = urlsplit(running.endpoint).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        status, _, _ = request(
            running, "GET", "/moto-api/data.json", {"Host": host, ADMIN_HEADER: running.admin_token}
        )
        assert status == 200, host

"""A target's credentials served to a child process through the container-credentials
endpoint every AWS SDK reads (``rolechain exec --server``), so a command that runs for
hours keeps getting fresh credentials.

The child gets ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (``http://127.0.0.1:PORT/<random
path>``; SDKs accept plain http on loopback only) and ``AWS_CONTAINER_AUTHORIZATION_TOKEN``
(a random token the SDK sends as the ``Authorization`` header), and none of the
``AWS_ACCESS_KEY_ID``-style variables, which SDKs would read first. A request without the
token, with another token, or for another path is refused (401 / 404) and gets nothing.
Each answer is the target's credentials as the SDK expects them (``AccessKeyId``,
``SecretAccessKey``, ``Token``, ``Expiration``); SDKs ask again before ``Expiration``
(botocore from 15 minutes before), and the server hands out credentials that stay valid
past that window, assuming the target's path again (through the credential cache) when
the ones it has would not.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rolechain.aws.environment import CONFLICTING_VARIABLES
from rolechain.credentials.process import TargetCredentials

# Hand out credentials that outlive botocore's advisory refresh window (15 minutes) by a
# minute, so an SDK does not come back at once.
REFRESH_MARGIN = 16 * 60
# Credentials just obtained are handed out as they are, even when their whole session is
# shorter than the margin (a 15-minute role): no AssumeRole per request.
REUSE_FOR = 30.0
SERVED_VARIABLES = (
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)
KEY_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class RefreshingCredentials:
    """The target's current credentials, obtained again through ``resolve(at_least)`` when
    they would expire within :data:`REFRESH_MARGIN` seconds."""

    def __init__(
        self,
        resolve: Callable[[float], TargetCredentials],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._resolve = resolve
        self._now = now
        self._lock = threading.Lock()
        self._current: TargetCredentials | None = None
        self._obtained: datetime | None = None
        self.resolved = 0  # how many times credentials were obtained

    def get(self) -> TargetCredentials:
        with self._lock:
            now = self._now()
            current = self._current
            fresh = (
                self._obtained is not None and (now - self._obtained).total_seconds() < REUSE_FOR
            )
            if current is None or (current.remaining(now) < REFRESH_MARGIN and not fresh):
                current = self._resolve(REFRESH_MARGIN)
                self._current, self._obtained = current, now
                self.resolved += 1
            return current


def container_document(creds: TargetCredentials) -> dict[str, str]:
    """The JSON an SDK's container credential provider reads."""
    return {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token,
        "Expiration": creds.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "RoleArn": creds.role_arn,
    }


@dataclass(frozen=True)
class Served:
    """Where the credentials are served: the URI and token to give the child."""

    uri: str
    token: str

    def environment(self, base: dict[str, str], region: str | None) -> dict[str, str]:
        """``base`` for a child that gets its credentials from the server: every variable
        that would make an SDK pick others removed (keys first in the SDKs' order)."""
        removed = {*CONFLICTING_VARIABLES, *KEY_VARIABLES}
        env = {k: v for k, v in base.items() if k not in removed}
        env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = self.uri
        env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self.token
        if region:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
        return env


def _handler(
    source: RefreshingCredentials, path: str, token: str, errors: list[BaseException]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "rolechain"
        sys_version = ""

        def do_GET(self) -> None:
            offered = self.headers.get("Authorization", "")
            if not secrets.compare_digest(offered.encode(), token.encode()):
                self._reply(401, {"message": "a valid authorization token is required"})
                return
            if self.path != path:
                self._reply(404, {"message": "not found"})
                return
            try:
                creds = source.get()
            except Exception as exc:  # the SDK sees a 500; the command line says why
                errors.append(exc)
                self._reply(500, {"message": "rolechain could not get the credentials"})
                return
            self._reply(200, container_document(creds))

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # nothing about requests is printed (the CLI is the only place that prints)

    return Handler


@contextmanager
def serve_credentials(
    source: RefreshingCredentials, errors: list[BaseException] | None = None
) -> Iterator[Served]:
    """Serve ``source`` on a free loopback port until the block ends."""
    path = "/" + secrets.token_urlsafe(16)
    token = secrets.token_urlsafe(32)
    handler = _handler(source, path, token, errors if errors is not None else [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="rolechain-credentials",
                              daemon=True)  # fmt: skip
    thread.start()
    try:
        port = server.server_address[1]
        yield Served(f"http://127.0.0.1:{port}{path}", token)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""The AWS sign-in federation endpoint, as the sandbox answers it (``/federation``).

``Action=getSigninToken`` takes ``Session`` (JSON of ``sessionId``, ``sessionKey``,
``sessionToken``: a role session's credentials) and an optional ``SessionDuration`` and
answers ``{"SigninToken": ...}``; ``Action=login`` with that token redirects to
``Destination``. Enforced as AWS documents it (IAM user guide, "Enable custom identity
broker access to the AWS console"): only temporary credentials of a role session that the
sandbox issued and that have not expired; ``SessionDuration`` between 900 and 43200 seconds,
and refused for credentials from role chaining; a sign-in token is good for 15 minutes.
"""

from __future__ import annotations

import json
import secrets
import threading

from rolechain.sandbox.responses import Rendered
from rolechain.sandbox.state import SandboxState

FEDERATION_PATH = "/federation"
TOKEN_SECONDS = 15 * 60
MIN_DURATION, MAX_DURATION = 900, 43200


def _json(status: str, body: dict[str, str]) -> Rendered:
    return Rendered(status, [("Content-Type", "application/json")], json.dumps(body).encode())


def _bad(message: str) -> Rendered:
    return _json("400 Bad Request", {"message": message})


class Federation:
    """Sign-in tokens issued by this sandbox (token -> (console session ARN, expiry))."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def answer(self, params: dict[str, str]) -> Rendered:
        action = params.get("Action")
        if action == "getSigninToken":
            return self._signin_token(params)
        if action == "login":
            return self._login(params)
        return _bad(f"unknown Action {action!r}; valid: getSigninToken, login")

    def _signin_token(self, params: dict[str, str]) -> Rendered:
        try:
            session = json.loads(params.get("Session", ""))
            key, token = session["sessionId"], session["sessionToken"]
            if not session.get("sessionKey"):
                raise KeyError("sessionKey")
        except (ValueError, KeyError, TypeError):
            return _bad("Session must be JSON with sessionId, sessionKey and sessionToken")
        identity = self.state.identity(str(key))
        if identity is None or not identity.token_matches(str(token)):
            return _bad("the session credentials are not valid")
        if identity.kind != "session":
            return _bad("the federation endpoint takes temporary credentials of a role session")
        if identity.expired(self.state.now()):
            return _bad("the session credentials have expired")
        duration = params.get("SessionDuration")
        if duration is not None:
            if identity.chained:
                return _bad(
                    "SessionDuration cannot be used with credentials obtained by role chaining"
                )
            if not duration.isdigit() or not MIN_DURATION <= int(duration) <= MAX_DURATION:
                return _bad(f"SessionDuration must be {MIN_DURATION} to {MAX_DURATION} seconds")
        signin = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[signin] = (identity.arn, self.state.now() + TOKEN_SECONDS)
        return _json("200 OK", {"SigninToken": signin})

    def _login(self, params: dict[str, str]) -> Rendered:
        with self._lock:
            found = self._tokens.get(params.get("SigninToken", ""))
        if found is None or found[1] <= self.state.now():
            return _bad("the sign-in token is not valid or has expired")
        destination = params.get("Destination", "")
        if not destination.startswith("https://"):
            return _bad("Destination must be an https:// console URL")
        return Rendered("302 Found", [("Location", destination)], b"")

"""Helpers for executor tests against the moto server."""

from __future__ import annotations

import threading
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import botocore.session

from aws.fakes import FAKE_KEY, FAKE_SECRET, Faults, error_response
from rolechain.aws.session import AwsSessions, static_credentials

ROOT = static_credentials(FAKE_KEY, FAKE_SECRET)


def assume(sessions: AwsSessions, account: str, role: str = "setup") -> Any:
    sts = sessions.client("sts", "us-east-1", ROOT)
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="setup")[
        "Credentials"
    ]
    return static_credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])


def create_buckets(accounts: list[str], per_account: Any) -> dict[str, list[str]]:
    """Buckets named b-<account>-<n>, created with each account's own credentials."""
    sessions = AwsSessions()
    made: dict[str, list[str]] = {}
    for i, account in enumerate(accounts):
        s3 = sessions.client("s3", "us-east-1", assume(sessions, account))
        names = [f"b-{account}-{n}" for n in range(per_account(i))]
        for name in names:
            s3.create_bucket(Bucket=name)
        made[account] = sorted(names)
    return made


def private_sessions(faults: Faults | None = None, concurrency: int = 8) -> AwsSessions:
    session = botocore.session.Session()
    if faults is not None:
        faults.install(session)
    return AwsSessions(botocore_session=session, concurrency=concurrency)


class ExpiryEnforcer:
    """What moto does not do: reject requests signed with expired session credentials.

    It records each AssumeRole response's lifetime (Expiration - Date) from the fake clock's
    now, and answers later requests signed with that key after that instant with
    ExpiredToken, as STS and every service would.
    """

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.expiry: dict[str, datetime] = {}
        self.rejected = 0
        self.assume_calls = 0
        self._lock = threading.Lock()

    def install(self, session: botocore.session.Session) -> None:
        session.register("after-call.sts.AssumeRole", self._after_assume)
        session.register("before-send", self._before_send)

    def _after_assume(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        creds = parsed.get("Credentials")
        if not creds:
            return
        server_now = parsedate_to_datetime(http_response.headers["Date"])
        lifetime = creds["Expiration"] - server_now
        with self._lock:
            self.expiry[creds["AccessKeyId"]] = self.clock() + lifetime

    def _before_send(self, request: Any, **kwargs: Any) -> Any:
        auth = request.headers.get("Authorization", b"")
        if isinstance(auth, bytes):
            auth = auth.decode()
        key = auth.split("Credential=", 1)[-1].split("/", 1)[0] if "Credential=" in auth else ""
        if str(kwargs.get("event_name", "")).endswith("AssumeRole"):
            with self._lock:
                self.assume_calls += 1
        with self._lock:
            expiry = self.expiry.get(key)
            if expiry is None or self.clock() < expiry:
                return None
            self.rejected += 1
        return error_response(
            request, "ExpiredToken", "The security token included in the request is expired", 400
        )

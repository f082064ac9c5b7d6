"""botocore's private parts rolechain relies on: fails loudly when an upgrade moves them.

Every name :mod:`rolechain.aws.botocore_adapter` reaches must exist, and must still do what
the adapter assumes: botocore refreshes through ``_protected_refresh(is_mandatory=...)``
with the lock held, clients sign with ``_request_signer._credentials`` and send through
``_endpoint.http_session``, and a light session shares the loader and uses the credentials
it was given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import botocore
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.credentials import RefreshableCredentials
from botocore.httpsession import URLLib3Session

from rolechain.aws import botocore_adapter as adapter
from rolechain.aws.session import AwsSessions, static_credentials

from .fakes import FakeClock, _Raw


def test_every_private_name_is_there() -> None:
    assert adapter.problems() == [], (
        f"botocore {botocore.__version__} moved what rolechain.aws.botocore_adapter uses"
    )


class Recorder(adapter.RefreshHooks):
    def __init__(self, clock: FakeClock, lifetime: float = 3600) -> None:
        self.calls: list[tuple[bool, bool]] = []
        self.serial = 0
        super().__init__(
            "AKIDFIRST",
            "secret",
            "token",
            clock() + timedelta(seconds=lifetime),
            self._fetch,
            "test",
            time_fetcher=clock,
            advisory_timeout=900,  # type: ignore[arg-type]
            mandatory_timeout=600,  # type: ignore[arg-type]
        )
        self.clock = clock

    def refresh_locked(self, *, mandatory: bool) -> None:
        self.calls.append((mandatory, self.refresh_lock.locked()))
        self.botocore_refresh(mandatory=mandatory)

    def _fetch(self) -> dict[str, Any]:
        self.serial += 1
        return {
            "access_key": f"AKIDNEW{self.serial}",
            "secret_key": "s",
            "token": "t",
            "expiry_time": (self.clock() + timedelta(hours=1)).isoformat(),
        }


def test_botocore_refreshes_through_the_hook_with_the_lock_held() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    creds = Recorder(clock)
    assert creds.get_frozen_credentials().access_key == "AKIDFIRST"
    assert creds.calls == []  # nowhere near expiry
    assert creds.advisory_window == 900
    assert creds.mandatory_window == 600
    clock.advance(3600 - 800)  # advisory window
    assert creds.seconds_remaining() == 800
    assert creds.current_access_key == "AKIDFIRST"  # reading it never refreshes
    assert creds.get_frozen_credentials().access_key == "AKIDNEW1"
    assert creds.calls == [(False, True)]
    clock.advance(3600 - 300)  # mandatory window
    assert creds.get_frozen_credentials().access_key == "AKIDNEW2"
    assert creds.calls[-1] == (True, True)
    assert creds.current_frozen().access_key == "AKIDNEW2"
    assert creds.expiry_time == clock() + timedelta(hours=1)


def test_force_refresh_skips_a_key_already_replaced() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    creds = Recorder(clock)
    adapter.force_refresh(creds, "AKIDSOMETHINGELSE")
    assert creds.calls == []
    adapter.force_refresh(creds, "AKIDFIRST")
    assert creds.calls == [(True, True)]
    assert creds.current_access_key == "AKIDNEW1"
    # plain botocore credentials (an SSO principal, say) refresh the same way
    plain = RefreshableCredentials(
        "AKIDPLAIN", "s", "t", clock() + timedelta(hours=1), creds._fetch, "test", clock
    )
    adapter.force_refresh(plain, None)
    assert plain.get_frozen_credentials().access_key == "AKIDNEW2"


def test_a_client_signs_with_the_object_it_was_given() -> None:
    session = botocore.session.Session()
    seen: list[str] = []

    def capture(request: Any, **_: Any) -> AWSResponse:
        auth = request.headers["Authorization"]
        seen.append((auth.decode() if isinstance(auth, bytes) else auth).split("Credential=")[1])
        body = (
            b"<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:"
            b"user/x</Arn><UserId>X</UserId><Account>123456789012</Account>"
            b"</GetCallerIdentityResult></GetCallerIdentityResponse>"
        )
        return AWSResponse(request.url, 200, {}, _Raw(body))

    session.register("before-send", capture)
    client = session.create_client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIDCREATED",
        aws_secret_access_key="s",
    )
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    creds = Recorder(clock)
    adapter.sign_with(client, creds)
    assert adapter.signing_credentials(client) is creds
    client.get_caller_identity()
    clock.advance(3600 - 300)  # the next request refreshes, then signs with the new key
    client.get_caller_identity()
    assert [s.split("/")[0] for s in seen] == ["AKIDFIRST", "AKIDNEW1"]


def test_a_light_session_shares_models_and_uses_its_credentials() -> None:
    shared = botocore.session.get_session()
    creds = static_credentials("AKIDLIGHT", "s")
    light = adapter.light_session(shared, creds)
    assert light.get_credentials() is creds
    assert light.get_component("data_loader") is shared.get_component("data_loader")
    # Clients of the boto3 sessions handed to tasks warm their service first, under a lock
    # (botocore's loader is not thread-safe).
    sessions = AwsSessions(botocore_session=shared)
    assert "s3" not in sessions._warmed
    sessions.boto3_session(creds, "eu-west-1").client("s3")
    assert "s3" in sessions._warmed


def _sts_client() -> Any:
    return botocore.session.get_session().create_client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="example",
    )


def test_a_client_has_its_http_session_at_endpoint_http_session() -> None:
    http = adapter.http_session_of(_sts_client())
    assert isinstance(http, URLLib3Session), type(http)
    assert callable(http.send), "URLLib3Session.send(request) is gone"


def test_a_client_sends_through_the_http_session_it_is_given() -> None:
    # botocore's Endpoint._send is what uses endpoint.http_session: a client given another
    # client's session sends on it (a recording session stands in for the network), and
    # still signs with its own keys.
    sent: list[Any] = []

    class Recording(URLLib3Session):
        def send(self, request: Any) -> Any:
            sent.append(request)
            raise RuntimeError("recorded")

    client = _sts_client()
    adapter.use_http_session(client, Recording())
    with pytest.raises(RuntimeError, match="recorded"):
        client.get_caller_identity()
    assert len(sent) == 1, "Endpoint no longer sends through endpoint.http_session"
    assert sent[0].headers["Authorization"].startswith(b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE")

"""The private botocore attributes rolechain relies on are still where it reaches for them.

If one of these fails after a botocore upgrade, fix ``rolechain.aws._botocore`` (and only
it): the message names the attribute that moved.
"""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.httpsession import URLLib3Session

from rolechain.aws._botocore import http_session_of, use_http_session


def _client() -> object:
    return botocore.session.get_session().create_client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="example",
    )


def test_a_client_has_its_http_session_at_endpoint_http_session() -> None:
    client: Any = _client()
    assert hasattr(client, "_endpoint"), "botocore clients no longer have _endpoint"
    assert hasattr(client._endpoint, "http_session"), "client._endpoint.http_session moved"
    http = http_session_of(client)
    assert isinstance(http, URLLib3Session), type(http)
    assert callable(http.send), "URLLib3Session.send(request) is gone"


def test_a_client_sends_through_the_http_session_it_is_given() -> None:
    # botocore's Endpoint._send is what uses endpoint.http_session: a client given another
    # client's session sends on it (a recording session stands in for the network).
    sent: list[Any] = []

    class Recording(URLLib3Session):
        def send(self, request: Any) -> Any:
            sent.append(request)
            raise RuntimeError("recorded")

    client: Any = _client()
    use_http_session(client, Recording())
    with pytest.raises(RuntimeError, match="recorded"):
        client.get_caller_identity()
    assert len(sent) == 1, "Endpoint no longer sends through endpoint.http_session"
    assert sent[0].headers["Authorization"].startswith(b"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE")

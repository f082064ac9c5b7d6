"""Every use of botocore's private attributes, in one small module.

botocore has no public way to reach what is listed here. Each function names what it
needs, and ``tests/aws/test_botocore_adapter.py`` fails loudly, naming the attribute, if a
botocore upgrade moves it, instead of rolechain silently degrading.
"""

from __future__ import annotations

from typing import Any


def http_session_of(client: Any) -> Any:
    """The ``botocore.httpsession.URLLib3Session`` a client sends its requests with (its
    urllib3 connection pools)."""
    return client._endpoint.http_session


def use_http_session(client: Any, http_session: Any) -> None:
    """Make ``client`` send through ``http_session`` (another client's connection pools).

    Requests are still signed per client (SigV4 signs each request, not the connection).
    botocore's documented ``before-send`` event cannot do this: every handler of an event is
    called, so a handler that sends would also send requests that an earlier handler has
    answered (moto's ``mock_aws``, botocore's ``Stubber``), out to the network.
    """
    client._endpoint.http_session = http_session

"""The one place rolechain touches botocore's private attributes.

rolechain relies on these things botocore does not expose publicly:

* the refresh machinery of :class:`~botocore.credentials.RefreshableCredentials`: its lock
  (``_refresh_lock``), the method that refreshes with the lock held
  (``_protected_refresh(is_mandatory=...)``), the current expiry and key without
  triggering a refresh (``_expiry_time``, ``_access_key``, ``_frozen_credentials``), the
  windows (``_advisory_refresh_timeout``, ``_mandatory_refresh_timeout``) and
  ``_seconds_remaining()``;
* a client's request signer credentials (``client._request_signer._credentials``), which we
  point at the refreshable object so a cached client keeps signing with fresh keys;
* a botocore session's credentials slot (``Session._credentials``), to give a light
  session refreshable credentials;
* a session's internal components (``_internal_components``, ``_get_internal_component``),
  to share the parsed models, endpoint data and exception classes between sessions;
* a client's HTTP session (``client._endpoint.http_session``, a ``URLLib3Session`` that
  owns the urllib3 connection pools), so clients of one endpoint share connections;
* the S3 Signature Version 2 signers' clock (``HmacV1Auth._get_date``), which the sandbox
  sets to the request's own ``Date`` (or a presigned URL's ``Expires``) to check a
  signature it did not make;
* and one boto3 hook: ``boto3.Session._setup_loader`` (with ``_session`` and ``_loader``),
  so a boto3 session on a shared loader adds boto3's resource models to it only once.

Everything else in rolechain uses the public names defined here. :func:`problems` lists
what is missing from the installed botocore; ``tests/aws/test_botocore_adapter.py`` fails
loudly when a botocore upgrade moves any of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import botocore
import botocore.session
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials

if TYPE_CHECKING:  # boto3 (and s3transfer under it) is imported only for a python task
    import boto3

__all__ = [
    "RefreshHooks",
    "boto3_session",
    "force_refresh",
    "http_session_of",
    "light_session",
    "problems",
    "sign_with",
    "signing_credentials",
    "use_http_session",
]


class RefreshHooks(RefreshableCredentials):
    """botocore's :class:`RefreshableCredentials` with public names for its private parts.

    botocore calls ``_protected_refresh(is_mandatory)`` with the refresh lock held when a
    refresh is due: advisory (one thread, the others go on with the current keys) or
    mandatory (every thread waits). Subclasses override :meth:`refresh_locked` to decide
    what a refresh does, and call :meth:`botocore_refresh` for botocore's own behaviour.
    """

    def _protected_refresh(self, is_mandatory: bool) -> None:
        self.refresh_locked(mandatory=bool(is_mandatory))

    def refresh_locked(self, *, mandatory: bool) -> None:
        """A refresh is due and this thread holds :attr:`refresh_lock`."""
        self.botocore_refresh(mandatory=mandatory)

    def botocore_refresh(self, *, mandatory: bool) -> None:
        """botocore's refresh: call the refresh function, install what it returns."""
        base: Any = RefreshableCredentials
        base._protected_refresh(self, is_mandatory=mandatory)

    @property
    def refresh_lock(self) -> threading.Lock:
        lock: threading.Lock = _raw(self)._refresh_lock
        return lock

    @property
    def expiry_time(self) -> datetime:
        """When the current keys expire (never triggers a refresh)."""
        expiry: datetime = _raw(self)._expiry_time
        return expiry

    @property
    def current_access_key(self) -> str:
        """The current access key id (never triggers a refresh)."""
        return str(_raw(self)._access_key)

    def current_frozen(self) -> ReadOnlyCredentials:
        """The current keys as one consistent set (never triggers a refresh)."""
        frozen: ReadOnlyCredentials = _raw(self)._frozen_credentials
        return frozen

    @property
    def advisory_window(self) -> float:
        return float(_raw(self)._advisory_refresh_timeout)

    @property
    def mandatory_window(self) -> float:
        return float(_raw(self)._mandatory_refresh_timeout)

    def seconds_remaining(self) -> float:
        return float(_raw(self)._seconds_remaining())


def _raw(obj: object) -> Any:
    """``obj`` untyped: botocore's stubs do not declare its private attributes."""
    return obj


def force_refresh(credentials: RefreshableCredentials, stale_access_key: str | None) -> None:
    """Refresh ``credentials`` now as a mandatory refresh, whatever the clock says.

    With ``stale_access_key``, nothing happens if another thread already replaced that key
    (many requests that saw one expired key refresh it once). Works for any botocore
    refreshable credentials (an SSO or instance-role principal) and for :class:`RefreshHooks`
    subclasses, whose :meth:`~RefreshHooks.refresh_locked` then runs.
    """
    raw = _raw(credentials)
    with raw._refresh_lock:
        if stale_access_key is not None and raw._access_key != stale_access_key:
            return
        raw._protected_refresh(is_mandatory=True)


def sign_with(client: Any, credentials: Credentials) -> None:
    """Make ``client`` sign every request with ``credentials`` (refreshable or not).

    ``create_client`` gives the signer a frozen copy of the keys; botocore's signer calls
    ``get_frozen_credentials()`` on whatever object it holds for every request, so holding
    the refreshable object refreshes it when its window is reached.
    """
    client._request_signer._credentials = credentials


def signing_credentials(client: Any) -> Credentials:
    """The credentials object ``client`` signs with."""
    found: Credentials = client._request_signer._credentials
    return found


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


_SHARED_COMPONENTS = ("endpoint_resolver", "exceptions_factory")


def light_session(
    shared: botocore.session.Session, credentials: Credentials
) -> botocore.session.Session:
    """A new botocore session that reuses ``shared``'s parsed models, endpoint data and
    exception classes, and uses ``credentials`` (never loads any of its own)."""
    light: Any = botocore.session.Session()
    source: Any = shared
    light.register_component("data_loader", source.get_component("data_loader"))
    for name in _SHARED_COMPONENTS:
        light._internal_components.register_component(name, source._get_internal_component(name))
    light._credentials = credentials
    session: botocore.session.Session = light
    return session


_LOADER_LOCK = threading.Lock()
_BOTO3_SESSION: Any = None


def _boto3_session_class() -> Any:
    """boto3.Session that adds boto3's resource data path to a shared loader only once,
    and calls ``before_client(service, region)`` before each client is made.

    Made on first use: importing boto3 costs about 0.1 s (s3transfer, concurrent.futures
    machinery) that a run without ``python`` tasks does not need.
    """
    global _BOTO3_SESSION
    with _LOADER_LOCK:
        if _BOTO3_SESSION is not None:
            return _BOTO3_SESSION
        import boto3

        data = os.path.join(os.path.dirname(boto3.__file__), "data")

        class SharedLoaderBoto3Session(boto3.Session):
            def __init__(
                self, *, before_client: Callable[[str, str], None] | None = None, **kwargs: Any
            ) -> None:
                self._before_client = before_client
                super().__init__(**kwargs)

            def _setup_loader(self) -> None:
                raw = _raw(self)
                raw._loader = raw._session.get_component("data_loader")
                with _LOADER_LOCK:
                    if data not in raw._loader.search_paths:
                        raw._loader.search_paths.append(data)

            def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
                if self._before_client is not None:
                    region = kwargs.get("region_name") or (args[0] if args else None)
                    self._before_client(
                        service_name, str(region or self.region_name or "us-east-1")
                    )
                parent: Any = super()
                return parent.client(service_name, *args, **kwargs)

        _BOTO3_SESSION = SharedLoaderBoto3Session
        return _BOTO3_SESSION


def boto3_session(
    light: botocore.session.Session,
    region: str,
    *,
    before_client: Callable[[str, str], None] | None = None,
) -> boto3.Session:
    """A boto3 Session over ``light`` (see :func:`light_session`) in ``region``; boto3's
    resource models join the shared loader once. ``before_client(service, region)`` runs
    before each client is created (rolechain warms the service's models there)."""
    session: boto3.Session = _boto3_session_class()(
        botocore_session=light, region_name=region, before_client=before_client
    )
    return session


# -- the check -----------------------------------------------------------------------------

_CREDENTIAL_ATTRIBUTES = (
    "_refresh_lock",
    "_expiry_time",
    "_access_key",
    "_frozen_credentials",
    "_advisory_refresh_timeout",
    "_mandatory_refresh_timeout",
)
_CREDENTIAL_METHODS = ("_protected_refresh", "_seconds_remaining", "_refresh")
_SESSION_METHODS = ("_get_internal_component",)
_SESSION_ATTRIBUTES = ("_internal_components", "_credentials")


def hmac_v1_signature(
    credentials: Credentials,
    method: str,
    url: str,
    headers: Any,
    stamp: str,
    *,
    presigned: bool,
) -> str:
    """The S3 Signature Version 2 signature of a request (``headers``: an ``HTTPHeaders``)
    signed at ``stamp`` (its ``Date`` header, or a presigned URL's ``Expires``)."""
    from urllib.parse import urlsplit

    from botocore.auth import HmacV1Auth, HmacV1QueryAuth

    base = HmacV1QueryAuth if presigned else HmacV1Auth

    class AtStamp(base):  # type: ignore[misc, valid-type]
        def _get_date(self) -> str:
            return stamp

    signer = AtStamp(credentials)
    signature: str = signer.get_signature(method, urlsplit(url), headers)
    return signature


def problems() -> list[str]:
    """What the installed botocore lacks of the private names above (empty: all present)."""
    found: list[str] = []
    version = getattr(botocore, "__version__", "?")

    def missing(what: str) -> None:
        found.append(f"botocore {version}: {what} is gone; update rolechain.aws.botocore_adapter")

    probe = RefreshableCredentials(
        "AKIDPROBE", "probe", "probe", datetime.now().astimezone(), lambda: {}, "probe"
    )
    for name in _CREDENTIAL_ATTRIBUTES:
        if not hasattr(probe, name):
            missing(f"RefreshableCredentials.{name}")
    for name in _CREDENTIAL_METHODS:
        if not callable(getattr(RefreshableCredentials, name, None)):
            missing(f"RefreshableCredentials.{name}()")
    session = botocore.session.Session()
    for name in _SESSION_ATTRIBUTES:
        if not hasattr(session, name):
            missing(f"Session.{name}")
    for name in _SESSION_METHODS:
        if not callable(getattr(session, name, None)):
            missing(f"Session.{name}()")
    internal = getattr(session, "_internal_components", None)
    if internal is not None and not callable(getattr(internal, "register_component", None)):
        missing("Session._internal_components.register_component()")
    from botocore.auth import HmacV1Auth

    if not callable(getattr(HmacV1Auth, "_get_date", None)):
        missing("botocore.auth.HmacV1Auth._get_date()")
    import boto3

    if not callable(getattr(boto3.Session, "_setup_loader", None)):
        missing("boto3.Session._setup_loader()")
    client = session.create_client(
        "sts",
        region_name="us-east-1",
        aws_access_key_id="AKIDPROBE",
        aws_secret_access_key="probe",  # noqa: S106 - no request is made
    )
    signer = getattr(client, "_request_signer", None)
    if signer is None:
        missing("BaseClient._request_signer")
    elif not hasattr(signer, "_credentials"):
        missing("RequestSigner._credentials")
    endpoint = getattr(client, "_endpoint", None)
    if endpoint is None:
        missing("BaseClient._endpoint")
    elif not callable(getattr(getattr(endpoint, "http_session", None), "send", None)):
        missing("Endpoint.http_session.send()")
    return found

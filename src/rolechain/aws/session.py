"""One shared botocore session, and the clients and boto3 sessions built from it.

Creating a ``boto3.Session`` per account costs 110-160 ms and 8-12 MiB per client (it
re-reads the service models and endpoint data); a client made from one shared botocore
session costs 2-5 ms and 0.1-0.3 MiB (measured; docs/aws-rules.md). :class:`AwsSessions` holds
that one session for a run and hands out:

* :meth:`AwsSessions.client`: a botocore client for (service, region, credentials), reused
  while it is in a bounded LRU cache. Clients are made with botocore's retries turned off
  (``total_max_attempts=1``): rolechain retries itself (tenacity, :mod:`rolechain.aws.calls`)
  and the two must not stack. The client signs with the *refreshable* credentials object it
  was made for, so a cached client keeps working across refreshes.
* Connections: every client of one :class:`AwsSessions` sends through one urllib3 pool per
  endpoint, whatever credentials it signs with. SigV4 signs each request, not the
  connection, so clients of the same service endpoint can share connections; without it
  each target's new client opens its own connection (a TCP and TLS handshake to the same
  endpoint, tens of milliseconds on a real network, per target). The first client of an
  endpoint lends its pool to the later ones (through :mod:`rolechain.aws.botocore_adapter`:
  botocore has no public hook for it).
* :meth:`AwsSessions.borrow` / :meth:`AwsSessions.give_back`: a client lent to one task at
  a time. Creating a botocore client costs 2-5 ms of CPU (its class, its endpoint rules,
  its event handlers): for a fan-out whose tasks make one or two calls per account, more
  than the calls themselves. So task clients are not made per target: a client of
  (service, region) is lent to a task, signs with that task's credentials
  (:func:`~rolechain.aws.botocore_adapter.sign_with`), and when the task is done it is
  given back, made to refuse to sign at all, and lent to the next task. A client is never
  lent to two tasks at once, and one a task never gives back (a task the run gave up on) is
  never lent again, so no request is ever signed with another target's credentials. Only
  clients with no credential-specific state are lent: services with endpoint discovery
  (whose discovered endpoints are per account) get a client per target as before, and lent
  S3 clients sign S3 Express requests with SigV4 instead of caching CreateSession
  credentials per bucket.
* :meth:`AwsSessions.boto3_session`: a ready ``boto3.Session`` for the ``python`` task and
  the :func:`rolechain.sessions` factory. It wraps a new, light botocore session that shares
  the shared session's data loader (parsed models), endpoint resolver and exception
  factory, and whose credentials are the target's refreshable credentials. Measured on this
  machine: about 9-20 ms for a session plus two clients, against about 115 ms for a fresh
  ``boto3.Session``; the models are parsed once per process.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.credentials import Credentials, EnvProvider, ReadOnlyCredentials

from rolechain.aws.botocore_adapter import (
    boto3_session,
    http_session_of,
    light_session,
    sign_with,
    use_http_session,
)
from rolechain.aws.errors import aws_call
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.errors import AwsContext, CredentialsError, PermanentAwsError

if TYPE_CHECKING:  # boto3 (and s3transfer under it) is imported only for a python task
    import boto3

DEFAULT_CONNECT_TIMEOUT = 10
DEFAULT_READ_TIMEOUT = 60


class _NotLent(Credentials):
    """What an idle lent client signs with: nothing. Using it raises."""

    def __init__(self) -> None:
        super().__init__("rolechain-not-lent", "rolechain-not-lent")

    def get_frozen_credentials(self) -> Any:
        raise CredentialsError(
            "a client was used after its task gave it back",
            hint="keep clients from TaskEnv.client() inside the task that got them",
        )


NOT_LENT: Credentials = _NotLent()
_PLACEHOLDER = ReadOnlyCredentials("rolechain-not-lent", "rolechain-not-lent", None)

_SHARED_LOCK = threading.Lock()
_PROCESS_SESSION: botocore.session.Session | None = None


def shared_botocore_session() -> botocore.session.Session:
    """The process-wide botocore session whose loader caches parsed service models."""
    global _PROCESS_SESSION
    with _SHARED_LOCK:
        if _PROCESS_SESSION is None:
            _PROCESS_SESSION = botocore.session.get_session()
        return _PROCESS_SESSION


class AwsSessions:
    """Clients and boto3 sessions for one run, all from one botocore session.

    ``concurrency`` sizes each client's connection pool; ``max_clients`` bounds the client
    cache so memory stays flat when a run visits thousands of accounts (clients of hub hops
    are used constantly and stay cached; a leaf account's clients are evicted after use).
    """

    def __init__(
        self,
        *,
        concurrency: int = 16,
        max_clients: int | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        botocore_session: botocore.session.Session | None = None,
    ) -> None:
        self.session = botocore_session or shared_botocore_session()
        self.config = Config(
            retries={"total_max_attempts": 1},
            max_pool_connections=max(10, concurrency),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._max_clients = max_clients or max(64, 4 * concurrency)
        self._clients: OrderedDict[tuple[str, str, int], tuple[Any, Credentials]] = OrderedDict()
        self._lock = threading.Lock()
        self._keys: dict[int, list[tuple[str, str, int]]] = {}  # id(credentials) -> keys
        self._pools: dict[str, Any] = {}  # endpoint URL -> the http session its clients share
        self._warm_lock = threading.Lock()
        self._warmed: set[str] = set()
        self._free: dict[tuple[str, str], list[Any]] = {}  # (service, region) -> idle clients
        # client -> (service, region), for the clients made to be lent (weakly: a client
        # a task never gave back is not kept alive, nor its id mistaken for another's)
        self._lent: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()
        self._lendable: dict[str, bool] = {}
        self._max_free = max(16, concurrency)
        self.clients_created = 0
        self.clients_lent = 0
        # Lent S3 clients sign S3 Express requests with SigV4: a client's cache of
        # CreateSession credentials per bucket would outlive the task it was made for.
        s3: Any = {"disable_s3_express_session_auth": True}  # (the stubs predate the option)
        self._lent_config = self.config.merge(Config(s3=s3))

    def client(self, service: str, region: str, credentials: Credentials) -> Any:
        """A botocore client for ``service`` in ``region`` signing with ``credentials``."""
        key = (service, region, id(credentials))
        with self._lock:
            found = self._clients.get(key)
            if found is not None and found[1] is credentials:
                self._clients.move_to_end(key)
                return found[0]
        client = self._create(service, region, credentials)
        evicted = []  # freed outside the lock: a client is thousands of objects
        with self._lock:
            found = self._clients.get(key)
            if found is not None and found[1] is credentials:
                return found[0]
            self._clients[key] = (client, credentials)
            self._keys.setdefault(key[2], []).append(key)
            self.clients_created += 1
            while len(self._clients) > self._max_clients:
                old_key, old = self._clients.popitem(last=False)
                self._forget(old_key)
                evicted.append(old)
        del evicted
        return client

    def borrow(self, service: str, region: str, credentials: Credentials) -> Any:
        """A client of ``service`` in ``region`` that signs with ``credentials`` until it is
        given back (:meth:`give_back`); it must not be used by anyone else meanwhile.

        A lendable service's idle client is reused; otherwise this is :meth:`client`.
        """
        self.warm_service(service, region)  # its model parsed once, under the lock
        if not self._can_lend(service):
            return self.client(service, region, credentials)
        key = (service, region)
        with self._lock:
            free = self._free.get(key)
            client = free.pop() if free else None
            self.clients_lent += 1
        if client is None:
            client = self._create(service, region, NOT_LENT, config=self._lent_config)
            with self._lock:
                self._lent[client] = key
                self.clients_created += 1
        sign_with(client, credentials)
        return client

    def give_back(self, client: Any) -> None:
        """``client`` (from :meth:`borrow`) is done: it refuses to sign from now on, until it
        is lent again. A client that was not lent is left alone."""
        with self._lock:
            key = self._lent.get(client)
        if key is None:
            return
        sign_with(client, NOT_LENT)
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self._max_free:
                free.append(client)
            else:
                del self._lent[client]

    def _can_lend(self, service: str) -> bool:
        """Whether ``service``'s clients hold no per-account state (endpoint discovery)."""
        found = self._lendable.get(service)
        if found is None:
            try:
                model = self.session.get_service_model(service)
            except Exception:  # an unknown service: the client path reports it
                found = False
            else:
                found = model.endpoint_discovery_operation is None
            self._lendable[service] = found
        return found

    def _forget(self, key: tuple[str, str, int]) -> None:
        keys = self._keys.get(key[2])
        if keys is not None:
            keys.remove(key)
            if not keys:
                del self._keys[key[2]]

    def warm(self, services: Iterable[str], region: str) -> None:
        """Load each service's model and endpoint data once, before threads need them.

        botocore's loader caches what it parses but does not lock: when the first clients
        of a run are created in many threads at once, each thread parses the same models.
        Measured on a 16-thread fan-out, that doubled peak memory. One throwaway client per
        service first fills the cache. Each service is warmed once per :class:`AwsSessions`,
        under a lock, so concurrent callers wait for the one warm-up.
        Unknown service names are left for the task that uses them to report.
        """
        for service in dict.fromkeys(services):
            self.warm_service(service, region)

    def warm_service(self, service: str, region: str) -> None:
        if service in self._warmed:
            return
        with self._warm_lock:
            if service in self._warmed:
                return
            # Not get_available_services() first: it lists every model directory (50 ms).
            try:
                with aws_call(AwsContext(operation=f"create {service} client", region=region)):
                    self.session.create_client(
                        service,
                        region_name=region,
                        config=self.config,
                        aws_access_key_id="warm-up",
                        aws_secret_access_key="warm-up",  # noqa: S106 - no request is made
                    )
            except PermanentAwsError as exc:
                if exc.code != "UnknownService":
                    raise
            self._warmed.add(service)

    def _create(
        self, service: str, region: str, credentials: Credentials, config: Config | None = None
    ) -> Any:
        self.warm_service(service, region)
        frozen = _PLACEHOLDER if credentials is NOT_LENT else credentials.get_frozen_credentials()
        with aws_call(AwsContext(operation=f"create {service} client", region=region)):
            client = self.session.create_client(
                service,
                region_name=region,
                config=config or self.config,
                aws_access_key_id=frozen.access_key,
                aws_secret_access_key=frozen.secret_key,
                aws_session_token=frozen.token,
            )
        # Sign with the refreshable object itself, not the frozen copy create_client made,
        # so the hop refreshes when its window is reached.
        sign_with(client, credentials)
        self._share_connections(client)
        return client

    def _share_connections(self, client: Any) -> None:
        """Send ``client``'s requests through the connections of its endpoint's first client.

        All clients here are made alike (one botocore session, one config), so the lent
        pool has the same timeouts, proxies and TLS settings the client's own would have.
        """
        url = client.meta.endpoint_url
        shared = self._pools.get(url)
        if shared is None:
            with self._lock:
                shared = self._pools.setdefault(url, http_session_of(client))
            if shared is http_session_of(client):
                return  # the first client of its endpoint: it lends its own
        use_http_session(client, shared)

    def boto3_session(self, credentials: Credentials, region: str) -> boto3.Session:
        """A boto3 Session for ``region`` using ``credentials`` (refreshable or not).

        Its clients come from models parsed once; the first client of each service is
        warmed under a lock (:meth:`warm_service`), so user threads never race botocore's
        unlocked loader.
        """
        light = light_session(self.session, credentials)
        return boto3_session(light, region, before_client=self.warm_service)

    def release(self, credentials: Credentials) -> None:
        """Drop the cached clients of ``credentials`` (a target that is done).

        Clients of a finished target are garbage; dropping them at once lets them die young
        instead of aging in the cache, which would promote thousands of objects per client
        into the garbage collector's oldest generation and make full collections frequent.
        """
        with self._lock:
            keys = self._keys.pop(id(credentials), ())
            dropped = [self._clients.pop(key, None) for key in keys]
        del dropped  # freed outside the lock

    def clear(self) -> None:
        with self._lock:
            self._clients.clear()
            self._keys.clear()
            self._free.clear()  # lent clients still out are simply never lent again
            self._lent.clear()


class ServiceCalls:
    """Calls to one AWS service with one set of credentials (a hop's): a client from the
    run's shared session, the run's retry policy and counters, and the hop for errors."""

    service = ""

    def __init__(
        self,
        sessions: AwsSessions,
        credentials: Credentials,
        *,
        region: str = "us-east-1",
        policy: RetryPolicy | None = None,
        stats: CallStats | None = None,
        hop: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.credentials = credentials
        self.region = region
        self.policy = policy or RetryPolicy()
        self.stats = stats
        self.hop = hop

    def client(self) -> Any:
        return self.sessions.client(self.service, self.region, self.credentials)


def principal_credentials(
    source: str = "default",
    profile: str | None = None,
    *,
    botocore_session: botocore.session.Session | None = None,
    refresh: bool = True,
) -> Credentials:
    """The principal's starting credentials, as the chain file's ``principal`` says.

    ``default`` is botocore's default chain (env, shared files, SSO, container, instance);
    ``profile`` a named profile; ``env`` only the AWS_* environment variables.

    Credentials that are expired from the start (``AWS_CREDENTIAL_EXPIRATION`` in the past,
    as left behind by an old ``rolechain env``) or that botocore cannot read raise
    CredentialsError with what to do, before any call is made. ``refresh=False`` only
    finds them: credentials that refresh through a call (an assume-role or SSO profile) are
    not refreshed, so no AWS call is made.
    """
    creds: Credentials | None
    try:
        with aws_call(AwsContext(operation="load principal credentials")):
            if source == "env":
                creds = EnvProvider().load()
            elif source == "profile":
                creds = botocore.session.Session(profile=profile).get_credentials()
            else:
                # A session of its own: botocore sessions cache the credentials they
                # resolve, and the shared session outlives runs.
                creds = (botocore_session or botocore.session.Session()).get_credentials()
            if creds is not None and refresh:
                creds.get_frozen_credentials()  # refreshable ones refresh (and fail) here
    except (RuntimeError, ValueError) as exc:
        # botocore raises RuntimeError for credentials still expired after a refresh, and
        # dateutil a ValueError for an expiry it cannot parse.
        raise _unusable(source, profile, exc) from None
    if creds is None:
        where = {
            "env": "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set",
            "profile": f"profile {profile!r} gives no credentials",
        }.get(source, "botocore's default credential chain found none")
        raise CredentialsError(
            f"no starting credentials: {where}",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or fix the "
            "principal's 'source' in the chain file",
        )
    return creds


def _unusable(source: str, profile: str | None, exc: Exception) -> CredentialsError:
    expiry = os.environ.get("AWS_CREDENTIAL_EXPIRATION")
    from_env = source == "env" or (
        source == "default" and os.environ.get("AWS_ACCESS_KEY_ID") and expiry is not None
    )
    if from_env and expiry is not None:
        state = "has passed" if isinstance(exc, RuntimeError) else "is not a timestamp"
        return CredentialsError(
            f"no usable starting credentials: AWS_CREDENTIAL_EXPIRATION ({expiry!r}) {state}, "
            "so the AWS_* keys in the environment are expired or unreadable",
            hint="load fresh credentials (run `rolechain env` again, or your SSO login), or "
            "unset AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and "
            "AWS_CREDENTIAL_EXPIRATION to use another source",
        )
    where = f"profile {profile!r}" if source == "profile" else f"the {source} credential chain"
    return CredentialsError(
        f"no usable starting credentials: those of {where} are expired or unreadable ({exc})",
        hint="refresh them (aws sso login, a new session) and try again",
    )


def static_credentials(access_key: str, secret_key: str, token: str | None = None) -> Credentials:
    """botocore Credentials from explicit keys (tests and the Python API)."""
    return Credentials(access_key, secret_key, token, method="explicit")

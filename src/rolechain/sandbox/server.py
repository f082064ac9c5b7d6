"""Serve moto behind the enforcing middleware on loopback, provisioned from a chain file."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from rolechain.errors import RolechainError
from rolechain.model.chain import Chain
from rolechain.sandbox.faults import Faults
from rolechain.sandbox.provision import (
    ORG_ACCOUNTS,
    PrincipalCredentials,
    Provisioned,
    Provisioner,
)
from rolechain.sandbox.sources import ProvisionSource
from rolechain.sandbox.state import Identity, RoleRecord, SandboxState

INSTALL_HINT = "pip install 'rolechain[sandbox]'"


class SandboxError(RolechainError):
    """The sandbox cannot start (moto missing, port taken, provisioning failed)."""


@dataclass(frozen=True)
class SandboxInfo:
    """A running sandbox.

    ``endpoint``: the URL every AWS client must use; ``env``: the environment a boto3 client
    needs to reach the sandbox as the chain's (first) principal; ``principals``: the same for
    every declared principal; ``state``: the sandbox's registry and call counters (for
    tests and rehearsals); ``provisioned``: what was created; ``admin_token``: the value of
    the ``X-Rolechain-Sandbox-Admin`` header that moto's admin API (``/moto-api/``) needs.
    :meth:`set_faults` changes the faults while it runs.
    """

    endpoint: str
    env: dict[str, str]
    region: str
    principals: dict[str, dict[str, str]] = field(default_factory=dict)
    state: SandboxState = field(default_factory=SandboxState)
    provisioned: Provisioned = field(default_factory=Provisioned)
    provisioner: Provisioner | None = field(default=None, repr=False, compare=False)
    admin_token: str = field(default="", repr=False)
    _set_faults: Callable[[Faults], None] | None = field(default=None, repr=False, compare=False)

    def set_faults(self, faults: Faults) -> None:
        """Change the running sandbox's faults (throttling, latency, quota...) from now on."""
        if self._set_faults is None:
            raise SandboxError("this sandbox is not running")
        self._set_faults(faults)

    @property
    def organization_accounts(self) -> dict[str, list[str]]:
        return self.provisioned.organization_accounts

    def provision(
        self, chain: Chain | None = None, *, roles: Iterable[Mapping[str, Any]] = ()
    ) -> Provisioned:
        """Add or change roles, trusts and organizations in this running sandbox, from
        ``chain`` and from ``roles`` (IAM's shape of a role, see
        :func:`~rolechain.sandbox.provision.iam_role_records`). Principals and their
        credentials stay as they are; the new trust policies are enforced at once.

        Use it to build an environment in steps (accounts from an organization first, then
        roles in them), or to change IAM while a job runs.
        """
        if self.provisioner is None:
            raise SandboxError("this sandbox cannot be provisioned further")
        try:
            return self.provisioner.provision_more(chain, roles=roles)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None


def _require_moto() -> Any:
    try:
        import cheroot.wsgi  # noqa: F401 - the server
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            create_backend_app,
        )
    except ImportError as exc:
        raise SandboxError(
            f"the sandbox needs {exc.name or 'moto and cheroot'}, which is not installed",
            hint=INSTALL_HINT,
        ) from None
    return DomainDispatcherApplication(create_backend_app)


def _moto_user_lookup(access_key: str) -> Identity | None:
    """Access keys made through the sandbox's IAM API (CreateAccessKey) belong to users."""
    from moto.iam.models import iam_backends

    for account, backends in list(iam_backends.items()):
        backend = backends["aws"]
        key = backend.access_keys.get(access_key)
        if key is None:
            continue
        user_name = getattr(key, "user_name", None)
        if not user_name:
            return None
        user = backend.users.get(user_name)
        arn = getattr(user, "arn", f"arn:aws:iam::{account}:user/{user_name}")
        secret = getattr(key, "secret_access_key", None)
        return Identity("user", account, arn, getattr(user, "id", account), secret=secret)
    return None


def _moto_role_lookup(arn: str) -> RoleRecord | None:
    """The role ``arn`` as moto's IAM has it now (None: no such role)."""
    from moto.iam.models import iam_backends

    parts = arn.split(":")
    if len(parts) < 6 or not parts[4].isdigit():
        return None
    name = arn.rsplit("/", 1)[-1]
    backend = iam_backends[parts[4]][parts[1]]
    for role in list(backend.roles.values()):
        if role.name == name and role.arn == arn:
            document = role.assume_role_policy_document
            if isinstance(document, str):
                try:
                    document = json.loads(document)
                except ValueError:
                    document = json.loads(unquote(document))
            return RoleRecord(
                role.arn,
                document if isinstance(document, dict) else {},
                int(role.max_session_duration or 3600),
                description=role.description,
            )
    return None


class _Server:
    """moto's WSGI app behind the middleware, on cheroot: a threaded HTTP/1.1 server that
    keeps connections alive, as AWS endpoints do.

    moto's own server (werkzeug's development server) closes every connection after one
    response, so a client's connection reuse could be neither measured nor rewarded.
    ``connect_latency`` delays the first request of every new connection (a TLS handshake
    to a real endpoint costs one or two round trips); ``state.connections`` counts them.
    """

    THREADS = 64  # requests served at once; idle keep-alive connections take no thread
    IDLE_TIMEOUT = 60  # seconds an idle keep-alive connection is kept

    def __init__(
        self, app: Any, port: int, state: SandboxState, connect_latency: Callable[[], float]
    ) -> None:
        from cheroot import wsgi

        from rolechain.sandbox.middleware import ADMIN_ENVIRON, DROP_ENVIRON

        class Gateway(wsgi.Gateway_10):
            """Counts connections, delays their first request, lets the middleware drop
            the connection (a fault) without cheroot answering for it."""

            def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
                environ: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
                environ[DROP_ENVIRON] = self._drop
                return environ

            def respond(self) -> None:
                conn = self.req.conn
                served = getattr(conn, "rolechain_requests", 0)
                conn.rolechain_requests = served + 1
                if served == 0:
                    state.count_connection()
                    delay = connect_latency()
                    if delay and ADMIN_ENVIRON not in self.env:  # provisioning is exempt
                        time.sleep(delay)
                super().respond()

            def _drop(self) -> None:
                req = self.req
                with contextlib.suppress(OSError):
                    req.conn.socket.shutdown(socket.SHUT_RDWR)
                req.sent_headers = True  # nothing more is written on this connection
                req.close_connection = True

        class Server(wsgi.Server):
            def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
                # Dropped connections (faults) and clients going away are expected here.
                logging.getLogger("rolechain.sandbox").debug("%s", msg, exc_info=traceback)

        self.server = Server(
            ("127.0.0.1", port), app, numthreads=self.THREADS, timeout=self.IDLE_TIMEOUT
        )
        self.server.gateway = Gateway
        self.server.expiration_interval = 0.05  # its select() timeout: how fast stop() is
        self.server.keep_alive_conn_limit = None  # type: ignore[assignment] # keep all idle
        try:
            self.server.prepare()
        except OSError as exc:
            raise SandboxError(
                f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}",
                hint="pick another --port, or 0 for any free port",
            ) from None
        self.thread = threading.Thread(
            target=self.server.serve, name="rolechain-sandbox", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(timeout=10)


@contextmanager
def sandbox(
    chain: Chain,
    *,
    provision: Chain | ProvisionSource | None = None,
    time_scale: float = 1.0,
    faults: Faults | None = None,
    port: int = 0,
    roles: Iterable[Mapping[str, Any]] = (),
    organization_accounts: int = ORG_ACCOUNTS,
) -> Iterator[SandboxInfo]:
    """Serve a local AWS that enforces the role rules, provisioned from ``chain``.

    ``provision``: provision roles, trusts and organizations from this chain instead (to
    rehearse drift between what ``chain`` declares and what exists); principals always
    come from ``chain``. ``time_scale``: sandbox time runs this many times faster, so a
    session of DurationSeconds D expires after D / time_scale real seconds (the returned
    Expiration says so). ``faults``: throttling, latency, denied accounts, dropped
    connections. ``port``: 0 picks a free port. ``roles``: more roles in IAM's own shape
    (``Arn``, ``AssumeRolePolicyDocument``, ``MaxSessionDuration``, ``Description``), for
    trust policies a chain file cannot express; they replace roles of the same ARN.
    ``organization_accounts``: member accounts created for each role set with an
    organization query.
    """
    if isinstance(provision, ProvisionSource):  # --provision OTHER: a chain, or IAM JSON
        roles, provision = [*roles, *provision.roles], provision.chain
    if organization_accounts < 0:
        raise SandboxError(f"organization_accounts must be >= 0, not {organization_accounts}")
    if time_scale <= 0:
        raise SandboxError(f"time_scale must be > 0, not {time_scale}")
    moto_app = _require_moto()
    from rolechain.sandbox.middleware import Enforcer

    state = SandboxState(time_scale=time_scale)
    token = secrets.token_urlsafe(24)
    app = Enforcer(
        moto_app,
        state,
        faults=faults,
        admin_token=token,
        user_lookup=_moto_user_lookup,
        role_lookup=_moto_role_lookup,
    )
    server = _Server(app, port, state, connect_latency=lambda: app.faults.connect_latency)
    endpoint = f"http://127.0.0.1:{server.port}"
    region = chain.model.settings.region
    server.start()
    try:
        provisioner = Provisioner(
            endpoint, token, state, region, organization_accounts=organization_accounts
        )
        try:
            provisioned = provisioner.provision(chain, provision, roles=roles)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
        creds: dict[str, PrincipalCredentials] = provisioned.principals
        principals = {name: c.env(endpoint, region) for name, c in creds.items()}
        first = next(iter(principals.values()), {"AWS_ENDPOINT_URL": endpoint})
        yield SandboxInfo(
            endpoint=endpoint,
            env=dict(first),
            region=region,
            principals=principals,
            state=state,
            provisioned=provisioned,
            provisioner=provisioner,
            admin_token=token,
            _set_faults=app.set_faults,
        )
    finally:
        server.stop()

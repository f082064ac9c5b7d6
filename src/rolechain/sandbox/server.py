"""Serve moto behind the enforcing middleware on loopback, provisioned from a chain file."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping
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
    """

    endpoint: str
    env: dict[str, str]
    region: str
    principals: dict[str, dict[str, str]] = field(default_factory=dict)
    state: SandboxState = field(default_factory=SandboxState)
    provisioned: Provisioned = field(default_factory=Provisioned)
    provisioner: Provisioner | None = field(default=None, repr=False, compare=False)
    admin_token: str = field(default="", repr=False)

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
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            create_backend_app,
        )
    except ImportError as exc:
        raise SandboxError(
            f"the sandbox needs moto, which is not installed ({exc.name or exc})",
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
        return Identity("user", account, arn, getattr(user, "id", account))
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
    def __init__(self, app: Any, port: int) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        from rolechain.sandbox.middleware import DATE_ENVIRON, SOCKET_ENVIRON

        class Handler(MotoRequestHandler):
            """Hands the request's socket to the middleware (so faults can drop it), and
            lets it choose the Date header (so sessions agree with it, see _issue)."""

            _sandbox_environ: dict[str, Any] | None = None

            def make_environ(self) -> dict[str, Any]:
                environ: dict[str, Any] = super().make_environ()
                environ[SOCKET_ENVIRON] = self.connection
                self._sandbox_environ = environ
                return environ

            def date_time_string(self, timestamp: float | None = None) -> str:
                chosen = (self._sandbox_environ or {}).get(DATE_ENVIRON)
                result: str = super().date_time_string(chosen if chosen else timestamp)
                return result

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        try:
            self.server = make_server(
                "127.0.0.1", port, app, threaded=True, request_handler=Handler
            )
        except (OSError, SystemExit) as exc:
            # werkzeug exits (SystemExit) when the port is taken
            reason = exc.strerror if isinstance(exc, OSError) else "address already in use"
            raise SandboxError(
                f"cannot listen on 127.0.0.1:{port}: {reason or exc}",
                hint="pick another --port, or 0 for any free port",
            ) from None
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="rolechain-sandbox",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@contextmanager
def sandbox(
    chain: Chain,
    *,
    provision: Chain | None = None,
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
    server = _Server(app, port)
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
        )
    finally:
        server.stop()

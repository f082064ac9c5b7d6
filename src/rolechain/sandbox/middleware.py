"""WSGI middleware in front of moto that enforces the role rules moto does not.

Every signed request is checked against the sandbox's registry of issued credentials:
unknown keys get ``InvalidClientTokenId``, a signature not made with the key's secret
``SignatureDoesNotMatch`` (:mod:`rolechain.sandbox.sigv4`), expired ones ``ExpiredToken``
(in every service, in that service's error format). STS ``AssumeRole`` and
``GetCallerIdentity`` are answered here (trust policies, ExternalId, chaining cap,
MaxSessionDuration, parameter patterns, limits, time scale); everything else is forwarded
to moto, routed to the caller's account. Requests carrying the sandbox's admin token
(provisioning) go straight to moto.

The role an AssumeRole names is looked up in moto's IAM when it is served (``role_lookup``):
its trust policy and MaxSessionDuration as they are now, whoever changed them (provisioning,
or a caller through the IAM API), and roles moto made itself (OrganizationAccountAccessRole).

A web page in the user's browser must not read or change the sandbox (its state holds the
chain's external ids): responses carry no CORS headers (moto's server would echo any
``Origin``), ``OPTIONS`` preflights are refused, moto's admin API (``/moto-api/``: state
dumps, reset) needs the admin token, and a request whose ``Host`` is not a loopback name is
refused (DNS rebinding).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from rolechain.sandbox.faults import FaultDice, Faults, StsQuota
from rolechain.sandbox.federation import FEDERATION_PATH, Federation
from rolechain.sandbox.responses import (
    EXPIRED_TOKEN,
    INVALID_TOKEN,
    RATE_EXCEEDED,
    SIGNATURE_MISMATCH,
    STS_NS,
    AwsFault,
    Protocol,
    Rendered,
    render,
    xml_response,
)
from rolechain.sandbox.rules import AssumeRoleRequest, Granted, decide_assume_role
from rolechain.sandbox.sigv4 import (
    REMOVED_HEADERS,
    signature_matches,
    v2_access_key,
)
from rolechain.sandbox.state import (
    Identity,
    RoleRecord,
    SandboxState,
    digest,
    new_access_key,
    new_secret,
)

ADMIN_HEADER = "X-Rolechain-Sandbox-Admin"
DROP_ENVIRON = "rolechain.sandbox.drop"  # set by the server: closes the connection unanswered
ADMIN_ENVIRON = "HTTP_" + ADMIN_HEADER.upper().replace("-", "_")
_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
UserLookup = Callable[[str], Identity | None]
RoleLookup = Callable[[str], RoleRecord | None]


def _credential(environ: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(access key, region, service) from the SigV4 Authorization header or a presigned URL
    (or an S3 Signature Version 2 header or presigned URL)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = _CREDENTIAL_RE.search(auth)
    if match is None:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        scope = query.get("X-Amz-Credential")
        if scope:
            match = _CREDENTIAL_RE.search("Credential=" + scope)
    if match is None:
        v2_key = v2_access_key(environ)  # an S3 Signature Version 2 request
        return (v2_key, "us-east-1", "s3") if v2_key else None
    return match.group(1), match.group(3), match.group(4)


def _session_token(environ: Mapping[str, Any]) -> str | None:
    token = environ.get("HTTP_X_AMZ_SECURITY_TOKEN")
    if token is None:  # a presigned URL: X-Amz-Security-Token (SigV4), x-amz-... (SigV2)
        query = parse_qsl(environ.get("QUERY_STRING", ""))
        token = {k.lower(): v for k, v in query}.get("x-amz-security-token")
    return str(token) if token else None


def _protocol(service: str, environ: Mapping[str, Any]) -> Protocol:
    if service == "s3":
        return "s3"
    if environ.get("HTTP_X_AMZ_TARGET"):
        return "json"
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if content_type.startswith("application/x-www-form-urlencoded") or "Action=" in str(
        environ.get("QUERY_STRING", "")
    ):
        return "query"
    return "rest-json"


def _iso(epoch: float, *, fraction: bool = False) -> str:
    """AWS's timestamp format; with ``fraction``, milliseconds too (compressed time, where a
    second is a large part of a session and client and server must agree exactly)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    if fraction:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def unique_id(prefix: str, arn: str) -> str:
    """A stable AWS-style unique id (AROA..., AIDA...) for an ARN."""
    hashed = hashlib.sha256(arn.encode()).hexdigest().upper()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return prefix + "".join(alphabet[int(c, 16) % 32] for c in hashed[:17])


ADMIN_PATH = "/moto-api"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def _loopback_host(host: object) -> bool:
    """Whether a request's Host header names this machine (or is missing)."""
    if not host:
        return True
    name = str(host).lower()
    name = name[: name.find("]") + 1] if name.startswith("[") else name.rsplit(":", 1)[0]
    return name in _LOOPBACK or name.endswith(".localhost")


def _without_cors(start_response: StartResponse) -> StartResponse:
    """``start_response`` that drops every ``Access-Control-*`` header moto adds."""

    def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
        return start_response(status, kept, *exc_info)

    return start


def _forbidden(start_response: StartResponse, why: str) -> list[bytes]:
    body = f"Forbidden: {why}\n".encode()
    start_response(
        "403 Forbidden",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class Enforcer:
    """The middleware. ``app`` is moto's WSGI application."""

    def __init__(
        self,
        app: WsgiApp,
        state: SandboxState,
        *,
        faults: Faults | None = None,
        admin_token: str,
        user_lookup: UserLookup | None = None,
        role_lookup: RoleLookup | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.set_faults(faults or Faults())
        self.admin_token = admin_token
        self.user_lookup = user_lookup
        self.role_lookup = role_lookup
        self.federation = Federation(state)

    def set_faults(self, faults: Faults) -> None:
        """Inject ``faults`` from now on (a fresh STS quota, fresh random draws)."""
        self.faults = faults
        self.dice = FaultDice(faults)
        self.quota = StsQuota(faults.sts_rate, faults.sts_burst)

    # -- WSGI -------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response = _without_cors(start_response)
        offered = environ.pop(ADMIN_ENVIRON, None)
        if not _loopback_host(environ.get("HTTP_HOST")):
            return _forbidden(start_response, "the sandbox answers loopback host names only")
        if offered is not None and secrets.compare_digest(str(offered), self.admin_token):
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            return _forbidden(start_response, "cross-origin requests are not allowed")
        if str(environ.get("PATH_INFO", "")).startswith(ADMIN_PATH):
            return _forbidden(start_response, f"{ADMIN_PATH} needs the {ADMIN_HEADER} header")
        if environ.get("PATH_INFO") == FEDERATION_PATH:
            query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
            return self._send(self.federation.answer(query), start_response)
        picked = environ.pop("HTTP_X_MOTO_ACCOUNT_ID", None)  # callers may not pick their account
        if picked is not None:  # ... but it was signed: the signature check sees it
            environ[REMOVED_HEADERS] = {"X_MOTO_ACCOUNT_ID": picked}
        if self.faults.latency:
            time.sleep(self.faults.latency)
        if self.dice.drop():
            return self._drop(environ)
        credential = _credential(environ)
        if credential is None:
            return self.app(environ, start_response)  # unsigned: moto's own pages
        access_key, region, service = credential
        protocol = _protocol(service, environ)
        params: dict[str, str] = {}
        if service == "sts":
            params = self._read_params(environ)
        action = params.get("Action", "")
        identity = self.state.identity(access_key)
        if identity is None and self.user_lookup is not None:
            identity = self.user_lookup(access_key)
            if identity is not None:
                self.state.register(access_key, identity)
        if identity is None:
            fault = AwsFault("InvalidClientTokenId", INVALID_TOKEN, 403)
            return self._fail(fault, protocol, action or service, start_response)
        token = _session_token(environ)
        if not identity.token_matches(token):
            fault = AwsFault("InvalidClientTokenId", INVALID_TOKEN, 403)
            return self._fail(fault, protocol, action or service, start_response)
        if identity.secret is not None and not signature_matches(
            environ,
            access_key=access_key,
            secret=identity.secret,
            token=token,
            region=region,
            service=service,
        ):
            fault = AwsFault("SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403)
            return self._fail(fault, protocol, action or service, start_response)
        if identity.expired(self.state.now()):
            fault = AwsFault("ExpiredToken", EXPIRED_TOKEN, 400)
            return self._fail(fault, protocol, action or service, start_response)
        if service == "sts":
            if self.dice.throttle_sts() or self.quota.exceeded(identity.account):
                fault = AwsFault("Throttling", RATE_EXCEEDED, 400)
                return self._fail(fault, protocol, action, start_response, identity.account)
            if action == "AssumeRole":
                return self._assume_role(identity, params, environ, start_response)
            if action == "GetCallerIdentity":
                self.state.count(action, sts_caller=identity.account)
                return self._send(self._caller_identity(identity), start_response)
        self.state.count(action or service)
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = identity.account
        return self.app(environ, start_response)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _read_params(environ: dict[str, Any]) -> dict[str, str]:
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        if str(environ.get("CONTENT_TYPE", "")).startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return params

    @staticmethod
    def _send(rendered: Rendered, start_response: StartResponse) -> list[bytes]:
        headers = [*rendered.headers, ("Content-Length", str(len(rendered.body)))]
        start_response(rendered.status, headers)
        return [rendered.body]

    def _fail(
        self,
        fault: AwsFault,
        protocol: Protocol,
        operation: str,
        start_response: StartResponse,
        sts_caller: str | None = None,
    ) -> list[bytes]:
        self.state.count(operation, denied_code=fault.code, sts_caller=sts_caller)
        return self._send(render(fault, protocol), start_response)

    @staticmethod
    def _drop(environ: Mapping[str, Any]) -> Iterable[bytes]:
        drop = environ.get(DROP_ENVIRON)
        if drop is not None:
            drop()  # the client sees the connection closed without a response
        return []

    def _caller_identity(self, identity: Identity) -> Rendered:
        return xml_response(
            f'<GetCallerIdentityResponse xmlns="{STS_NS}"><GetCallerIdentityResult>'
            f"<Arn>{escape(identity.arn)}</Arn><UserId>{escape(identity.user_id)}</UserId>"
            f"<Account>{identity.account}</Account></GetCallerIdentityResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>"
        )

    def _assume_role(
        self,
        caller: Identity,
        params: Mapping[str, str],
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> list[bytes]:
        req = AssumeRoleRequest.from_params(params)
        role: RoleRecord | None = None
        if req.role_arn:
            lookup = self.role_lookup or self.state.role
            role = lookup(req.role_arn)
        decision = decide_assume_role(
            caller,
            req,
            role,
            denied_accounts=self.faults.deny_accounts,
            org_id=self.state.organization_of(caller.account),
        )
        if isinstance(decision, AwsFault):
            return self._fail(decision, "query", "AssumeRole", start_response, caller.account)
        self.state.count("AssumeRole", sts_caller=caller.account)
        return self._send(self._issue(caller, req, decision), start_response)

    def _issue(
        self,
        caller: Identity,
        req: AssumeRoleRequest,
        granted: Granted,
    ) -> Rendered:
        role = granted.role
        assert req.session_name is not None
        partition = role.arn.split(":")[1]
        session_arn = (
            f"arn:{partition}:sts::{role.account}:assumed-role/{role.name}/{req.session_name}"
        )
        role_id = unique_id("AROA", role.arn)
        user_id = f"{role_id}:{req.session_name}"
        now = self.state.now()
        compressed = self.state.time_scale != 1.0
        date: str | None = None
        if compressed:
            # The session starts at the next whole second, and the response's Date header
            # says so: clients that measure a session as Expiration - Date (to be immune to
            # clock skew) then see its exact length and never think it outlives the server's
            # expiry. This matters when a second is a large part of a session.
            start = float(math.ceil(now))
            date = formatdate(start, usegmt=True)
            expires = start + granted.duration / self.state.time_scale
        else:
            # Like AWS: whole seconds, never later than now + DurationSeconds.
            expires = float(math.floor(now + granted.duration))
        access_key = new_access_key("ASIA")
        secret = new_secret()
        token = new_secret() + new_secret()
        self.state.register(
            access_key,
            Identity(
                kind="session",
                account=role.account,
                arn=session_arn,
                user_id=user_id,
                role_arn=role.arn,
                expires=expires,
                source_identity=granted.source_identity,
                transitive_tags=granted.transitive_tags,
                token_digest=digest(token),
                chained=caller.kind == "session",
                secret=secret,
            ),
        )
        source = (
            f"<SourceIdentity>{escape(granted.source_identity)}</SourceIdentity>"
            if granted.source_identity
            else ""
        )
        packed = (
            "<PackedPolicySize>"
            f"{min(100, 6 + len(req.policy or '') // 25 + 3 * len(req.tags))}"
            "</PackedPolicySize>"
            if req.policy or req.tags
            else ""
        )
        rendered = xml_response(
            f'<AssumeRoleResponse xmlns="{STS_NS}"><AssumeRoleResult>{source}'
            f"<AssumedRoleUser><Arn>{escape(session_arn)}</Arn>"
            f"<AssumedRoleId>{escape(user_id)}</AssumedRoleId></AssumedRoleUser>"
            f"<Credentials><AccessKeyId>{access_key}</AccessKeyId>"
            f"<SecretAccessKey>{secret}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken>"
            f"<Expiration>{_iso(expires, fraction=compressed)}</Expiration></Credentials>{packed}"
            f"</AssumeRoleResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></AssumeRoleResponse>"
        )
        if date is not None:
            rendered.headers.append(("Date", date))
        return rendered

"""Create in moto what a chain file declares: accounts, roles, trust policies, principals.

Provisioning talks to moto directly (with the sandbox's admin token, so the enforcing
middleware lets it through) and routes each call to an account with moto's
``x-moto-account-id`` header. It also fills the sandbox's own registry: the roles it
enforces and the principals' credentials. Provisioning is idempotent, because moto's state
is shared by every moto server in one process.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from rolechain.model.chain import Chain
from rolechain.model.schema import ChainFile, Principal
from rolechain.sandbox.middleware import ADMIN_HEADER, unique_id
from rolechain.sandbox.rules import trust_policy
from rolechain.sandbox.state import (
    Identity,
    RoleRecord,
    SandboxState,
    digest,
    new_access_key,
    new_secret,
)

DEFAULT_ACCOUNT = "123456789012"  # moto's default account
ORG_ACCOUNTS = 3  # default: accounts created for each role set with an organization query
DEFAULT_DESCRIPTION = "provisioned by the rolechain sandbox"
BUCKET_PURPOSES = ("logs", "backups")  # sample buckets in every account with a role
_ROLE_ARN = re.compile(r"arn:([\w-]+):iam::(\d{12}):role/((?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})")
_ASSUMED = re.compile(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([\w+=,.@-]+)/([\w+=,.@-]+)")
_USER = re.compile(r"arn:([\w-]+):iam::(\d{12}):user/((?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})")


@dataclass(frozen=True)
class PrincipalCredentials:
    """Sandbox credentials of one principal. Fake keys: safe to print."""

    name: str
    arn: str
    account: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def env(self, endpoint: str, region: str) -> dict[str, str]:
        values = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            # Keep every call on loopback: honour AWS_ENDPOINT_URL even if the user's
            # environment says otherwise, and never ask an instance metadata service.
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "false",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if self.session_token:
            values["AWS_SESSION_TOKEN"] = self.session_token
        return values


@dataclass
class Provisioned:
    """What provisioning created."""

    principals: dict[str, PrincipalCredentials] = field(default_factory=dict)
    roles: dict[str, RoleRecord] = field(default_factory=dict)
    organization_accounts: dict[str, list[str]] = field(default_factory=dict)
    buckets: dict[str, list[str]] = field(default_factory=dict)

    @property
    def accounts(self) -> list[str]:
        found = {r.account for r in self.roles.values()}
        found |= {p.account for p in self.principals.values()}
        return sorted(found)


@dataclass(frozen=True)
class _PrincipalShape:
    kind: str  # root | user | session
    account: str
    arn: str  # what GetCallerIdentity says
    trust_arn: str  # what a trust policy names
    role_arn: str | None
    user_path: str = "/"
    name: str = ""


def principal_shape(name: str, spec: Principal) -> _PrincipalShape:
    """Who a declared principal is in the sandbox."""
    account = spec.account_id or DEFAULT_ACCOUNT
    partition = spec.arn.split(":")[1] if spec.arn else "aws"
    arn = spec.arn
    if spec.is_root and arn:
        return _PrincipalShape("root", account, arn, arn, None, name="root")
    if arn and (m := _USER.fullmatch(arn)):
        kind = "user" if spec.kind == "user" else "session"
        return _PrincipalShape(kind, account, arn, arn, None, m.group(3) or "/", m.group(4))
    if arn and (m := _ASSUMED.fullmatch(arn)):
        role_arn = f"arn:{partition}:iam::{account}:role/{m.group(3)}"
        return _PrincipalShape("session", account, arn, role_arn, role_arn, name=m.group(3))
    if arn and (m := _ROLE_ARN.fullmatch(arn)):
        session = f"arn:{partition}:sts::{account}:assumed-role/{m.group(4)}/rolechain-sandbox"
        return _PrincipalShape("session", account, session, arn, arn, name=m.group(4))
    if spec.kind == "user":
        user_arn = f"arn:{partition}:iam::{account}:user/{name}"
        return _PrincipalShape("user", account, user_arn, user_arn, None, "/", name)
    role_arn = f"arn:{partition}:iam::{account}:role/{name}"
    session = f"arn:{partition}:sts::{account}:assumed-role/{name}/rolechain-sandbox"
    return _PrincipalShape("session", account, session, role_arn, role_arn, name=name)


def _members(model: ChainFile, name: str, resolved: Mapping[str, list[str]]) -> list[str]:
    spec = model.role_sets[name]
    accounts = spec.members if spec.accounts is not None else resolved.get(name, [])
    excluded = set(spec.exclude)
    return [spec.member_arn(a) for a in accounts if a not in excluded]


def trusted_arns(
    entries: list[str],
    model: ChainFile,
    principals: Mapping[str, Principal],
    resolved: Mapping[str, list[str]],
) -> list[str]:
    """The ARNs a role's ``trusts`` names."""
    out: list[str] = []
    for entry in entries:
        if entry == "*" or entry.startswith("arn:") or re.fullmatch(r"\d{12}", entry):
            out.append(entry)
        elif entry in principals:
            out.append(principal_shape(entry, principals[entry]).trust_arn)
        elif entry in model.roles:
            out.append(model.roles[entry].arn)
        elif entry in model.role_sets:
            out.extend(_members(model, entry, resolved))
        elif "@" in entry:
            set_name, _, account = entry.rpartition("@")
            if set_name in model.role_sets:
                out.append(model.role_sets[set_name].member_arn(account))
    return out


def _uses(model: ChainFile) -> tuple[bool, bool]:
    hops = [*model.roles.values(), *model.role_sets.values()]
    return any(h.source_identity for h in hops), any(h.tags for h in hops)


class _InAccount:
    """An admin client whose calls (and paginators' pages) go to one account."""

    def __init__(self, client: Any, account: str, local: threading.local) -> None:
        self._client = client
        self._target = account
        self._local = local

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if not callable(found):
            return found

        def call(*args: Any, **kwargs: Any) -> Any:
            self._local.account = self._target
            result = found(*args, **kwargs)
            if name == "get_paginator":
                return _PagesInAccount(result, self)
            return result

        return call


class _PagesInAccount:
    """A paginator whose pages are fetched from its client's account."""

    def __init__(self, paginator: Any, owner: _InAccount) -> None:
        self._paginator = paginator
        self._owner = owner

    def paginate(self, **kwargs: Any) -> Any:
        pages = iter(self._paginator.paginate(**kwargs))
        while True:
            self._owner._local.account = self._owner._target
            try:
                yield next(pages)
            except StopIteration:
                return


class Provisioner:
    """Provisions one sandbox through moto's HTTP API."""

    def __init__(
        self,
        endpoint: str,
        admin_token: str,
        state: SandboxState,
        region: str,
        *,
        organization_accounts: int = ORG_ACCOUNTS,
    ) -> None:
        self.endpoint = endpoint
        self.region = region
        self.state = state
        self.organization_accounts = organization_accounts
        self._session = _admin_session()
        self._token = admin_token
        self._clients: dict[str, Any] = {}  # service -> the admin client
        self._account = threading.local()  # the account this thread's admin calls go to
        self._role_names: dict[str, dict[str, str]] = {}  # account -> role name -> path
        self._principals: dict[str, Principal] = {}

    def client(self, service: str, account: str) -> Any:
        """An admin client of ``service`` whose requests go to ``account``.

        One client per service serves every account (creating a client per account took
        most of the time of provisioning thousands of accounts): each call made through
        the returned object, and the pages of a paginator it hands out, carry its account.
        """
        shared = self._clients.get(service)
        if shared is None:
            from botocore.config import Config

            session: Any = self._session
            shared = session.client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint,
                aws_access_key_id="AKIAROLECHAINSANDBOX",
                aws_secret_access_key="sandbox-admin",  # noqa: S106 - moto needs any key
                config=Config(retries={"total_max_attempts": 1}),
            )
            local = self._account

            def headers(request: Any, **_: Any) -> None:
                request.headers[ADMIN_HEADER] = self._token
                request.headers["x-moto-account-id"] = local.account

            shared.meta.events.register("before-sign.*.*", headers)
            self._clients[service] = shared
        return _InAccount(shared, account, self._account)

    # -- organizations ---------------------------------------------------------------------

    def _organization_accounts(
        self, name: str, model: ChainFile, principals: Mapping[str, Principal]
    ) -> list[str]:
        spec = model.role_sets[name]
        assert spec.organization is not None
        query = spec.organization
        if query.via in principals:
            management = principal_shape(query.via, principals[query.via]).account
        elif query.via in model.roles:
            management = model.roles[query.via].account_id
        else:
            management = DEFAULT_ACCOUNT
        orgs = self.client("organizations", management)
        if not _organization_exists(management):
            orgs.create_organization(FeatureSet="ALL")
        existing = {
            a["Name"]: a["Id"]
            for page in orgs.get_paginator("list_accounts").paginate()
            for a in page["Accounts"]
        }
        tags = [
            {"Key": k, "Value": v if isinstance(v, str) else (v[0] if v else "")}
            for k, v in query.tags.items()
        ]
        accounts: list[str] = []
        for index in range(1, self.organization_accounts + 1):
            account_name = f"{name}-{index}"
            if account_name not in existing:
                kwargs: dict[str, Any] = {
                    "Email": f"{account_name}@sandbox.rolechain.invalid",
                    "AccountName": account_name,
                }
                if tags:
                    kwargs["Tags"] = tags
                status = orgs.create_account(**kwargs)["CreateAccountStatus"]
                existing[account_name] = status["AccountId"]
            accounts.append(existing[account_name])
        ous = [ou for ou in query.ous if ou.startswith("ou-")]
        if ous:
            self._place_in_ou(orgs, management, ous[0], accounts)
        org_id = orgs.describe_organization()["Organization"]["Id"]
        self.state.join_organization(org_id, [management, *existing.values()])
        return accounts

    def _place_in_ou(self, orgs: Any, management: str, ou_id: str, accounts: list[str]) -> None:
        """Put ``accounts`` in an OU whose id is the one the chain file names.

        moto makes up OU ids, so the OU is created and then given the declared id in
        moto's state (the one place provisioning edits moto's objects directly).
        """
        root = orgs.list_roots()["Roots"][0]["Id"]
        if not _has_ou(management, ou_id):
            made = orgs.create_organizational_unit(ParentId=root, Name=ou_id)
            _rename_ou(management, made["OrganizationalUnit"]["Id"], ou_id)
        inside = {
            a["Id"]
            for page in orgs.get_paginator("list_accounts_for_parent").paginate(ParentId=ou_id)
            for a in page["Accounts"]
        }
        for account in accounts:
            if account not in inside:
                parent = orgs.list_parents(ChildId=account)["Parents"][0]["Id"]
                orgs.move_account(
                    AccountId=account, SourceParentId=parent, DestinationParentId=ou_id
                )

    # -- IAM ---------------------------------------------------------------------------------

    def _put_role(self, record: RoleRecord) -> None:
        match = _ROLE_ARN.fullmatch(record.arn)
        assert match is not None
        path, name = "/" + match.group(3), match.group(4)
        iam = self.client("iam", record.account)
        document = json.dumps(record.trust_policy)
        paths = self._role_names.get(record.account)
        if paths is None:
            paths = {
                r["RoleName"]: r.get("Path") or "/"
                for page in iam.get_paginator("list_roles").paginate()
                for r in page["Roles"]
            }
            self._role_names[record.account] = paths
        description = record.description or DEFAULT_DESCRIPTION
        if paths.get(name, path) != path:
            # A role's name is unique in its account whatever its path, and a path cannot
            # change: a role of the same name elsewhere is replaced (as a redeploy would).
            iam.delete_role(RoleName=name)
            del paths[name]
        if name in paths:
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=document)
            iam.update_role(
                RoleName=name,
                MaxSessionDuration=record.max_session_duration,
                Description=description,
            )
        else:
            iam.create_role(
                RoleName=name,
                Path=path,
                AssumeRolePolicyDocument=document,
                MaxSessionDuration=record.max_session_duration,
                Description=description,
            )
            paths[name] = path
        self.state.put_role(record)

    def _principal(self, name: str, spec: Principal) -> PrincipalCredentials:
        shape = principal_shape(name, spec)
        access_key = new_access_key("AKIA" if shape.kind != "session" else "ASIA")
        secret = new_secret()
        token: str | None = None
        user_id = shape.account
        if shape.kind == "user":
            iam = self.client("iam", shape.account)
            users = {
                u["UserName"]
                for page in iam.get_paginator("list_users").paginate()
                for u in page["Users"]
            }
            if shape.name not in users:
                iam.create_user(UserName=shape.name, Path=shape.user_path)
            user_id = iam.get_user(UserName=shape.name)["User"]["UserId"]
        elif shape.kind == "session":
            token = new_secret() + new_secret()
            assert shape.role_arn is not None
            user_id = unique_id("AROA", shape.role_arn) + ":rolechain-sandbox"
            if not self.state.role(shape.role_arn):
                root = f"arn:{shape.arn.split(':')[1]}:iam::{shape.account}:root"
                self._put_role(RoleRecord(shape.role_arn, trust_policy([root]), 43200))
        self.state.register(
            access_key,
            Identity(
                kind=shape.kind,  # type: ignore[arg-type]
                account=shape.account,
                arn=shape.arn,
                user_id=user_id,
                role_arn=shape.role_arn,
                token_digest=digest(token) if token else None,
                secret=secret,
            ),
        )
        return PrincipalCredentials(name, shape.arn, shape.account, access_key, secret, token)

    # -- S3 ----------------------------------------------------------------------------------

    def _buckets(self, account: str) -> list[str]:
        s3 = self.client("s3", account)
        have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        # S3 names are global: the account id keeps them unique.
        names = [f"rolechain-{purpose}-{account}" for purpose in BUCKET_PURPOSES]
        for bucket in names:
            if bucket not in have:
                s3.create_bucket(Bucket=bucket, **bucket_location(self.region))
        return names

    # -- all of it ---------------------------------------------------------------------------

    def provision(
        self,
        run: Chain,
        spec: Chain | None = None,
        *,
        roles: Iterable[Mapping[str, Any]] = (),
    ) -> Provisioned:
        """Roles, trusts and organizations from ``spec`` (default: ``run``) and ``roles``;
        principals and their credentials from ``run``, the chain whose jobs will be run."""
        declared = (spec or run).model
        self._principals = {**declared.principals, **run.model.principals}
        out = Provisioned()
        self._roles_into(out, declared, roles)
        for name, principal in run.model.principals.items():
            out.principals[name] = self._principal(name, principal)
        self._buckets_into(out)
        return out

    def provision_more(
        self, spec: Chain | None, *, roles: Iterable[Mapping[str, Any]] = ()
    ) -> Provisioned:
        """Add (or change) the roles, trusts and organizations of ``spec`` and ``roles`` in
        a sandbox already provisioned; principals and their credentials stay as they are."""
        declared = spec.model if spec is not None else ChainFile()
        saved = self._principals
        self._principals = {**declared.principals, **saved}
        try:
            out = Provisioned()
            self._roles_into(out, declared, roles)
            self._buckets_into(out)
        finally:
            self._principals = saved
        return out

    def _roles_into(
        self, out: Provisioned, declared: ChainFile, roles: Iterable[Mapping[str, Any]]
    ) -> None:
        principals = self._principals
        for name, role_set in declared.role_sets.items():
            if role_set.organization is not None:
                out.organization_accounts[name] = self._organization_accounts(
                    name, declared, principals
                )
        source_identity, tag_session = _uses(declared)
        records = _role_records(
            declared, principals, out.organization_accounts, source_identity, tag_session
        )
        for record in [*records, *iam_role_records(roles)]:
            self._put_role(record)
            out.roles[record.arn] = record

    def _buckets_into(self, out: Provisioned) -> None:
        for account in sorted({r.account for r in out.roles.values()}):
            out.buckets[account] = self._buckets(account)


def iam_role_records(roles: Iterable[Mapping[str, Any]]) -> list[RoleRecord]:
    """Role records from IAM's own shape of a role (``GetRole``'s ``Role``, an item of
    ``ListRoles``): ``Arn``, ``AssumeRolePolicyDocument`` (an object, JSON text or IAM's
    URL-encoded JSON), and optionally ``MaxSessionDuration`` and ``Description``. This is how
    to provision trust policies a chain file cannot express (``"*"``, service principals,
    conditions), for instance from ``aws iam list-roles`` output."""
    records: list[RoleRecord] = []
    for index, item in enumerate(roles):
        arn = item.get("Arn")
        if not isinstance(arn, str) or not _ROLE_ARN.fullmatch(arn):
            raise ValueError(f"roles[{index}]: 'Arn' {arn!r} is not an IAM role ARN")
        document = item.get("AssumeRolePolicyDocument")
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError:
                document = json.loads(unquote(document))
        if not isinstance(document, Mapping):
            raise ValueError(f"roles[{index}] ({arn}): AssumeRolePolicyDocument is not a policy")
        records.append(
            RoleRecord(
                arn,
                dict(document),
                int(item.get("MaxSessionDuration") or 3600),
                description=item.get("Description"),
            )
        )
    return records


def _role_records(
    model: ChainFile,
    principals: Mapping[str, Principal],
    resolved: Mapping[str, list[str]],
    source_identity: bool,
    tag_session: bool,
) -> Iterator[RoleRecord]:
    for role in model.roles.values():
        trusted = trusted_arns(role.trusts, model, principals, resolved)
        document = trust_policy(
            trusted,
            external_id=role.external_id,
            source_identity=source_identity,
            tag_session=tag_session,
        )
        yield RoleRecord(role.arn, document, role.max_session_duration)
    for name, role_set in model.role_sets.items():
        trusted = trusted_arns(role_set.trusts, model, principals, resolved)
        document = trust_policy(
            trusted,
            external_id=role_set.external_id,
            source_identity=source_identity,
            tag_session=tag_session,
        )
        for arn in _members(model, name, resolved):
            yield RoleRecord(arn, document, role_set.max_session_duration)


_SESSION: Any = None
_SESSION_LOCK = threading.Lock()


def _admin_session() -> Any:
    """One boto3 session for all provisioning in this process: clients made from a warm
    session cost milliseconds, a fresh session's first client about 100 ms.

    It reads no profile: the clients carry explicit sandbox keys, and an ``AWS_PROFILE``
    naming a profile that does not exist must not stop the sandbox."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            import boto3
            import botocore.session

            core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
            _SESSION = boto3.session.Session(botocore_session=core)
        return _SESSION


def bucket_location(region: str) -> dict[str, Any]:
    """CreateBucket's location for ``region``: none in us-east-1 (S3 refuses one there),
    the region everywhere else (S3 refuses a bucket without one outside us-east-1)."""
    if region == "us-east-1":
        return {}
    return {"CreateBucketConfiguration": {"LocationConstraint": region}}


def _organizations_backend(account: str) -> Any:
    from moto.organizations.models import organizations_backends

    return organizations_backends[account]["aws"]


def _has_ou(account: str, ou_id: str) -> bool:
    return any(ou.id == ou_id for ou in _organizations_backend(account).ou)


def _rename_ou(account: str, old: str, new: str) -> None:
    for ou in _organizations_backend(account).ou:
        if ou.id == old:
            ou.id = new


def _organization_exists(account: str) -> bool:
    """Whether moto already has an organization managed from ``account`` (moto's state is
    per process, so an earlier sandbox may have made it)."""
    from moto.organizations.models import organizations_backends

    backend = organizations_backends[account]["aws"]
    return getattr(backend, "org", None) is not None

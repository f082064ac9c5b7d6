"""Credentials of one planned target, through the on-disk cache, for any AWS tool.

:func:`target_credentials` is what ``rolechain credentials``, ``exec`` and ``env`` share:

1. pick the job (the one that reaches the target, or the one named) and plan it for that
   target alone, with the stable run id :data:`CREDENTIALS_RUN_ID` (a session-name
   template with ``{run_id}`` would otherwise change every call and defeat the cache);
2. load the principal's starting credentials; their access key id (hashed), the principal
   and any endpoint override make the root of every cache key;
3. if the target's own hop is in the cache and fresh, return it: no AWS call at all;
4. otherwise build the same :class:`~rolechain.executor.context.RunContext` a run builds
   (retry policy, AssumeRole limiter, identity check: no root user, the declared ARN,
   re-plan when "user keys" turn out to be a session; Organizations discovery; the hop
   tree) with a :class:`CachingAssumer` around the STS assumer, so every hop on the path
   is read from the cache when fresh and written to it when assumed. A second target
   through the same hub assumes only its own hop.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.credentials import Credentials, ReadOnlyCredentials

from rolechain.aws.assumer import Assumer, IssuedCredentials
from rolechain.aws.credentials import TokenProvider
from rolechain.aws.identity import SESSION_NOTE
from rolechain.aws.session import AwsSessions, principal_credentials
from rolechain.credentials.cache import (
    CachedCredentials,
    CredentialCache,
    path_keys,
    root_fingerprint,
    to_cached,
)
from rolechain.errors import CredentialsError, UsageError
from rolechain.executor.context import RunContext
from rolechain.executor.options import RunOptions
from rolechain.model.chain import Chain
from rolechain.model.schema import unknown_choice
from rolechain.model.targets import (
    DISCOVERED,
    expand_targets,
    is_discoverable_member,
    is_glob,
    split_member,
    target_names,
)
from rolechain.planner.plan import Hop, Plan, Target

CREDENTIALS_RUN_ID = "credentials"
RECURSION_MARKER = "ROLECHAIN_CREDENTIALS_ACTIVE"
_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL")


@dataclass(frozen=True, repr=False)
class TargetCredentials:
    """A target's credentials and where they came from. ``repr`` shows no secret."""

    job: str
    target: str
    role_arn: str
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    from_cache: bool
    assume_calls: int = 0
    hops: tuple[str, ...] = ()  # hop labels, first hop first
    notes: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = ()  # notes to show even without --verbose

    def __repr__(self) -> str:
        return (
            f"TargetCredentials(job={self.job!r}, target={self.target!r}, "
            f"expiration={self.expiration.isoformat()}, from_cache={self.from_cache})"
        )

    def remaining(self, now: datetime | None = None) -> float:
        return (self.expiration - (now or datetime.now(UTC))).total_seconds()

    def credential_process(self) -> dict[str, Any]:
        """The ``credential_process`` JSON document (Version 1)."""
        return {
            "Version": 1,
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "SessionToken": self.session_token,
            "Expiration": self.expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


DEFERRED_TOKEN = "\0deferred"  # noqa: S105 - a marker, not a secret


class CachingAssumer:
    """An :class:`~rolechain.aws.assumer.Assumer` that reads and writes the credential cache.

    ``keys`` maps hop ids to cache keys (:func:`~rolechain.credentials.cache.path_keys`);
    a hop without a key is passed straight through. ``at_least`` asks more remaining
    validity of some hops (the target hop of ``exec --expect-runtime``).

    MFA: the hop tree asks for a token before it calls the assumer. Give the tree
    :meth:`deferred_tokens` instead of the real provider: the token is then asked for only
    when the hop really has to be assumed, so a cached MFA session is reused without a
    prompt (and works unattended).
    """

    def __init__(
        self,
        inner: Assumer,
        cache: CredentialCache,
        keys: Mapping[str, str],
        *,
        at_least: Mapping[str, float] | None = None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.keys = dict(keys)
        self.at_least = dict(at_least or {})
        self.token_provider = token_provider
        self.served: list[str] = []  # hop ids served from the cache
        self.assumed: list[str] = []  # hop ids assumed by the inner assumer

    @staticmethod
    def deferred_tokens(hop: Hop) -> str:
        """A token provider for the hop tree that defers to :meth:`assume`."""
        return DEFERRED_TOKEN

    def assume(
        self, hop: Hop, caller: Credentials, token_code: str | None = None
    ) -> IssuedCredentials:
        key = self.keys.get(hop.id)
        if key is not None:
            found = self.cache.get(key, at_least=self.at_least.get(hop.id, 0.0))
            if found is not None:
                self.served.append(hop.id)
                return _issued(found)
        if token_code == DEFERRED_TOKEN:
            token_code = self._token(hop)
        issued = self.inner.assume(hop, caller, token_code)
        self.assumed.append(hop.id)
        if key is not None:
            self.cache.put(key, hop, _cached(issued))
        return issued

    def _token(self, hop: Hop) -> str:
        if self.token_provider is None:
            raise CredentialsError(
                f"hop {hop.label} needs an MFA code (mfa_serial {hop.mfa_serial}) and there is "
                "no terminal to ask on",
                hint="run the command once from a terminal: the MFA session is then cached "
                "and reused until it nears expiry",
            )
        return self.token_provider(hop)


def _issued(found: CachedCredentials) -> IssuedCredentials:
    return IssuedCredentials(
        access_key=found.access_key_id,
        secret_key=found.secret_access_key,
        token=found.session_token,
        expiration=found.expiration,
        issued_at=found.issued_at,
    )


def _cached(issued: IssuedCredentials) -> CachedCredentials:
    return to_cached(
        issued.access_key,
        issued.secret_key,
        issued.token,
        issued.expiration,
        issued_at=issued.issued_at,
    )


# -- choosing the job --------------------------------------------------------------------


def _job_targets(chain: Chain, job: str) -> list[str]:
    model = chain.model
    names, _ = expand_targets(model, model.jobs[job].targets)
    return names


def _reaches(chain: Chain, names: list[str], target: str) -> bool:
    if target in names:
        return True
    member = split_member(target)
    return bool(
        member
        and f"{member[0]}@{DISCOVERED}" in names
        and is_discoverable_member(chain.model, target)
    )


def jobs_reaching(chain: Chain, target: str) -> list[str]:
    """Jobs of ``chain`` whose targets include ``target`` (sorted)."""
    return sorted(j for j in chain.model.jobs if _reaches(chain, _job_targets(chain, j), target))


def choose_job(chain: Chain, target: str, job: str | None) -> str:
    """``job`` if given and valid, else the one job that reaches ``target``."""
    model = chain.model
    member = split_member(target)
    if member and member[1] == DISCOVERED:
        raise UsageError(
            f"{target!r} stands for every account of role set {member[0]!r}; credentials are "
            "for one role",
            hint=f"name one member: --target {member[0]}@ACCOUNT_ID",
        )
    if is_glob(target):
        # A glob is never widened to "all" nor narrowed to a guess: name the one role.
        raise UsageError(
            f"{target!r} is a glob; credentials are for one role, not a selection",
            hint=f"name one member: --target {member[0]}@ACCOUNT_ID"
            if member
            else "name one role or one role-set member 'set@account'",
        )
    if job is not None:
        if job not in model.jobs:
            raise UsageError(unknown_choice("job", job, list(model.jobs)))
        return job
    reaching = jobs_reaching(chain, target)
    if len(reaching) == 1:
        return reaching[0]
    if not reaching:
        known = target_names(model)
        text = f"no job of the chain reaches target {target!r}"
        if target not in known and not split_member(target):
            text = unknown_choice("target", target, known)
        listed = ", ".join(
            f"{name} (to: {', '.join(_job_targets(chain, name)) or '-'})" for name in model.jobs
        )
        raise UsageError(
            text,
            hint=f"jobs: {listed}" if listed else "the chain file has no jobs; add one",
        )
    raise UsageError(
        f"{len(reaching)} jobs reach target {target!r}: {', '.join(reaching)}",
        hint="pick one with --job (jobs differ in principal, path and session name)",
    )


def plan_target(chain: Chain, job: str, target: str) -> tuple[Plan, Target]:
    """The plan of ``job`` narrowed to ``target``, with the stable run id."""
    from rolechain.planner import plan as make_plan

    planned = make_plan(chain, job, targets=[target], run_id=CREDENTIALS_RUN_ID)
    return planned, _target(planned, target)


def _target(planned: Plan, target: str) -> Target:
    try:
        return planned.target(target)
    except KeyError:
        found = ", ".join(t.name for t in planned.targets)
        raise UsageError(
            f"job {planned.job!r} does not plan target {target!r} (it plans: {found})"
        ) from None


# -- resolving ---------------------------------------------------------------------------


def endpoint_override(environ: Mapping[str, str] | None = None) -> str | None:
    """The STS endpoint override in the environment, if any (part of the cache key)."""
    env = os.environ if environ is None else environ
    for name in _ENDPOINT_VARIABLES:
        if env.get(name):
            return env[name]
    return None


def target_region(planned: Plan, target: Target) -> str:
    """The region a target's credentials are for: its first region, the job's, the
    target hop's STS region, else the chain's default region."""
    hop = planned.hop(target.hop_id)
    concrete = [r for r in target.regions if r != "all"]
    if concrete:
        return concrete[0]
    regions = [r for r in planned.regions if r != "all"]
    if regions:
        return regions[0]
    return hop.region or planned.region


def target_credentials(
    chain: Chain,
    target: str,
    *,
    job: str | None = None,
    cache: CredentialCache | None = None,
    at_least: float = 0.0,
    token_provider: TokenProvider | None = None,
    root: Credentials | None = None,
    sessions: AwsSessions | None = None,
    environ: Mapping[str, str] | None = None,
) -> TargetCredentials:
    """Credentials for ``target`` of ``chain`` (see the module docstring for the steps).

    ``cache`` None means no cache. ``at_least`` asks the target's credentials to stay valid
    that many more seconds (a cached entry that would not is not used). ``root`` replaces
    the principal's credentials (tests, the Python API).
    """
    env = os.environ if environ is None else environ
    job = choose_job(chain, target, job)
    planned, planned_target = plan_target(chain, job, target)
    if root is None:
        root, frozen = _principal(chain, planned, target, env)
    else:
        frozen = root.get_frozen_credentials()
    if not frozen.access_key:
        raise CredentialsError(
            f"principal {planned.principal!r} has no access key id",
            hint="check the principal's source in the chain file",
        )
    fingerprint = root_fingerprint(
        frozen.access_key, principal=planned.principal, endpoint=endpoint_override(env)
    )
    path = planned.path_hops(planned_target)
    keys = path_keys(fingerprint, path)
    leaf = path[-1]
    if cache is not None:
        found = cache.get(keys[leaf.id], at_least=at_least)
        if found is not None:
            return _result(planned, planned_target, found, from_cache=True, calls=0)

    caching: list[CachingAssumer] = []

    def through_cache(inner: Assumer, final: Plan) -> Assumer:
        # Called with the plan the context settled on (the identity check may re-plan).
        assert cache is not None
        path = final.path_hops(_target(final, target))
        wrapper = CachingAssumer(
            inner,
            cache,
            path_keys(fingerprint, path),
            at_least={path[-1].id: at_least},
            token_provider=token_provider,
        )
        caching[:] = [wrapper]
        return wrapper

    context = RunContext(
        planned,
        chain,
        RunOptions(targets=(target,), concurrency=1, run_id=CREDENTIALS_RUN_ID),
        credentials=root,
        wrap_assumer=through_cache if cache is not None else None,
        token_provider=CachingAssumer.deferred_tokens if cache is not None else token_provider,
        aws_sessions=sessions or AwsSessions(concurrency=1),
    ).prepare()
    planned = context.plan
    planned_target = _target(planned, target)
    leaf = planned.hop(planned_target.hop_id)
    hop_creds = context.credentials_for(planned_target)
    creds = hop_creds.get_frozen_credentials()
    access_key, secret_key, token = creds.access_key, creds.secret_key, creds.token
    if not (access_key and secret_key and token):  # AssumeRole always returns all three
        raise CredentialsError(f"hop {leaf.label} returned incomplete credentials")
    result = to_cached(access_key, secret_key, token, hop_creds.expiry_time)
    served = bool(caching and leaf.id in caching[0].served)
    calls = context.stats.assume_calls
    return _result(planned, planned_target, result, from_cache=served, calls=calls)


def _loop_hint(source: str, env: Mapping[str, str]) -> str:
    """What breaks the loop, for how the principal's credentials were looked for."""
    profile = env.get("AWS_PROFILE")
    if source != "profile" and profile:
        return (
            f"unset AWS_PROFILE (now {profile!r}) where this credential_process runs, or give "
            "the principal 'source: profile' with a profile that holds its own credentials"
        )
    return (
        "give the principal credentials that do not come from rolechain: 'source: profile' "
        "naming a profile with its own keys or login, or 'source: env'"
    )


def _loop_key(chain: Chain, job: str, target: str) -> str:
    material = json.dumps([sorted(os.path.abspath(f) for f in chain.files), job, target])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _principal(
    chain: Chain, planned: Plan, target: str, env: Mapping[str, str]
) -> tuple[Credentials, ReadOnlyCredentials]:
    """The principal's credentials, loaded (and frozen) with a guard against loops.

    A principal whose credentials come from a profile whose ``credential_process`` is this
    same ``rolechain credentials`` call (often through ``AWS_PROFILE``) would start itself
    forever. Every call records what it resolves in :data:`RECURSION_MARKER` while it loads
    the principal, so the nested call sees itself and stops. Nesting different chains or
    targets (one rolechain export as another chain's principal) still works.
    """
    key = _loop_key(chain, planned.job, target)
    active = [k for k in env.get(RECURSION_MARKER, "").split(",") if k]
    if key in active:
        raise CredentialsError(
            f"the starting credentials of principal {planned.principal!r} come from this same "
            f"rolechain credentials call (target {target!r}), e.g. through AWS_PROFILE naming "
            "the profile rolechain serves: that would loop forever",
            hint=_loop_hint(planned.principal_source, env),
        )
    previous = os.environ.get(RECURSION_MARKER)
    os.environ[RECURSION_MARKER] = ",".join([*active, key])
    try:
        root = principal_credentials(planned.principal_source, planned.principal_profile)
        return root, root.get_frozen_credentials()
    finally:
        if previous is None:
            os.environ.pop(RECURSION_MARKER, None)
        else:
            os.environ[RECURSION_MARKER] = previous


def _result(
    planned: Plan,
    target: Target,
    found: CachedCredentials,
    *,
    from_cache: bool,
    calls: int,
) -> TargetCredentials:
    hops = planned.path_hops(target)
    return TargetCredentials(
        job=planned.job,
        target=target.name,
        role_arn=target.role_arn,
        region=target_region(planned, target),
        access_key_id=found.access_key_id,
        secret_access_key=found.secret_access_key,
        session_token=found.session_token,
        expiration=found.expiration,
        from_cache=from_cache,
        assume_calls=calls,
        hops=tuple(h.label for h in hops),
        notes=tuple(str(n) for n in planned.notes),
        warnings=tuple(str(n) for n in planned.notes if n.kind == SESSION_NOTE),
    )

"""What the sandbox knows that moto does not: who each access key belongs to, and roles."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

IdentityKind = Literal["root", "user", "session"]


@dataclass(frozen=True)
class Identity:
    """The owner of one access key.

    ``role_arn`` is the IAM ARN of the role a session belongs to (with its path); ``arn`` is
    what GetCallerIdentity answers (``assumed-role/<name>/<session>`` for sessions).
    ``expires`` is wall-clock epoch seconds (None: long-term keys).
    """

    kind: IdentityKind
    account: str
    arn: str
    user_id: str
    role_arn: str | None = None
    expires: float | None = None
    source_identity: str | None = None
    transitive_tags: tuple[tuple[str, str], ...] = ()
    token_digest: str | None = None
    chained: bool = False  # a session assumed with another session's credentials
    # The secret access key, to check request signatures as AWS does (kept in memory only,
    # never shown: None for identities registered without one, whose signatures are not
    # checked).
    secret: str | None = field(default=None, repr=False, compare=False)

    def token_matches(self, token: str | None) -> bool:
        """Whether ``token`` is this session's token (keys without one take none)."""
        if self.token_digest is None:
            return token is None
        return token is not None and digest(token) == self.token_digest

    @property
    def partition(self) -> str:
        return self.arn.split(":")[1]

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    @property
    def transitive_keys(self) -> dict[str, str]:
        """Inherited transitive tag keys, lower-cased -> as given."""
        return {k.lower(): k for k, _ in self.transitive_tags}


@dataclass(frozen=True)
class RoleRecord:
    """A role as the sandbox enforces it: its trust policy and MaxSessionDuration."""

    arn: str
    trust_policy: Mapping[str, Any]
    max_session_duration: int = 3600
    description: str | None = None

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def name(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


def digest(token: str) -> str:
    """What the registry keeps of a session token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_access_key(prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret() -> str:
    return secrets.token_urlsafe(30)[:40]


@dataclass(frozen=True)
class StsCall:
    """One STS call the sandbox answered: when (``time.monotonic()``), what, the calling
    account (whose quota it used) and the error code (None: it succeeded)."""

    at: float
    action: str
    account: str
    code: str | None = None


STS_LOG_SIZE = 100_000


@dataclass
class SandboxState:
    """Registry of issued credentials and provisioned roles, plus call counters.

    ``sts_log`` keeps the last 100,000 STS calls answered (:class:`StsCall`), to see how a
    run met the STS quota over time. Thread-safe: the server answers requests in threads.
    """

    time_scale: float = 1.0
    identities: dict[str, Identity] = field(default_factory=dict)
    roles: dict[str, RoleRecord] = field(default_factory=dict)
    organizations: dict[str, str] = field(default_factory=dict)  # account -> organization id
    calls: Counter[str] = field(default_factory=Counter)
    denied: Counter[str] = field(default_factory=Counter)
    connections: int = 0  # TCP connections that carried a request
    sts_log: deque[StsCall] = field(default_factory=lambda: deque(maxlen=STS_LOG_SIZE))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.time()

    def register(self, access_key: str, identity: Identity) -> None:
        with self._lock:
            self.identities[access_key] = identity

    def identity(self, access_key: str) -> Identity | None:
        with self._lock:
            return self.identities.get(access_key)

    def expire(self, access_key: str) -> None:
        """Make a key's credentials expire now (for tests and rehearsals)."""
        with self._lock:
            found = self.identities[access_key]
            self.identities[access_key] = replace(found, expires=self.now() - 1)

    def put_role(self, role: RoleRecord) -> None:
        with self._lock:
            self.roles[role.arn] = role

    def role(self, arn: str) -> RoleRecord | None:
        with self._lock:
            return self.roles.get(arn)

    def count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def join_organization(self, org_id: str, accounts: Iterable[str]) -> None:
        """Record that ``accounts`` belong to organization ``org_id``."""
        with self._lock:
            for account in accounts:
                self.organizations[account] = org_id

    def organization_of(self, account: str) -> str | None:
        """The organization of ``account`` (``aws:PrincipalOrgID``), or None."""
        with self._lock:
            return self.organizations.get(account)

    def count(
        self, operation: str, *, denied_code: str | None = None, sts_caller: str | None = None
    ) -> None:
        """Count a call answered; ``sts_caller``: an STS call of that account (logged)."""
        with self._lock:
            self.calls[operation] += 1
            if denied_code:
                self.denied[denied_code] += 1
            if sts_caller is not None:
                self.sts_log.append(
                    StsCall(time.monotonic(), operation, sts_caller, denied_code or None)
                )

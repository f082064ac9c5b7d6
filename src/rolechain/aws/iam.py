"""Reading roles from IAM: ``GetRole`` and ``ListRoles`` with one set of credentials.

Every call goes through the error seam (:func:`rolechain.aws.errors.aws_call`), is retried
on transient errors (:mod:`rolechain.aws.retry`), and uses a client from the run's shared
botocore session (:class:`~rolechain.aws.session.AwsSessions`). ``ListRoles`` is paginated
with botocore's paginator. IAM is a global service: the region only picks the endpoint.

A role comes back as a :class:`LiveRole`: its ARN, path, MaxSessionDuration, description and
trust policy (botocore decodes IAM's URL-encoded policy JSON; a string is parsed here too).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from rolechain.aws.calls import call_with_retries
from rolechain.aws.errors import aws_call
from rolechain.aws.session import ServiceCalls
from rolechain.errors import AwsContext, AwsError

NOT_FOUND = "NoSuchEntity"


@dataclass(frozen=True)
class LiveRole:
    """A role as IAM describes it."""

    arn: str
    name: str
    path: str
    max_session_duration: int
    trust_policy: dict[str, Any] | str
    description: str | None = None

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def partition(self) -> str:
        return self.arn.split(":")[1]

    @property
    def path_name(self) -> str:
        """``path/name`` without the leading ``/`` (a role set's ``role_name``)."""
        return (self.path + self.name).lstrip("/")

    @classmethod
    def from_api(cls, role: dict[str, Any]) -> LiveRole:
        document: Any = role.get("AssumeRolePolicyDocument") or {}
        if isinstance(document, str):
            document = _decode(document)
        return cls(
            arn=str(role["Arn"]),
            name=str(role["RoleName"]),
            path=str(role.get("Path") or "/"),
            max_session_duration=int(role.get("MaxSessionDuration") or 3600),
            trust_policy=document,
            description=role.get("Description"),
        )


def _decode(text: str) -> dict[str, Any] | str:
    for candidate in (text, unquote(text)):
        try:
            found = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(found, dict):
            return found
    return text  # left for the policy parser to report


@dataclass
class IamCalls:
    """Thread-safe count of IAM calls by operation (a benchmark and report figure)."""

    counts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, operation: str) -> None:
        with self._lock:
            self.counts[operation] += 1

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.counts.values())


class Iam(ServiceCalls):
    """IAM reads with one set of credentials (a hop's, or a reader's). ``calls`` counts
    them."""

    service = "iam"

    def __init__(self, *args: Any, calls: IamCalls | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = calls

    def _count(self, operation: str) -> None:
        if self.calls is not None:
            self.calls.add(operation)

    def get_role(self, name: str) -> LiveRole | None:
        """The role named ``name`` (without its path), or None if it does not exist."""
        context = AwsContext(hop=self.hop, operation="iam:GetRole")

        def call() -> LiveRole:
            self._count("GetRole")
            with aws_call(context):
                response = self.client().get_role(RoleName=name)
            return LiveRole.from_api(response["Role"])

        try:
            return call_with_retries(call, self.policy, stats=self.stats)
        except AwsError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise

    def list_roles(self, path_prefix: str | None = None) -> list[LiveRole]:
        """Every role of the account (under ``path_prefix``), following pagination."""
        context = AwsContext(hop=self.hop, operation="iam:ListRoles")
        params: dict[str, Any] = {"PathPrefix": path_prefix} if path_prefix else {}

        def call() -> list[LiveRole]:
            roles: list[LiveRole] = []
            with aws_call(context):
                paginator = self.client().get_paginator("list_roles")
                for page in paginator.paginate(**params):
                    self._count("ListRoles")
                    roles.extend(LiveRole.from_api(r) for r in page.get("Roles", []))
            return roles

        return call_with_retries(call, self.policy, stats=self.stats)

"""Hop credentials for ``verify`` and ``discover``, prepared exactly as a run prepares them.

:func:`prepare_hops` is the only place in :mod:`rolechain.live` that touches the executor's
run preparation: the principal's credentials, GetCallerIdentity and the principal check,
Organizations discovery through its ``via`` hop, the shared botocore session, retries, the
AssumeRole rate limit and the hop tree (each distinct hop assumed once, lazily, parents
first). It builds the same :class:`~rolechain.executor.context.RunContext` every run uses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from botocore.credentials import Credentials

from rolechain.aws.credentials import HopCredentials, TokenProvider
from rolechain.aws.identity import CallerIdentity
from rolechain.aws.retry import CallStats, RetryPolicy
from rolechain.aws.session import AwsSessions
from rolechain.errors import RolechainError
from rolechain.executor.context import RunContext
from rolechain.executor.options import RunOptions
from rolechain.model.chain import Chain
from rolechain.planner.plan import Plan


@dataclass(frozen=True)
class PreparedHops:
    """A prepared run's plan (Organizations resolved) and its hops' credentials."""

    plan: Plan
    sessions: AwsSessions
    policy: RetryPolicy
    stats: CallStats
    identity: CallerIdentity | None
    credentials: Callable[[str], HopCredentials]  # hop id -> credentials (assumed once)
    failure: Callable[[str], RolechainError | None]  # hop id -> its error, if it failed


def prepare_hops(
    plan: Plan,
    chain: Chain,
    *,
    credentials: Credentials | None = None,
    concurrency: int = 16,
    aws_sessions: AwsSessions | None = None,
    token_provider: TokenProvider | None = None,
) -> PreparedHops:
    """Prepare ``plan`` of ``chain`` as ``rolechain run`` would, without running tasks.

    ``credentials`` replaces the principal's (the sandbox's, in tests). Raises what a run
    raises before its first task: CredentialsError, AwsError, PlanError.
    """
    context = RunContext(
        plan,
        chain,
        RunOptions(concurrency=concurrency, check_identity=True),
        credentials=credentials,
        token_provider=token_provider,
        aws_sessions=aws_sessions,
    ).prepare()
    return PreparedHops(
        plan=context.plan,
        sessions=context.sessions,
        policy=context.policy,
        stats=context.stats,
        identity=context.identity,
        credentials=context.tree.credentials,
        failure=context.tree.failed,
    )

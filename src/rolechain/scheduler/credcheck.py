"""Does every scheduled job's principal have credentials? Checked when the scheduler starts.

Without ``call``, the principal's source is only looked at (the environment, the AWS config
and credential files, the container and instance endpoints, as botocore finds them):
credentials that would refresh through AWS (an assume-role or SSO profile) are not
refreshed, so no AWS call is made. With ``call``, each principal's credentials call
``sts:GetCallerIdentity`` once, which also proves AWS accepts them and that they are of the
principal's account.
"""

from __future__ import annotations

from dataclasses import dataclass

from rolechain.errors import RolechainError
from rolechain.model.chain import Chain
from rolechain.scheduler.unattended import Warning_


@dataclass(frozen=True)
class PrincipalCheck:
    """What was found for one principal: a problem (None: fine) and, with a call, who."""

    principal: str
    jobs: tuple[str, ...]
    problem: str | None = None
    caller: str | None = None


def check_principals(chain: Chain, jobs: list[str], *, call: bool = False) -> list[PrincipalCheck]:
    """One :class:`PrincipalCheck` per principal the ``jobs`` start from, sorted by name."""
    from rolechain.aws.session import AwsSessions, principal_credentials

    sessions: AwsSessions | None = None
    out: list[PrincipalCheck] = []
    for name in sorted({chain.model.jobs[j].from_ for j in jobs}):
        principal = chain.model.principals[name]
        users = tuple(j for j in jobs if chain.model.jobs[j].from_ == name)
        try:
            creds = principal_credentials(principal.source, principal.profile, refresh=call)
        except RolechainError as exc:
            out.append(PrincipalCheck(name, users, problem=exc.message))
            continue
        if not call:
            out.append(PrincipalCheck(name, users))
            continue
        from rolechain.aws.identity import caller_identity

        sessions = sessions or AwsSessions(concurrency=1)
        region = principal.region or chain.model.settings.region
        try:
            who = caller_identity(sessions, creds, region=region)
        except RolechainError as exc:
            out.append(PrincipalCheck(name, users, problem=f"GetCallerIdentity failed: {exc}"))
            continue
        problem = None
        if principal.account is not None and who.account != principal.account:
            problem = (
                f"the credentials are of account {who.account}, but principal {name!r} is in "
                f"account {principal.account}"
            )
        out.append(PrincipalCheck(name, users, problem=problem, caller=who.arn))
    return out


def warnings_of(chain: Chain, checks: list[PrincipalCheck]) -> list[Warning_]:
    """The failed checks as warnings, located at each principal."""
    out: list[Warning_] = []
    for found in checks:
        if found.problem is None:
            continue
        where = chain.locate("principals", found.principal)
        out.append(
            Warning_(
                f"principal {found.principal!r} has no usable credentials, so every run of "
                f"{', '.join(found.jobs)} will fail: {found.problem}",
                where,
            )
        )
    return out

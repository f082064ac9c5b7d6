"""Can a scheduled job's credentials last unattended? Checked when the schedule loads.

Refused (exit 2, located): a job whose path needs an MFA code -- an ``mfa_serial`` on a
role (the planner's ``mfa-scheduled`` rule) or on the AWS profile the principal uses --
since nobody is there to type it.

Warned: a principal whose source cannot refresh for as long as the scheduler runs:
session keys (``AWS_SESSION_TOKEN``) in the environment, which expire and are never
renewed, and an IAM Identity Center (SSO) profile, whose token expires after its session
length and needs an interactive ``aws sso login``. Long-term user keys, instance and
container roles, web identity, ``credential_process`` and role profiles refresh on their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from rolechain.errors import Location, PlanError, Violation
from rolechain.model.chain import Chain
from rolechain.planner import plan
from rolechain.planner.rules import MFA_SCHEDULED, SOURCES


@dataclass(frozen=True)
class Warning_:
    message: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


def _profile_config(profile: str) -> Mapping[str, object] | None:
    import botocore.exceptions
    import botocore.session

    try:
        config: Mapping[str, object] = botocore.session.Session(profile=profile).get_scoped_config()
    except botocore.exceptions.ProfileNotFound:
        return None
    return config


def check(
    chain: Chain, jobs: list[str], environ: Mapping[str, str] | None = None
) -> list[Warning_]:
    """Plan every job (raising PlanError, e.g. for an MFA hop) and check each principal's
    source; the warnings to log. Raises PlanError for an MFA profile."""
    env = os.environ if environ is None else environ
    for job in jobs:
        plan(chain, job)
    warnings: list[Warning_] = []
    principals = sorted({chain.model.jobs[j].from_ for j in jobs})
    for name in principals:
        principal = chain.model.principals[name]
        where = chain.locate("principals", name, "source") or chain.locate("principals", name)
        users = [j for j in jobs if chain.model.jobs[j].from_ == name]
        if principal.source in ("env", "default") and env.get("AWS_SESSION_TOKEN"):
            warnings.append(Warning_(
                f"principal {name!r} (jobs {', '.join(users)}) takes session keys from "
                "AWS_SESSION_TOKEN in the environment: they expire and nothing renews them, "
                "so scheduled runs will fail once they do; give the scheduler long-term keys, "
                "an instance/task role or a profile that refreshes",
                where,
            ))  # fmt: skip
        if principal.source != "profile" or not principal.profile:
            continue
        config = _profile_config(principal.profile)
        if config is None:
            warnings.append(Warning_(
                f"principal {name!r}: AWS profile {principal.profile!r} is not in this "
                "machine's AWS config; scheduled runs will fail until it is", where))  # fmt: skip
            continue
        if config.get("mfa_serial"):
            raise PlanError(users[0], [Violation(
                rule=MFA_SCHEDULED,
                message=f"principal {name!r} uses AWS profile {principal.profile!r}, which "
                "needs an MFA code (mfa_serial), and nobody is there to type it",
                fix="give the scheduler a profile without mfa_serial (an instance or task "
                "role, or a role profile whose source refreshes)",
                location=chain.locate("principals", name, "profile") or where,
                source=SOURCES.get(MFA_SCHEDULED),
            )])  # fmt: skip
        if config.get("sso_session") or config.get("sso_start_url"):
            warnings.append(Warning_(
                f"principal {name!r} uses the IAM Identity Center (SSO) profile "
                f"{principal.profile!r}: its token expires after the SSO session length and "
                "needs an interactive 'aws sso login', so unattended runs will start failing",
                where,
            ))  # fmt: skip
    return warnings

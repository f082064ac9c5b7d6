"""Provisioning from a chain file: roles, trusts, principals, organizations, drift."""

from __future__ import annotations

import json

from rolechain.sandbox import sandbox
from rolechain.sandbox.provision import principal_shape, trusted_arns

from .conftest import Clients, aws_error, chain_from

ORG_CHAIN = """
version: 1
principals:
  runner: {kind: session, account: "111111111111"}
roles:
  hub: {arn: "arn:aws:iam::222222222222:role/Hub", trusts: [runner], max_session_duration: 2h}
  org-reader: {arn: "arn:aws:iam::999999999999:role/OrgReader", trusts: [hub]}
role_sets:
  audit:
    role_name: ops/Audit
    trusts: [hub]
    external_id: org-ext
    organization: {via: org-reader, ous: [ou-prod-workloads], tags: {env: [prod, dev]}}
"""


def test_organization_role_sets_get_real_moto_accounts() -> None:
    with sandbox(chain_from(ORG_CHAIN)) as sb:
        accounts = sb.organization_accounts["audit"]
        assert len(accounts) == 3
        assert len(set(accounts)) == 3
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, "arn:aws:iam::222222222222:role/Hub")["Credentials"]
        reader = aws.assume(hub, "arn:aws:iam::999999999999:role/OrgReader")["Credentials"]
        listed = aws.client("organizations", reader).list_accounts()["Accounts"]
        assert set(accounts) <= {a["Id"] for a in listed}
        orgs = aws.client("organizations", reader)
        inside = orgs.list_accounts_for_parent(ParentId="ou-prod-workloads")["Accounts"]
        assert sorted(a["Id"] for a in inside) == sorted(accounts)
        tags = orgs.list_tags_for_resource(ResourceId=accounts[0])
        assert tags["Tags"] == [{"Key": "env", "Value": "prod"}]
        for account in accounts:
            arn = f"arn:aws:iam::{account}:role/ops/Audit"
            granted = aws.assume(hub, arn, ExternalId="org-ext")
            assert granted["AssumedRoleUser"]["Arn"].startswith(f"arn:aws:sts::{account}:")


def test_provisioning_twice_in_one_process_is_idempotent() -> None:
    # moto's state is per process: a second sandbox must reuse, not collide.
    with sandbox(chain_from(ORG_CHAIN)) as first:
        accounts = first.organization_accounts["audit"]
    with sandbox(chain_from(ORG_CHAIN)) as second:
        assert second.organization_accounts["audit"] == accounts
        assert second.provisioned.buckets


def test_created_roles_carry_trust_and_max_session_duration() -> None:
    with sandbox(chain_from(ORG_CHAIN)) as sb:
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, "arn:aws:iam::222222222222:role/Hub")["Credentials"]
        role = aws.client("iam", hub).get_role(RoleName="Hub")["Role"]
        assert role["MaxSessionDuration"] == 7200
        document = role["AssumeRolePolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        principal = document["Statement"][0]["Principal"]["AWS"]
        assert principal in (
            "arn:aws:iam::111111111111:role/runner",
            ["arn:aws:iam::111111111111:role/runner"],
        )


DECLARED = """
version: 1
principals:
  ops: {kind: user, account: "111111111111"}
roles:
  hub: {arn: "arn:aws:iam::222222222222:role/Hub", trusts: [ops]}
role_sets:
  audit:
    role_name: Audit
    trusts: [hub]
    external_id: current-id
    accounts: ["333333333333", "444444444444", "555555555555"]
"""
# What actually exists: 444... still has the old ExternalId, 555... lost its trust in the hub.
EXISTING = """
version: 1
principals:
  ops: {kind: user, account: "111111111111"}
roles:
  hub: {arn: "arn:aws:iam::222222222222:role/Hub", trusts: [ops]}
  old-444: {arn: "arn:aws:iam::444444444444:role/Audit", trusts: [hub], external_id: old-id}
  orphan-555: {arn: "arn:aws:iam::555555555555:role/Audit", trusts: [ops]}
role_sets:
  audit:
    role_name: Audit
    trusts: [hub]
    external_id: current-id
    accounts: ["333333333333"]
"""


def test_drift_fails_only_the_drifted_targets_like_aws() -> None:
    with sandbox(chain_from(DECLARED), provision=chain_from(EXISTING)) as sb:
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, "arn:aws:iam::222222222222:role/Hub")["Credentials"]
        ok = aws.assume(hub, "arn:aws:iam::333333333333:role/Audit", ExternalId="current-id")
        assert ok["Credentials"]["AccessKeyId"]
        for account in ("444444444444", "555555555555"):
            arn = f"arn:aws:iam::{account}:role/Audit"
            code, message, status = aws_error(
                lambda arn=arn: aws.assume(hub, arn, ExternalId="current-id")
            )
            assert (code, status) == ("AccessDenied", 403)
            assert message == (
                "User: arn:aws:sts::222222222222:assumed-role/Hub/test-session is not "
                f"authorized to perform: sts:AssumeRole on resource: {arn}"
            )


def test_principal_shapes() -> None:
    chain = chain_from(
        """
version: 1
principals:
  u: {kind: user, account: "111111111111"}
  s: {kind: session, arn: "arn:aws:sts::111111111111:assumed-role/Deployer/ci"}
  r: {kind: session, arn: "arn:aws:iam::111111111111:role/path/Task"}
  root: {kind: user, arn: "arn:aws:iam::111111111111:root"}
"""
    )
    shapes = {n: principal_shape(n, p) for n, p in chain.model.principals.items()}
    assert (shapes["u"].kind, shapes["u"].arn) == ("user", "arn:aws:iam::111111111111:user/u")
    assert shapes["s"].trust_arn == "arn:aws:iam::111111111111:role/Deployer"
    assert shapes["r"].arn == "arn:aws:sts::111111111111:assumed-role/Task/rolechain-sandbox"
    assert shapes["r"].trust_arn == "arn:aws:iam::111111111111:role/path/Task"
    assert shapes["root"].kind == "root"


def test_trusts_resolve_names_sets_members_and_arns() -> None:
    chain = chain_from(DECLARED)
    model = chain.model
    arns = trusted_arns(
        ["ops", "hub", "audit", "audit@333333333333", "arn:aws:iam::888888888888:root"],
        model,
        model.principals,
        {},
    )
    assert arns == [
        "arn:aws:iam::111111111111:user/ops",
        "arn:aws:iam::222222222222:role/Hub",
        "arn:aws:iam::333333333333:role/Audit",
        "arn:aws:iam::444444444444:role/Audit",
        "arn:aws:iam::555555555555:role/Audit",
        "arn:aws:iam::333333333333:role/Audit",
        "arn:aws:iam::888888888888:root",
    ]

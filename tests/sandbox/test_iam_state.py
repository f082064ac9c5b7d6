"""The sandbox enforces what moto's IAM has now: raw roles, changes made through the IAM
API, roles provisioned into a running sandbox, organizations and aws:PrincipalOrgID."""

from __future__ import annotations

import json

import pytest

from rolechain.sandbox import SandboxError, sandbox

from .conftest import Clients, aws_error, chain_from

# Accounts of their own (8300...): moto's state is shared by every sandbox in the process.
BASE = """
version: 1
principals:
  ops: {kind: user, arn: "arn:aws:iam::830000000001:user/ops"}
roles:
  hub: {arn: "arn:aws:iam::830000000002:role/ops/Hub", trusts: [ops]}
"""
HUB = "arn:aws:iam::830000000002:role/ops/Hub"


def trust(*statements: dict[str, object]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_raw_roles_carry_trust_policies_a_chain_file_cannot_express() -> None:
    anyone = {
        "Arn": "arn:aws:iam::830000000003:role/Open",
        "AssumeRolePolicyDocument": json.dumps(
            trust({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"})
        ),
        "MaxSessionDuration": 7200,
        "Description": "trusts everyone",
    }
    service = {
        "Arn": "arn:aws:iam::830000000003:role/ForEc2",
        "AssumeRolePolicyDocument": trust(
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ),
    }
    with sandbox(chain_from(BASE), roles=[anyone, service]) as sb:
        aws = Clients(sb.endpoint)
        granted = aws.assume(sb.env, anyone["Arn"], DurationSeconds=7200)
        assert granted["AssumedRoleUser"]["Arn"].startswith("arn:aws:sts::830000000003:")
        code, _, status = aws_error(lambda: aws.assume(sb.env, service["Arn"]))
        assert (code, status) == ("AccessDenied", 403)
        iam = aws.client("iam", granted["Credentials"])
        role = iam.get_role(RoleName="Open")["Role"]
        assert role["MaxSessionDuration"] == 7200
        assert role["Description"] == "trusts everyone"


def test_bad_raw_roles_are_refused() -> None:
    with (
        pytest.raises(SandboxError, match="not an IAM role ARN"),
        sandbox(chain_from(BASE), roles=[{"Arn": "arn:aws:iam::830000000003:user/x"}]),
    ):
        pass


def test_a_trust_policy_changed_through_the_iam_api_is_enforced_at_once() -> None:
    with sandbox(chain_from(BASE)) as sb:
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, HUB)["Credentials"]
        iam = aws.client("iam", hub)
        iam.update_assume_role_policy(
            RoleName="Hub",
            PolicyDocument=json.dumps(
                trust(
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "830000000009"},
                        "Action": "sts:AssumeRole",
                    }
                )
            ),
        )
        code, _, _ = aws_error(lambda: aws.assume(sb.env, HUB))
        assert code == "AccessDenied"
        iam.update_role(RoleName="Hub", MaxSessionDuration=3600)
        iam.delete_role(RoleName="Hub")
        code, _, _ = aws_error(lambda: aws.assume(sb.env, HUB))
        assert code == "AccessDenied"


def test_provisioning_into_a_running_sandbox() -> None:
    later = """
version: 1
roles:
  spoke:
    arn: arn:aws:iam::830000000004:role/Spoke
    trusts: ["arn:aws:iam::830000000002:role/ops/Hub"]
    max_session_duration: 2h
"""
    with sandbox(chain_from(BASE)) as sb:
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, HUB)["Credentials"]
        spoke = "arn:aws:iam::830000000004:role/Spoke"
        assert aws_error(lambda: aws.assume(hub, spoke))[0] == "AccessDenied"
        made = sb.provision(chain_from(later))
        assert list(made.roles) == [spoke]
        assert made.buckets == {
            "830000000004": ["rolechain-logs-830000000004", "rolechain-backups-830000000004"]
        }
        assert aws.assume(hub, spoke)["AssumedRoleUser"]["Arn"].endswith("/test-session")
        # principals keep their credentials
        assert aws.client("sts", sb.env).get_caller_identity()["Account"] == "830000000001"


def test_a_role_moved_to_another_path_is_replaced() -> None:
    moved = BASE.replace("role/ops/Hub", "role/platform/Hub")
    with sandbox(chain_from(BASE)), sandbox(chain_from(moved)) as sb:
        aws = Clients(sb.endpoint)
        hub = "arn:aws:iam::830000000002:role/platform/Hub"
        creds = aws.assume(sb.env, hub)["Credentials"]
        roles = aws.client("iam", creds).list_roles()["Roles"]
        assert [r["Arn"] for r in roles if r["RoleName"] == "Hub"] == [hub]


ORG = """
version: 1
principals:
  ops: {kind: user, arn: "arn:aws:iam::831000000001:user/ops"}
roles:
  org-admin: {arn: "arn:aws:iam::831000000001:role/OrgAdmin", trusts: [ops]}
role_sets:
  member:
    role_name: Member
    trusts: [ops]
    organization: {via: org-admin}
"""


def test_organization_size_and_principal_org_id_conditions() -> None:
    with sandbox(chain_from(ORG), organization_accounts=5) as sb:
        accounts = sb.organization_accounts["member"]
        assert len(accounts) == 5
        org_id = sb.state.organization_of(accounts[0])
        assert org_id is not None
        assert org_id.startswith("o-")
        assert sb.state.organization_of("831000000001") == org_id  # the management account
        assert sb.state.organization_of("830000000001") is None
        only_org = {
            "Arn": "arn:aws:iam::831000000009:role/OrgOnly",
            "AssumeRolePolicyDocument": trust(
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:PrincipalOrgID": org_id}},
                }
            ),
        }
        elsewhere = {  # a role outside the organization that ops may assume
            "Arn": "arn:aws:iam::832000000001:role/Elsewhere",
            "AssumeRolePolicyDocument": trust(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::831000000001:user/ops"},
                    "Action": "sts:AssumeRole",
                }
            ),
        }
        sb.provision(roles=[only_org, elsewhere])
        aws = Clients(sb.endpoint)
        inside = aws.assume(sb.env, f"arn:aws:iam::{accounts[0]}:role/Member")["Credentials"]
        assert aws.assume(inside, only_org["Arn"])["AssumedRoleUser"]
        management = aws.assume(sb.env, "arn:aws:iam::831000000001:role/OrgAdmin")
        assert aws.assume(management["Credentials"], only_org["Arn"])["AssumedRoleUser"]
        outside = aws.assume(sb.env, elsewhere["Arn"])["Credentials"]
        code, _, _ = aws_error(lambda: aws.assume(outside, only_org["Arn"]))
        assert code == "AccessDenied"

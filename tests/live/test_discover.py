"""``discover`` in the sandbox: a 50-account organization with two hub layers and role sets,
then validate, plan, run and verify the file it wrote (the round trip shows no drift)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.executor import run
from rolechain.live.discover import DiscoverRequest, discover, parse_source
from rolechain.live.verify import verify
from rolechain.model.loader import load, loads
from rolechain.planner import plan
from rolechain.sandbox import SandboxInfo, sandbox

from .conftest import point_at

MANAGEMENT = "850000000001"
ACCOUNTS = 50
XID = "audit-xid-8a7f"

# The organization: the management account, 50 member accounts, a reader in each.
ORGANIZATION = f"""
version: 1
principals:
  ops: {{kind: user, arn: "arn:aws:iam::{MANAGEMENT}:user/ops"}}
roles:
  org-admin: {{arn: "arn:aws:iam::{MANAGEMENT}:role/OrgAdmin", trusts: [ops]}}
  management-reader: {{arn: "arn:aws:iam::{MANAGEMENT}:role/ro/Reader", trusts: [ops]}}
role_sets:
  reader:
    role_name: ro/Reader
    trusts: [ops]
    organization: {{via: org-admin}}
"""


def estate(accounts: list[str]) -> str:
    """Roles deployed in the member accounts: hub layer 1 (one security hub), hub layer 2
    (a hub per business unit), and workload role sets behind them."""
    security, unit_a, unit_b, work = accounts[0], accounts[1], accounts[2], accounts[3:]
    return f"""
version: 1
principals:
  ops: {{kind: user, arn: "arn:aws:iam::{MANAGEMENT}:user/ops"}}
roles:
  central-hub:
    arn: arn:aws:iam::{security}:role/security/CentralHub
    trusts: [ops]
    max_session_duration: 4h
role_sets:
  unit-hub:
    role_name: UnitHub
    trusts: [central-hub]
    accounts: {json.dumps([unit_a, unit_b])}
  audit:
    role_name: Audit
    trusts: [unit-hub]
    external_id: {XID}
    accounts: {json.dumps(work)}
  deploy:
    role_name: ci/Deploy
    trusts: [unit-hub]
    max_session_duration: 2h
    accounts: {json.dumps(work[:20])}
  deploy-old:
    role_name: ci/Deploy
    trusts: ["arn:aws:iam::{unit_a}:role/UnitHub"]
    accounts: {json.dumps(work[20:25])}
  vendor:
    role_name: VendorAccess
    trusts: ["arn:aws:iam::999999999999:root"]
    external_id: vendor-secret-1
    accounts: {json.dumps(work[:5])}
"""


def extra_roles(accounts: list[str]) -> list[dict[str, Any]]:
    """What no chain file can say: a service role, a role open to "*", a description that
    tries to read the environment and to break out of a comment."""
    work = accounts[3]
    statement = {"Effect": "Allow", "Action": "sts:AssumeRole"}
    return [
        {
            "Arn": f"arn:aws:iam::{work}:role/aws-service-role/Ec2Thing",
            "AssumeRolePolicyDocument": {
                "Statement": [{**statement, "Principal": {"Service": "ec2.amazonaws.com"}}]
            },
        },
        {
            "Arn": f"arn:aws:iam::{work}:role/Open",
            "Description": "${env:AWS_SECRET_ACCESS_KEY}\ninjected: true",
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {**statement, "Principal": "*"},
                    {**statement, "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT}:root"},
                     "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"},
                                   "StringLike": {"aws:UserAgent": "x\u009b2J"}}},
                ]
            },
        },
    ]  # fmt: skip


@pytest.fixture(scope="module")
def organization() -> Iterator[SandboxInfo]:
    with sandbox(loads(ORGANIZATION, file="org.yaml"), organization_accounts=ACCOUNTS) as sb:
        accounts = sb.organization_accounts["reader"]
        sb.provision(loads(estate(accounts), file="estate.yaml"))
        yield sb


def request(**options: Any) -> DiscoverRequest:
    options.setdefault("reader", "ro/Reader")
    options.setdefault("source", "env")
    return DiscoverRequest(**options)


@pytest.mark.slow
def test_discover_an_organization_then_validate_plan_run_and_verify(
    organization: SandboxInfo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = point_at(monkeypatch, organization)("ops")
    accounts = organization.organization_accounts["reader"]
    found = discover(
        request(organization=True, via="OrgAdmin", principal="ops"), credentials=credentials
    )
    assert found.ok
    assert sorted(found.accounts) == sorted([MANAGEMENT, *accounts])
    # one reader assumption per account, plus the via role; one ListRoles page per account
    assert found.assume_calls == 1 + ACCOUNTS + 1
    assert found.iam_calls == ACCOUNTS + 1
    assert found.env == ["AUDIT_EXTERNAL_ID"]
    assert XID not in found.text
    assert "vendor-secret-1" not in found.text

    path = tmp_path / "discovered.yaml"
    path.write_text(found.text, encoding="utf-8")
    monkeypatch.setenv("AUDIT_EXTERNAL_ID", XID)
    chain = load(path)
    model = chain.model
    security, unit_a, unit_b, work = accounts[0], accounts[1], accounts[2], accounts[3:]

    # hub layer 1 is a role; layer 2 a role set; role sets where names and trusts agree
    assert model.roles["CentralHub"].arn == f"arn:aws:iam::{security}:role/security/CentralHub"
    assert model.roles["CentralHub"].trusts == ["ops"]
    assert model.roles["CentralHub"].max_session_duration == 4 * 3600
    assert sorted(model.role_sets["UnitHub"].accounts or []) == sorted([unit_a, unit_b])
    assert model.role_sets["UnitHub"].trusts == ["CentralHub"]
    audit = model.role_sets["Audit"]
    assert sorted(audit.accounts or []) == sorted(work)
    assert audit.trusts == ["UnitHub"]  # every member of UnitHub: the set's name
    assert audit.external_id == XID  # read from the placeholder
    assert model.role_sets["Deploy"].role_name == "ci/Deploy"
    assert model.role_sets["Deploy"].max_session_duration == 7200
    assert sorted(model.role_sets["Deploy"].accounts or []) == sorted(work[:20])
    # same name, other trusts: a set of its own, trusting one member of another set
    assert model.role_sets["Deploy-2"].trusts == [f"UnitHub@{unit_a}"]
    assert model.settings.verify.reader == "Reader"
    assert sorted(model.role_sets["Reader"].accounts or []) == sorted([MANAGEMENT, *accounts])
    # nothing the principal cannot reach: the vendor's role, the service role
    arns = [r.arn for r in model.roles.values()] + [s.role_name for s in model.role_sets.values()]
    assert not [a for a in arns if "VendorAccess" in a or "Ec2Thing" in a]
    assert "VendorAccess" not in found.text
    assert found.roles_read - found.roles_written == 5 + 0  # five vendor roles left out

    for job in model.jobs:
        planned = plan(chain, job)
        assert planned.targets

    records = list(run(chain, "Audit", credentials=credentials))
    assert len(records) == len(work)
    assert all(r.status == "ok" for r in records)
    assert {r.data["account"] for r in records} == set(work)

    report = verify(chain, credentials=lambda _: credentials)
    assert report.ok, [
        (h.label, h.status, h.error, h.findings) for h in report.hops if h.status != "ok"
    ]
    assert not [f for h in report.hops for f in h.findings]
    assert report.iam_calls == found.roles_written


def test_what_a_chain_file_cannot_express_is_a_comment(
    organization: SandboxInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = point_at(monkeypatch, organization)("ops")
    accounts = organization.organization_accounts["reader"]
    organization.provision(roles=extra_roles(accounts))
    found = discover(request(accounts=(accounts[3],)), credentials=credentials)
    text = found.text
    assert "Ec2Thing" not in text  # a service's role: nobody here can reach it
    block = text[text.index("  # Open in account") : text.index("  Open:")]
    assert 'statement 1 trusts every AWS principal ("*")' in block
    assert "condition Bool aws:MultiFactorAuthPresent: true" in block
    assert "condition StringLike aws:UserAgent: x 2J" in block  # a C1 control (CSI)
    assert "\x9b" not in text
    # the description is a comment that cannot end early (comments are never interpolated)
    assert "  # IAM description: ${env:AWS_SECRET_ACCESS_KEY} injected: true\n" in text
    monkeypatch.setenv("AUDIT_EXTERNAL_ID", XID)
    model = loads(text, file="found.yaml").model
    assert model.roles["Open"].trusts == [f"arn:aws:iam::{MANAGEMENT}:root"]
    assert "injected" not in yaml.safe_load(text)


def test_roles_are_listed_across_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    account = "851000000002"
    chain = f"""
version: 1
principals:
  ops: {{kind: user, arn: "arn:aws:iam::851000000001:user/ops"}}
roles:
  reader: {{arn: "arn:aws:iam::{account}:role/Reader", trusts: [ops]}}
"""
    many = [
        {
            "Arn": f"arn:aws:iam::{account}:role/r{i:03d}",
            "AssumeRolePolicyDocument": {
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"AWS": f"arn:aws:iam::{account}:role/Reader"}}]
            },
        }
        for i in range(104)
    ]  # fmt: skip
    with sandbox(loads(chain, file="c.yaml"), roles=many) as sb:
        credentials = point_at(monkeypatch, sb)("ops")
        found = discover(request(accounts=(account,), reader="Reader"), credentials=credentials)
    assert found.roles_read == 105
    assert found.roles_written == 105
    assert found.iam_calls == 2  # ListRoles pages of 100
    model = loads(found.text, file="f.yaml").model
    assert len(model.roles) == 105  # one account: roles, not role sets


def test_an_account_without_the_reader_is_reported_and_exits_1(
    organization: SandboxInfo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    point_at(monkeypatch, organization)
    env = organization.principals["ops"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, env[name])
    accounts = organization.organization_accounts["reader"]
    out = tmp_path / "found.yaml"
    result = CliRunner().invoke(
        cli,
        ["discover", "--from", "env", "--reader", "ro/Reader", "--account",
         f"{accounts[4]},852000000009", "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "error: account 852000000009 not read: AccessDenied" in result.stderr
    assert "discovered " in result.stderr
    text = out.read_text(encoding="utf-8")
    assert re.search(r"^# NOT READ: account 852000000009: AccessDenied", text, re.MULTILINE)
    assert "Accounts: 1 read" in text
    assert "AWS_SECRET_ACCESS_KEY" not in result.output
    assert env["AWS_SECRET_ACCESS_KEY"] not in result.output + text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "env", "--reader", "R"], "--account"),
        (["--from", "env", "--reader", "R", "--account", "12345"], "not a 12-digit account"),
        (["--from", "env", "--reader", "R", "-a", "111111111111", "--via", "X"], "--organization"),
        (["--reader", "R", "--organization"], "--from"),
        (["--from", "nobody", "--sandbox", "chains/demo.yaml", "--reader", "R", "--organization"],
         "no principal 'nobody'"),
        (["--from", "env", "--reader", "R", "-a", "111111111111", "--assume-rate", "0"],
         "neither 'auto' nor a positive number"),
        (["--from", "env", "--reader", "R", "-a", "111111111111", "--assume-rate", "fast"],
         "neither 'auto' nor a positive number"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    result = CliRunner().invoke(cli, ["discover", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_from_names_a_profile_env_or_default() -> None:
    assert parse_source("env") == ("env", None)
    assert parse_source("default") == ("default", None)
    assert parse_source("security-audit") == ("profile", "security-audit")
    assert parse_source("profile:env") == ("profile", "env")

"""``verify`` in the sandbox: provision what "really exists" from one chain file (plus raw
IAM roles for what a chain file cannot express) and verify another against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner

from rolechain.aws.session import AwsSessions
from rolechain.cli import cli
from rolechain.live.findings import KINDS, VerifyReport
from rolechain.live.render import verify_lines
from rolechain.live.verify import verify
from rolechain.model.loader import loads
from rolechain.sandbox import sandbox

from .conftest import point_at

ROOT = Path(__file__).resolve().parents[2]
A = "8400000000"  # accounts of their own: moto's state is shared within the process

DECLARED = f"""
version: 1
settings:
  assume_rate: 1000
  verify: {{reader: reader}}
principals:
  ops: {{kind: user, arn: "arn:aws:iam::{A}01:user/ops"}}
roles:
  hub:
    arn: arn:aws:iam::{A}02:role/sec/Hub
    trusts: [ops]
  direct:
    arn: arn:aws:iam::{A}02:role/Direct
    trusts: [ops]
    max_session_duration: 4h
    duration: 2h
role_sets:
  audit:
    role_name: Audit
    trusts: [hub]
    external_id: audit-xid-0001
    accounts: ["{A}03", "{A}04", "{A}05", "{A}06", "{A}07", "{A}08", "{A}09"]
  reader:
    role_name: ro/Reader
    trusts: [ops]
    accounts: ["{A}02", "{A}03", "{A}04", "{A}05", "{A}06", "{A}07", "{A}08", "{A}09"]
jobs:
  inventory:
    from: ops
    to: audit
    via: [hub]
    tasks: [sts.get_caller_identity]
  direct:
    from: ops
    to: direct
    tasks: [sts.get_caller_identity]
"""

# What exists: 03 as declared; 04 deleted; 05's trust no longer names the hub; 06's
# ExternalId rotated; 07 also trusts "*" (raw role below); 08 also trusts another account's
# root; 09 depends on a condition rolechain cannot evaluate (raw); Direct's
# MaxSessionDuration lowered to 1h.
EXISTING = DECLARED.replace(
    f"""    external_id: audit-xid-0001
    accounts: ["{A}03", "{A}04", "{A}05", "{A}06", "{A}07", "{A}08", "{A}09"]""",
    f"""    external_id: audit-xid-0001
    accounts: ["{A}03"]
  audit-orphan:
    role_name: Audit
    trusts: [ops]
    external_id: audit-xid-0001
    accounts: ["{A}05"]
  audit-rotated:
    role_name: Audit
    trusts: [hub]
    external_id: rotated-xid-0002
    accounts: ["{A}06"]
  audit-extra-root:
    role_name: Audit
    trusts: [hub, "arn:aws:iam::{A}99:root"]
    external_id: audit-xid-0001
    accounts: ["{A}08"]""",
).replace("max_session_duration: 4h\n    duration: 2h", "max_session_duration: 1h")

HUB_ARN = f"arn:aws:iam::{A}02:role/sec/Hub"
EXTERNAL_ID = {"StringEquals": {"sts:ExternalId": "audit-xid-0001"}}
RAW_ROLES = [
    {
        "Arn": f"arn:aws:iam::{A}07:role/Audit",
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": HUB_ARN}, "Action": "sts:AssumeRole",
                 "Condition": EXTERNAL_ID},
                {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"Service": "evil\x1b[2J.amazonaws.com"},
                 "Action": "sts:AssumeRole"},
            ],
        },
    },
    {
        "Arn": f"arn:aws:iam::{A}09:role/Audit",
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": HUB_ARN}, "Action": "sts:AssumeRole",
                 "Condition": {**EXTERNAL_ID, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
            ],
        },
    },
]  # fmt: skip


def kinds(report: VerifyReport, role: str) -> tuple[str, set[str]]:
    (hop,) = [h for h in report.hops if h.role == role]
    return hop.status, {f.kind for f in hop.findings}


@pytest.fixture(scope="module")
def drifted() -> Any:
    declared = loads(DECLARED, file="declared.yaml")
    existing = loads(EXISTING, file="existing.yaml")
    with sandbox(declared, provision=existing, roles=RAW_ROLES) as sb:
        yield sb


def test_each_drift_kind_is_found_on_its_hop(drifted: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = point_at(monkeypatch, drifted)
    chain = loads(DECLARED, file="declared.yaml")
    report = verify(chain, credentials=credentials)
    assert not report.ok
    assert kinds(report, f"audit@{A}03") == ("ok", set())
    assert kinds(report, f"audit@{A}04") == ("unassumable", {"role-missing"})
    assert kinds(report, f"audit@{A}05") == (
        "unassumable",
        {"trust-missing", "trust-undeclared-principal"},
    )
    assert kinds(report, f"audit@{A}06") == ("unassumable", {"external-id-mismatch"})
    assert kinds(report, f"audit@{A}07") == (
        "drift",
        {"trust-wildcard", "external-id-not-required", "trust-non-aws-principal"},
    )
    assert kinds(report, f"audit@{A}08") == ("drift", {"trust-undeclared-account"})
    assert kinds(report, f"audit@{A}09") == ("unassumable", {"condition-unevaluated"})
    assert kinds(report, "direct") == ("unassumable", {"max-session-too-short"})
    assert kinds(report, "hub") == ("ok", set())

    (lowered,) = [h for h in report.hops if h.role == "direct"]
    assert lowered.error is not None
    assert "MaxSessionDuration" in lowered.error
    (finding,) = lowered.findings
    assert (finding.declared, finding.live) == ("max_session_duration 4h", "MaxSessionDuration 1h")
    assert str(finding.location).startswith("declared.yaml:")
    assert all(h.read_with and ">reader@" in h.read_with for h in report.hops)

    # every hop once per job, every reader once per job, every role read once per verify
    assert report.assume_calls == (1 + 7 + 8) + (1 + 1)
    assert report.iam_calls == 9
    severities = {f.kind: f.severity for h in report.hops for f in h.findings}
    assert severities["trust-wildcard"] == "critical"
    assert all(KINDS[k].severity == s for k, s in severities.items())


def test_the_report_never_shows_an_external_id_and_escapes_iam_text(
    drifted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = point_at(monkeypatch, drifted)
    report = verify(loads(DECLARED, file="declared.yaml"), credentials=credentials)
    text = "\n".join(verify_lines(report))
    document = json.dumps(report.to_dict())
    for secret in ("audit-xid-0001", "rotated-xid-0002"):
        assert secret not in text
        assert secret not in document
    assert "\x1b" not in text
    assert "evil\\x1b[2J.amazonaws.com" in text
    assert "\\u001b" in document  # JSON escapes it too


def test_an_environment_that_matches_reports_no_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = loads(DECLARED.replace(A, "8410000000"), file="declared.yaml")
    with sandbox(chain) as sb:
        report = verify(chain, credentials=point_at(monkeypatch, sb))
    assert report.ok, "\n".join(verify_lines(report))
    assert report.counts == {"ok": 9, "unassumable": 0, "unreadable": 0, "drift": 0}
    assert not [f for h in report.hops for f in h.findings]


def test_a_role_that_cannot_be_read_is_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    text = DECLARED.replace(A, "8420000000").replace("  verify: {reader: reader}\n", "")
    chain = loads(text, file="declared.yaml")
    session = botocore.session.Session()

    def refuse(params: Any, **_: Any) -> Any:
        # before-call handlers may answer for the service: here, IAM refuses every GetRole
        return AWSResponse("https://iam.amazonaws.com/", 403, {}, None), {
            "Error": {"Code": "AccessDenied", "Message": "not allowed: iam:GetRole"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    session.register("before-call.iam.GetRole", refuse)
    with sandbox(chain) as sb:
        report = verify(
            chain,
            jobs=["direct"],
            credentials=point_at(monkeypatch, sb),
            aws_sessions=AwsSessions(botocore_session=session),
        )
    (hop,) = report.hops
    assert hop.status == "unreadable"
    assert hop.error == "iam:GetRole: AccessDenied: not allowed: iam:GetRole"
    assert hop.read_with == "ops>direct"
    assert not report.ok


def test_a_failed_hop_stops_the_hops_below_it(monkeypatch: pytest.MonkeyPatch) -> None:
    declared = DECLARED.replace(A, "8430000000").replace("  verify: {reader: reader}\n", "")
    existing = declared.replace("trusts: [ops]\n  direct", "trusts: [hub]\n  direct")
    with sandbox(loads(declared, file="d.yaml"), provision=loads(existing, file="e.yaml")) as sb:
        report = verify(
            loads(declared, file="d.yaml"),
            jobs=["inventory"],
            credentials=point_at(monkeypatch, sb),
        )
    statuses = {h.role: (h.status, h.error) for h in report.hops}
    assert statuses["hub"][0] == "unassumable"
    assert statuses["hub"][1].startswith("AccessDenied:")
    below = [v for k, v in statuses.items() if k.startswith("audit@")]
    assert below == [("unassumable", "not tried: hop hub could not be assumed")] * 7
    assert report.assume_calls == 1  # the failed hub, and nothing below it


# -- the command ---------------------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["verify", *args], catch_exceptions=False)


def test_exit_status_zero_one_two(tmp_path: Path) -> None:
    demo = str(ROOT / "chains" / "demo.yaml")
    drifted = str(ROOT / "chains" / "demo-drifted.yaml")
    ok = run(demo, "--sandbox", "--job", "whoami")
    assert ok.exit_code == 0, ok.output
    assert "verified 6 hops of 1 job: 6 ok, 0 drift" in ok.stdout
    drift = run(demo, "--sandbox", "--provision", drifted, "--format", "json", "-j", "inventory")
    assert drift.exit_code == 1
    document = json.loads(drift.stdout)
    assert document["ok"] is False
    assert document["summary"]["drift"] >= 1
    assert "rolechain-demo" not in drift.stdout  # the demo's ExternalId
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nroles:\n  r: {arn: nope}\n")
    assert run(str(bad), "--sandbox").exit_code == 2
    unknown = run(demo, "--sandbox", "--job", "nope")
    assert unknown.exit_code == 2
    assert "unknown job 'nope'" in unknown.stderr
    assert run(demo, "--provision", drifted).exit_code == 2  # --provision needs --sandbox


def test_organization_role_sets_and_their_via_hop_are_verified() -> None:
    result = run(str(ROOT / "chains" / "org-inventory.yaml"), "--sandbox", "-j", "inventory",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    roles = [h["role"] for h in document["hops"]]
    assert "org-reader" in roles  # the hop that lists the organization's accounts
    members = [r for r in roles if r.startswith("audit@")]
    assert len(members) == 3
    assert "audit@*" not in roles
    assert document["summary"]["assume_calls"] == len(roles)


def test_a_reader_that_cannot_be_assumed_falls_back_to_the_hop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declared = DECLARED.replace(A, "8440000000")
    existing = declared.replace('"844000000002", "844000000003", ', '"844000000002", ')
    assert existing != declared
    chain = loads(declared, file="d.yaml")
    with sandbox(chain, provision=loads(existing, file="e.yaml")) as sb:
        report = verify(chain, jobs=["inventory"], credentials=point_at(monkeypatch, sb))
    assert report.ok
    (hop,) = [h for h in report.hops if h.role == "audit@844000000003"]
    assert hop.read_with == "ops>hub>audit@844000000003"  # its own credentials
    (note,) = report.notes
    assert note.startswith("job inventory: reader reader@844000000003 could not be assumed")


# -- issue 18: over-trust through every assume action ----------------------------------------

F = "8430000000"
OIDC = f"arn:aws:iam::{F}02:oidc-provider/token.actions.githubusercontent.com"
FEDERATED = f"""
version: 1
settings: {{assume_rate: 1000}}
principals:
  ops: {{kind: user, arn: "arn:aws:iam::{F}01:user/ops"}}
roles:
  ci: {{arn: "arn:aws:iam::{F}02:role/Ci", trusts: [ops]}}
  sso: {{arn: "arn:aws:iam::{F}02:role/Sso", trusts: [ops]}}
  pinned: {{arn: "arn:aws:iam::{F}02:role/Pinned", trusts: [ops]}}
  odd: {{arn: "arn:aws:iam::{F}02:role/Odd", trusts: [ops]}}
jobs:
  all:
    from: ops
    to: [ci, sso, pinned, odd]
    tasks: [sts.get_caller_identity]
"""
OPS = {"AWS": f"arn:aws:iam::{F}01:user/ops"}
_WEB = "sts:AssumeRoleWithWebIdentity"


def _trust(*extra: dict[str, Any]) -> dict[str, Any]:
    own = {"Effect": "Allow", "Principal": OPS, "Action": "sts:AssumeRole"}
    return {"Version": "2012-10-17", "Statement": [own, *extra]}


def _github(subject: str) -> dict[str, Any]:
    """GitHub Actions' OIDC provider, its audience named, subjects matching ``subject``."""
    return {
        "Effect": "Allow",
        "Principal": {"Federated": OIDC},
        "Action": _WEB,
        "Condition": {
            "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
            "StringLike": {"token.actions.githubusercontent.com:sub": subject},
        },
    }


FEDERATED_ROLES = [
    {   # any GitHub repository: sub wildcarded (only AssumeRoleWithWebIdentity, no AssumeRole)
        "Arn": f"arn:aws:iam::{F}02:role/Ci",
        "AssumeRolePolicyDocument": _trust(_github("repo:*")),
    },
    {   # a SAML provider with no SAML:aud condition
        "Arn": f"arn:aws:iam::{F}02:role/Sso",
        "AssumeRolePolicyDocument": _trust({
            "Effect": "Allow", "Action": "sts:AssumeRoleWithSAML",
            "Principal": {"Federated": f"arn:aws:iam::{F}02:saml-provider/corp"},
        }),
    },
    {   # GitHub pinned to one organization's repositories: no subject finding
        "Arn": f"arn:aws:iam::{F}02:role/Pinned",
        "AssumeRolePolicyDocument": _trust(_github("repo:octo-org/*")),
    },
    {   # NotPrincipal, and "*" allowed to tag sessions only
        "Arn": f"arn:aws:iam::{F}02:role/Odd",
        "AssumeRolePolicyDocument": _trust(
            {"Effect": "Allow", "NotPrincipal": {"AWS": f"arn:aws:iam::{F}99:root"},
             "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:TagSession"},
        ),
    },
]  # fmt: skip


def test_overtrust_covers_every_assume_action(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = loads(FEDERATED, file="declared.yaml")
    with sandbox(chain, roles=FEDERATED_ROLES) as sb:
        report = verify(chain, credentials=point_at(monkeypatch, sb))
    assert kinds(report, "ci") == (
        "drift",
        {"federated-subject-unrestricted", "trust-non-aws-principal"},
    )
    assert kinds(report, "sso") == (
        "drift",
        {"federated-audience-unrestricted", "trust-non-aws-principal"},
    )
    assert kinds(report, "pinned") == ("ok", {"trust-non-aws-principal"})
    assert kinds(report, "odd") == ("drift", {"trust-not-principal", "trust-wildcard"})
    severities = {f.kind: f.severity for h in report.hops for f in h.findings}
    assert severities["federated-subject-unrestricted"] == "critical"
    assert severities["trust-not-principal"] == "high"

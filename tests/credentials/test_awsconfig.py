"""AWS config import and export, and the round trip import -> export -> import."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rolechain.credentials.awsconfig import (
    ExportedProfile,
    export_aws_config,
    import_aws_config,
    parse_rolechain_process,
    profile_names_for,
    resolve_with_chain,
    sanitize_name,
)
from rolechain.credentials.process import plan_target
from rolechain.model.loader import load, loads
from rolechain.planner import plan

CONFIG = """
[default]
region = eu-west-1
output = json

[profile base]
region = us-east-1

[profile hub]
role_arn = arn:aws:iam::111111111111:role/hub
source_profile = base
external_id = ext-123
duration_seconds = 7200

[profile prod admin]
role_arn = arn:aws:iam::222222222222:role/admin
source_profile = hub
role_session_name = alice
region = eu-central-1

[profile ci]
role_arn = arn:aws:iam::333333333333:role/ci
credential_source = Ec2InstanceMetadata

[profile ci-2]
role_arn = arn:aws:iam::333333333333:role/ci2
credential_source = Ec2InstanceMetadata
duration_seconds = 900

[profile from-env]
role_arn = arn:aws:iam::444444444444:role/env
credential_source = Environment

[profile sso-dev]
sso_session = corp
sso_account_id = 555555555555
sso_role_name = Dev
region = us-west-2

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1

[profile dev-deploy]
role_arn = arn:aws:iam::666666666666:role/deploy
source_profile = sso-dev

[profile web]
role_arn = arn:aws:iam::777777777777:role/web
web_identity_token_file = /var/run/token

[profile other-tool]
credential_process = /usr/bin/other-tool get

[profile dangling]
role_arn = arn:aws:iam::888888888888:role/x
source_profile = missing

[profile both]
role_arn = arn:aws:iam::888888888888:role/y
source_profile = base
credential_source = Environment

[profile settings-only]
region = eu-north-1
"""

CREDENTIALS = """
[base]
aws_access_key_id = AKIAEXAMPLEBASE
aws_secret_access_key = must-never-appear

[temporary]
aws_access_key_id = ASIAEXAMPLETEMP
aws_secret_access_key = must-never-appear
aws_session_token = token-never-appear
"""


def imported(config: str = CONFIG, creds: str | None = CREDENTIALS) -> tuple[dict[str, Any], Any]:
    result = import_aws_config(config, creds, source="config", credentials_source="credentials")
    return yaml.safe_load(result.text), result


def test_import_maps_profiles() -> None:
    doc, result = imported()
    assert doc["settings"] == {"region": "eu-west-1"}
    principals = doc["principals"]
    assert principals["base"] == {
        "source": "profile",
        "profile": "base",
        "kind": "user",
        "region": "us-east-1",
    }
    assert principals["temporary"]["kind"] == "session"
    assert principals["instance-role"] == {"source": "default", "kind": "session"}
    assert principals["env"] == {"source": "env", "kind": "session"}
    assert principals["sso-dev"] == {
        "source": "profile",
        "profile": "sso-dev",
        "kind": "session",
        "region": "us-west-2",
        "account": "555555555555",
    }
    roles = doc["roles"]
    assert roles["hub"] == {
        "arn": "arn:aws:iam::111111111111:role/hub",
        "trusts": ["base"],
        "max_session_duration": 7200,
        "duration": 7200,
        "external_id": "ext-123",
    }
    assert roles["prod-admin"]["trusts"] == ["hub"]
    assert roles["prod-admin"]["region"] == "eu-central-1"
    assert roles["ci"]["trusts"] == roles["ci-2"]["trusts"] == ["instance-role"]  # shared
    assert roles["ci-2"]["duration"] == 900
    assert roles["from-env"]["trusts"] == ["env"]
    assert roles["dev-deploy"]["trusts"] == ["sso-dev"]
    jobs = doc["jobs"]
    assert jobs["prod-admin"] == {
        "from": "base",
        "to": "prod-admin",
        "via": ["hub"],
        "regions": ["eu-central-1"],
        "session_name": "alice",
    }
    assert jobs["hub"] == {"from": "base", "to": "hub"}
    assert set(jobs) == {"hub", "prod-admin", "ci", "ci-2", "from-env", "dev-deploy"}
    assert "must-never-appear" not in result.text
    assert "AKIA" not in result.text


def test_import_reports_what_it_cannot_map() -> None:
    _, result = imported()
    messages = {u.profile: u.message for u in result.unmapped}
    assert "web_identity_token_file" in messages["web"]
    assert "another tool" in messages["other-tool"]
    assert "'missing' does not exist" in messages["dangling"]
    assert "both source_profile and credential_source" in messages["both"]
    assert "no credentials (only region)" in messages["settings-only"]
    assert "default" not in messages  # region and output only: settings, not a problem
    doc = yaml.safe_load(result.text)
    # Opaque profiles still become principals that botocore can load.
    assert doc["principals"]["other-tool"] == {
        "source": "profile",
        "profile": "other-tool",
        "kind": "session",
    }
    assert "dangling" not in doc["roles"]
    assert "both" not in doc["roles"]


def test_source_profile_without_credentials_in_the_files_keeps_the_chain() -> None:
    """A shared config (CI, a team repository) names a source_profile whose keys live
    elsewhere, and there is no credentials file: the chain is kept, with a warning."""
    config = """
[profile base]
region = eu-west-1

[profile deploy]
role_arn = arn:aws:iam::222222222222:role/deploy
source_profile = base

[profile audit]
role_arn = arn:aws:iam::333333333333:role/audit
source_profile = deploy
"""
    result = import_aws_config(config, None, source="config")
    doc = yaml.safe_load(result.text)
    assert doc["principals"]["base"] == {
        "source": "profile",
        "profile": "base",
        "kind": "session",
        "region": "eu-west-1",
    }
    assert doc["roles"]["deploy"]["trusts"] == ["base"]
    assert doc["jobs"]["audit"] == {"from": "base", "to": "audit", "via": ["deploy"]}
    assert result.unmapped == []
    [warning] = result.warnings
    assert warning.profile == "base"
    assert "holds no credentials in the files read" in warning.message
    planned = plan(loads(result.text, file="imported.yaml"), "audit", run_id="t")
    assert planned.assume_calls == 2


def test_import_comments_name_each_profile() -> None:
    _, result = imported()
    lines = result.text.splitlines()
    assert lines[0] == "# Generated by `rolechain import-aws-config` from config"
    index = lines.index("  prod-admin:")
    assert lines[index - 1] == "  # [profile prod admin]: role_arn via source_profile hub"
    assert "  # [profile base]: static keys in the credentials file" in lines


def test_imported_chain_validates_and_plans() -> None:
    _, result = imported()
    chain = loads(result.text, file="imported.yaml")
    for job in ("hub", "prod-admin", "ci", "ci-2", "from-env", "dev-deploy"):
        planned = plan(chain, job, run_id="t")
        assert planned.assume_calls == (2 if job == "prod-admin" else 1)
    hops = plan(chain, "prod-admin", run_id="t").hops
    assert [h.session_name for h in hops] == ["alice", "alice"]
    assert hops[0].external_id == "ext-123"


def test_source_profile_loop_and_self_reference() -> None:
    config = """
[profile a]
role_arn = arn:aws:iam::111111111111:role/a
source_profile = b
[profile b]
role_arn = arn:aws:iam::111111111111:role/b
source_profile = a
[profile self]
role_arn = arn:aws:iam::111111111111:role/self
source_profile = self
aws_access_key_id = AKIAEXAMPLESELF
aws_secret_access_key = x
"""
    doc, result = imported(config, None)
    messages = " | ".join(str(u) for u in result.unmapped)
    assert "source_profile loop" in messages
    assert "names the profile itself" in messages
    assert doc["roles"]["self"]["trusts"] == ["self-keys"]
    assert doc["principals"]["self-keys"]["profile"] == "self"


def test_names_are_sanitized_and_unique() -> None:
    assert sanitize_name("prod admin") == "prod-admin"
    assert sanitize_name("--x") == "x"
    assert sanitize_name("!!!") == "profile"
    assert sanitize_name("a" * 80) == "a" * 64
    config = """
[profile a b]
aws_access_key_id = AKIA1
[profile a-b]
aws_access_key_id = AKIA2
"""
    doc, _ = imported(config, None)
    assert sorted(doc["principals"]) == ["a-b", "a-b-2"]
    assert {p["profile"] for p in doc["principals"].values()} == {"a b", "a-b"}


def test_yaml_scalars_are_safe() -> None:
    config = """
[profile weird]
role_arn = arn:aws:iam::111111111111:role/weird
source_profile = keys
external_id = yes
role_session_name = 123
[profile keys]
aws_access_key_id = AKIA1
"""
    doc, result = imported(config, None)
    assert doc["roles"]["weird"]["external_id"] == "yes"  # not the boolean true
    assert doc["jobs"]["weird"]["session_name"] == "123"
    loads(result.text, file="weird.yaml")


def test_parse_rolechain_process() -> None:
    ref = parse_rolechain_process("/opt/bin/rolechain credentials '/a b/c.yaml' --target t --job j")
    assert ref is not None
    assert (ref.path, ref.target, ref.job) == ("/a b/c.yaml", "t", "j")
    ref = parse_rolechain_process("python3 -m rolechain credentials c.yaml --target=x")
    assert ref is not None
    assert (ref.path, ref.target, ref.job) == ("c.yaml", "x", None)
    assert parse_rolechain_process("rolechain run c.yaml --job j") is None
    assert parse_rolechain_process("other credentials c.yaml --target x") is None
    assert parse_rolechain_process("rolechain credentials 'unterminated") is None


def test_export_writes_credential_process_profiles() -> None:
    profiles = [
        ExportedProfile("hub", "j", "hub", "eu-west-1", "arn:aws:iam::111111111111:role/hub"),
        ExportedProfile("audit@2", "j", "audit@2", None, "arn:aws:iam::2:role/audit"),
    ]
    text = export_aws_config(profiles, chain_path="/c d/chain.yaml", command=["/bin/rolechain"])
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    assert parser.sections() == ["profile hub", "profile audit@2"]
    argv = shlex.split(parser["profile hub"]["credential_process"])
    assert argv == [
        "/bin/rolechain",
        "credentials",
        "/c d/chain.yaml",
        "--target",
        "hub",
        "--job",
        "j",
    ]
    assert parser["profile hub"]["region"] == "eu-west-1"
    assert "region" not in parser["profile audit@2"]
    with pytest.raises(ValueError, match="profile name"):
        export_aws_config(
            [ExportedProfile("bad]name", "j", "t", None, "arn")], chain_path="/c", command=["x"]
        )


def test_profile_names_for() -> None:
    names = profile_names_for([("a", "hub"), ("b", "hub"), ("a", "leaf")])
    assert names == {("a", "hub"): "a.hub", ("b", "hub"): "b.hub", ("a", "leaf"): "leaf"}


def _export_chain(path: Path) -> str:
    chain = load(path)
    profiles = []
    for job in chain.model.jobs:
        planned = plan(chain, job, run_id="t")
        for target in planned.targets:
            profiles.append(ExportedProfile(target.name, job, target.name, None, target.role_arn))
    return export_aws_config(profiles, chain_path=str(path), command=["rolechain"])


def _resolver() -> Any:
    return resolve_with_chain(
        lambda p: load(p), lambda chain, job, target: plan_target(chain, job, target)[0]
    )


def test_round_trip_import_export_import(tmp_path: Path) -> None:
    first = import_aws_config(CONFIG, CREDENTIALS)
    chain_path = tmp_path / "first.yaml"
    chain_path.write_text(first.text)
    exported = _export_chain(chain_path)
    second = import_aws_config(exported, None, resolver=_resolver())
    assert second.unmapped == []
    a = loads(first.text, file="first.yaml").model
    b = loads(second.text, file="second.yaml").model
    used = {job.from_ for job in a.jobs.values()}
    assert b.jobs == a.jobs
    assert b.roles == a.roles
    assert b.principals == {k: v for k, v in a.principals.items() if k in used}
    # And once more: the exported config of the second chain is the same config.
    second_path = tmp_path / "second.yaml"
    second_path.write_text(second.text)
    assert (
        _export_chain(second_path).split("\n", 1)[1]
        == exported.replace(str(chain_path), str(second_path)).split("\n", 1)[1]
    )


def test_round_trip_of_role_set_members(tmp_path: Path) -> None:
    text = """
version: 1
principals:
  ci: {source: env, kind: user}
roles:
  hub: {arn: "arn:aws:iam::111111111111:role/hub", trusts: [ci], external_id: ext-1}
role_sets:
  audit:
    role_name: audit
    accounts: ["222222222222", "333333333333"]
    trusts: [hub]
jobs:
  inventory: {from: ci, to: audit, regions: [eu-west-1], session_name: "inv-{account}"}
"""
    path = tmp_path / "chain.yaml"
    path.write_text(text)
    result = import_aws_config(_export_chain(path), None, resolver=_resolver())
    assert result.unmapped == []
    model = loads(result.text, file="again.yaml").model
    original = load(path).model
    assert model.role_sets["audit"] == original.role_sets["audit"]
    assert model.roles == original.roles
    job = model.jobs["audit-222222222222"]  # the profile name, sanitized
    assert (job.from_, job.to, job.via, job.regions, job.session_name) == (
        "ci",
        "audit@222222222222",
        ["hub"],
        ["eu-west-1"],
        "inv-{account}",
    )


def test_unresolvable_rolechain_profile_is_reported(tmp_path: Path) -> None:
    config = (
        f"[profile x]\ncredential_process = rolechain credentials {tmp_path}/none.yaml --target t\n"
    )
    result = import_aws_config(config, None, resolver=_resolver())
    assert len(result.unmapped) == 1
    assert "cannot resolve rolechain profile" in str(result.unmapped[0])
    assert import_aws_config(config, None).unmapped[0].message.startswith("uses rolechain")


# -- issue 18: text from a chain file is refused or quoted in the exported config ----------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30))
def test_export_quotes_or_refuses_any_text(path_text: str, arn_text: str) -> None:
    chain_path = "/" + path_text
    profile = ExportedProfile("hub", "j", "hub", None, arn_text)
    breaking = any(ch in chain_path for ch in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") or any(
        ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in chain_path
    )
    if breaking:
        with pytest.raises(ValueError, match="credential_process"):
            export_aws_config([profile], chain_path=chain_path, command=["rolechain"])
        return
    text = export_aws_config([profile], chain_path=chain_path, command=["rolechain"])
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    assert parser.sections() == ["profile hub"]  # the comment's ARN text made no section
    assert set(parser["profile hub"]) == {"credential_process"}
    argv = shlex.split(parser["profile hub"]["credential_process"])
    assert argv == ["rolechain", "credentials", chain_path, "--target", "hub", "--job", "j"]

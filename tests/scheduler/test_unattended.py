"""Credentials that cannot last unattended: refused (MFA) or warned about (session keys in
the environment, SSO profiles), located in the chain file."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolechain.errors import PlanError
from rolechain.model.loader import loads
from rolechain.scheduler.unattended import check

CHAIN = """
version: 1
principals:
  bot: {{source: {source}{profile}, kind: user, account: "111111111111"}}
role_sets:
  audit: {{role_name: Audit, trusts: [bot], accounts: ["333333333333"]}}
jobs:
  j: {{from: bot, to: audit, tasks: [s3.list_buckets], schedule: "@daily"}}
"""

CONFIG = """
[profile sso]
sso_session = corp
sso_account_id = 111111111111
sso_role_name = Admin
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
[profile mfa]
role_arn = arn:aws:iam::111111111111:role/Admin
source_profile = keys
mfa_serial = arn:aws:iam::111111111111:mfa/me
[profile keys]
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = example
"""


@pytest.fixture
def aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    path.write_text(CONFIG)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return path


def chain(source: str, profile: str | None = None):  # type: ignore[no-untyped-def]
    return loads(CHAIN.format(source=source, profile=f", profile: {profile}" if profile else ""),
                 file="c.yaml")  # fmt: skip


def test_an_mfa_profile_is_refused_at_its_location(aws_config: Path) -> None:
    with pytest.raises(PlanError) as caught:
        check(chain("profile", "mfa"), ["j"])
    (violation,) = caught.value.violations
    assert violation.rule == "mfa-scheduled"
    assert str(violation.location).startswith("c.yaml:4:")
    assert "needs an MFA code" in violation.message


def test_an_sso_profile_is_warned_about(aws_config: Path) -> None:
    (warning,) = check(chain("profile", "sso"), ["j"])
    assert "IAM Identity Center (SSO)" in warning.message
    assert str(warning).startswith("c.yaml:4:")


def test_session_keys_in_the_environment_are_warned_about(aws_config: Path) -> None:
    (warning,) = check(chain("env"), ["j"], environ={"AWS_SESSION_TOKEN": "t"})
    assert "AWS_SESSION_TOKEN" in warning.message
    assert check(chain("env"), ["j"], environ={}) == []


def test_long_term_and_refreshing_sources_pass(aws_config: Path) -> None:
    assert check(chain("profile", "keys"), ["j"]) == []
    assert check(chain("default"), ["j"], environ={}) == []
    (missing,) = check(chain("profile", "nope"), ["j"])
    assert "not in this machine's AWS config" in missing.message

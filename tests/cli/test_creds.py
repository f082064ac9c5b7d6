"""The credential commands' CLI, without AWS: a seeded cache, import and export files."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.credentials.cache import (
    CachedCredentials,
    CredentialCache,
    path_keys,
    root_fingerprint,
)
from rolechain.credentials.process import plan_target
from rolechain.model.loader import load

CHAIN = """
version: 1
principals:
  ci: {source: env, kind: user}
roles:
  hub: {arn: "arn:aws:iam::111111111111:role/hub", trusts: [ci]}
role_sets:
  audit:
    role_name: audit
    accounts: ["222222222222"]
    trusts: [hub]
  org:
    role_name: OrgAudit
    organization: {via: hub}
    trusts: [hub]
jobs:
  inventory: {from: ci, to: audit, regions: [eu-west-1]}
  hub-only: {from: ci, to: hub}
  everywhere: {from: ci, to: "org@*"}
"""

ROOT_KEY = "AKIACLITESTROOT01"
SECRET = "s3cr3t'$(touch /tmp/pwned)`x`"
TOKEN = "token\"with'quotes"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A hermetic environment: no real AWS settings, an endpoint nothing listens on (any
    AWS call would fail), fake starting keys and a private cache directory."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "ROLECHAIN_")):
            monkeypatch.delenv(name)
    return {
        "ROLECHAIN_CACHE_DIR": str(tmp_path / "cache"),
        "AWS_ACCESS_KEY_ID": ROOT_KEY,
        "AWS_SECRET_ACCESS_KEY": "root-secret",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: a call would fail
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }


@pytest.fixture
def chain_file(tmp_path: Path) -> Path:
    path = tmp_path / "chain.yaml"
    path.write_text(CHAIN)
    return path


def seed(
    chain_file: Path, env: dict[str, str], target: str, minutes: int = 60
) -> CachedCredentials:
    """Put the target's credentials in the cache, as a previous call would have."""
    chain = load(chain_file)
    from rolechain.credentials.process import choose_job

    planned, planned_target = plan_target(chain, choose_job(chain, target, None), target)
    root = root_fingerprint(ROOT_KEY, principal=planned.principal, endpoint=env["AWS_ENDPOINT_URL"])
    keys = path_keys(root, planned.path_hops(planned_target))
    creds = CachedCredentials(
        "ASIASEEDED" + target.upper()[:4],
        SECRET,
        TOKEN,
        datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes),
        datetime.now(UTC),
    )
    cache = CredentialCache(Path(env["ROLECHAIN_CACHE_DIR"]))
    leaf = planned.hop(planned_target.hop_id)
    assert cache.put(keys[leaf.id], leaf, creds)
    return creds


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args, env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_credentials_prints_the_cached_entry(chain_file: Path, env: dict[str, str]) -> None:
    creds = seed(chain_file, env, "audit@222222222222")
    code, out, err = invoke(["credentials", str(chain_file), "-t", "audit@222222222222"], env)
    assert code == 0, err
    assert json.loads(out) == {
        "Version": 1,
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
        "Expiration": creds.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert err == ""


def test_env_quotes_hostile_values(chain_file: Path, env: dict[str, str]) -> None:
    seed(chain_file, env, "hub")
    code, out, _ = invoke(["env", str(chain_file), "-t", "hub", "--shell", "bash"], env)
    assert code == 0
    assert "export AWS_SECRET_ACCESS_KEY='s3cr3t'\"'\"'$(touch /tmp/pwned)`x`'\n" in out
    assert out.startswith("unset AWS_PROFILE\nunset AWS_DEFAULT_PROFILE\n")
    assert "export AWS_REGION='us-east-1'" in out  # no job region: the chain's default


def test_exec_runs_with_seeded_credentials(
    chain_file: Path, env: dict[str, str], tmp_path: Path
) -> None:
    creds = seed(chain_file, env, "audit@222222222222")
    out = tmp_path / "child.json"
    child = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w')); sys.exit(3)"
    code, _, err = invoke(
        [
            "exec",
            str(chain_file),
            "-t",
            "audit@222222222222",
            "--",
            sys.executable,
            "-c",
            child,
            str(out),
        ],
        {**env, "AWS_PROFILE": "x", "AWS_DEFAULT_PROFILE": "y"},
    )
    assert code == 3, err
    seen = json.loads(out.read_text())
    assert seen["AWS_ACCESS_KEY_ID"] == creds.access_key_id
    assert seen["AWS_SECRET_ACCESS_KEY"] == SECRET
    assert seen["AWS_SESSION_TOKEN"] == TOKEN
    assert seen["AWS_REGION"] == seen["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert seen["ROLECHAIN_TARGET"] == "audit@222222222222"
    assert "AWS_PROFILE" not in seen
    assert "AWS_DEFAULT_PROFILE" not in seen
    assert "ROLECHAIN_CREDENTIALS_ACTIVE" not in seen


def test_exec_verbose_and_runtime_warning(chain_file: Path, env: dict[str, str]) -> None:
    seed(chain_file, env, "hub", minutes=60)
    code, _, err = invoke(
        [
            "exec",
            str(chain_file),
            "-t",
            "hub",
            "-v",
            "--expect-runtime",
            "30m",
            "--",
            sys.executable,
            "-c",
            "pass",
        ],
        env,
    )
    assert code == 0, err
    assert "job hub-only, target hub (arn:aws:iam::111111111111:role/hub): from the cache" in err
    assert "warning" not in err
    code, _, err = invoke(
        ["exec", str(chain_file), "-t", "hub", "--expect-runtime", "soon", "--", "true"], env
    )
    assert code == 2
    assert "not a duration" in err


def test_cache_list_and_clear(chain_file: Path, env: dict[str, str]) -> None:
    code, out, _ = invoke(["cache", "list"], env)
    assert code == 0
    assert out.startswith("no cached credentials in ")
    seed(chain_file, env, "hub")
    seed(chain_file, env, "audit@222222222222", minutes=-1)
    code, out, _ = invoke(["cache", "list"], env)
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "ROLE", "ARN", "SESSION", "NAME", "EXPIRES", "LEFT"]
    assert "arn:aws:iam::222222222222:role/audit" in lines[1]
    assert lines[1].endswith("expired")
    assert lines[2].split()[1:3] == [
        "arn:aws:iam::111111111111:role/hub",
        "rolechain-hub-only-credentials",
    ]
    assert lines[-1].startswith("2 entries in ")
    assert SECRET not in out
    assert "ASIASEEDED" not in out
    code, out, _ = invoke(["cache", "list", "--format", "json"], env)
    listed = json.loads(out)
    assert [e["session_name"] for e in listed["entries"]] == [
        "rolechain-inventory-credentials",
        "rolechain-hub-only-credentials",
    ]
    assert SECRET not in out
    code, out, _ = invoke(["cache", "clear", "--expired"], env)
    assert out.startswith("removed 1 entry from ")
    code, out, _ = invoke(["cache", "clear"], env)
    assert out.startswith("removed 1 entry from ")


def test_export_names_profiles_and_skips_organization_members(
    chain_file: Path, env: dict[str, str], tmp_path: Path
) -> None:
    code, out, err = invoke(["export-aws-config", str(chain_file)], env)
    assert code == 0, err
    assert "[profile audit@222222222222]" in out
    assert "[profile hub]" in out
    assert "skipped org@* (job everywhere)" in err
    assert f"credentials {chain_file.resolve()} --target hub --job hub-only" in out
    target = tmp_path / "config"
    code, _, _ = invoke(
        ["export-aws-config", str(chain_file), "-j", "inventory", "-o", str(target)], env
    )
    assert code == 0
    assert "[profile hub]" not in target.read_text()
    code, _, err = invoke(["export-aws-config", str(chain_file), "-o", str(target)], env)
    assert code == 1
    assert "pass --force" in err
    code, _, err = invoke(["export-aws-config", str(chain_file), "-j", "nope"], env)
    assert code == 2
    assert "unknown job 'nope'" in err
    code, _, err = invoke(["export-aws-config", str(chain_file), "-j", "everywhere"], env)
    assert code == 2
    assert "no target to export" in err


def test_export_default_command_is_runnable(chain_file: Path, env: dict[str, str]) -> None:
    import shlex

    _code, out, _ = invoke(["export-aws-config", str(chain_file), "-j", "hub-only"], env)
    line = next(ln for ln in out.splitlines() if ln.startswith("credential_process = "))
    argv = shlex.split(line.split(" = ", 1)[1])
    # Under pytest, argv[0] is not the rolechain script: python -m rolechain, absolute.
    assert argv[:3] == [sys.executable, "-m", "rolechain"] or Path(argv[0]).name == "rolechain"
    assert os.path.isabs(argv[0]) or argv[0] == "rolechain"


AWS_CONFIG = """
[default]
region = eu-west-1
[profile base]
region = us-east-1
[profile hub]
role_arn = arn:aws:iam::111111111111:role/hub
source_profile = base
[profile sso]
sso_session = corp
sso_account_id = 555555555555
sso_role_name = Dev
[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
[profile mfa]
role_arn = arn:aws:iam::555555555555:role/mfa
source_profile = sso
mfa_serial = arn:aws:iam::555555555555:mfa/me
[profile web]
role_arn = arn:aws:iam::777777777777:role/web
web_identity_token_file = /token
"""


def test_import_aws_config(tmp_path: Path, env: dict[str, str]) -> None:
    config = tmp_path / "config"
    config.write_text(AWS_CONFIG)
    creds = tmp_path / "credentials"
    creds.write_text("[base]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = hidden\n")
    env = {**env, "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    code, out, err = invoke(["import-aws-config"], env)
    assert code == 0, err
    assert out.startswith(f"# Generated by `rolechain import-aws-config` from {config}\n")
    assert "hidden" not in out
    assert "AKIAEXAMPLE" not in out
    assert "not mapped: [web] web_identity_token_file" in err
    # The generated chain is checked: MFA from an SSO session is refused by the planner.
    assert "warning: job 'mfa' cannot be planned" in err
    assert "mfa-caller" in err
    assert "imported 3 principals, 2 roles and 2 jobs; 1 item not mapped" in err

    output = tmp_path / "chain.yaml"
    code, out, err = invoke(["import-aws-config", str(config), "-o", str(output)], env)
    assert code == 0
    assert out == ""
    assert f"wrote {output}" in err
    assert load(output).model.roles["hub"].trusts == ["base"]
    code, _, err = invoke(["import-aws-config", str(config), "-o", str(output)], env)
    assert code == 1
    assert "--force" in err
    code, _, _ = invoke(["import-aws-config", str(config), "-o", str(output), "--force"], env)
    assert code == 0

    code, _, err = invoke(["import-aws-config", str(tmp_path / "missing")], env)
    assert code == 1
    assert "cannot read the AWS config file" in err


def test_commands_have_help_with_examples() -> None:
    for name in ("credentials", "exec", "env", "import-aws-config", "export-aws-config", "cache"):
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0
        assert "Example" in result.output


def test_organization_members_by_account_and_the_placeholder(
    chain_file: Path, env: dict[str, str]
) -> None:
    creds = seed(chain_file, env, "org@444444444444")
    code, out, err = invoke(["credentials", str(chain_file), "-t", "org@444444444444"], env)
    assert code == 0, err
    assert json.loads(out)["AccessKeyId"] == creds.access_key_id
    code, out, err = invoke(["credentials", str(chain_file), "-t", "org@*"], env)
    assert code == 2
    assert out == ""
    assert "name one member: --target org@ACCOUNT_ID" in err


def test_unknown_or_excluded_targets_exit_2_before_any_call(tmp_path: Path) -> None:
    from rolechain.cli import cli

    chains = Path(__file__).resolve().parents[2] / "chains"
    runner = CliRunner()
    for target in ["audit@444444444444", "audit@123", "nope"]:
        result = runner.invoke(
            cli,
            ["credentials", str(chains / "org-inventory.yaml"), "--target", target],
            env={"ROLECHAIN_CACHE_DIR": str(tmp_path), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        )
        assert result.exit_code == 2, (target, result.output)

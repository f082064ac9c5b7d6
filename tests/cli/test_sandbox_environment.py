"""Every command that runs against a sandbox points this process at it the same way
(cli/_common.sandbox_environment): the sandbox's endpoint, region and keys, and none of the
variables that make an AWS SDK pick other credentials (a profile, a session token of the
user's, web identity...), as `rolechain env` does; everything restored afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolechain.aws.environment import CONFLICTING_VARIABLES
from rolechain.cli import cli
from rolechain.cli._common import sandbox_credentials, sandbox_environment
from rolechain.model.loader import load

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "chains" / "demo.yaml"

USERS = {
    "AWS_PROFILE": "someone-elses-profile",
    "AWS_SESSION_TOKEN": "a-token-of-the-users-own",
    "AWS_ACCESS_KEY_ID": "AKIAUSERSOWNKEY00000",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "/nonexistent/token",
    "AWS_ROLE_ARN": "arn:aws:iam::999999999999:role/elsewhere",
}


def test_the_sandbox_environment_strips_what_would_pick_other_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in USERS.items():
        monkeypatch.setenv(name, value)
    chain = load(DEMO)
    with sandbox_environment(chain) as info:
        for name in CONFLICTING_VARIABLES:
            assert name not in os.environ, name
        assert os.environ["AWS_ACCESS_KEY_ID"] == info.env["AWS_ACCESS_KEY_ID"]
        assert os.environ["AWS_ENDPOINT_URL"] == info.endpoint
        # The user's session token would be sent with the sandbox's keys.
        assert os.environ.get("AWS_SESSION_TOKEN") == info.env.get("AWS_SESSION_TOKEN")
        credentials = sandbox_credentials(info.env)
        assert credentials is not None
        assert credentials.access_key == info.env["AWS_ACCESS_KEY_ID"]
    for name, value in USERS.items():
        assert os.environ[name] == value
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_a_principal_of_the_sandbox_gets_its_own_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = load(DEMO)
    name = next(iter(chain.model.principals))
    with sandbox_environment(chain, principal=name) as info:
        assert os.environ["AWS_ACCESS_KEY_ID"] == info.principals[name]["AWS_ACCESS_KEY_ID"]
    assert sandbox_credentials({"AWS_ENDPOINT_URL": "http://x"}) is None


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", str(DEMO), "--sandbox", "--job", "whoami"],
        ["run", str(DEMO), "--job", "whoami", "--sandbox", "--format", "jsonl"],
    ],
)
def test_commands_run_against_the_sandbox_whatever_profile_is_selected(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A profile that does not exist: botocore refuses to build a session with it.
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile-anywhere")
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert os.environ["AWS_PROFILE"] == "no-such-profile-anywhere"

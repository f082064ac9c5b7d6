"""``rolechain console`` (a console sign-in URL through the federation endpoint, which the
sandbox answers) and ``rolechain exec --server`` (credentials served to the child through
the container-credentials endpoint). Issue 20, item 10."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.credentials.process import TargetCredentials
from rolechain.credentials.server import (
    REFRESH_MARGIN,
    RefreshingCredentials,
    serve_credentials,
)

pytest.importorskip("moto")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "chains" / "demo.yaml"

# The hub is the first hop, from user keys: not chained, so a SessionDuration is allowed.
HUB = """
principals:
  bot: {kind: user, arn: "arn:aws:iam::111111111111:user/bot", account: "111111111111"}
roles:
  hub: {arn: "arn:aws:iam::222222222222:role/Hub", trusts: [bot], max_session_duration: 4h}
jobs:
  hub:
    from: bot
    to: hub
    tasks: [sts.get_caller_identity]
"""


def sandbox_env(chain: Path) -> Iterator[dict[str, str]]:
    from rolechain.model.loader import load
    from rolechain.sandbox import sandbox

    with sandbox(load(chain)) as info:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(info.env)
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        yield env


@pytest.fixture
def demo_sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for env in sandbox_env(DEMO):
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield env


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def follow(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def test_console_prints_a_signin_url_the_sandbox_accepts(demo_sandbox: dict[str, str]) -> None:
    args = ["console", str(DEMO), "-t", "audit@333333333333", "-j", "inventory", "--no-cache"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert url.startswith(demo_sandbox["AWS_ENDPOINT_URL"] + "/federation?Action=login&")
    query = parse_qs(urlparse(url).query)
    assert query["Issuer"] == ["rolechain"]
    assert query["Destination"] == ["https://console.aws.amazon.com/console/home?region=us-east-1"]
    assert follow(url) == (302, query["Destination"][0])
    # A made-up sign-in token is refused.
    forged = url.replace(query["SigninToken"][0], "forged-token")
    assert follow(forged)[0] == 400


def test_console_duration_is_refused_for_chained_credentials(demo_sandbox: dict[str, str]) -> None:
    args = ["console", str(DEMO), "-t", "audit@333333333333", "-j", "inventory", "--no-cache",
            "--duration", "2h"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "come from role chaining" in result.output


def test_console_duration_for_a_first_hop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = tmp_path / "hub.yaml"
    chain.write_text(HUB)
    for env in sandbox_env(chain):
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        args = ["console", str(chain), "-t", "hub", "--no-cache", "--duration", "2h",
                "--destination", "https://console.aws.amazon.com/s3/home"]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert follow(result.stdout.strip()) == (302, "https://console.aws.amazon.com/s3/home")


def test_the_sandbox_federation_endpoint_enforces_the_rules(
    demo_sandbox: dict[str, str],
) -> None:
    endpoint = demo_sandbox["AWS_ENDPOINT_URL"] + "/federation"

    def get(**params: str) -> tuple[int, dict[str, Any]]:
        query = urllib.parse.urlencode({"Action": "getSigninToken", **params})
        try:
            with urllib.request.urlopen(f"{endpoint}?{query}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    keys = {
        "sessionId": demo_sandbox["AWS_ACCESS_KEY_ID"],
        "sessionKey": demo_sandbox["AWS_SECRET_ACCESS_KEY"],
        "sessionToken": "made-up",
    }
    status, body = get(Session=json.dumps(keys))
    assert status == 400
    assert "not valid" in body["message"]
    assert get(Session="not json")[0] == 400


# -- exec --server ------------------------------------------------------------------------


def credentials(expires_in: timedelta, now: datetime, key: str = "ASIAEXAMPLE") -> Any:
    return TargetCredentials(
        job="j", target="t", role_arn="arn:aws:iam::111111111111:role/r", region="eu-west-1",
        access_key_id=key, secret_access_key="secret", session_token="token",
        expiration=now + expires_in, from_cache=False,
    )  # fmt: skip


def test_refreshing_credentials_refresh_before_the_sdk_would_need_to() -> None:
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    issued: list[float] = []

    def resolve(at_least: float) -> Any:
        issued.append(at_least)
        return credentials(timedelta(hours=1), clock[0], key=f"ASIA{len(issued)}")

    source = RefreshingCredentials(resolve, now=lambda: clock[0])
    assert source.get().access_key_id == "ASIA1"
    clock[0] += timedelta(minutes=40)  # 20 minutes left: still past botocore's window
    assert source.get().access_key_id == "ASIA1"
    clock[0] += timedelta(minutes=5)  # 15 minutes left: refresh
    assert source.get().access_key_id == "ASIA2"
    assert issued == [REFRESH_MARGIN, REFRESH_MARGIN]


def test_the_server_refuses_a_missing_or_wrong_token() -> None:
    now = datetime.now(UTC)
    source = RefreshingCredentials(lambda _: credentials(timedelta(hours=1), now))

    def fetch(url: str, token: str | None) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(url)
        if token is not None:
            request.add_header("Authorization", token)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    with serve_credentials(source) as served:
        assert urlparse(served.uri).hostname == "127.0.0.1"
        assert fetch(served.uri, None) == (
            401,
            {"message": "a valid authorization token is required"},
        )
        assert fetch(served.uri, "wrong")[0] == 401
        assert fetch(served.uri + "x", served.token)[0] == 404
        status, body = fetch(served.uri, served.token)
        assert status == 200
        assert body["AccessKeyId"] == "ASIAEXAMPLE"
        assert set(body) >= {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
        env = served.environment({"AWS_ACCESS_KEY_ID": "x", "AWS_PROFILE": "p", "HOME": "/h"},
                                 "eu-west-1")  # fmt: skip
        assert env == {
            "HOME": "/h",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": served.uri,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": served.token,
            "AWS_REGION": "eu-west-1",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }


def test_exec_server_gives_a_boto3_child_the_targets_credentials(
    demo_sandbox: dict[str, str],
) -> None:
    child = (
        "import boto3, os\n"
        "assert 'AWS_ACCESS_KEY_ID' not in os.environ\n"
        "session = boto3.Session()\n"
        "print(session.get_credentials().method)\n"
        "print(session.client('sts').get_caller_identity()['Arn'])\n"
        "print(len(session.client('s3').list_buckets()['Buckets']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "rolechain", "exec", str(DEMO), "-t", "audit@444444444444",
         "-j", "inventory", "--server", "--no-cache", "--", sys.executable, "-c", child],
        env=demo_sandbox, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    method, arn, buckets = done.stdout.split()
    assert method == "container-role"
    assert arn.startswith("arn:aws:sts::444444444444:assumed-role/InventoryAudit/")
    assert buckets == "2"
    assert "SecretAccessKey" not in done.stderr

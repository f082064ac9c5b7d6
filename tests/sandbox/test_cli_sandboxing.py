"""``rolechain sandbox``: serves until interrupted, prints usable export lines."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.sandbox import SandboxError, sandbox

from .conftest import Clients, chain_from

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "chains" / "demo.yaml"


@pytest.mark.parametrize(
    "extra_env",
    [{}, {"AWS_PROFILE": "no-such-profile", "AWS_DEFAULT_PROFILE": "nor-this-one"}],
    ids=["plain", "missing-aws-profile"],
)
def test_serves_prints_exports_and_exits_zero_on_ctrl_c(extra_env: dict[str, str]) -> None:
    """Also when AWS_PROFILE names a profile that does not exist (it once crashed with
    ProfileNotFound): the sandbox's own clients carry explicit keys and read no profile."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rolechain", "sandbox", str(DEMO), "--latency", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **extra_env},
    )
    try:
        assert proc.stdout is not None
        env: dict[str, str] = {}
        unset: set[str] = set()
        header = proc.stdout.readline()
        assert header.startswith("# sandbox credentials of principal 'inventory-bot'")
        while "AWS_REGION" not in env:
            line = proc.stdout.readline()
            if line.startswith("unset "):  # what would make a pasted shell use other keys
                unset.add(line.split()[1])
                continue
            assert line.startswith("export "), line
            key, _, value = line[len("export ") :].strip().partition("=")
            env[key] = shlex.split(value)[0]
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert {"AWS_PROFILE", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN"} <= unset
        assert not unset & env.keys()
        sts = Clients(env["AWS_ENDPOINT_URL"]).client("sts", env)
        assert sts.get_caller_identity()["Arn"] == "arn:aws:iam::111111111111:user/inventory-bot"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "serving http://127.0.0.1:" in err
        assert "X-Rolechain-Sandbox-Admin: " in err
        assert "sandbox stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_deny_account_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["sandbox", str(DEMO), "--deny", "12345"])
    assert result.exit_code == 2
    assert "12-digit" in result.output


@pytest.mark.parametrize("rate", ["0", "fast", "50:0.5"])
def test_bad_sts_rate_is_a_usage_error(rate: str) -> None:
    result = CliRunner().invoke(cli, ["sandbox", str(DEMO), "--sts-rate", rate])
    assert result.exit_code == 2
    assert "--sts-rate" in result.output


def test_unknown_principal_is_explained() -> None:
    result = CliRunner().invoke(cli, ["sandbox", str(DEMO), "--principal", "nobody"])
    assert result.exit_code == 1
    assert "no principal 'nobody'" in result.output
    assert "inventory-bot" in result.output


def test_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "--help"])
    assert result.exit_code == 0
    assert "rolechain sandbox chains/demo.yaml" in result.output
    assert "--time-scale" in result.output


def test_missing_moto_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moto.moto_server.werkzeug_app", None)
    chain = chain_from("version: 1\nprincipals: {p: {}}\n")
    with pytest.raises(SandboxError) as info, sandbox(chain):
        pass
    assert "pip install 'rolechain[sandbox]'" in str(info.value)

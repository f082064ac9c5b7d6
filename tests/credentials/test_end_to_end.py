"""End to end against a moto server: the real ``rolechain`` script as credential_process,
exec and env, with AssumeRole calls counted at the server."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from rolechain.cli import cli

from .conftest import MotoServer
from .test_process import CHAIN

ROLECHAIN = str(Path(sys.executable).parent / "rolechain")


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [ROLECHAIN, *args], capture_output=True, text=True, timeout=60, **kwargs
    )


def test_boto3_profile_with_credential_process_uses_the_cache(
    aws_env: MotoServer, chain_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "aws-config"
    result = CliRunner().invoke(
        cli,
        [
            "export-aws-config",
            str(chain_file),
            "--job",
            "inventory",
            "-o",
            str(config),
            "--command",
            ROLECHAIN,
        ],
    )
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert "[profile audit@222222222222]" in text
    assert "--target audit@222222222222 --job inventory" in text
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    session = boto3.session.Session(profile_name="audit@222222222222")
    assert session.region_name == "eu-west-1"
    arn = session.client("sts").get_caller_identity()["Arn"]
    assert arn.startswith("arn:aws:sts::222222222222:assumed-role/audit/rolechain-inventory-")
    assert aws_env.assume_calls() == 2

    # A new session runs the process again: served from the cache, no AssumeRole.
    again = boto3.session.Session(profile_name="audit@222222222222")
    assert again.client("sts").get_caller_identity()["Arn"] == arn
    assert aws_env.assume_calls() == 2
    # The other member reuses the cached hub: one more call.
    other = boto3.session.Session(profile_name="audit@333333333333")
    assert ":333333333333:assumed-role/audit/" in other.client("sts").get_caller_identity()["Arn"]
    assert aws_env.assume_calls() == 3

    cache_dir = Path(os.environ["ROLECHAIN_CACHE_DIR"])
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    files = list(cache_dir.iterdir())
    assert len(files) == 3
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)

    listed = run("cache", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["entries"]
    assert sorted(e["role_arn"] for e in entries) == [
        "arn:aws:iam::111111111111:role/hub",
        "arn:aws:iam::222222222222:role/audit",
        "arn:aws:iam::333333333333:role/audit",
    ]
    secret = json.loads(files[0].read_text())["credentials"]["SecretAccessKey"]
    assert secret not in listed.stdout

    # A corrupt entry is a miss: the process still answers, and rewrites it.
    for f in files:
        f.write_text("{corrupt")
    fresh = boto3.session.Session(profile_name="audit@222222222222")
    assert (
        fresh.client("sts")
        .get_caller_identity()["Arn"]
        .startswith("arn:aws:sts::222222222222:assumed-role/audit/")
    )
    assert aws_env.assume_calls() == 5

    cleared = run("cache", "clear")
    assert cleared.returncode == 0
    assert "removed 3 entries" in cleared.stdout


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The CLI in this process (fast); (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_credentials_json_and_errors(aws_env: MotoServer, chain_file: Path) -> None:
    code, out, err = invoke("credentials", str(chain_file), "--target", "hub", "--verbose")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["Version"] == 1
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert doc["Expiration"].endswith("Z")
    assert doc["SecretAccessKey"] not in err  # --verbose says where, never what
    assert "assumed (1 AssumeRole calls" in err

    code, out, err = invoke("credentials", str(chain_file), "--target", "hub", "-v")
    assert json.loads(out)["AccessKeyId"] == doc["AccessKeyId"]
    assert "from the cache" in err

    code, out, err = invoke("credentials", str(chain_file), "--target", "audit@333333333333")
    assert code == 2
    assert out == ""
    assert "2 jobs reach target 'audit@333333333333': everything, inventory" in err

    code, out, _ = invoke("credentials", str(chain_file), "-t", "hub", "--no-cache")
    assert json.loads(out)["AccessKeyId"] != doc["AccessKeyId"]
    code, out, _ = invoke(
        "credentials", str(chain_file), "-t", "hub", env={"ROLECHAIN_NO_CACHE": "1"}
    )
    assert json.loads(out)["AccessKeyId"] != doc["AccessKeyId"]
    assert aws_env.assume_calls() == 3

    code, out, err = invoke("credentials", str(chain_file), "-t", "nope")
    assert code == 2
    assert out == ""
    assert "unknown target 'nope'" in err


def test_profile_that_loops_back_fails_clearly(
    aws_env: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = tmp_path / "loop.yaml"
    chain.write_text(CHAIN.replace("source: env", "source: default"))
    config = tmp_path / "aws-config"
    config.write_text(
        f"[profile hub]\ncredential_process = {ROLECHAIN} credentials {chain} --target hub\n"
    )
    env = {**os.environ, "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "hub"}
    env.pop("AWS_ACCESS_KEY_ID")
    env.pop("AWS_SECRET_ACCESS_KEY")
    done = run("credentials", str(chain), "--target", "hub", env=env)
    assert done.returncode == 1
    assert "would loop forever" in done.stderr
    assert aws_env.assume_calls() == 0


CHILD_IDENTITY = (
    "import boto3, os, sys; "
    "print(boto3.client('sts').get_caller_identity()['Arn']); "
    "print(os.environ['AWS_REGION'], os.environ.get('AWS_PROFILE')); "
    "sys.exit(int(sys.argv[1]))"
)


def test_exec_passes_credentials_region_and_exit_code(
    aws_env: MotoServer, chain_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "user-config"
    config.write_text("[profile should-be-removed]\nregion = ap-south-1\n")
    env = {**os.environ, "AWS_PROFILE": "should-be-removed", "AWS_CONFIG_FILE": str(config)}
    done = run(
        "exec",
        str(chain_file),
        "-t",
        "audit@222222222222",
        "--",
        sys.executable,
        "-c",
        CHILD_IDENTITY,
        "7",
        env=env,
    )
    assert done.returncode == 7, done.stderr
    arn, region_line = done.stdout.splitlines()
    assert arn.startswith("arn:aws:sts::222222222222:assumed-role/audit/")
    assert region_line == "eu-west-1 None"
    assert "AKIA" not in done.stderr
    assert "ASIA" not in done.stderr


def test_exec_warns_when_the_command_may_outlive_the_credentials(
    aws_env: MotoServer, chain_file: Path
) -> None:
    done = run(
        "exec",
        str(chain_file),
        "-t",
        "hub",
        "--expect-runtime",
        "3h",
        "--",
        sys.executable,
        "-c",
        "pass",
    )
    assert done.returncode == 0, done.stderr
    assert "warning: the credentials of hub expire in" in done.stderr
    assert "expected runtime of 3h" in done.stderr
    quiet = run(
        "exec",
        str(chain_file),
        "-t",
        "hub",
        "--expect-runtime",
        "10m",
        "--",
        sys.executable,
        "-c",
        "pass",
    )
    assert "warning" not in quiet.stderr


def test_exec_missing_command(aws_env: MotoServer, chain_file: Path) -> None:
    done = run("exec", str(chain_file), "-t", "hub", "--", "no-such-command-rolechain")
    assert done.returncode == 127
    assert "command not found" in done.stderr
    assert aws_env.assume_calls() == 0


SIGNAL_CHILD = """
import signal, sys, time, pathlib
ready, seen = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def handler(signum, frame):
    seen.write_text(signal.Signals(signum).name)
    sys.exit(42)
if sys.argv[3] == 'handle':
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
ready.write_text('ready')
while True:
    time.sleep(0.05)
"""


@pytest.mark.parametrize(
    ("sig", "mode", "expected_code", "expected_seen"),
    [
        (signal.SIGTERM, "handle", 42, "SIGTERM"),
        (signal.SIGINT, "handle", 42, "SIGINT"),
        (signal.SIGTERM, "die", 128 + signal.SIGTERM, None),
    ],
)
def test_exec_forwards_signals(
    aws_env: MotoServer,
    chain_file: Path,
    tmp_path: Path,
    sig: signal.Signals,
    mode: str,
    expected_code: int,
    expected_seen: str | None,
) -> None:
    ready, seen = tmp_path / "ready", tmp_path / "seen"
    proc = subprocess.Popen(
        [
            ROLECHAIN,
            "exec",
            str(chain_file),
            "-t",
            "hub",
            "--",
            sys.executable,
            "-c",
            SIGNAL_CHILD,
            str(ready),
            str(seen),
            mode,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # our signal reaches rolechain only, as from `kill`
    )
    try:
        for _ in range(600):
            if ready.exists():
                break
            if proc.poll() is not None:
                pytest.fail(f"exited early: {proc.communicate()}")
            time.sleep(0.05)
        else:
            pytest.fail("the child never started")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == expected_code, stderr
    if expected_seen:
        assert seen.read_text() == expected_seen


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_env_output_evaluates_in_real_shells(
    aws_env: MotoServer, chain_file: Path, shell: str
) -> None:
    script = (
        f'eval "$({ROLECHAIN} env {chain_file} --target audit@222222222222 --shell {shell})"\n'
        f'exec {sys.executable} -c "$CHILD" 0\n'
    )
    config = chain_file.parent / "user-config"
    config.write_text("[profile gone]\nregion = ap-south-1\n")
    env = {
        **os.environ,
        "AWS_PROFILE": "gone",
        "AWS_CONFIG_FILE": str(config),
        "CHILD": CHILD_IDENTITY,
    }
    done = subprocess.run(
        [shell, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    arn, region_line = done.stdout.splitlines()
    assert arn.startswith("arn:aws:sts::222222222222:assumed-role/audit/")
    assert region_line == "eu-west-1 None"


def test_env_shell_choice(aws_env: MotoServer, chain_file: Path) -> None:
    _, fish, _ = invoke("env", str(chain_file), "-t", "hub", env={"SHELL": "/usr/bin/fish"})
    assert fish.startswith("set -e AWS_PROFILE\nset -e AWS_DEFAULT_PROFILE\n")
    assert "set -gx AWS_SESSION_TOKEN '" in fish
    _, plain, _ = invoke("env", str(chain_file), "-t", "hub", env={"SHELL": ""})
    assert "export AWS_ACCESS_KEY_ID='" in plain
    _, pwsh, _ = invoke("env", str(chain_file), "-t", "hub", "--shell", "powershell")
    assert "$Env:AWS_SECRET_ACCESS_KEY = '" in pwsh
    assert aws_env.assume_calls() == 1  # the last two came from the cache

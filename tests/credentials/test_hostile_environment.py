"""Credentials commands in hostile environments: poisoned caches, stale or broken AWS_*
variables, variables that would make a child run as someone else.

Each case once crashed or hung a command (issue 9); each must now give a clean answer:
a miss, a warning, or an error with exit status 1 and no traceback.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rolechain.aws.environment import CONFLICTING_VARIABLES
from rolechain.credentials import shells
from rolechain.credentials.cache import CachedCredentials, CredentialCache, hop_key
from rolechain.executor import tasks

from .conftest import MotoServer
from .test_cache import ROOT, make_hop
from .test_end_to_end import invoke, run
from .test_process import CHAIN

DEEP_JSON = ("[" * 30_000 + "]" * 30_000).encode()  # 60 KB: under the size cap, too deep


def finishes(func: Callable[[], Any], seconds: float = 30) -> Any:
    """``func()``, failing (not hanging) if it does not return in time."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(func()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{func} did not return within {seconds} s"
    return box[0]


def creds(minutes: int = 60) -> CachedCredentials:
    return CachedCredentials(
        "ASIAEXAMPLE", "secret", "token", datetime.now(UTC) + timedelta(minutes=minutes)
    )


# -- poisoned cache entries ---------------------------------------------------------------


def test_fifo_entry_is_a_miss_not_a_hang(tmp_path: Path) -> None:
    cache = CredentialCache(tmp_path / "cache")
    key = hop_key(ROOT, make_hop())
    assert cache.put(key, make_hop(), creds())
    entry = cache.directory / f"{key}.json"
    entry.unlink()
    os.mkfifo(entry, 0o600)  # nobody will ever write to it
    assert finishes(lambda: cache.get(key)) is None
    assert finishes(lambda: list(cache.entries())) == []
    assert finishes(lambda: cache.clear(expired_only=True)) == 1  # unreadable counts as expired
    assert cache.stats.rejected == 3


def test_deeply_nested_json_entry_is_a_miss(tmp_path: Path) -> None:
    cache = CredentialCache(tmp_path / "cache")
    key = hop_key(ROOT, make_hop())
    assert cache.put(key, make_hop(), creds())
    (cache.directory / f"{key}.json").write_bytes(DEEP_JSON)
    assert cache.get(key) is None
    assert list(cache.entries()) == []
    assert cache.put(key, make_hop(), creds())  # and the next write replaces it
    assert cache.get(key) is not None


def test_cache_commands_survive_fifo_and_deep_entries(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = CredentialCache(directory)
    keys = [hop_key(ROOT, make_hop(session_name=f"s{i}")) for i in range(3)]
    for key in keys:
        assert cache.put(key, make_hop(), creds())
    (directory / f"{keys[0]}.json").unlink()
    os.mkfifo(directory / f"{keys[0]}.json", 0o600)
    (directory / f"{keys[1]}.json").write_bytes(DEEP_JSON)
    listed = run("cache", "list", "--cache-dir", str(directory), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [e["key"] for e in json.loads(listed.stdout)["entries"]] == [keys[2]]
    cleared = run("cache", "clear", "--expired", "--cache-dir", str(directory))
    assert cleared.returncode == 0, cleared.stderr
    assert "removed 2 entries" in cleared.stdout
    assert "Traceback" not in listed.stderr + cleared.stderr


def test_credentials_rewrite_poisoned_entries(aws_env: MotoServer, chain_file: Path) -> None:
    first = run("credentials", str(chain_file), "--target", "audit@222222222222", "-j", "inventory")
    assert first.returncode == 0, first.stderr
    directory = Path(os.environ["ROLECHAIN_CACHE_DIR"])
    hub, leaf = sorted(directory.glob("*.json"))
    hub.unlink()
    os.mkfifo(hub, 0o600)
    leaf.write_bytes(DEEP_JSON)
    calls = aws_env.assume_calls()
    again = run("credentials", str(chain_file), "--target", "audit@222222222222", "-j", "inventory")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["Version"] == 1
    assert aws_env.assume_calls() == calls + 2  # both were misses, both assumed again
    assert all(stat.S_ISREG(p.stat().st_mode) for p in directory.glob("*.json"))


# -- cache directories that are not the user's own -----------------------------------------


def test_symlinked_cache_directory_is_refused_and_not_chmodded(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    link = tmp_path / "cache"
    link.symlink_to(target)
    cache = CredentialCache(link)
    key = hop_key(ROOT, make_hop())
    assert not cache.put(key, make_hop(), creds())
    assert cache.get(key) is None
    assert any("is a symlink" in p for p in cache.problems)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755  # not chmodded
    assert list(target.iterdir()) == []  # nothing written through the link


def test_symlinked_parent_of_the_cache_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cache = CredentialCache(tmp_path / "link" / "rolechain" / "credentials")
    assert not cache.put(hop_key(ROOT, make_hop()), make_hop(), creds())
    assert any("parent" in p and "symlink" in p for p in cache.problems)
    assert list((tmp_path / "real").iterdir()) == []


def test_world_writable_parent_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could swap the cache directory
    cache = CredentialCache(shared / "cache")
    assert not cache.put(hop_key(ROOT, make_hop()), make_hop(), creds())
    assert any("writable by every user" in p for p in cache.problems)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_foreign_owned_cache_directory_and_parent_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 12345, 12345)
    cache = CredentialCache(foreign)
    assert not cache.put(hop_key(ROOT, make_hop()), make_hop(), creds())
    assert any("belongs to another user" in p for p in cache.problems)

    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, 12345, 12345)
    cache = CredentialCache(parent / "cache")
    assert not cache.put(hop_key(ROOT, make_hop()), make_hop(), creds())
    assert any(f"parent {parent} belongs to another user" in p for p in cache.problems)


def test_credentials_still_issued_when_the_cache_is_refused(
    aws_env: MotoServer, chain_file: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "linked-cache").symlink_to(target)
    env = {**os.environ, "ROLECHAIN_CACHE_DIR": str(tmp_path / "linked-cache")}
    done = run("credentials", str(chain_file), "--target", "hub", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["Version"] == 1
    assert "warning: cache directory" in done.stderr
    assert "is a symlink" in done.stderr
    assert list(target.iterdir()) == []


# -- AWS_* variables that are stale or wrong -------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["credentials", "--target", "hub"],
        ["env", "--target", "hub"],
        ["exec", "--target", "hub", "--", sys.executable, "-c", "pass"],
        ["run", "--job", "hub-only"],
    ],
    ids=["credentials", "env", "exec", "run"],
)
@pytest.mark.parametrize("expiry", ["2020-01-01T00:00:00Z", "not-a-time"])
def test_expired_credential_expiration_is_an_error_not_a_crash(
    aws_env: MotoServer, chain_file: Path, command: list[str], expiry: str
) -> None:
    env = {
        **os.environ,
        "AWS_SESSION_TOKEN": "old-token",
        "AWS_CREDENTIAL_EXPIRATION": expiry,  # what an old `rolechain env` left behind
    }
    done = run(command[0], str(chain_file), *command[1:], env=env)
    assert done.returncode == 1, done.stderr
    assert "AWS_CREDENTIAL_EXPIRATION" in done.stderr
    assert "run `rolechain env` again" in done.stderr
    assert "Traceback" not in done.stderr
    assert aws_env.assume_calls() == 0


def test_aws_profile_naming_a_missing_profile(aws_env: MotoServer, chain_file: Path) -> None:
    default_chain = chain_file.parent / "default.yaml"
    default_chain.write_text(CHAIN.replace("source: env", "source: default"))
    env = {**os.environ, "AWS_PROFILE": "no-such-profile"}
    done = run("credentials", str(default_chain), "--target", "hub", env=env)
    assert done.returncode == 1
    assert "no-such-profile" in done.stderr
    assert "Traceback" not in done.stderr


def test_sandbox_runs_whatever_aws_profile_says(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[2] / "chains" / "demo.yaml"
    env = {**os.environ, "AWS_PROFILE": "no-such-profile", "AWS_DEFAULT_PROFILE": "nor-this"}
    code, out, err = invoke(
        "run", str(demo), "--job", "inventory", "--sandbox", "--format", "jsonl", env=env
    )
    assert code == 0, err
    assert all(json.loads(line)["status"] == "ok" for line in out.splitlines())


# -- variables that would make a child use other credentials ---------------------------------


def test_one_list_of_conflicting_variables() -> None:
    assert tasks.CONFLICTING_VARIABLES is CONFLICTING_VARIABLES
    assert shells.UNSET_VARIABLES is CONFLICTING_VARIABLES
    for name in (
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_PROFILE",
        "AWS_SECRET_KEY",
    ):
        assert name in CONFLICTING_VARIABLES


def _poisoned(tmp_path: Path) -> dict[str, str]:
    """Every conflicting variable set, in a way the parent itself survives (moto takes any
    session token; the profile exists)."""
    config = tmp_path / "config"
    config.write_text("[profile other]\nregion = ap-south-1\n[default]\n")
    env = dict(os.environ, AWS_CONFIG_FILE=str(config))
    for name in CONFLICTING_VARIABLES:
        env[name] = "poison"
    env.update(AWS_PROFILE="other", AWS_DEFAULT_PROFILE="other")
    env["AWS_CREDENTIAL_EXPIRATION"] = "2099-01-01T00:00:00Z"
    return env


PRINT_CONFLICTS = (
    "import json, os, sys; "
    f"print(json.dumps({{k: os.environ.get(k) for k in {list(CONFLICTING_VARIABLES)!r}}}))"
)


def test_exec_child_sees_none_of_them(
    aws_env: MotoServer, chain_file: Path, tmp_path: Path
) -> None:
    env = _poisoned(tmp_path)
    done = run(
        "exec", str(chain_file), "-t", "hub", "--", sys.executable, "-c", PRINT_CONFLICTS, env=env
    )
    assert done.returncode == 0, done.stderr
    seen = {k: v for k, v in json.loads(done.stdout).items() if v is not None}
    # Only the expiry of the credentials rolechain handed over.
    assert set(seen) == {"AWS_CREDENTIAL_EXPIRATION"}
    assert seen["AWS_CREDENTIAL_EXPIRATION"] != "2099-01-01T00:00:00Z"


def test_run_exec_task_sees_none_of_them(
    aws_env: MotoServer, chain_file: Path, tmp_path: Path
) -> None:
    argv = json.dumps([sys.executable, "-c", PRINT_CONFLICTS])
    task = (
        "  probe:\n    from: ci\n    to: hub\n    tasks:\n      - task: exec\n"
        f"        with: {{argv: {argv}}}\n"
    )
    chain_file.write_text(CHAIN + task)
    env = _poisoned(tmp_path)
    done = run("run", str(chain_file), "--job", "probe", "--format", "jsonl", env=env)
    assert done.returncode == 0, done.stderr
    [record] = [json.loads(line) for line in done.stdout.splitlines()]
    seen = json.loads(record["data"]["stdout"])
    assert {k: v for k, v in seen.items() if v is not None} == {}


@pytest.mark.parametrize(
    ("shell", "removes"),
    [
        ("sh", "unset {}"),
        ("bash", "unset {}"),
        ("fish", "set -e {}"),
        ("powershell", "Remove-Item -ErrorAction SilentlyContinue Env:{}"),
    ],
)
def test_env_unsets_every_conflicting_variable(
    aws_env: MotoServer, chain_file: Path, shell: str, removes: str
) -> None:
    code, out, err = invoke("env", str(chain_file), "-t", "hub", "--shell", shell)
    assert code == 0, err
    lines = out.splitlines()
    for name in CONFLICTING_VARIABLES:
        if name == "AWS_CREDENTIAL_EXPIRATION":
            assert removes.format(name) not in lines  # it is set, not removed
            assert any(name in line for line in lines)
        else:
            assert removes.format(name) in lines
    # Removals come first, so a later line cannot be undone by them.
    prefix = removes.split("{}")[0]
    last_removal = max(i for i, line in enumerate(lines) if line.startswith(prefix))
    first_export = min(i for i, line in enumerate(lines) if "AWS_ACCESS_KEY_ID" in line)
    assert last_removal < first_export


def test_env_output_really_clears_a_poisoned_shell(
    aws_env: MotoServer, chain_file: Path, tmp_path: Path
) -> None:
    code, out, err = invoke("env", str(chain_file), "-t", "hub", "--shell", "sh")
    assert code == 0, err
    script = out + "env\n"
    shell = subprocess.run(
        ["sh", "-c", script], env=_poisoned(tmp_path), capture_output=True, text=True, timeout=30
    )
    names = {line.split("=", 1)[0] for line in shell.stdout.splitlines()}
    assert names & set(CONFLICTING_VARIABLES) == {"AWS_CREDENTIAL_EXPIRATION"}


# -- credentials that are not what the chain file says -----------------------------------------


def test_session_credentials_declared_as_user_keys_warn_without_verbose(
    aws_env: MotoServer, chain_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rolechain.aws.identity import CallerIdentity
    from rolechain.executor import context

    def session_identity(*_: object, **__: object) -> CallerIdentity:
        arn = "arn:aws:sts::111111111111:assumed-role/sso/alice"
        return CallerIdentity("111111111111", arn, "AROA:alice", has_token=True)

    monkeypatch.setattr(context, "caller_identity", session_identity)
    code, out, err = invoke("credentials", str(chain_file), "--target", "hub", "--no-cache")
    assert code == 0, err
    assert json.loads(out)["Version"] == 1
    assert "warning: principal 'ci' is declared kind: user" in err
    assert "detected as a session (arn:aws:sts::111111111111:assumed-role/sso/alice)" in err


def test_run_warns_about_session_credentials_declared_as_user_keys_without_verbose(
    aws_env: MotoServer, chain_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warning comes from the plan the identity check re-made, which exists only once
    the run has started: the CLI hears of it through ``on_plan``."""
    from rolechain.aws.identity import CallerIdentity
    from rolechain.executor import context

    def session_identity(*_: object, **__: object) -> CallerIdentity:
        arn = "arn:aws:sts::111111111111:assumed-role/sso/alice"
        return CallerIdentity("111111111111", arn, "AROA:alice", has_token=True)

    monkeypatch.setattr(context, "caller_identity", session_identity)
    code, _out, err = invoke("run", str(chain_file), "--job", "hub-only", "-f", "jsonl")
    assert code == 0, err
    assert "warning: principal 'ci' is declared kind: user" in err, err
    assert "running job hub-only: 1 target" in err

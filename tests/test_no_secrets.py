"""No secret key or session token ever reaches output, logs or the results store.

Every AssumeRole response of the run is captured with a botocore event handler on the
process-wide botocore session (which the CLI uses when run in-process), so the test knows
every secret the run held and looks for each one in everything the run wrote.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rolechain.aws.session import shared_botocore_session
from rolechain.cli import cli
from rolechain.model.loader import load
from rolechain.sandbox import sandbox

DEMO = Path(__file__).resolve().parent.parent / "chains" / "demo.yaml"


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def demo_env() -> Iterator[dict[str, str]]:
    with sandbox(load(DEMO)) as info:
        yield info.env


@pytest.fixture
def issued() -> Iterator[list[str]]:
    secrets: list[str] = []

    def capture(parsed: dict[str, Any], **_: Any) -> None:
        creds = parsed.get("Credentials") or {}
        secrets.extend(v for k, v in creds.items() if k in ("SecretAccessKey", "SessionToken"))

    session = shared_botocore_session()
    session.register("after-call.sts.AssumeRole", capture, unique_id="test-no-secrets")
    try:
        yield secrets
    finally:
        session.unregister("after-call.sts.AssumeRole", unique_id="test-no-secrets")


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
@pytest.mark.usefixtures("no_aws_env")
def test_run_never_shows_a_secret(
    fmt: str,
    demo_env: dict[str, str],
    issued: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    for name, value in demo_env.items():
        monkeypatch.setenv(name, value)
    store = tmp_path / "runs.db"
    # rolechain's own logs at their most verbose (botocore's DEBUG logging of response
    # bodies is botocore's, off unless a user turns it on, and never enabled by rolechain).
    caplog.set_level(logging.DEBUG, logger="rolechain")
    args = ["run", str(DEMO), "--job", "inventory", "--format", fmt, "--verbose"]
    result = CliRunner().invoke(cli, [*args, "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert len(issued) == 12  # 6 hops: a secret key and a session token each
    written = "\n".join(
        [result.stdout, result.stderr, caplog.text, store.read_bytes().decode("latin-1")]
    )
    principal_secret = demo_env["AWS_SECRET_ACCESS_KEY"]
    for secret in [*issued, principal_secret]:
        assert secret not in written


# -- values from ${env:...} -----------------------------------------------------------------

VENDOR = DEMO.parent / "vendor-access.yaml"
EXTERNAL_ID = "ext-S3cr3t-7f3a9c"
TICKET = "TKT-S3cr3t-0042"
SECRETS = {"VENDOR_EXTERNAL_ID": EXTERNAL_ID, "HOSTILE_TICKET": TICKET}


@pytest.fixture
def vendor_chain(tmp_path: Path) -> Path:
    """vendor-access.yaml with a second ${env:} value, in a session tag, starting from the
    AWS_* variables (the sandbox's) instead of a profile."""
    text = VENDOR.read_text().replace("ticket: SEC-1042", "ticket: ${env:HOSTILE_TICKET}")
    text = text.replace("source: profile\n    profile: vendor-ops", "source: env")
    path = tmp_path / "vendor.yaml"
    path.write_text(text)
    return path


def _everything_written(results: list[Any], *files: Path) -> str:
    parts = [f"{r.stdout}\n{r.stderr}" for r in results]
    parts += [f.read_bytes().decode("latin-1") for f in files if f.exists()]
    return "\n".join(parts)


def test_env_values_never_appear_in_offline_output(
    vendor_chain: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    commands = [
        ["validate", str(vendor_chain)],
        ["validate", "--format", "json", str(vendor_chain)],
        ["plan", str(vendor_chain), "--job", "audit"],
        ["plan", str(vendor_chain), "--job", "audit", "--format", "json"],
        ["plan", str(vendor_chain), "--job", "audit", "-o", str(tmp_path / "plan.json")],
        ["graph", str(vendor_chain), "--job", "audit"],
        ["graph", str(vendor_chain), "--format", "dot", "-o", str(tmp_path / "graph.dot")],
    ]
    results = [runner.invoke(cli, argv) for argv in commands]
    for argv, result in zip(commands, results, strict=True):
        assert result.exit_code == 0, (argv, result.output)
    written = _everything_written(results, tmp_path / "plan.json", tmp_path / "graph.dot")
    assert "${env:VENDOR_EXTERNAL_ID}" in written  # the plan says where the value came from
    for secret in SECRETS.values():
        assert secret not in written


@pytest.mark.parametrize(
    "field",
    [
        ("from: vendor-ops", "from: ${env:HOSTILE_SECRET}"),
        ("trusts: [vendor-ops]", "trusts: ['${env:HOSTILE_SECRET}']"),
        ('session_name: "vendor-{role}"', 'session_name: "vendor-${env:HOSTILE_SECRET}"'),
        ("source_identity: vendor-ops-alice", "source_identity: ${env:HOSTILE_SECRET}"),
        ("team: platform-security", "${env:HOSTILE_SECRET}: platform-security"),
        ("to: [customer-a, customer-b]", "to: ['${env:HOSTILE_SECRET}']"),
    ],
    ids=["from", "trusts", "session_name", "source_identity", "tag", "to"],
)
def test_env_values_never_appear_in_errors(
    field: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The value of a bad field that came from the environment is never echoed, whatever
    command finds it wrong (the loader, the planner, a command calling AWS)."""
    secret = "s3cr3tV4lue!#"
    monkeypatch.setenv("HOSTILE_SECRET", secret)
    monkeypatch.setenv("VENDOR_EXTERNAL_ID", EXTERNAL_ID)
    path = tmp_path / "bad.yaml"
    path.write_text(VENDOR.read_text().replace(*field))
    runner = CliRunner()
    commands = [
        ["validate", str(path)],
        ["validate", "--format", "json", str(path)],
        ["plan", str(path), "--job", "audit"],
        ["graph", str(path), "--job", "audit"],
        ["credentials", str(path), "--target", "customer-a", "--no-cache"],
        ["run", str(path), "--job", "audit"],
    ]
    results = [runner.invoke(cli, argv) for argv in commands]
    for argv, result in zip(commands, results, strict=True):
        assert result.exit_code == 2, (argv, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
    written = _everything_written(results)
    assert "${env:HOSTILE_SECRET}" in written
    assert secret not in written
    assert repr(secret)[1:-1] not in written


@pytest.mark.usefixtures("no_aws_env")
def test_env_values_never_appear_in_a_run_or_its_store(
    vendor_chain: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ROLECHAIN_CACHE_DIR", str(tmp_path / "cache"))
    env = dict(SECRETS)
    chain = load(vendor_chain, env=env)
    caplog.set_level(logging.DEBUG, logger="rolechain")
    store = tmp_path / "runs.db"
    runner = CliRunner()
    run = ["run", str(vendor_chain), "--job", "audit", "--verbose", "--store", str(store)]
    with sandbox(chain) as info:
        env.update(info.env)
        results = [
            runner.invoke(cli, [*run, "--format", fmt], env=env)
            for fmt in ("table", "jsonl", "csv", "json")
        ]
        results.append(
            runner.invoke(
                cli, ["credentials", str(vendor_chain), "-t", "customer-a", "-v"], env=env
            )
        )
        results.append(runner.invoke(cli, ["cache", "list", "--format", "json"], env=env))
        results.append(runner.invoke(cli, ["history", "--store", str(store), "--format", "json"]))
    for result in results:
        assert result.exit_code == 0, result.output
    written = _everything_written(results, store) + caplog.text
    assert "customer-a" in written
    for secret in SECRETS.values():
        assert secret not in written

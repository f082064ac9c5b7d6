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
def test_run_never_shows_a_secret(
    fmt: str,
    demo_env: dict[str, str],
    issued: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
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

"""Helpers for verify and discover tests: a sandbox this process talks to."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.credentials import Credentials

from rolechain.aws.session import static_credentials
from rolechain.sandbox import SandboxInfo


def point_at(monkeypatch: pytest.MonkeyPatch, sb: SandboxInfo) -> Callable[[str], Credentials]:
    """Send this process's AWS calls to ``sb``; the credentials of its principals by name."""
    for name, value in sb.env.items():
        if name not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.setenv(name, value)
    made = {
        name: static_credentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
        )
        for name, env in sb.principals.items()
    }
    return made.__getitem__

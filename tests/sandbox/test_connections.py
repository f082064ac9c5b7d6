"""Clients of one AwsSessions share connections per endpoint, whatever they sign with."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.session
import pytest

from rolechain.aws.session import AwsSessions, static_credentials
from rolechain.sandbox import sandbox

from .conftest import Clients, chain_from

ACCOUNTS = [f"{300000000000 + i:012d}" for i in range(16)]
CHAIN = f"""
version: 1
principals:
  ops: {{kind: user, account: "111111111111"}}
roles:
  hub: {{arn: "arn:aws:iam::222222222222:role/Hub", trusts: [ops]}}
role_sets:
  audit: {{role_name: Audit, trusts: [hub], accounts: {ACCOUNTS}}}
"""


def test_clients_of_every_target_share_the_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    with sandbox(chain_from(CHAIN)) as sb:
        aws = Clients(sb.endpoint)
        hub = aws.assume(sb.env, "arn:aws:iam::222222222222:role/Hub")["Credentials"]
        targets = [
            aws.assume(hub, f"arn:aws:iam::{account}:role/Audit")["Credentials"]
            for account in ACCOUNTS
        ]
        monkeypatch.setenv("AWS_ENDPOINT_URL", sb.endpoint)
        sessions = AwsSessions(concurrency=4, botocore_session=botocore.session.Session())

        def inventory(creds: dict[str, Any]) -> str:
            keys = static_credentials(
                creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]
            )
            s3 = sessions.client("s3", "us-east-1", keys)
            sts = sessions.client("sts", "us-east-1", keys)
            names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
            account: str = sts.get_caller_identity()["Account"]
            assert names == {f"rolechain-logs-{account}", f"rolechain-backups-{account}"}
            return account

        before = sb.state.connections
        with ThreadPoolExecutor(4) as pool:
            seen = list(pool.map(inventory, targets))
        opened = sb.state.connections - before
        # Each request signed for its own account, and answered for it ...
        assert seen == ACCOUNTS
        assert sessions.clients_created == 2 * len(ACCOUNTS)
        # ... over at most one connection per thread (4), not one per client (32).
        assert 1 <= opened <= 4

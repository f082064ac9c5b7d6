"""The minimal hand-written loop ``make bench`` races ``rolechain run`` against.

    python benchmarks/hand_loop.py ACCOUNTS [--threads 16]

What an expert writes without rolechain, as a whole process: one botocore session, the hub
assumed once, a thread pool; per account an AssumeRole from the hub's credentials, a new S3
client with the issued keys, ListBuckets. The environment gives the principal's keys and
the endpoint (``AWS_ENDPOINT_URL``). Prints one JSON line: buckets seen, AssumeRole calls
made, accounts whose buckets were not the expected two.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.session
from botocore.config import Config

HUB = "arn:aws:iam::111111111111:role/hub"


def loop(ids: list[str], threads: int) -> list[int]:
    """Buckets seen per account (-1: not the account's two sample buckets)."""
    session = botocore.session.Session()
    config = Config(max_pool_connections=threads)
    sts: Any = session.create_client("sts", config=config)
    hub = sts.assume_role(RoleArn=HUB, RoleSessionName="loop-hub")["Credentials"]
    hub_sts: Any = session.create_client(
        "sts",
        config=config,
        aws_access_key_id=hub["AccessKeyId"],
        aws_secret_access_key=hub["SecretAccessKey"],
        aws_session_token=hub["SessionToken"],
    )

    def one(account: str) -> int:
        role = f"arn:aws:iam::{account}:role/audit"
        creds = hub_sts.assume_role(RoleArn=role, RoleSessionName="loop")["Credentials"]
        s3: Any = session.create_client(
            "s3",
            config=config,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
        ok = names == {f"rolechain-logs-{account}", f"rolechain-backups-{account}"}
        return len(names) if ok else -1

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, ids))


def main(n: int, threads: int) -> None:
    ids = [f"{300000000000 + i:012d}" for i in range(n)]
    found = loop(ids, threads)
    bad = sum(1 for f in found if f < 0)
    print(
        json.dumps({"buckets": sum(f for f in found if f > 0), "assume_calls": n + 1, "bad": bad})
    )


if __name__ == "__main__":
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 16
    main(int(sys.argv[1]), threads)

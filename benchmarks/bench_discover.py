"""Benchmark of ``rolechain discover``: an organization of 500 accounts x 20 roles each.

    .venv/bin/python benchmarks/bench_discover.py [--accounts 500] [--latency-ms 20]
        [--repeat 3]

The server is the sandbox, in this process (the measured programs are other processes): an
organization of ``--accounts`` member accounts, each with a reader role (``ro/Reader``,
trusting the principal), moto's ``OrganizationAccountAccessRole``, 17 application roles
trusting a hub, and a vendor role trusting an outside account: 20 roles per account,
answered ``--latency-ms`` later like a round trip to AWS (provisioning is exempt).

What it measures (printed; nothing is asserted about time):

1. ``rolechain discover --organization`` as a whole process (interpreter start to exit,
   output written), against a minimal hand-written boto3 script doing the same reads as a
   whole process (one shared botocore session, ListAccounts, one AssumeRole of the reader and
   a paginated ListRoles per account, 16 threads, the roles dumped as JSON), alternating,
   best and median.
2. AssumeRole and IAM calls, counted by the sandbox and by rolechain: one reader assumption
   per account plus the Organizations ``via`` role; one ListRoles page per account.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANAGEMENT = "860000000001"
APPS = 17  # application role sets; with the reader, the vendor role and moto's own: 20
CONCURRENCY = 16

BASE = f"""
version: 1
principals:
  ops: {{kind: user, arn: "arn:aws:iam::{MANAGEMENT}:user/ops"}}
roles:
  org-admin: {{arn: "arn:aws:iam::{MANAGEMENT}:role/OrgAdmin", trusts: [ops]}}
  management-reader: {{arn: "arn:aws:iam::{MANAGEMENT}:role/ro/Reader", trusts: [ops]}}
role_sets:
  reader:
    role_name: ro/Reader
    trusts: [ops]
    organization: {{via: org-admin}}
"""

HAND_WRITTEN = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
import botocore.session
from botocore.config import Config

config = Config(max_pool_connections=16, retries={"total_max_attempts": 1})
session = botocore.session.Session()
sts = session.create_client("sts", config=config)
admin = sts.assume_role(RoleArn=sys.argv[1], RoleSessionName="hand-org")["Credentials"]
orgs = session.create_client(
    "organizations", config=config, aws_access_key_id=admin["AccessKeyId"],
    aws_secret_access_key=admin["SecretAccessKey"], aws_session_token=admin["SessionToken"])
accounts = [a["Id"] for page in orgs.get_paginator("list_accounts").paginate()
            for a in page["Accounts"] if a["Status"] == "ACTIVE"]

def read(account):
    c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/ro/Reader",
                        RoleSessionName="hand-reader")["Credentials"]
    iam = session.create_client(
        "iam", config=config, aws_access_key_id=c["AccessKeyId"],
        aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
    return [r for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"]]

with ThreadPoolExecutor(16) as pool:
    roles = [r for found in pool.map(read, accounts) for r in found]
with open(sys.argv[2], "w") as out:
    json.dump(roles, out, default=str)
print(len(accounts), len(roles))
"""


def estate(accounts: list[str]) -> str:
    hub = accounts[0]
    sets = "\n".join(
        f"""  app{i:02d}:
    role_name: apps/App{i:02d}
    trusts: [hub]
    accounts: {json.dumps(accounts)}"""
        for i in range(1, APPS + 1)
    )
    return f"""
version: 1
principals:
  ops: {{kind: user, arn: "arn:aws:iam::{MANAGEMENT}:user/ops"}}
roles:
  hub: {{arn: "arn:aws:iam::{hub}:role/platform/Hub", trusts: [ops]}}
role_sets:
{sets}
  vendor:
    role_name: VendorAccess
    trusts: ["arn:aws:iam::999999999999:root"]
    external_id: vendor-bench
    accounts: {json.dumps(accounts)}
"""


def environment(env: dict[str, str]) -> dict[str, str]:
    """The measured processes' environment: the sandbox and the principal, nothing else."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out.update(env)
    out.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return out


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=1800)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else [])

    from rolechain.model.loader import load, loads
    from rolechain.sandbox import Faults, sandbox

    t0 = time.perf_counter()
    faults = Faults(latency=args.latency_ms / 1000)
    base = loads(BASE, file="base.yaml")
    with sandbox(base, organization_accounts=args.accounts, faults=faults) as sb:
        accounts = sb.organization_accounts["reader"]
        made = sb.provision(loads(estate(accounts), file="estate.yaml"))
        roles = len(made.roles) + len(sb.provisioned.roles) + len(accounts)  # + moto's own
        print(
            f"sandbox: {len(accounts)} member accounts + management, {roles} roles "
            f"(~20 per account) provisioned in {time.perf_counter() - t0:.1f}s; latency "
            f"{args.latency_ms:g} ms/request; {CONCURRENCY} threads",
            flush=True,
        )
        env = environment(sb.principals["ops"])
        work = Path(tempfile.mkdtemp(prefix="rolechain-bench-"))
        discovered = work / "discovered.yaml"
        rolechain = [
            sys.executable, "-m", "rolechain", "discover", "--from", "env", "--organization",
            "--via", "OrgAdmin", "--reader", "ro/Reader", "--concurrency", str(CONCURRENCY),
            "--output", str(discovered),  # default --assume-rate: auto
        ]  # fmt: skip
        hand = [
            sys.executable, str(work / "hand.py"),
            f"arn:aws:iam::{MANAGEMENT}:role/OrgAdmin", str(work / "roles.json"),
        ]  # fmt: skip
        (work / "hand.py").write_text(HAND_WRITTEN, encoding="utf-8")

        ours: list[float] = []
        theirs: list[float] = []
        counted: dict[str, int] = {}
        summary = ""
        hand_out = ""
        for i in range(args.repeat):
            for which in ("hand", "ours") if i % 2 == 0 else ("ours", "hand"):
                if which == "hand":
                    seconds, done = timed(hand, env)
                    theirs.append(seconds)
                    hand_out = done.stdout.strip()
                    continue
                before = dict(sb.state.calls)
                seconds, done = timed(rolechain, env)
                ours.append(seconds)
                after = dict(sb.state.calls)
                counted = {k: after.get(k, 0) - before.get(k, 0) for k in ("AssumeRole", "iam")}
                summary = done.stderr.strip().splitlines()[-1]
        figures = re.search(r"(\d+) AssumeRole calls, (\d+) IAM calls", summary)
        chain = load(discovered)
        members = sum(len(s.accounts or []) for s in chain.model.role_sets.values())
        print(f"rolechain: {summary}")
        print(
            f"discovered file: {len(chain.model.role_sets)} role sets ({members} members), "
            f"{len(chain.model.roles)} roles, {len(chain.model.jobs)} jobs; validates"
        )
        if figures:
            print(
                f"AssumeRole calls: {counted['AssumeRole']} answered by the sandbox, "
                f"{figures.group(1)} counted by rolechain (one reader per account: "
                f"{len(accounts) + 1} accounts + the via role = {len(accounts) + 2})"
            )
            print(
                f"IAM calls: {counted['iam']} answered by the sandbox, {figures.group(2)} "
                f"counted by rolechain (one ListRoles page per account)"
            )
        print(f"hand-written script read (accounts, roles): {hand_out}")
        print(
            f"rolechain discover (whole process): best {min(ours):.2f}s, "
            f"median {statistics.median(ours):.2f}s"
        )
        print(
            f"hand-written boto3 (whole process): best {min(theirs):.2f}s, "
            f"median {statistics.median(theirs):.2f}s"
        )
        ratio = statistics.median(ours) / statistics.median(theirs)
        print(
            f"ratio rolechain / hand-written: {ratio:.2f}x (median; rolechain also checks "
            "the principal, plans, evaluates every trust policy and writes the chain file)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

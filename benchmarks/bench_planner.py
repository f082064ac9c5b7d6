"""Offline figures: planning a 10,000-target job, validating a 1,000-role file, CLI start-up.

Goals (issue 2): plan 10,000 targets over 10,000 roles in under 1 s; validate a 1,000-role
file in under 1 s; ``rolechain --help`` in under 0.3 s without importing boto3.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from rolechain.model.loader import load
from rolechain.planner import plan


def best_of(runs: int, func: object) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        func()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def big_chain(roles: int, members: int) -> dict[str, object]:
    """A hub trusting the principal, ``roles`` extra roles in a web of trust, and a role
    set of ``members`` accounts trusting the hub."""
    chain_roles: dict[str, object] = {
        "hub": {"arn": "arn:aws:iam::100000000000:role/hub", "trusts": ["runner"]}
    }
    for i in range(roles):
        account = f"{200000000000 + i:012d}"
        trusts = ["hub"] if i % 10 == 0 else [f"r{i - 1}", f"r{i // 2}"]
        chain_roles[f"r{i}"] = {"arn": f"arn:aws:iam::{account}:role/worker", "trusts": trusts}
    return {
        "version": 1,
        "settings": {"max_hops": 20},
        "principals": {"runner": {"kind": "user", "account": "100000000000"}},
        "roles": chain_roles,
        "role_sets": {
            "audit": {
                "role_name": "audit",
                "trusts": ["hub"],
                "accounts": [f"{300000000000 + i:012d}" for i in range(members)],
            }
        },
        "jobs": {
            "inventory": {"from": "runner", "to": "audit", "tasks": ["s3.list_buckets"]},
            "everything": {"from": "runner", "to": "r*", "tasks": ["s3.list_buckets"]},
        },
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.yaml"
        big.write_text(yaml.safe_dump(big_chain(10_000, 10_000)))
        chain = load(big)
        seconds = best_of(3, lambda: plan(chain, "inventory"))
        planned = plan(chain, "inventory")
        print(
            f"plan 10,000 targets (role set) over a graph of {len(chain.model.roles):,} roles "
            f"+ 10,000 members: {seconds:.3f} s, {planned.assume_calls:,} AssumeRole calls "
            f"(goal < 1 s)"
        )
        seconds = best_of(3, lambda: plan(chain, "everything"))
        planned = plan(chain, "everything")
        depth = max(len(t.path) for t in planned.targets)
        print(
            f"plan 10,000 targets (roles, paths up to {depth} hops): {seconds:.3f} s, "
            f"{planned.assume_calls:,} AssumeRole calls (goal < 1 s)"
        )

        medium = Path(tmp) / "medium.yaml"
        medium.write_text(yaml.safe_dump(big_chain(1_000, 10)))
        seconds = best_of(5, lambda: load(medium))
        print(f"validate a 1,000-role file: {seconds:.3f} s (goal < 1 s)")

    help_times = []
    for _ in range(7):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "rolechain", "--help"], check=True, capture_output=True
        )
        help_times.append(time.perf_counter() - started)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom rolechain.cli import cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('boto3', 'botocore', 'pydantic') if m in sys.modules))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    print(
        f"rolechain --help: best {min(help_times):.3f} s, median "
        f"{statistics.median(help_times):.3f} s (goal < 0.3 s); heavy modules imported: "
        f"{probe.stdout.strip().splitlines()[-1]}"
    )


if __name__ == "__main__":
    main()

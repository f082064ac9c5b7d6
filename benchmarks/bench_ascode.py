"""Paths as code (issue 23): ``rolechain review`` and ``rolechain render`` as whole processes.

* ``review`` of two 5,000-role chain files that differ in 1% of their trusts (50 roles
  trust another hub or principal), with a job to 500 targets: goal <= 2 s;
* ``render --to terraform`` of a role set of 10,000 members: goal <= 3 s.

Each figure is the median of several fresh ``rolechain`` processes (interpreter start to
exit), with ``rolechain validate`` of the same input alongside: the part of the time that
is only loading the chain file.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 5
ROLES = 5_000
HUBS = 100
PRINCIPALS = 5
CHANGED = ROLES // 100
MEMBERS = 10_000
ROLECHAIN = [sys.executable, "-m", "rolechain"]


def review_chain(path: Path, changed: bool) -> Path:
    """Principals, 100 hubs that trust them, 4,900 roles behind the hubs; ``changed``: 50
    of those roles trust a second hub."""
    lines = ["version: 1", "principals:"]
    for p in range(PRINCIPALS):
        lines.append(f'  p{p}: {{kind: user, arn: "arn:aws:iam::111111111111:user/p{p}"}}')
    lines.append("roles:")
    for i in range(ROLES):
        account = f"{200000000000 + i:012d}"
        if i < HUBS:
            trusts = f"[p{i % PRINCIPALS}]"
        else:
            hub = i % HUBS
            extra = f", r{(hub + 1) % HUBS}" if changed and i % (ROLES // CHANGED) == 0 else ""
            trusts = f"[r{hub}{extra}]"
        lines.append(f"  r{i}:\n    arn: arn:aws:iam::{account}:role/r{i}\n    trusts: {trusts}")
    lines.append("jobs:\n  inventory:\n    from: p0\n    to: " + "[" + ", ".join(
        f"r{i}" for i in range(HUBS, ROLES, (ROLES - HUBS) // 500 * PRINCIPALS) if i % 5 == 0
    ) + "]\n    tasks: [sts.get_caller_identity]")  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def render_chain(path: Path) -> Path:
    accounts = ", ".join(f'"{300000000000 + i:012d}"' for i in range(MEMBERS))
    path.write_text(
        "version: 1\nprincipals:\n"
        '  ci: {kind: user, arn: "arn:aws:iam::111111111111:user/ci"}\n'
        "roles:\n  hub:\n    arn: arn:aws:iam::222222222222:role/hub\n    trusts: [ci]\n"
        "role_sets:\n  audit:\n    role_name: audit/Reader\n    trusts: [hub]\n"
        "    external_id: ${env:AUDIT_EXTERNAL_ID}\n"
        f"    accounts: [{accounts}]\n",
        encoding="utf-8",
    )
    return path


def median_seconds(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, float]:
    """Median wall and CPU seconds (user + system) of ``RUNS`` fresh processes: on a shared
    machine the wall time grows with the load, the CPU time much less."""
    walls, cpus = [], []
    for _ in range(RUNS):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run([*ROLECHAIN, *argv], capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert done.returncode in ok, done.stderr
    return statistics.median(walls), statistics.median(cpus)


def verdict(wall: float, cpu: float, goal: float) -> str:
    if wall <= goal:
        return "met"
    return (
        f"met in CPU, wall time inflated by load {os.getloadavg()[0]:.1f}"
        if cpu <= goal
        else ("MISSED")
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old = review_chain(root / "old.yaml", changed=False)
        new = review_chain(root / "new.yaml", changed=True)
        check = subprocess.run(
            [*ROLECHAIN, "review", str(old), str(new)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 1, check.stderr
        summary = check.stdout.splitlines()[0].split(": ", 1)[1]
        loading, _ = median_seconds(["validate", str(old)])
        wall, cpu = median_seconds(["review", str(old), str(new)], ok=(1,))
        print(
            f"review of two {ROLES:,}-role files, {CHANGED} trusts changed ({summary}): "
            f"median {wall:.2f} s wall, {cpu:.2f} s CPU of {RUNS} processes (goal <= 2 s: "
            f"{verdict(wall, cpu, 2)}); validate of one file {loading:.2f} s wall "
            f"(review / validate = {wall / loading:.1f}x)"
        )

        chain = render_chain(root / "members.yaml")
        out = root / "tf"
        loading, _ = median_seconds(["validate", str(chain)])
        wall, cpu = median_seconds(
            ["render", str(chain), "--to", "terraform", "--output", str(out)]
        )
        size = sum(p.stat().st_size for p in out.rglob("*.tf")) / 2**20
        print(
            f"render --to terraform of {MEMBERS:,} role-set members ({size:.1f} MB of HCL): "
            f"median {wall:.2f} s wall, {cpu:.2f} s CPU of {RUNS} processes (goal <= 3 s: "
            f"{verdict(wall, cpu, 3)}); validate of the file {loading:.2f} s wall "
            f"(render / validate = {wall / loading:.1f}x)"
        )


if __name__ == "__main__":
    main()

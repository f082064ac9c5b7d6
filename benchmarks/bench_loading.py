"""Reading large and hostile chain files: time and memory of a whole process.

Issue 9: an honest file of 500,000 roles (no aliases) must load in time proportional to
its size, and alias bombs must stop early. Each figure is one fresh ``python`` process
that imports rolechain, loads the file and reports its own wall time for the load and its
peak resident memory (VmHWM); the interpreter start-up is not part of the load time.
Printed per size: wall and CPU seconds, CPU microseconds per role (flat if the load is
linear), peak MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = (50_000, 100_000, 250_000, 500_000)

CHILD = """
import json, sys, time
from rolechain.errors import ChainFileError
from rolechain.model.loader import load
started, cpu = time.perf_counter(), time.process_time()
try:
    chain = load(sys.argv[1])
    roles, problems = len(chain.model.roles), 0
except ChainFileError as exc:
    roles, problems = 0, len(exc.problems)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = 0
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) * 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "roles": roles, "problems": problems,
                  "peak": peak}))
"""


def honest_chain(path: Path, roles: int) -> Path:
    """A session principal and ``roles`` roles that trust it: no alias, no error."""
    with path.open("w", encoding="utf-8") as out:
        out.write("version: 1\nprincipals:\n  ci: {kind: session}\nroles:\n")
        for i in range(roles):
            account = f"{100000000000 + i % 100_000:012d}"
            out.write(f"  r{i}:\n    arn: arn:aws:iam::{account}:role/r{i}\n    trusts: [ci]\n")
        out.write("jobs:\n  one: {from: ci, to: r1}\n")
    return path


def billion_laughs(path: Path) -> Path:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for letter in "bcdefghi":
        before = chr(ord(letter) - 1)
        lines.append(f"{letter}: &{letter} [" + ",".join([f"*{before}"] * 9) + "]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        per_role: list[float] = []
        for size in SIZES:
            path = honest_chain(Path(tmp) / f"roles-{size}.yaml", size)
            megabytes = path.stat().st_size / 2**20
            found = measure(path)
            assert found["roles"] == size, found
            per_role.append(found["cpu"] / size * 1e6)
            print(
                f"load an honest chain of {size:,} roles ({megabytes:.0f} MB): "
                f"{found['seconds']:.1f} s ({found['cpu']:.1f} s CPU, {per_role[-1]:.0f} us "
                f"CPU per role), peak {found['peak'] / 2**20:,.0f} MB"
            )
            path.unlink()
        print(
            f"CPU time per role, largest / smallest file: {per_role[-1] / per_role[0]:.2f} "
            "(1.0 is perfectly linear; wall time on a loaded machine is not comparable)"
        )
        bomb = measure(billion_laughs(Path(tmp) / "laughs.yaml"))
        print(
            f"billion laughs (657 bytes, 9^9 values): refused in {bomb['seconds']:.2f} s, "
            f"peak {bomb['peak'] / 2**20:,.0f} MB, {int(bomb['problems'])} problem"
        )


if __name__ == "__main__":
    main()

"""Mutated example chains: whatever the damage, rolechain answers with exit 0 or 2.

Every example in ``chains/`` is cut short, has lines deleted, duplicated, swapped or
re-indented, has junk tokens (YAML syntax, aliases, tags, huge or Unicode numbers, control
characters, ``${env:}`` references) inserted or random bytes written over it, one to three
times over, and the result goes through the CLI's ``validate`` (and sometimes ``plan`` or
``graph``) in-process. A case fails if the exit status is not 0 or 2, if anything but a
clean exit escaped (CliRunner keeps the exception: an uncaught one counts), or if a raw
control character reached the output.

The cases come from a seeded generator so that a failure can be reproduced exactly:
``ROLECHAIN_FUZZ_SEED`` picks the seed (default fixed), ``ROLECHAIN_FUZZ_CASES`` the count
(default 1,200).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolechain.cli import cli

CHAINS = Path(__file__).resolve().parents[2] / "chains"
SEED = int(os.environ.get("ROLECHAIN_FUZZ_SEED", "20261201"))
CASES = int(os.environ.get("ROLECHAIN_FUZZ_CASES", "1200"))

pytestmark = pytest.mark.slow
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

JUNK = [
    *("*", "&a ", "*a", "<<: ", "<<: *a", "!!binary ", "!!python/object ", "!Ref ", "? "),
    *("{", "}", "[", "]", ": ", "- ", "'", '"', "#", "|", ">", "---\n", "...\n", "%YAML 1.1\n"),
    *("\t", "\r", "\x00", "\x07", "\x1b[2J", "\x1b]0;x\x07", "\u202e", "\u200b", "\ufeff"),
    *("${env:X}", "${env:VENDOR_EXTERNAL_ID}", "${", "$${", "${env:1}", "${env:X:-y}"),
    *("0x1F", "0o17", "+12", "\uff11\uff12", "\u0661", ".inf", ".nan", "1e999", "~", "null"),
    *("1h1h", "9" * 40, "9" * 5000, "true", "arn:aws:iam::", "@", "/", "*/99999 * * * *"),
    *("role/" + "p/" * 300, "x" * 2000, "\n", "  ", "        ", "&b [*b]"),
]


def _lines(text: bytes) -> list[bytes]:
    return text.splitlines(keepends=True) or [b""]


def mutate(text: bytes, rng: random.Random) -> bytes:
    """``text`` damaged by one randomly chosen operator."""
    lines = _lines(text)
    kind = rng.randrange(8)
    if kind == 0:  # truncate
        return text[: rng.randrange(len(text) + 1)]
    if kind == 1:  # delete a line
        del lines[rng.randrange(len(lines))]
    elif kind == 2:  # duplicate a line, somewhere
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
    elif kind == 3:  # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 4:  # re-indent a line
        i = rng.randrange(len(lines))
        lines[i] = (b" " * rng.choice([0, 1, 2, 3, 4, 6, 8])) + lines[i].lstrip(b" ")
    elif kind in (5, 6):  # insert a junk token
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(JUNK).encode("utf-8") + text[at:]
    else:  # overwrite with random bytes
        at = rng.randrange(len(text) + 1)
        junk = rng.randbytes(rng.randrange(1, 9))
        return text[:at] + junk + text[at + len(junk) :]
    return b"".join(lines)


def examples() -> list[Path]:
    found = sorted(p for p in CHAINS.iterdir() if p.suffix == ".yaml" or p.is_dir())
    assert len(found) >= 5
    return found


def damaged(example: Path, where: Path, rng: random.Random) -> Path:
    """A damaged copy of ``example`` (a file, or a directory with one file damaged)."""
    if example.is_dir():
        target = where / example.name
        shutil.copytree(example, target)
        victim = rng.choice(sorted(target.glob("*.yaml")))
    else:
        target = victim = where / example.name
        shutil.copyfile(example, victim)
    text = victim.read_bytes()
    for _ in range(rng.choice([1, 1, 2, 3])):
        text = mutate(text, rng)
    victim.write_bytes(text)
    return target


def command(path: Path, rng: random.Random) -> list[str]:
    roll = rng.random()
    if roll < 0.1:
        return ["plan", str(path), "--job", rng.choice(["inventory", "deploy", "audit", "x"])]
    if roll < 0.15:
        return ["graph", str(path)]
    if roll < 0.2:
        return ["validate", "--strict-env", "--format", "json", str(path)]
    return ["validate", str(path)]


def test_mutated_examples_exit_0_or_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith(("AWS_", "VENDOR_"))]:
        monkeypatch.delenv(name)
    rng = random.Random(SEED)
    runner = CliRunner()
    chains = examples()
    statuses: dict[int, int] = {}
    failures: list[str] = []
    for index in range(CASES):
        where = tmp_path / str(index)
        where.mkdir()
        argv = command(damaged(rng.choice(chains), where, rng), rng)
        result = runner.invoke(cli, argv, catch_exceptions=True)
        statuses[result.exit_code] = statuses.get(result.exit_code, 0) + 1
        escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
        raw = RAW_CONTROL.search(result.output)
        if escaped or raw or result.exit_code not in (0, 2) or "Traceback" in result.output:
            detail = "".join(traceback.format_exception(*result.exc_info)) if escaped else ""
            failures.append(
                f"case {index} ({' '.join(argv)}): exit {result.exit_code}"
                + (f", raw {raw.group(0)!r} in the output" if raw else "")
                + f"\n{detail}"
            )
        else:
            shutil.rmtree(where)  # keep failing inputs only, to reproduce them
    assert not failures, (
        f"{len(failures)} of {CASES} mutations failed (ROLECHAIN_FUZZ_SEED={SEED}); "
        f"inputs kept under {tmp_path}:\n" + "\n".join(failures[:5])
    )
    assert sum(statuses.values()) == CASES >= 1000
    assert statuses.get(2, 0) > CASES // 2, statuses  # the damage is usually noticed

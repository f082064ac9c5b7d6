"""Every Python example in docs/python-api.md runs, against the sandbox for the AWS ones."""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import rolechain
from rolechain.model.loader import load
from rolechain.sandbox import sandbox

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "python-api.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


@pytest.fixture(scope="module")
def demo_sandbox() -> Iterator[dict[str, str]]:
    with sandbox(load(ROOT / "chains" / "demo.yaml")) as info:
        yield info.env


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(
    index: int,
    demo_sandbox: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in demo_sandbox.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chains").symlink_to(ROOT / "chains")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # Run as a script: a local Dask cluster's workers need the __main__ guard.
        exec(compile(BLOCKS[index], f"{DOC}:block{index}", "exec"), {"__name__": "__main__"})
    text = out.getvalue()
    if "plan.assume_calls" in BLOCKS[index] and "print(plan.assume_calls)" in BLOCKS[index]:
        assert text.splitlines()[0] == "6"
    if "factory.assume_calls" in BLOCKS[index]:
        assert text.splitlines()[-1] == "6"
        assert "rolechain-logs-333333333333" in text
    if "summary.targets_ok" in BLOCKS[index]:
        assert text.splitlines()[-1].split()[:2] == ["5", "0"]
    if 'EngineOptions("dask"' in BLOCKS[index]:
        assert text.splitlines()[-1].split()[:3] == ["dask", "5", "6"]


def test_public_names_resolve() -> None:
    for name in ["load", "plan", "run", "sessions", "Plan", "Hop", "Target", "Chain"]:
        assert getattr(rolechain, name) is not None
    assert rolechain.RolechainError.__name__ == "RolechainError"
    with pytest.raises(AttributeError):
        _ = rolechain.no_such_thing

"""The corpus of bad chain files: each must fail with exactly its expected problems.

``tests/corpus/bad/NAME.yaml`` (or the directory ``NAME/``) is loaded from the corpus
directory with an empty environment; ``NAME.expected`` holds the exact ``str(problem)``
lines, in order, with paths relative to ``tests/corpus``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rolechain.errors import ChainFileError
from rolechain.model.loader import load

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
BAD = CORPUS / "bad"
CASES = sorted(p.name for p in BAD.iterdir() if p.suffix != ".expected")


def _expected(case: str) -> list[str]:
    stem = case.removesuffix(".yaml")
    return (BAD / f"{stem}.expected").read_text(encoding="utf-8").splitlines()


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert _expected(case), f"{case} has no expected problems"


@pytest.mark.parametrize("case", CASES)
def test_bad_chain_file(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ChainFileError) as caught:
        load(f"bad/{case}", env={})
    assert [str(p) for p in caught.value.problems] == _expected(case)
    assert caught.value.exit_code == 2
    for problem in caught.value.problems:
        assert problem.location is not None, "every corpus problem has a location"
        assert problem.location.file.startswith(f"bad/{case}")

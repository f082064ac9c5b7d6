"""AWS region names, checked offline against the partition data botocore ships.

botocore's wheel carries ``data/endpoints.json`` and ``data/partitions.json``: every
partition and its regions. They are read as JSON files found through the import system's
*spec* of botocore, so the model stays pure (botocore itself is never imported here). A
region that neither file names is refused with the nearest known name; a region newer than
the installed botocore is refused too, with a hint to upgrade it.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
from pathlib import Path

_FILES = ("endpoints.json", "partitions.json")


@functools.cache
def known_regions() -> frozenset[str]:
    """Every region botocore's partition data names (empty if botocore is not installed)."""
    spec = importlib.util.find_spec("botocore")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    found: set[str] = set()
    for name in _FILES:
        try:
            doc = json.loads((data / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for partition in doc.get("partitions", ()):
            found.update(r for r in partition.get("regions", {}) if not r.endswith("-global"))
    return frozenset(found)


def region_problem(region: str) -> str | None:
    """Why ``region`` is not a region (None if it is, or if nothing is known to check it
    against)."""
    known = known_regions()
    if not known or region in known:
        return None
    text = f"unknown region {region!r}"
    guesses = difflib.get_close_matches(region[:64], sorted(known), n=1, cutoff=0.6)
    if guesses:
        text += f"; did you mean {guesses[0]!r}?"
    else:
        text += " (if AWS opened it recently, upgrade botocore, whose partition data lists it)"
    return text

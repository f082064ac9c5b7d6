"""Merging several chain files into one namespace and one source map.

* ``principals``, ``roles`` and ``role_sets`` share one namespace, ``jobs`` have their own;
  a name defined in two files is a problem that names both places;
* ``settings`` keys merge; the same setting in two files is a problem;
* ``version``, when given in several files, must agree.

The sections and what one entry of each is called come from
:class:`~rolechain.model.schema.ChainFile`'s fields.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from rolechain.errors import Location, Problem
from rolechain.model.schema import ChainFile, closest
from rolechain.model.yamlsource import Document, PathKey, SourceMap, dotted

NODE_SECTIONS = ("principals", "roles", "role_sets")


def _sections() -> tuple[tuple[str, ...], dict[str, str]]:
    """The top-level keys of a chain file, and for each mapping of named entries what one
    entry is called (``role_sets`` -> ``role set``, from the model ``RoleSet``)."""
    keys: list[str] = []
    kinds: dict[str, str] = {}
    for name, field in ChainFile.model_fields.items():
        key = field.alias or name
        keys.append(key)
        if typing.get_origin(field.annotation) is dict:
            entry = typing.get_args(field.annotation)[1]
            if isinstance(entry, type) and issubclass(entry, BaseModel):
                kinds[key] = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", entry.__name__).lower()
    return tuple(keys), kinds


SECTIONS, _KIND = _sections()


def type_name(value: object) -> str:
    """What a value is, as a problem says it: ``a mapping``, ``'short text'``, ``true``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string" if len(value) > 40 else repr(value)
    return str(value)


def unknown_key(key: str, parent: PathKey, valid: Sequence[str]) -> str:
    where = f"in {dotted(parent)}" if parent else "at the top level"
    text = f"unknown key {key!r} {where}; valid keys: {', '.join(sorted(valid))}"
    guess = closest(key, list(valid))
    return text + (f"; did you mean {guess!r}?" if guess else "")


def merge(documents: Sequence[Document]) -> tuple[dict[str, Any], SourceMap, list[Problem]]:
    """Merge documents into one chain-file mapping and one source map."""
    data: dict[str, Any] = {}
    sources = SourceMap()
    problems: list[Problem] = []
    node_owner: dict[str, tuple[str, Location | None]] = {}  # name -> (section, where)
    job_owner: dict[str, Location | None] = {}
    setting_owner: dict[str, Location | None] = {}
    version: tuple[object, Location | None] | None = None
    for doc in documents:
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            problems.append(
                Problem(
                    "a chain file is a mapping with the keys "
                    f"{', '.join(SECTIONS)}; found {type_name(doc.data)}",
                    doc.root,
                )
            )
            continue
        src = doc.sources
        accepted: set[PathKey] = set()
        for key, value in doc.data.items():
            here = src.get((key,))
            if key not in SECTIONS:
                problems.append(Problem(unknown_key(key, (), SECTIONS), here, key=key))
                continue
            if key == "version":
                if version is None:
                    version = (value, src.value((key,)))
                    data[key] = value
                    accepted.add((key,))
                elif value != version[0]:
                    problems.append(
                        Problem(
                            f"version: {value!r} disagrees with version {version[0]!r} "
                            f"at {version[1]}; all files of a chain use one version",
                            src.value((key,)),
                            key=key,
                        )
                    )
                continue
            if value is None:
                value = {}
            if not isinstance(value, dict):
                what = "setting names to values" if key == "settings" else f"names to {key}"
                problems.append(
                    Problem(
                        f"{key}: expected a mapping of {what}; found {type_name(value)}",
                        src.value((key,)),
                        key=key,
                    )
                )
                continue
            section = data.setdefault(key, {})
            for name, entry in value.items():
                path: PathKey = (key, name)
                where = src.get(path)
                if key == "settings":
                    if name in setting_owner:
                        problems.append(
                            Problem(
                                f"settings.{name} is also set at {setting_owner[name]}; set "
                                "each setting "
                                "in one file",
                                where,
                                key=dotted(path),
                            )
                        )
                        continue
                    setting_owner[name] = where
                elif key == "jobs":
                    if name in job_owner:
                        problems.append(
                            Problem(
                                f"job {name!r} is also defined at {job_owner[name]}",
                                where,
                                key=dotted(path),
                                hint="rename one of them",
                            )
                        )
                        continue
                    job_owner[name] = where
                else:
                    owner = node_owner.get(name)
                    if (
                        owner is not None
                        and owner[1] is not None
                        and where is not None
                        and (owner[1].file != where.file)
                    ):
                        problems.append(
                            Problem(
                                f"{_KIND[key]} {name!r} is also defined as a "
                                f"{_KIND[owner[0]]} at {owner[1]}; principals, roles and role "
                                "sets share one namespace",
                                where,
                                key=dotted(path),
                                hint="rename one of them",
                            )
                        )
                        continue
                    node_owner.setdefault(name, (key, where))
                section[name] = entry
                accepted.add(path)
        sources.take(src, accepted)
    return data, sources, problems

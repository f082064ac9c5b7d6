"""Rows: a task's result as a list of objects, each identified by a key.

A task gives rows when its ``rows:`` expression (JMESPath over the result) gives a list of
objects, or by default: ``s3.list_buckets`` gives one row per bucket (key ``name``),
``sts.get_caller_identity`` one row (key ``account``), and ``call`` and ``python`` one row
per object when their result is itself a list of objects. ``key:`` names the fields
(JMESPath each) that identify a row; without one, a row is identified by its content.

A row's key is text: the value of a single key field (a string as it is, anything else as
JSON), or a JSON array of the values of several. What the rows hold is not kept twice: the
record's ``data`` keeps the rest of the result when ``rows`` is a field path (``buckets``:
the record keeps ``count``), and nothing when it is any other expression.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jmespath

if TYPE_CHECKING:
    from rolechain.planner.plan import Plan, TaskRef

_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def row_json(row: Any) -> str:
    """A row as compact JSON text with sorted keys (how the store keeps it)."""
    return _ENCODER.encode(row)


@dataclass(frozen=True)
class RowSpec:
    """How one task's result becomes rows."""

    rows: str | None
    key: tuple[str, ...] = ()
    list_rows: bool = False  # a result that is a list of objects is its rows
    declared: bool = False  # ``rows:`` was given in the chain file

    @classmethod
    def of(cls, task: TaskRef) -> RowSpec:
        return cls.named(task.task, task.rows, task.key)

    @classmethod
    def named(cls, task: str, rows: str | None, key: Iterable[str] | None = None) -> RowSpec:
        """Task ``task`` with the chain file's ``rows`` and ``key`` (None: its defaults)."""
        from rolechain.tasks.registry import TASKS

        info = TASKS.get(task)
        found = rows if rows is not None else (info.rows if info else None)
        fields = tuple(key) if key is not None else (info.key if info else ())
        return cls(
            rows=found,
            key=fields,
            list_rows=bool(info and info.list_rows) and rows is None,
            declared=rows is not None,
        )

    @property
    def any(self) -> bool:
        return self.rows is not None or self.list_rows

    def _compiled(self) -> tuple[Any, list[Callable[[Mapping[str, Any]], Any]]]:
        cached = self.__dict__.get("_compiled_cache")
        if cached is None:
            expression = jmespath.compile(self.rows) if self.rows is not None else None
            # a plain field name is looked up directly (most keys are: name, InstanceId)
            keys = [
                operator.itemgetter(k) if _NAME.fullmatch(k) else jmespath.compile(k).search
                for k in self.key
            ]
            cached = (expression, keys)
            object.__setattr__(self, "_compiled_cache", cached)
        return cached

    def key_of(self, row: Mapping[str, Any]) -> str:
        _, keys = self._compiled()
        if not keys:
            return hashlib.sha256(row_json(row).encode()).hexdigest()[:24]
        values = [_lookup(k, row) for k in keys]
        if len(values) == 1:
            value = values[0]
            return value if isinstance(value, str) else row_json(value)
        return row_json(values)

    def stored(self, rows: list[Mapping[str, Any]]) -> tuple[list[tuple[str, str]], str | None]:
        """(key, row JSON) of each row as the store keeps them, and the key field left
        out of every row's JSON (kept once, as its key) or None: a key of one plain field
        that is a string in every row (``name``) is not stored twice."""
        field = self.key[0] if len(self.key) == 1 and _NAME.fullmatch(self.key[0]) else None
        if field is not None and all(isinstance(row.get(field), str) for row in rows):
            return [
                (row[field], row_json({k: v for k, v in row.items() if k != field})) for row in rows
            ], field
        return [(self.key_of(row), row_json(row)) for row in rows], None

    def extract(self, data: Any) -> Extracted | None:
        """The rows of a task's result, or None when it gives none (``why`` says, for a
        declared expression, what it gave instead)."""
        expression, _ = self._compiled()
        if expression is None:
            if self.list_rows and _objects(data):
                return Extracted(rows=list(data), rest=None)
            return None
        found = expression.search(data)
        if found is None:
            found = []
        if not _objects(found):
            return Extracted(rows=None, rest=data, why=f"rows: {self.rows} gave {_kind(found)}")
        return Extracted(rows=list(found), rest=_without(data, self.rows or ""))

    def restore(self, rest: Any, rows: list[Any]) -> Any:
        """The task's result again, from what the record kept and its rows (as far as the
        expression can be undone: a field path, ``[@]``, or a list of rows)."""
        if self.rows is None or self.rows == "@":
            return rows
        if self.rows == "[@]" and len(rows) == 1:
            return rows[0]
        if _FIELD_PATH.fullmatch(self.rows) and (rest is None or isinstance(rest, Mapping)):
            parts = self.rows.split(".")
            out: dict[str, Any] = dict(rest or {})
            node = out
            for part in parts[:-1]:
                child = node.get(part)
                child = dict(child) if isinstance(child, Mapping) else {}
                node[part] = child
                node = child
            node[parts[-1]] = rows
            return out
        return rest


def _lookup(key: Callable[[Mapping[str, Any]], Any], row: Mapping[str, Any]) -> Any:
    try:
        return key(row)
    except KeyError:
        return None


@dataclass(frozen=True)
class Extracted:
    """Rows taken out of a result, and what is left of it for the record's data."""

    rows: list[Mapping[str, Any]] | None
    rest: Any
    why: str | None = None  # rows is None: the declared expression gave no list of objects


def _objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, Mapping) for item in value)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list of something other than objects"
    return {dict: "an object", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _without(data: Any, path: str) -> Any:
    """``data`` less the field at ``path`` (a dotted field path); None for any other
    expression, or when nothing else is left."""
    if not _FIELD_PATH.fullmatch(path) or not isinstance(data, Mapping):
        return None
    parts = path.split(".")

    def drop(node: Any, at: int) -> Any:
        if not isinstance(node, Mapping) or parts[at] not in node:
            return node
        if at == len(parts) - 1:
            return {k: v for k, v in node.items() if k != parts[at]}
        return {k: (drop(v, at + 1) if k == parts[at] else v) for k, v in node.items()}

    rest = drop(data, 0)
    return rest or None


def specs(plan: Plan) -> dict[str, RowSpec]:
    """Each task id of the plan (as records name it) and how its result becomes rows."""
    return {task.id: RowSpec.of(task) for task in plan.tasks}


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted columns (``tags.team``); lists stay as they are."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        column = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, column + "."))
        else:
            out[column] = value
    return out


def columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every column of ``rows``, in order of first appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for name in row:
            seen.setdefault(name, None)
    return list(seen)

"""Validation: merged chain-file data through the pydantic models of
:mod:`rolechain.model.schema`, and pydantic's error entries translated into located,
human problems.

A message starts with the dotted key it is about (``roles.hub.duration: ...``, list items
as ``tasks[0]``); the location is the offending value, or the key itself for an unknown or
duplicate key, or the enclosing key for a missing one. What the translation knows of the
chain file (which model validates a key, the valid keys, which fields are durations, what
each pattern means) is read from the schema's models and constants, not copied here.
When some entries are invalid, the valid rest is validated again so that the reference
checks can still run on it.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, BeforeValidator, ValidationError

from rolechain.errors import Problem
from rolechain.model import schema
from rolechain.model.durations import format_duration, parse_duration
from rolechain.model.merging import NODE_SECTIONS, type_name, unknown_key
from rolechain.model.references import diagnose_arn
from rolechain.model.schema import PATTERN_DESCRIPTIONS, ChainFile, closest
from rolechain.model.yamlsource import PathKey, SourceMap, dotted

_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}

_BRANCH = {"str": "a string", "list": "a list", "dict": "a mapping", "literal": "one of"}

_FIELD_WORD = re.compile(r"[A-Za-z_]+")
_QUOTED = re.compile(r"'([^']*)'")


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _model_at(path: PathKey) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``path`` (None if not a model)."""
    tp: Any = ChainFile
    for part in path:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            branches = [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
            tp = _pick_branch(branches, part)
            origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = _fields(tp).get(str(part))
            if field is None:
                return None
            tp = field
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return None
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        models = [
            a
            for a in map(_unwrap, typing.get_args(tp))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        tp = models[0] if models else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _pick_branch(branches: list[Any], part: str | int) -> Any:
    for branch in branches:
        origin = typing.get_origin(branch)
        if isinstance(part, int) and origin is list:
            return branch
        if isinstance(part, str) and (
            origin is dict or (isinstance(branch, type) and issubclass(branch, BaseModel))
        ):
            return branch
    return branches[0] if branches else None


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """Field annotations of ``model`` by the key used in YAML (the alias if any)."""
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def _walk(data: Any, loc: tuple[str | int, ...]) -> tuple[PathKey, list[str | int], bool]:
    """The part of ``loc`` that exists in ``data``, the parts skipped, and if a key failed."""
    path: list[str | int] = []
    skipped: list[str | int] = []
    key_error = False
    cur = data
    for part in loc:
        if part == "[key]":
            key_error = True
            continue
        if isinstance(cur, dict):
            found = isinstance(part, str) and part in cur
        else:
            found = isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur)
        if found:
            cur = cur[part]
            path.append(part)
        else:
            skipped.append(part)
    return tuple(path), skipped, key_error


def _value_at(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


def _duration_fields() -> frozenset[str]:
    """The keys of every field of the chain-file models that takes a duration (the schema's
    ``Duration`` type, read by :func:`~rolechain.model.durations.parse_duration`): their
    bounds are said as durations."""
    found: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def takes_duration(metadata: Sequence[object]) -> bool:
        return any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in metadata)

    def visit(tp: Any) -> bool:
        """Walk an annotation (visiting the models in it); True if it is a duration."""
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            visit_model(tp)
            return False
        if typing.get_origin(tp) is typing.Annotated:
            for meta in tp.__metadata__:
                shape = getattr(meta, "json_schema_input_type", None)
                if shape is not None:
                    visit(shape)
            return visit(typing.get_args(tp)[0]) or takes_duration(tp.__metadata__)
        return any([visit(arg) for arg in typing.get_args(tp)])

    def visit_model(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            if visit(field.annotation) or takes_duration(field.metadata):
                found.add(field.alias or name)

    visit_model(ChainFile)
    return frozenset(found)


_DURATION_FIELDS = _duration_fields()


class ErrorTranslator:
    """Turns pydantic's error entries into located, human problems."""

    def __init__(self, data: dict[str, Any], sources: SourceMap) -> None:
        self.data = data
        self.sources = sources

    def problems(self, exc: ValidationError) -> tuple[list[Problem], set[PathKey]]:
        errors = exc.errors(include_url=False)
        out: list[Problem] = []
        failed: set[PathKey] = set()
        unions: dict[PathKey, dict[str, list[Any]]] = {}
        for err in errors:
            loc = tuple(err["loc"])
            path, skipped, _ = _walk(self.data, loc)
            failed.add(path)
            if path in self.sources.unresolved:
                continue  # already reported: an unset ${env:NAME}
            tag = self._union_tag(err, path, skipped)
            if tag is not None:
                unions.setdefault(path[: self._tag_depth(loc, tag)], {}).setdefault(tag, []).append(
                    err
                )
                continue
            out.append(self.one(err))
        for at, branches in unions.items():
            out.extend(self.union(at, branches))
        return out, failed

    @staticmethod
    def _union_tag(err: Any, path: PathKey, skipped: list[str | int]) -> str | None:
        for part in skipped:
            if isinstance(part, str) and (
                part in ("str", "int") or "[" in part or part.startswith("constrained")
            ):
                if err["type"] == "missing" and part == skipped[-1]:
                    return None
                return part
        return None

    @staticmethod
    def _tag_depth(loc: tuple[Any, ...], tag: str) -> int:
        # Number of real path parts before the union tag.
        return sum(1 for p in loc[: loc.index(tag)] if p != "[key]")

    def union(self, at: PathKey, branches: dict[str, list[Any]]) -> list[Problem]:
        value = _value_at(self.data, at)
        shapes: dict[type, str] = {list: "list", dict: "dict", str: "str"}
        shape = shapes.get(type(value), "other")
        matching = [
            tag
            for tag in branches
            if tag.split("[", 1)[0] == shape
            or (shape == "str" and (tag.startswith("constrained-str") or tag == "str"))
        ]
        if len(matching) == 1:
            return [self.one(err) for err in branches[matching[0]]]
        if shape == "str" and isinstance(value, str):
            literals = [t for t in branches if t.startswith("literal[")]
            if literals and all(t.startswith(("literal[", "list[")) for t in branches):
                expected = ", ".join(t[len("literal[") : -1] for t in literals)
                return [
                    self.make(
                        at,
                        f"expected a list or {expected}; found {self.show(at, value)}",
                        value=True,
                    )
                ]
        wanted = []
        for tag in branches:
            word = _BRANCH.get(tag.split("[", 1)[0])
            if word == "one of":
                word = tag[len("literal[") : -1]
            if word and word not in wanted:
                wanted.append(word)
        return [
            self.make(
                at, f"expected {' or '.join(wanted)}; found {self.show(at, value)}", value=True
            )
        ]

    def show(self, path: PathKey, value: object) -> str:
        env = self.sources.from_env.get(path)
        if env is not None:
            return "the value from " + ", ".join(f"${{env:{n}}}" for n in env[1])
        return type_name(value)

    def redact(self, path: PathKey, message: str) -> str:
        env = self.sources.from_env.get(path)
        if env is None:
            return message
        text, names = env
        shown = "the value from " + ", ".join(f"${{env:{n}}}" for n in names)
        if text and shown not in message:
            # Validators quote the value (repr); a longer value may also appear bare.
            message = message.replace(repr(text), shown)
            if len(text) >= 4:
                message = re.sub(rf"(?<!\w){re.escape(text)}(?!\w)", lambda _: shown, message)
        if shown not in message:
            message += f" ({shown})"  # say where the value came from
        return message

    def make(
        self, path: PathKey, message: str, *, value: bool = False, hint: str | None = None
    ) -> Problem:
        where = self.sources.locate(path, value=value)
        return Problem(
            self.redact(path, f"{dotted(path)}: {message}"), where, key=dotted(path), hint=hint
        )

    def one(self, err: Any) -> Problem:
        kind = err["type"]
        loc = tuple(err["loc"])
        path, skipped, key_error = _walk(self.data, loc)
        ctx = err.get("ctx") or {}
        given = err.get("input")
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if kind == "extra_forbidden":
            model = _model_at(path[:-1])
            valid = list(_fields(model)) if model else []
            where = self.sources.get(path)
            return Problem(unknown_key(str(path[-1]), path[:-1], valid), where, key=dotted(path))
        if kind == "missing":
            missing = skipped[-1] if skipped else loc[-1]
            return self.make(path, f"missing required key {missing!r}")
        if key_error:
            described = PATTERN_DESCRIPTIONS.get(str(ctx.get("pattern")), "a valid key")
            return self.make(path, f"{given!r} is not {described}")
        if kind == "string_pattern_mismatch":
            return self.pattern(path, str(given), str(ctx.get("pattern")))
        if kind in ("string_too_long", "string_too_short"):
            limit = ctx.get("max_length", ctx.get("min_length"))
            word = "at most" if kind == "string_too_long" else "at least"
            n = len(given) if isinstance(given, str) else "?"
            chars = "character" if n == 1 else "characters"
            return self.make(path, f"is {n} {chars} long; {word} {limit} are allowed", value=True)
        if kind in ("too_long", "too_short"):
            limit = ctx.get("max_length", ctx.get("min_length"))
            word = "at most" if kind == "too_long" else "at least"
            actual = ctx.get("actual_length")
            if actual is None:
                actual = len(given) if isinstance(given, list | dict | str) else "?"
            return self.make(path, f"has {actual} entries; {word} {limit} are allowed", value=True)
        if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            return self.bound(path, kind, given, ctx)
        if kind in _EXPECTED:
            return self.make(
                path,
                f"expected {_EXPECTED[kind]}; found {self.show(path, given)}",
                value=True,
            )
        if kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            text = f"expected {expected}; found {self.show(path, given)}"
            options = _QUOTED.findall(expected)
            guess = closest(str(given), options) if isinstance(given, str) else None
            if guess and path not in self.sources.from_env:
                text += f"; did you mean {guess!r}?"
            return self.make(path, text, value=True)
        if kind == "value_error":
            if msg.startswith("bad parameters for task"):
                found = self.task_params(path)
                if found:
                    return found
            return self.value_error(path, msg)
        return self.make(path, msg, value=True)

    def task_params(self, path: PathKey) -> Problem | None:
        """The first problem in a task's ``with`` block, said in the loader's words."""
        from rolechain.tasks.registry import TASKS, validate_task_params

        spec = _value_at(self.data, path)
        if not isinstance(spec, dict) or spec.get("task") not in TASKS:
            return None
        params = spec.get("with") or {}
        if not isinstance(params, dict):
            return None
        task = str(spec["task"])
        try:
            validate_task_params(task, params)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        else:  # pragma: no cover - pydantic said it failed
            return None
        base: PathKey = (*path, "with") if "with" in spec else path
        valid = list(_fields(TASKS[task].params))
        parts: list[str] = []
        first: PathKey | None = None
        key_loc = False
        # Unknown keys first; a missing key that an unknown key is a typo of says nothing new.
        typos = {
            closest(str(e["loc"][0]), valid)
            for e in errors
            if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
        }
        errors = sorted(errors, key=lambda e: e["type"] != "extra_forbidden")
        errors = [
            e
            for e in errors
            if not (e["type"] == "missing" and len(e["loc"]) == 1 and e["loc"][0] in typos)
        ]
        for err in errors:
            where, skipped, _ = _walk(params, tuple(err["loc"]))
            if first is None:
                first = (*base, *where)
                key_loc = err["type"] == "extra_forbidden" and bool(where)
            text = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "missing":
                parts.append(f"missing required key {(skipped or ['?'])[-1]!r}")
            elif err["type"] == "extra_forbidden" and len(where) == 1:
                key = str(where[0])
                guess = closest(key, valid)
                parts.append(
                    f"unknown key {key!r}; valid keys: {', '.join(sorted(valid))}"
                    + (f"; did you mean {guess!r}?" if guess else "")
                )
            elif err["type"] in _EXPECTED and where:
                parts.append(f"{dotted(where)}: expected {_EXPECTED[err['type']]}")
            else:
                parts.append(f"{dotted(where)}: {text}" if where else text)
        at = first or base
        return Problem(
            self.redact(
                at, f"{dotted(base)}: bad parameters for task {task!r}: " + "; ".join(parts)
            ),
            self.sources.locate(at, value=not key_loc),
            key=dotted(base),
        )

    def pattern(self, path: PathKey, given: str, pattern: str) -> Problem:
        described = PATTERN_DESCRIPTIONS.get(pattern, f"matching {pattern}")
        shown = self.show(path, given)
        if pattern == schema.ROLE_ARN_PATTERN:
            why = diagnose_arn(given, "role")
            return self.make(path, f"{shown} is not a valid role ARN: {why}", value=True)
        if pattern == schema.PRINCIPAL_ARN_PATTERN:
            why = diagnose_arn(given, "principal") or "not a user, role, root or assumed-role ARN"
            return self.make(path, f"{shown} is not an IAM principal ARN: {why}", value=True)
        if pattern == schema.SOURCE_IDENTITY_PATTERN and given.lower().startswith("aws:"):
            return self.make(path, f"{shown} starts with 'aws:', a prefix AWS reserves", value=True)
        if pattern == schema.ACCOUNT_PATTERN and re.fullmatch("[0-9]+", given):
            return self.make(
                path, f"{shown} is {len(given)} digits; an AWS account id has 12", value=True
            )
        return self.make(path, f"{shown} is not {described}", value=True)

    def bound(self, path: PathKey, kind: str, given: object, ctx: Mapping[str, Any]) -> Problem:
        limit = ctx.get("ge", ctx.get("gt", ctx.get("le", ctx.get("lt"))))
        words = {
            "greater_than_equal": "below the minimum",
            "greater_than": "not above",
            "less_than_equal": "above the maximum",
            "less_than": "not below",
        }
        if path in self.sources.from_env:
            text = f"{self.show(path, given)} is {words[kind]} {limit}"
        elif path and path[-1] in _DURATION_FIELDS and isinstance(limit, int):
            seconds = parse_duration(given)
            text = (
                f"{format_duration(seconds)} ({seconds} s) is {words[kind]} "
                f"{format_duration(limit)} ({limit} s)"
            )
        else:
            text = f"{given} is {words[kind]} {limit}"
        return self.make(path, text, value=True)

    def value_error(self, path: PathKey, msg: str) -> Problem:
        value = _value_at(self.data, path)
        model = _model_at(path)
        if isinstance(value, dict) and model is not None:
            sub = self._mentioned(path, value, model, msg)
            if sub is not None:
                return self.make(sub, msg, value=True)
            return self.make(path, msg)
        if isinstance(value, dict):
            keys = [k for k in _QUOTED.findall(msg) if k in value]
            if keys:
                key_path = (*path, keys[-1])
                return Problem(
                    self.redact(path, f"{dotted(path)}: {msg}"),
                    self.sources.get(key_path),
                    key=dotted(key_path),
                )
        return self.make(path, msg, value=True)

    def _mentioned(
        self, path: PathKey, value: dict[str, Any], model: type[BaseModel], msg: str
    ) -> PathKey | None:
        """A key of the mapping at ``path`` that a model-level error is about."""
        fields = _fields(model)
        if msg.startswith("accounts listed twice") and isinstance(value.get("accounts"), list):
            accounts = value["accounts"]
            for index, account in enumerate(accounts):
                if account in accounts[:index]:
                    return (*path, "accounts", index)
        if msg.startswith("bad parameters"):
            params = value.get("with")
            if isinstance(params, dict):
                for match in re.finditer(r"with\.([\w.]+)", msg):
                    name = match.group(1).split(".")[0]
                    if name in params:
                        return (*path, "with", name)
            return (*path, "with") if "with" in value else None
        for match in _FIELD_WORD.finditer(msg):
            word = match.group(0)
            if word in fields and word in value:
                return (*path, word)
        return None


def validate(
    data: dict[str, Any], sources: SourceMap
) -> tuple[ChainFile | None, list[Problem], set[str]]:
    """Validate merged chain-file ``data``.

    Returns the model (of the valid part, when some entries are invalid), the problems, and
    the names of principals, roles, role sets and jobs left out because they were invalid
    (so that reference checks do not also report every reference to them).
    """
    try:
        return ChainFile.model_validate(data), [], set()
    except ValidationError as exc:
        problems, failed = ErrorTranslator(data, sources).problems(exc)
    # Leave out what failed and validate the rest, so that the reference checks can still
    # run: first only the failing fields, then whole entries that still fail.
    invalid: set[str] = set()
    pruned = _prune(data, failed, invalid)
    model: ChainFile | None = None
    for _ in range(4):
        try:
            model = ChainFile.model_validate(pruned)
            break
        except ValidationError as again:
            failed = {_walk(pruned, tuple(e["loc"]))[0] for e in again.errors()}
            pruned = _prune(pruned, failed, invalid, whole=True)
    return model, problems, invalid


def _prune(
    data: dict[str, Any], failed: set[PathKey], invalid: set[str], *, whole: bool = False
) -> dict[str, Any]:
    """A copy of ``data`` without the failing parts (fields, or ``whole`` entries)."""
    out: dict[str, Any] = {
        k: ({n: (dict(e) if isinstance(e, dict) else e) for n, e in v.items()})
        if isinstance(v, dict)
        else v
        for k, v in data.items()
    }
    for path in sorted(failed, key=len):
        if not path:
            continue
        top = str(path[0])
        section = out.get(top)
        if len(path) == 1 or top == "version" or not isinstance(section, dict):
            out.pop(top, None)
            continue
        name = str(path[1])
        entry = section.get(name)
        if path[0] == "settings":
            section.pop(name, None)
        elif len(path) >= 3 and not whole and isinstance(entry, dict):
            entry.pop(str(path[2]), None)
        elif name in section:
            section.pop(name)
            if path[0] in NODE_SECTIONS:
                invalid.add(name)
    return out

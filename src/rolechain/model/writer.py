"""Writing chain files.

Chain files written by rolechain (``import-aws-config``, ``discover``) are YAML that
:func:`rolechain.model.loader.load` reads back exactly:

* :func:`scalar` quotes a string unless it is a plain name that YAML cannot read as
  anything else, and escapes ``${`` as ``$${`` so that text taken from AWS (a description,
  a role name) is never read as an ``${env:...}`` reference; :class:`Placeholder` marks the
  ``${env:NAME}`` references rolechain writes on purpose;
* :func:`comment` makes a one-line YAML comment of any text (control characters become
  spaces, so nothing can end the comment early).

Text from outside that is printed rather than written goes through
:func:`rolechain.errors.printable`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from rolechain.errors import unsafe_character
from rolechain.model.schema import NAME_PATTERN

_NAME = re.compile(NAME_PATTERN)
_YAML_WORDS = re.compile(r"(?i)(true|false|yes|no|on|off|null|~|y|n|[-+]?[\d._]+([eE][-+]?\d+)?)")
LINE_WIDTH = 100


class Placeholder(str):
    """An ``${env:NAME}`` reference rolechain writes on purpose (not escaped)."""

    __slots__ = ()

    @classmethod
    def env(cls, name: str) -> Placeholder:
        return cls(f"${{env:{name}}}")


def external_id_variable(role_name: str) -> str:
    """The environment variable that holds a role's ExternalId, as ``discover`` writes it
    and ``render`` names it: ``InventoryAudit`` -> ``INVENTORY_AUDIT_EXTERNAL_ID``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", role_name)
    return re.sub(r"[^A-Z0-9]+", "_", words.upper()).strip("_") + "_EXTERNAL_ID"


def scalar(value: Any) -> str:
    """``value`` as a YAML scalar that loads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = str(value) if isinstance(value, Placeholder) else value.replace("${", "$${")
        if _NAME.fullmatch(text) and not _YAML_WORDS.fullmatch(text) and _plain_is_text(text):
            return text
        # A JSON string is a valid YAML double-quoted scalar; what YAML would not read
        # back as it is (DEL and C1 controls, NEL and the Unicode line and paragraph
        # separators, which YAML folds, format characters, lone surrogates) is escaped.
        return _UNSAFE.sub(_yaml_escape, json.dumps(text, ensure_ascii=False))
    if value is None:
        return "null"
    return _flow(value)


_RESOLVER = yaml.resolver.Resolver()


def _plain_is_text(text: str) -> bool:
    """Whether YAML reads ``text`` unquoted as a string (not a date, 0x1f, 1:20, .inf)."""
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == "tag:yaml.org,2002:str")


_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufff0-\uffff]")


def _yaml_escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\u{code:04x}"


def _flow(value: Any) -> str:
    """A list or mapping as YAML flow text, every string through :func:`scalar` (so that
    ``${`` is escaped there too)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, float):
        return json.dumps(value)
    return scalar(value)


def comment(text: str) -> str:
    """A one-line YAML comment: control and format characters become spaces."""
    if not text.isprintable():
        text = "".join(" " if unsafe_character(ch) or ch in "\n\t" else ch for ch in text)
    return "# " + text


def emit(value: Any, indent: int, out: list[str]) -> None:
    """Append the mapping ``value`` as block YAML at ``indent`` (two spaces each) to
    ``out``. Lists of scalars are written inline, lists of mappings as JSON flow items."""
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            k = scalar(str(key))
            if isinstance(item, dict) and item:
                out.append(f"{pad}{k}:")
                emit(item, indent + 1, out)
            elif isinstance(item, list) and item and any(isinstance(i, dict) for i in item):
                out.append(f"{pad}{k}:")
                for entry in item:
                    out.append(f"{pad}  - {_flow(entry)}")
            elif isinstance(item, list):
                inline = f"{pad}{k}: [" + ", ".join(scalar(i) for i in item) + "]"
                if len(inline) <= LINE_WIDTH or not item:
                    out.append(inline)
                else:  # one item a line: long account lists stay readable and diffable
                    out.append(f"{pad}{k}:")
                    out.extend(f"{pad}  - {scalar(i)}" for i in item)
            elif isinstance(item, dict):
                out.append(f"{pad}{k}: {{}}")
            else:
                out.append(f"{pad}{k}: {scalar(item)}")
    else:  # pragma: no cover - callers pass mappings
        out.append(pad + scalar(value))

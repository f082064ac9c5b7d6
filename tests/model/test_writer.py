"""rolechain.model.writer: chain-file YAML that loads back, and printable text."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from rolechain.errors import printable
from rolechain.model.writer import LINE_WIDTH, Placeholder, comment, emit, scalar


@pytest.mark.parametrize(
    "value",
    ["plain-name", "yes", "123456789012", "1e5", "a: b", "# not a comment", "${env:SECRET}",
     "tab\there", "quote\"s", "ünïcode", ""],
)  # fmt: skip
def test_scalars_load_back_and_never_interpolate(value: str) -> None:
    written = scalar(value)
    loaded = yaml.safe_load(f"k: {written}")["k"]
    assert loaded == value.replace("${", "$${")


def test_placeholders_are_written_as_they_are() -> None:
    assert scalar(Placeholder.env("AUDIT_EXTERNAL_ID")) == '"${env:AUDIT_EXTERNAL_ID}"'


def test_comments_cannot_be_ended_early() -> None:
    line = comment("a\nb: 1\r\x1b[2J\x85\u2028end")
    assert "\n" not in line
    assert line == "# a b: 1  [2J  end"
    assert yaml.safe_load(line + "\nk: 1") == {"k": 1}


def test_long_lists_are_written_one_item_a_line() -> None:
    out: list[str] = []
    accounts = [f"{i:012d}" for i in range(12)]
    emit({"set": {"accounts": accounts, "trusts": ["hub"]}}, 1, out)
    assert all(len(line) <= LINE_WIDTH for line in out)
    assert "    trusts: [hub]" in out
    assert yaml.safe_load("\n".join(out)) == {"set": {"accounts": accounts, "trusts": ["hub"]}}


def test_printable_escapes_what_a_terminal_would_interpret() -> None:
    assert printable("arn:aws:iam::1:role/ok") == "arn:aws:iam::1:role/ok"
    assert printable("red\x1b[31m") == "red\\x1b[31m"
    assert printable("rtl\u202eevil\x9b") == "rtl\\u202eevil\\x9b"
    assert printable("line\nbreak", newlines=True) == "line\\x0abreak"
    assert printable("line\nbreak") == "line\nbreak"
    assert printable("zero\u200bwidth\u2028sep") == "zero\\u200bwidth\\u2028sep"


# -- issue 18: any text, from a chain file or from AWS, is written through YAML's quoting ----

HOSTILE = st.text(
    alphabet=st.characters(blacklist_categories=()),  # every code point, surrogates too
    max_size=40,
) | st.sampled_from(
    ["${env:AWS_SECRET_ACCESS_KEY}", "a\x7fb", "a\x85b", "\u2028", "---\nk: v", "\ufeff",
     "\udc80", "x: {y: z}", "- item", "&anchor *alias", "!!python/object:os.system"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(HOSTILE)
def test_any_text_loads_back_exactly(value: str) -> None:
    written = scalar(value)
    assert "\n" not in written
    assert yaml.safe_load(f"k: {written}") == {"k": value.replace("${", "$${")}
    line = comment(value)
    assert "\n" not in line
    assert "\r" not in line
    assert yaml.safe_load(f"{line}\nk: 1") == {"k": 1}


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(HOSTILE, HOSTILE, max_size=3), HOSTILE)
def test_lists_of_mappings_are_quoted_and_never_interpolate(
    entry: dict[str, str], text: str
) -> None:
    out: list[str] = []
    value = {"tasks": [entry, {"with": {"args": [text, 1]}}]}
    emit(value, 0, out)
    loaded = yaml.safe_load("\n".join(out))

    def escape(text: str) -> str:
        return text.replace("${", "$${")

    assert loaded == {
        "tasks": [
            {escape(k): escape(v) for k, v in entry.items()},
            {"with": {"args": [escape(text), 1]}},
        ]
    }


@pytest.mark.parametrize("name", ["2020-01-01", "0001-01-01", "0000-01-01", "0x1f", "1:20", ".inf"])
def test_a_name_yaml_would_read_as_a_date_or_number_is_quoted(name: str) -> None:
    assert yaml.safe_load(f"k: {scalar(name)}") == {"k": name}

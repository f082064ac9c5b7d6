"""Session-name templates, validity and deterministic shortening."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from rolechain.planner.session_names import (
    MAX_LENGTH,
    VALID_NAME,
    NameRegistry,
    Template,
    invalid_chars,
    shorten,
)


def test_parse_and_render() -> None:
    t = Template.parse("rc-{job}-{target}-{job}")
    assert t.variables == ("job", "target")
    assert t.unknown_variables == ()
    assert t.literal_invalid_chars == ()
    assert t.render({"job": "j", "target": "a@1"}) == "rc-j-a@1-j"


def test_unknown_variable_and_invalid_literal() -> None:
    t = Template.parse("rc {nope}/x")
    assert t.unknown_variables == ("nope",)
    assert t.literal_invalid_chars == (" ", "/")


def test_invalid_chars() -> None:
    assert invalid_chars("a b*c*") == [" ", "*"]
    assert invalid_chars("A-z_0+=,.@") == []


def test_short_names_are_kept() -> None:
    assert shorten("x" * 64) == "x" * 64


def test_long_names_get_a_prefix_and_a_hash() -> None:
    name = "a" * 100
    short = shorten(name)
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    assert short == "a" * 47 + "-" + digest
    assert len(short) == MAX_LENGTH


def test_registry_reports_a_collision() -> None:
    registry = NameRegistry()
    assert registry.register("a" * 80) == (shorten("a" * 80), None)
    assert registry.register("a" * 80) == (shorten("a" * 80), None)  # same name: fine
    # A 64-char name equal to another's shortened form collides.
    assert registry.register(shorten("a" * 80)) == (shorten("a" * 80), "a" * 80)


valid_text = st.text(alphabet="ABCxyz019_+=,.@-", min_size=2, max_size=300)


@given(valid_text)
def test_shortened_valid_names_stay_valid(name: str) -> None:
    short = shorten(name)
    assert VALID_NAME.match(short)
    assert short == shorten(name)
    assert (short == name) == (len(name) <= MAX_LENGTH)


@given(valid_text, valid_text)
def test_different_long_names_do_not_share_a_short_name(a: str, b: str) -> None:
    if a != b:
        assert shorten(a) != shorten(b)

"""rolechain.model.yamlsource: scalars, keys, merge keys, env, source maps, both parsers."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolechain.errors import Location
from rolechain.model import yamlsource
from rolechain.model.yamlsource import SourceMap, dotted, interpolate, read_document

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "bad"
PARSERS = [False, True] if yamlsource._CLoader is not None else [False]


def read(text: str, env: dict[str, str] | None = None, libyaml: bool = True) -> object:
    doc = read_document("t.yaml", text, env or {}, use_libyaml=libyaml)
    assert doc.problems == []
    return doc.data


@pytest.mark.parametrize("libyaml", PARSERS)
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("123456789012", "123456789012"),
        ("012345678901", "012345678901"),
        ("012345670123", "012345670123"),  # YAML 1.1 would read octal
        ("0123", "0123"),
        ("12345678901", 12345678901),
        ("-5", -5),
        ("0", 0),
        ("0x1f", 31),
        ("0o17", 15),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("true", True),
        ("False", False),
        ("yes", "yes"),
        ("on", "on"),
        ("no", "no"),
        ("~", None),
        ("null", None),
        ("1:30", "1:30"),  # YAML 1.1 would read 90
        ("2024-01-01", "2024-01-01"),
        ("'123'", "123"),
        ("!!int '42'", 42),
        ("!!str 42", "42"),
        ("45m", "45m"),
    ],
)
def test_scalars_resolve_like_yaml_1_2_core(text: str, value: object, libyaml: bool) -> None:
    data = read(f"v: {text}\n", libyaml=libyaml)
    assert data == {"v": value}
    if text.startswith(("0x", "0o")):  # an int that remembers how it was written
        assert isinstance(data["v"], yamlsource.SpelledInt)  # type: ignore[index]
        assert data["v"].spelling == text  # type: ignore[index]
    else:
        assert type(data["v"]) is type(value)  # type: ignore[index]


@pytest.mark.parametrize("libyaml", PARSERS)
def test_keys_are_always_strings(libyaml: bool) -> None:
    assert read("on: 1\n123: 2\ntrue: 3\n~: 4\n", libyaml=libyaml) == {
        "on": 1,
        "123": 2,
        "true": 3,
        "~": 4,
    }


def test_merge_key_order_and_override() -> None:
    text = (
        "a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n  y: 3\nd:\n  y: 4\n  <<: *b\n"
    )
    data = read(text)
    assert data["c"] == {"x": 1, "y": 3, "z": 2}  # type: ignore[index]
    assert data["d"] == {"x": 2, "z": 2, "y": 4}  # type: ignore[index]


def test_merge_of_a_scalar_is_a_problem() -> None:
    doc = read_document("t.yaml", "a:\n  <<: 5\n", {})
    assert [str(p) for p in doc.problems] == [
        "t.yaml:2:7: a: '<<' merges a mapping or a list of mappings"
    ]


def test_duplicate_key_keeps_the_first() -> None:
    doc = read_document("t.yaml", "a: 1\nb: 2\na: 3\n", {})
    assert doc.data == {"a": 1, "b": 2}
    assert [str(p) for p in doc.problems] == [
        "t.yaml:3:1: duplicate key 'a' at the top level (first at line 1); the second is ignored"
    ]


def test_alias_bomb_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "MAX_EXPANSIONS", 1000)
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 6):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    doc = read_document("t.yaml", "\n".join(lines) + "\n", {})
    assert len(doc.problems) == 1
    assert "aliases expand to more than 1,000 values" in doc.problems[0].message


def test_source_map_keys_values_and_items() -> None:
    doc = read_document("t.yaml", "roles:\n  hub:\n    trusts:\n      - ci\n    x: 5\n", {})
    src = doc.sources
    assert src[("roles", "hub")] == Location("t.yaml", 2, 3)
    assert src.value(("roles", "hub")) == Location("t.yaml", 3, 5)
    assert src[("roles", "hub", "trusts", 0)] == Location("t.yaml", 4, 9)
    assert src.value(("roles", "hub", "x")) == Location("t.yaml", 5, 8)
    assert src.locate(("roles", "hub", "nope"), value=True) == Location("t.yaml", 2, 3)
    assert src.locate(("nothing",)) is None
    assert len(src) == 5
    assert set(src) == {
        ("roles",),
        ("roles", "hub"),
        ("roles", "hub", "trusts"),
        ("roles", "hub", "trusts", 0),
        ("roles", "hub", "x"),
    }


def test_take_copies_only_accepted_entries() -> None:
    doc = read_document("t.yaml", "roles:\n  a: {x: 1}\n  b: {x: 2}\n", {})
    merged = SourceMap()
    merged.take(doc.sources, {("roles", "a")})
    assert set(merged) == {("roles",), ("roles", "a"), ("roles", "a", "x")}


def test_dotted() -> None:
    assert dotted(("jobs", "inv", "tasks", 0, "with")) == "jobs.inv.tasks[0].with"
    assert dotted(()) == "the top level"


@pytest.mark.parametrize(
    ("text", "env", "result", "used", "errors"),
    [
        ("plain", {}, "plain", (), 0),
        ("${env:A}", {"A": "1"}, "1", ("A",), 0),
        ("x-${env:A}-${env:B}", {"A": "1", "B": "2"}, "x-1-2", ("A", "B"), 0),
        ("${env:A:-dflt}", {}, "dflt", ("A",), 0),
        ("${env:A:-}", {}, "", ("A",), 0),
        ("${env:A:-dflt}", {"A": ""}, "", ("A",), 0),
        ("$${env:A}", {"A": "1"}, "${env:A}", (), 0),
        ("cost $5 and $$", {}, "cost $5 and $$", (), 0),
        ("${env:A}", {}, "${env:A}", ("A",), 1),
        ("${A}", {"A": "1"}, "${A}", (), 1),
        ("${env:1A}", {}, "${env:1A}", (), 1),
        ("${env:A", {}, "${env:A", (), 1),
    ],
)
def test_interpolate(
    text: str, env: dict[str, str], result: str, used: tuple[str, ...], errors: int
) -> None:
    got = interpolate(text, env)
    assert (got.text, got.used, len(got.errors)) == (result, used, errors)


def test_unset_variable_message_says_how_to_set_it() -> None:
    problems = interpolate("${env:EXT_ID}", {}).errors
    assert problems == [
        "environment variable EXT_ID is not set: export EXT_ID=... before running rolechain, "
        "or give a default with ${env:EXT_ID:-value}"
    ]


def test_env_in_keys_is_not_interpolated() -> None:
    assert read("${env:A}: 1\n", {"A": "x"}) == {"${env:A}": 1}


@pytest.mark.skipif(yamlsource._CLoader is None, reason="PyYAML built without libyaml")
@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.yaml")), ids=lambda p: p.name)
def test_both_parsers_agree_on_the_corpus(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    fast = read_document("f.yaml", text, {}, use_libyaml=True)
    slow = read_document("f.yaml", text, {}, use_libyaml=False)
    assert fast.data == slow.data
    assert dict(fast.sources) == dict(slow.sources)
    assert [p.location for p in fast.problems] == [p.location for p in slow.problems]
    if "syntax" not in path.name:
        assert [p.message for p in fast.problems] == [p.message for p in slow.problems]


# -- hostile input (issue 9) ------------------------------------------------------------------


@pytest.mark.parametrize("libyaml", PARSERS)
@pytest.mark.parametrize(
    ("text", "where", "code"),
    [
        ('a: "x\x00y"\n', "t.yaml:1:6", "U+0000"),
        ("a: 1\nb: x\x07y\n", "t.yaml:2:5", "U+0007"),
        ("a: caf\u00e9\nb: \u00e9\x1b[2J\n", "t.yaml:2:5", "U+001B"),
    ],
)
def test_control_characters_are_located(text: str, where: str, code: str, libyaml: bool) -> None:
    doc = read_document("t.yaml", text, {}, use_libyaml=libyaml)
    [problem] = doc.problems
    assert str(problem).startswith(f"{where}: YAML syntax error: the control character {code}")


@pytest.mark.parametrize("libyaml", PARSERS)
def test_nesting_is_capped(libyaml: bool) -> None:
    depth = yamlsource.MAX_DEPTH + 10
    doc = read_document("t.yaml", "a: " + "[" * depth + "]" * depth + "\n", {}, use_libyaml=libyaml)
    [problem] = doc.problems
    assert f"values nest more than {yamlsource.MAX_DEPTH} levels deep" in problem.message
    assert problem.location is not None


def test_alias_expansion_cap_counts_aliases_not_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlsource, "MAX_EXPANSIONS", 100)
    honest = "".join(f"k{i}: [a, b, c]\n" for i in range(1000))  # 4,000 values, no alias
    assert not read_document("t.yaml", honest, {}).problems
    aliased = "d: &d [a, b, c]\n" + "".join(f"k{i}: *d\n" for i in range(24))  # 96 expanded
    assert not read_document("t.yaml", aliased, {}).problems
    aliased += "k24: *d\n"  # 100 expanded: still fine; one more alias goes over
    assert not read_document("t.yaml", aliased, {}).problems
    doc = read_document("t.yaml", aliased + "k25: *d\n", {})
    [problem] = doc.problems
    assert "aliases expand to more than 100 values" in problem.message
    assert doc.data is None  # the rest of the file is not read


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("!!binary aGk=", "the tag !!binary is not supported"),
        ("!!timestamp 2024-01-01", "the tag !!timestamp is not supported"),
        ("!!set {a}", "the tag !!set is not supported"),
        ("!Ref x", "the tag !Ref is not supported"),
        ("!!int abc", "'abc' is not an integer"),
        ("!!float abc", "is not a number"),
        ("!!bool maybe", "'maybe' is not true or false"),
        ("1" * 21, "a number of 21 digits is too large (at most 20)"),
    ],
)
def test_only_core_scalars_of_sane_size(value: str, expected: str) -> None:
    doc = read_document("t.yaml", f"a: {value}\n", {})
    [problem] = doc.problems
    assert expected in problem.message
    assert problem.location is not None


def test_integers_remember_a_non_decimal_spelling() -> None:
    data = read("a: 0x1CBE991A14\nb: +12\nc: 12\nd: -12\ne: 0o17\n")
    assert data == {"a": 123456789012, "b": 12, "c": 12, "d": -12, "e": 15}
    assert [getattr(data[k], "spelling", None) for k in "abcde"] == [  # type: ignore[index]
        "0x1CBE991A14",
        "+12",
        None,
        None,
        "0o17",
    ]


def test_keys_with_control_characters_are_escaped_in_paths() -> None:
    doc = read_document("t.yaml", 'a:\n  "x\\ny\\e": !!binary aGk=\n', {})
    [problem] = doc.problems
    assert problem.message.startswith("a.x\\x0ay\\x1b: the tag !!binary")
    assert "\n" not in problem.message

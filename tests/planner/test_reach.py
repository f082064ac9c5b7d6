"""``reach``: every principal and path to a role, on a trust graph with cycles."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rolechain.cli import cli
from rolechain.errors import UsageError
from rolechain.model.loader import loads
from rolechain.planner.reach import reach

# a and b trust each other (a cycle), c trusts itself; c asks for 2h, which no chained hop
# may have; the target also trusts a vendor's account root.
CYCLES = """
version: 1
principals:
  ci: {kind: session, account: "111111111111"}
  admin: {kind: user, arn: "arn:aws:iam::111111111111:user/admin"}
roles:
  a: {arn: "arn:aws:iam::222222222222:role/A", trusts: [ci, b]}
  b: {arn: "arn:aws:iam::333333333333:role/B", trusts: [a, admin]}
  c:
    arn: arn:aws:iam::444444444444:role/C
    trusts: [a, b, c]
    max_session_duration: 2h
    duration: 2h
  target:
    arn: arn:aws:iam::555555555555:role/Target
    trusts: [b, c, "arn:aws:iam::999999999999:root"]
role_sets:
  org:
    role_name: Member
    trusts: [target]
    organization: {via: a}
jobs:
  j: {from: admin, to: b}
"""


def paths(found: object) -> dict[tuple[str, ...], tuple[str, ...]]:
    return {p.nodes: p.rules for p in found.paths}  # type: ignore[attr-defined]


def test_every_simple_path_fewest_hops_first_with_its_fit() -> None:
    found = reach(loads(CYCLES, file="c.yaml"), "target")
    assert paths(found) == {
        ("admin", "b", "target"): (),
        ("ci", "a", "b", "target"): (),
        ("ci", "a", "c", "target"): ("chained-duration",),
        ("admin", "b", "c", "target"): ("chained-duration",),
        ("admin", "b", "a", "c", "target"): ("chained-duration",),
        ("ci", "a", "b", "c", "target"): ("chained-duration",),
    }
    assert [p.length for p in found.paths] == sorted(p.length for p in found.paths)
    assert found.paths[0].nodes == ("admin", "b", "target")
    first = found.paths[0]
    assert [h.chained for h in first.hops] == [False, True]  # user keys, then a session
    assert found.target_arn == "arn:aws:iam::555555555555:role/Target"
    (external,) = found.external
    assert (external.entry, external.role, external.length) == (
        "arn:aws:iam::999999999999:root",
        "target",
        1,
    )
    assert not found.truncated


def test_a_cycle_never_repeats_a_role_and_the_limit_truncates() -> None:
    chain = loads(CYCLES, file="c.yaml")
    found = reach(chain, "c", principals=["ci"], limit=2)
    assert [p.nodes for p in found.paths] == [("ci", "a", "c"), ("ci", "a", "b", "c")]
    assert found.truncated == ()  # exactly two
    found = reach(chain, "c", principals=["ci"], limit=1)
    assert found.truncated == ("ci",)
    for path in reach(chain, "a").paths:
        assert len(set(path.nodes)) == len(path.nodes)


def test_max_hops_bounds_the_paths() -> None:
    text = CYCLES.replace("version: 1\n", "version: 1\nsettings: {max_hops: 2}\n")
    found = reach(loads(text, file="c.yaml"), "target")
    assert [p.nodes for p in found.paths] == [("admin", "b", "target")]


def test_targets_by_member_or_arn_and_errors() -> None:
    chain = loads(CYCLES, file="c.yaml")
    by_arn = reach(chain, "arn:aws:iam::333333333333:role/B")
    assert by_arn.target == "b"
    member = reach(chain, "org@666666666666")
    assert member.target == "org@666666666666"
    assert ("ci", "a", "b", "target", "org@666666666666") in paths(member)
    with pytest.raises(UsageError, match="is a role set; name one member"):
        reach(chain, "org")
    with pytest.raises(UsageError, match="is a principal"):
        reach(chain, "ci")
    with pytest.raises(UsageError, match=r"unknown role 'targt'.*did you mean 'target'"):
        reach(chain, "targt")
    with pytest.raises(UsageError, match="unknown principal"):
        reach(chain, "target", principals=["nobody"])


def test_the_command(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "cycles.yaml"
    path.write_text(CYCLES, encoding="utf-8")
    result = CliRunner().invoke(cli, ["reach", str(path), "target", "--from", "admin"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("who can reach target (arn:aws:iam::555555555555:role/Target)")
    assert "2 hops   fits         admin -> b -> target" in result.output
    assert "DOES NOT FIT" in result.output
    assert "chained-duration:" in result.output
    assert "arn:aws:iam::999999999999:root -> target" in result.output
    assert (
        lines[-1]
        == "3 paths from 1 principal; 1 fit AWS's rules (the one-hour chaining cap included)"
    )
    document = json.loads(
        CliRunner().invoke(cli, ["reach", str(path), "target", "--format", "json"]).output
    )
    assert document["paths"][0]["path"] == ["admin", "b", "target"]
    assert document["paths"][0]["fits"] is True
    assert document["external"][0]["entry"] == "arn:aws:iam::999999999999:root"
    assert CliRunner().invoke(cli, ["reach", str(path), "nope"]).exit_code == 2

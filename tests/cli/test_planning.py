"""The offline commands: validate, plan, graph, schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rolechain.cli import cli

CHAINS = Path(__file__).resolve().parents[2] / "chains"

GOOD = """\
version: 1
principals:
  ci: {kind: user, account: "111111111111"}
roles:
  hub:
    arn: arn:aws:iam::111111111111:role/hub
    trusts: [ci]
role_sets:
  audit:
    role_name: audit
    trusts: [hub]
    accounts: ["222222222222", "333333333333"]
jobs:
  inventory:
    from: ci
    to: audit
    tasks: [s3.list_buckets]
"""

# A chained hop that asks for two hours: AWS would refuse it.
OVER_CAP = GOOD.replace("kind: user", "kind: session").replace(
    "trusts: [ci]", "trusts: [ci]\n    max_session_duration: 4h\n    duration: 2h"
)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    return path


def test_validate_ok(good: Path) -> None:
    code, out = invoke("validate", str(good))
    assert code == 0
    assert "ok: " in out
    assert "inventory (2 targets, 3 AssumeRole calls)" in out


def test_validate_reports_problems_with_locations_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("trusts: [hub]", "trusts: [hbu]"))
    code, out = invoke("validate", str(bad))
    assert code == 2
    assert f"{bad}:11:" in out
    assert "'hbu'" in out
    assert "did you mean 'hub'" in out


def test_validate_reports_plan_violations(tmp_path: Path) -> None:
    path = tmp_path / "cap.yaml"
    path.write_text(OVER_CAP)
    code, out = invoke("validate", str(path))
    assert code == 2
    assert "ci -> hub" in out
    assert "3600" in out or "1 hour" in out or "1h" in out


def test_validate_json(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("s3.list_buckets", "s3.list_bucket"))
    code, out = invoke("validate", "--format", "json", str(good), str(bad))
    assert code == 2
    reports = json.loads(out)
    assert [r["ok"] for r in reports] == [True, False]
    assert reports[0]["jobs"]["inventory"] == {"targets": 2, "assume_calls": 3}
    (problem,) = reports[1]["problems"]
    assert problem["location"]["line"] == 17
    assert "did you mean 's3.list_buckets'" in problem["message"]


def test_plan_text_shows_the_tree(good: Path) -> None:
    code, out = invoke("plan", str(good), "--job", "inventory")
    assert code == 0, out
    assert "hub" in out
    assert "audit@222222222222" in out
    assert "audit@333333333333" in out
    assert "3 AssumeRole calls" in out


def test_plan_json_has_the_documented_shape(good: Path) -> None:
    code, out = invoke("plan", str(good), "--job", "inventory", "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["job"] == "inventory"
    assert data["assume_calls"] == 3
    assert [t["name"] for t in data["targets"]] == ["audit@222222222222", "audit@333333333333"]
    hop_keys = {"id", "role", "role_arn", "caller", "chained", "duration_seconds", "session_name"}
    assert all(hop_keys <= set(h) for h in data["hops"])


def test_plan_one_target(good: Path) -> None:
    code, out = invoke(
        "plan", str(good), "--job", "inventory", "--target", "audit@333*", "--format", "json"
    )
    assert code == 0, out
    data = json.loads(out)
    assert [t["name"] for t in data["targets"]] == ["audit@333333333333"]
    assert data["assume_calls"] == 2


def test_plan_violation_exit_2_names_hop_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "cap.yaml"
    path.write_text(OVER_CAP)
    result = CliRunner().invoke(cli, ["plan", str(path), "--job", "inventory"])
    assert result.exit_code == 2
    assert "ci -> hub" in result.output
    assert "fix:" in result.output
    assert f"{path}:" in result.output


def test_plan_unknown_job(good: Path) -> None:
    code, out = invoke("plan", str(good), "--job", "inventroy")
    assert code == 2
    assert "inventory" in out


def test_plan_output_file(good: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "plan.json"
    code, _ = invoke("plan", str(good), "-j", "inventory", "--format", "json", "-o", str(out_file))
    assert code == 0
    assert json.loads(out_file.read_text())["assume_calls"] == 3


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_highlights_the_plan(good: Path, fmt: str) -> None:
    code, plain = invoke("graph", str(good), "--format", fmt)
    assert code == 0
    code, highlighted = invoke("graph", str(good), "--job", "inventory", "--format", fmt)
    assert code == 0
    assert plain != highlighted


def test_schema_is_json_schema_with_every_section() -> None:
    code, out = invoke("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == {
        "version",
        "settings",
        "principals",
        "roles",
        "role_sets",
        "jobs",
    }


def test_schema_accepts_the_examples() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    _code, out = invoke("schema")
    validator = jsonschema.Draft202012Validator(json.loads(out))
    for path in [*CHAINS.glob("*.yaml"), *CHAINS.glob("*/*.yaml")]:
        if "${env:" in path.read_text():
            continue
        validator.validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("command", ["validate", "plan", "graph", "schema"])
def test_every_command_help_has_an_example(command: str) -> None:
    code, out = invoke(command, "--help")
    assert code == 0
    assert "Example" in out

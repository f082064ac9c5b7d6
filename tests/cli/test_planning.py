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


# -- where validate writes, and what it accepts -------------------------------------------------


def test_validate_problems_go_to_stderr_ok_lines_to_stdout(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("trusts: [hub]", "trusts: [hbu]"))
    cap = tmp_path / "cap.yaml"
    cap.write_text(OVER_CAP)
    result = CliRunner().invoke(cli, ["validate", str(good), str(bad), str(cap)])
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"ok: {good}: 1 principal, 1 role, 1 role set, 1 job: "
        "inventory (2 targets, 3 AssumeRole calls)"
    ]
    assert f"{bad}:11:" in result.stderr
    assert "cannot be planned" in result.stderr
    assert "ok:" not in result.stderr


def test_validate_json_report_goes_to_stdout_alone(good: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("trusts: [hub]", "trusts: [hbu]"))
    result = CliRunner().invoke(cli, ["validate", "--format", "json", str(good), str(bad)])
    assert result.exit_code == 2
    assert result.stderr == ""
    reports = json.loads(result.stdout)
    assert [r["ok"] for r in reports] == [True, False]
    assert reports[1]["problems"][0]["location"]["file"] == str(bad)


UNSET = GOOD.replace("trusts: [ci]", "trusts: [ci]\n    external_id: ${env:ROLECHAIN_TEST_UNSET}")


def test_unset_env_is_a_placeholder_for_offline_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROLECHAIN_TEST_UNSET", raising=False)
    path = tmp_path / "chain.yaml"
    path.write_text(UNSET)
    for argv in (
        ["validate", str(path)],
        ["plan", str(path), "--job", "inventory"],
        ["graph", str(path)],
    ):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, result.output
        assert "warning: " in result.stderr
        assert "ROLECHAIN_TEST_UNSET is not set" in result.stderr
        assert "placeholder 'env-ROLECHAIN_TEST_UNSET'" in result.stderr
    report = json.loads(CliRunner().invoke(cli, ["validate", "--format", "json", str(path)]).stdout)
    assert "is not set" in report[0]["warnings"][0]["message"]
    assert report[0]["warnings"][0]["location"]["line"] == 8
    for argv in (
        ["validate", "--strict-env", str(path)],
        ["plan", "--strict-env", str(path), "--job", "inventory"],
        ["credentials", str(path), "--target", "hub", "--no-cache"],
        ["run", str(path), "--job", "inventory"],
    ):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert "environment variable ROLECHAIN_TEST_UNSET is not set" in result.stderr


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "\n\n", "version: 1\n", "roles: {}\n"])
def test_a_chain_that_declares_nothing_is_refused_unless_allowed(text: str, tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1:1:" in result.stderr
    assert "declares nothing" in result.stderr or "declares no principal" in result.stderr
    assert "--allow-empty" in result.stderr
    result = CliRunner().invoke(cli, ["validate", "--allow-empty", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"ok: {path}: 0 principals")


def test_nothing_printed_carries_a_terminal_escape(tmp_path: Path) -> None:
    name = tmp_path / "a\x1b]0;pwned\x07\x1b[2J.yaml"
    name.write_text(GOOD)
    bad = tmp_path / "b\x1b[31m.yaml"
    bad.write_text(GOOD.replace("trusts: [hub]", 'trusts: ["h\\e[2Jub"]'))
    for argv in (
        ["validate", str(name), str(bad)],
        ["validate", "--format", "json", str(bad)],
        ["plan", str(name), "--job", "inventory"],
        ["graph", str(bad)],
    ):
        result = CliRunner().invoke(cli, argv)
        assert "\x1b" not in result.stdout + result.stderr, argv
        assert "\x07" not in result.stdout + result.stderr, argv
    result = CliRunner().invoke(cli, ["validate", str(name)])
    assert "a\\x1b]0;pwned\\x07\\x1b[2J.yaml" in result.stdout


def test_a_fifo_is_refused_not_waited_for(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "chain.yaml"
    os.mkfifo(fifo)
    result = CliRunner().invoke(cli, ["validate", str(fifo)])
    assert result.exit_code == 2
    assert f"{fifo}: a FIFO (named pipe), not a chain file" in result.stderr

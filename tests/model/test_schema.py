"""rolechain.model.schema: the pydantic models on their own (no YAML)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rolechain.model.schema import (
    ChainFile,
    Job,
    OrganizationQuery,
    Principal,
    Role,
    RoleSet,
    SessionPolicy,
    Settings,
    TaskSpec,
    closest,
    unknown_choice,
)

ARN = "arn:aws:iam::111111111111:role/hub"


def errors(model: type[Any], data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, str]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return [(tuple(e["loc"]), e["type"], e["msg"]) for e in caught.value.errors()]


def test_defaults() -> None:
    chain = ChainFile.model_validate({})
    assert chain.version == 1
    assert chain.settings == Settings()
    assert chain.settings.max_hops == 10
    assert chain.settings.session_name == "rolechain-{job}-{run_id}"
    role = Role(arn=ARN)
    assert role.max_session_duration == 3600
    assert role.duration is None
    assert role.trusts == []
    assert Principal().source == "default"
    assert Principal().kind == "session"


def test_role_properties_and_durations() -> None:
    role = Role.model_validate(
        {"arn": "arn:aws-cn:iam::222222222222:role/ops/deploy", "duration": "1h30m",
         "max_session_duration": "2h"}
    )  # fmt: skip
    assert (role.account_id, role.partition) == ("222222222222", "aws-cn")
    assert (role.duration, role.max_session_duration) == (5400, 7200)


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("duration", 899, "greater_than_equal"),
        ("duration", "14m", "greater_than_equal"),
        ("duration", 43201, "less_than_equal"),
        ("duration", "an hour", "value_error"),
        ("max_session_duration", "59m", "greater_than_equal"),
        ("max_session_duration", "12h1s", "less_than_equal"),
        ("external_id", "x", "string_too_short"),
        ("external_id", "x" * 1225, "string_too_long"),
        ("external_id", "has space", "string_pattern_mismatch"),
        ("source_identity", "aws:me", "string_pattern_mismatch"),
        ("source_identity", "x" * 65, "string_too_long"),
        ("mfa_serial", "arn:aws:iam::111111111111:user/x", "string_pattern_mismatch"),
        ("region", "moon-1", "string_pattern_mismatch"),
        ("tags", {f"k{i}": "v" for i in range(51)}, "too_long"),
        ("tags", {"a b!": "v"}, "string_pattern_mismatch"),
        ("tags", {"k": "v" * 257}, "string_too_long"),
        ("transitive_tag_keys", ["k"] * 51, "too_long"),
        ("unknown", 1, "extra_forbidden"),
    ],
)
def test_role_field_limits(field: str, value: object, kind: str) -> None:
    found = errors(Role, {"arn": ARN, field: value})
    assert [k for _, k, _ in found] == [kind]


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::11111111111:role/x",
        "arn:aws-xx:iam::111111111111:role/x",
        "arn:aws:iam::111111111111:user/x",
        "arn:aws:sts::111111111111:assumed-role/x/y",
        "arn:aws:iam::111111111111:role/" + "x" * 65,
    ],
)
def test_bad_role_arns(arn: str) -> None:
    assert [k for _, k, _ in errors(Role, {"arn": arn})] == ["string_pattern_mismatch"]


def test_role_arn_is_required() -> None:
    assert errors(Role, {}) == [(("arn",), "missing", "Field required")]


def test_tag_keys_clash_case_insensitively() -> None:
    found = errors(Role, {"arn": ARN, "tags": {"Team": "a", "team": "b"}})
    assert found == [
        (("tags",), "value_error", "Value error, tag keys are case-insensitive: 'Team' and "
         "'team' clash")
    ]  # fmt: skip


def test_transitive_keys_must_be_tags_case_insensitively() -> None:
    Role.model_validate({"arn": ARN, "tags": {"Team": "a"}, "transitive_tag_keys": ["team"]})
    found = errors(Role, {"arn": ARN, "tags": {"Team": "a"}, "transitive_tag_keys": ["env"]})
    assert found == [
        ((), "value_error", "Value error, transitive_tag_keys ['env'] are not keys of 'tags'")
    ]


def test_session_policy() -> None:
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}
    assert SessionPolicy(inline=doc).inline_json == (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*"}]}'
    )
    assert SessionPolicy(inline='{"Version": "2012-10-17"}').inline_json == (
        '{"Version":"2012-10-17"}'
    )
    assert SessionPolicy().inline_json is None
    assert [k for _, k, _ in errors(SessionPolicy, {"inline": "{nope"})] == ["value_error"]
    assert [k for _, k, _ in errors(SessionPolicy, {"inline": "[1]"})] == ["value_error"]
    managed = [f"arn:aws:iam::aws:policy/P{i}" for i in range(11)]
    assert [k for _, k, _ in errors(SessionPolicy, {"managed": managed})] == ["too_long"]
    SessionPolicy(managed=managed[:10])
    assert [k for _, k, _ in errors(SessionPolicy, {"managed": ["arn:aws:s3:::b"]})] == [
        "string_pattern_mismatch"
    ]


def test_principal_profile_rules() -> None:
    assert Principal(source="profile", profile="dev").profile == "dev"
    assert "needs a 'profile'" in errors(Principal, {"source": "profile"})[0][2]
    assert "only used with source: profile" in errors(Principal, {"profile": "dev"})[0][2]
    assert [k for _, k, _ in errors(Principal, {"kind": "robot"})] == ["literal_error"]


def test_principal_account_and_root() -> None:
    root = Principal(arn="arn:aws:iam::123456789012:root")
    assert root.is_root
    assert root.account_id == "123456789012"
    user = Principal(arn="arn:aws:iam::123456789012:user/ci")
    assert not user.is_root
    assert user.account_id == "123456789012"
    assert Principal(account="210987654321").account_id == "210987654321"
    assert Principal().account_id is None


def test_account_ids_are_never_padded() -> None:
    assert RoleSet(role_name="a", accounts=[123456789012]).accounts == ["123456789012"]  # type: ignore[list-item]
    found = errors(RoleSet, {"role_name": "a", "accounts": [12345678901]})
    assert [k for _, k, _ in found] == ["string_pattern_mismatch"]


def test_role_set_sources_and_members() -> None:
    listed = RoleSet(
        role_name="ops/audit",
        partition="aws-us-gov",
        accounts=["111111111111", "222222222222"],
        exclude=["222222222222"],
    )
    assert listed.members == ["111111111111"]
    assert listed.member_arn("111111111111") == "arn:aws-us-gov:iam::111111111111:role/ops/audit"
    org = RoleSet(role_name="audit", organization=OrganizationQuery(via="mgmt"))
    assert org.members == []
    assert org.organization is not None
    assert org.organization.region == "us-east-1"
    both = {"role_name": "a", "accounts": ["111111111111"], "organization": {"via": "m"}}
    assert "exactly one of" in errors(RoleSet, both)[0][2]
    assert "exactly one of" in errors(RoleSet, {"role_name": "a"})[0][2]
    dupes = {"role_name": "a", "accounts": ["111111111111", "111111111111"]}
    assert "accounts listed twice: 111111111111" in errors(RoleSet, dupes)[0][2]


def test_organization_query_ids() -> None:
    OrganizationQuery(via="m", ous=["ou-ab12-abcdefgh", "r-ab12"], tags={"env": ["prod", "stg"]})
    found = errors(OrganizationQuery, {"via": "m", "ous": ["ou-x"]})
    assert [k for _, k, _ in found] == ["string_pattern_mismatch"]


def test_task_spec_and_shorthand() -> None:
    job = Job.model_validate(
        {
            "from": "ci",
            "to": "hub",
            "tasks": [
                "sts.get_caller_identity",
                {"task": "call", "id": "vpcs",
                 "with": {"service": "ec2", "operation": "describe_vpcs", "query": "Vpcs[].VpcId"}},
            ],
        }
    )  # fmt: skip
    assert [t.result_id for t in job.tasks] == ["sts.get_caller_identity", "vpcs"]
    assert job.tasks[1].with_["service"] == "ec2"
    assert job.targets == ["hub"]
    assert job.from_ == "ci"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"task": "s3.list_bucket"}, "did you mean 's3.list_buckets'?"),
        ({"task": "call", "with": {"service": "ec2"}}, "with.operation: Field required"),
        ({"task": "call", "with": {"service": "ec2", "operation": "a b"}}, "not an operation"),
        ({"task": "call", "with": {"service": "e", "operation": "x", "query": "[["}}, "JMESPath"),
        ({"task": "python", "with": {"function": "nocolon"}}, "is not 'module:function'"),
        ({"task": "exec", "with": {}}, "exactly one of 'argv'"),
        ({"task": "s3.list_buckets", "with": {"x": 1}}, "with.x: Extra inputs"),
    ],
)
def test_task_spec_errors(spec: dict[str, Any], needle: str) -> None:
    found = errors(TaskSpec, spec)
    assert any(needle in msg for _, _, msg in found), found


def test_job_checks() -> None:
    base = {"from": "ci", "to": ["a", "b"]}
    Job.model_validate({**base, "schedule": "*/15 * * * *", "session_name": "rc-{job}-{account}"})
    assert "not a cron expression" in errors(Job, {**base, "schedule": "0 25 * * *"})[0][2]
    assert "not a cron expression" in errors(Job, {**base, "schedule": "* * * * * *"})[0][2]
    assert "did you mean 'target'?" in errors(Job, {**base, "session_name": "{targt}"})[0][2]
    twice = {**base, "tasks": ["sts.get_caller_identity", "sts.get_caller_identity"]}
    assert "task ids must be unique" in errors(Job, twice)[0][2]
    assert [k for _, k, _ in errors(Job, {**base, "concurrency": 0})] == ["greater_than_equal"]
    assert Job.model_validate({**base, "regions": "all"}).regions == "all"
    assert Job.model_validate({**base, "runtime": "2h"}).runtime == 7200
    assert [loc for loc, _, _ in errors(Job, {"to": "x"})] == [("from",)]


def test_chain_file_names_and_version() -> None:
    found = errors(ChainFile, {"version": 2, "roles": {"bad name": {"arn": ARN}}})
    assert [(loc, k) for loc, k, _ in found] == [
        (("version",), "literal_error"),
        (("roles", "bad name", "[key]"), "string_pattern_mismatch"),
    ]


def test_models_are_frozen() -> None:
    role = Role(arn=ARN)
    with pytest.raises(ValidationError):
        role.duration = 900  # type: ignore[misc]


def test_json_schema_mentions_durations_and_tasks() -> None:
    schema = ChainFile.model_json_schema()
    text = str(schema)
    assert "'45m', '1h', '1h30m'" in text
    assert "sts.get_caller_identity" in text


def test_closest_and_unknown_choice() -> None:
    assert closest("duraton", ["duration", "arn"]) == "duration"
    assert closest("zzz", ["duration", "arn"]) is None
    assert unknown_choice("task", "cal", ["call", "exec"]) == (
        "unknown task 'cal'; valid: call, exec; did you mean 'call'?"
    )
    assert unknown_choice("task", "x", []) == "unknown task 'x'; valid: (none defined)"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), ("AUTO", "auto"), (" Auto ", "auto"), (50, 50.0), (0.5, 0.5), ("12", 12.0)],
)
def test_assume_rate_is_auto_or_a_ceiling(value: object, expected: object) -> None:
    assert Settings.model_validate({"assume_rate": value}).assume_rate == expected


@pytest.mark.parametrize("value", [0, -1, "fast", True, None, float("inf"), "nan", [5]])
def test_assume_rate_refuses_anything_else(value: object) -> None:
    [(loc, _, message)] = errors(Settings, {"assume_rate": value})
    assert loc == ("assume_rate",)
    assert "'auto'" in message
    assert "positive number" in message


def test_pacing_defaults_and_throttle_budget() -> None:
    settings = Settings()
    assert settings.assume_rate == "auto"
    assert settings.throttle_budget == 120
    assert Settings.model_validate({"throttle_budget": "5m"}).throttle_budget == 300
    assert errors(Settings, {"throttle_budget": 0})[0][0] == ("throttle_budget",)
    schema = ChainFile.model_json_schema()["$defs"]["Settings"]["properties"]
    assert {"const": "auto"} in schema["assume_rate"]["anyOf"]
    assert "throttle_budget" in schema

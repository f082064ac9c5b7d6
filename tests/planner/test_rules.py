"""Per-role checks, including values the schema would already refuse (defence in depth)."""

from __future__ import annotations

from rolechain.model.schema import HopSettings, SessionPolicy
from rolechain.planner import rules as R

ACCOUNT = "111111111111"


def findings(**update: object) -> list[tuple[str, str]]:
    settings = HopSettings().model_copy(update=update)
    return [(f.rule, f.key) for f in R.check_settings(settings, ACCOUNT, "aws")]


def test_clean_settings_have_no_findings() -> None:
    assert findings(external_id="ext-1", source_identity="alice", tags={"a": "b"}) == []


def test_external_id_pattern_and_length() -> None:
    assert findings(external_id="has space") == [(R.EXTERNAL_ID, "external_id")]
    assert findings(external_id="x") == [(R.EXTERNAL_ID, "external_id")]
    assert findings(external_id="x" * 1225) == [(R.EXTERNAL_ID, "external_id")]


def test_source_identity() -> None:
    assert findings(source_identity="aws:me") == [(R.SOURCE_IDENTITY, "source_identity")]
    assert findings(source_identity="a b") == [(R.SOURCE_IDENTITY, "source_identity")]


def test_tag_limits() -> None:
    many = {f"k{i}": "v" for i in range(51)}
    assert findings(tags=many) == [(R.SESSION_TAGS, "tags")]
    assert findings(tags={"k" * 129: "v"}) == [(R.SESSION_TAGS, "tags")]
    assert findings(tags={"k": "v" * 257}) == [(R.SESSION_TAGS, "tags")]
    assert findings(tags={"Team": "a", "team": "b"}) == [(R.SESSION_TAGS, "tags")]


def test_transitive_keys() -> None:
    tags = {f"k{i}": "v" for i in range(50)}
    keys = [*tags, "k0"]
    assert findings(tags=tags, transitive_tag_keys=keys) == [
        (R.TRANSITIVE_TAG_KEYS, "transitive_tag_keys")
    ]
    assert findings(tags={"a": "b"}, transitive_tag_keys=["c"]) == [
        (R.TRANSITIVE_TAG_KEYS, "transitive_tag_keys")
    ]


def test_policy_arn_count_account_and_partition() -> None:
    arns = [f"arn:aws:iam::{ACCOUNT}:policy/p{i}" for i in range(11)]
    policy = SessionPolicy().model_copy(update={"managed": arns})
    assert findings(session_policy=policy) == [(R.POLICY_ARNS, "session_policy")]
    cn = SessionPolicy(managed=[f"arn:aws-cn:iam::{ACCOUNT}:policy/p"])
    assert findings(session_policy=cn) == [(R.POLICY_ARNS, "session_policy")]


def test_inline_policy_size_is_counted_minified() -> None:
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    small = SessionPolicy(inline={"Version": "2012-10-17", "Statement": [statement] * 40})
    assert len(small.inline_json or "") <= 2048
    assert findings(session_policy=small) == []
    big = SessionPolicy(inline={"Version": "2012-10-17", "Statement": [statement] * 50})
    assert findings(session_policy=big) == [(R.SESSION_POLICY_SIZE, "session_policy")]


def test_every_aws_rule_has_a_source() -> None:
    naming = {R.UNKNOWN_JOB, R.UNKNOWN_PRINCIPAL, R.UNKNOWN_TARGET, R.TARGET_NOT_IN_JOB}
    assert [r for r in R.RULES if r not in R.SOURCES and r not in naming] == []
    assert all(url.startswith("https://") for url in R.SOURCES.values())
    assert len(set(R.RULES)) == len(R.RULES)

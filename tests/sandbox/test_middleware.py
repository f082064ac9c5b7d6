"""Every rule the sandbox enforces, over HTTP with boto3, with AWS's exact errors."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from rolechain.sandbox import SandboxInfo, sandbox
from rolechain.sandbox.responses import (
    CHAINING_CAP,
    EXPIRED_TOKEN,
    MAX_SESSION,
    ROOT_REFUSED,
    S3_MESSAGES,
    SIGNATURE_MISMATCH,
)

from .conftest import Clients, aws_error, chain_from

CHAIN = """
version: 1
principals:
  ops: {kind: user, account: "111111111111", arn: "arn:aws:iam::111111111111:user/ops"}
  boss: {kind: user, arn: "arn:aws:iam::111111111111:root"}
  task: {kind: session, account: "111111111111"}
roles:
  hub:
    arn: arn:aws:iam::222222222222:role/security/Hub
    trusts: [ops, task, boss]
    max_session_duration: 4h
    source_identity: alice
  lonely:
    arn: arn:aws:iam::222222222222:role/Lonely
    trusts: [task]
role_sets:
  audit:
    role_name: Audit
    trusts: [hub]
    external_id: ext-123
    accounts: ["333333333333", "444444444444"]
"""
HUB = "arn:aws:iam::222222222222:role/security/Hub"
AUDIT = "arn:aws:iam::333333333333:role/Audit"
OPS = "arn:aws:iam::111111111111:user/ops"


@pytest.fixture(scope="module")
def sb() -> Iterator[SandboxInfo]:
    with sandbox(chain_from(CHAIN)) as info:
        yield info


@pytest.fixture(scope="module")
def aws(sb: SandboxInfo) -> Clients:
    return Clients(sb.endpoint)


@pytest.fixture(scope="module")
def ops(sb: SandboxInfo) -> dict[str, str]:
    return sb.principals["ops"]


@pytest.fixture(scope="module")
def hub(aws: Clients, ops: dict[str, str]) -> dict[str, Any]:
    return aws.assume(ops, HUB, RoleSessionName="hub-session")["Credentials"]


def test_principal_credentials_are_the_declared_user(aws: Clients, ops: dict[str, str]) -> None:
    identity = aws.client("sts", ops).get_caller_identity()
    assert identity["Arn"] == OPS
    assert identity["Account"] == "111111111111"


def test_trusted_caller_gets_a_session_in_the_role_account(
    aws: Clients, hub: dict[str, Any]
) -> None:
    identity = aws.client("sts", hub).get_caller_identity()
    assert identity["Arn"] == "arn:aws:sts::222222222222:assumed-role/Hub/hub-session"
    assert identity["Account"] == "222222222222"


def test_untrusted_caller_is_denied_like_aws(aws: Clients, ops: dict[str, str]) -> None:
    code, message, status = aws_error(lambda: aws.assume(ops, AUDIT, ExternalId="ext-123"))
    assert (code, status) == ("AccessDenied", 403)
    assert message == (
        f"User: {OPS} is not authorized to perform: sts:AssumeRole on resource: {AUDIT}"
    )


def test_role_that_does_not_exist_is_access_denied(aws: Clients, ops: dict[str, str]) -> None:
    missing = "arn:aws:iam::222222222222:role/Nope"
    code, message, status = aws_error(lambda: aws.assume(ops, missing))
    assert (code, status) == ("AccessDenied", 403)
    assert message.endswith(f"sts:AssumeRole on resource: {missing}")


def test_external_id_must_match(aws: Clients, hub: dict[str, Any]) -> None:
    caller = "arn:aws:sts::222222222222:assumed-role/Hub/hub-session"
    for kwargs in ({}, {"ExternalId": "ext-999"}):
        code, message, status = aws_error(lambda kw=kwargs: aws.assume(hub, AUDIT, **kw))
        assert (code, status) == ("AccessDenied", 403)
        assert message.startswith(f"User: {caller} is not authorized")
    granted = aws.assume(hub, AUDIT, ExternalId="ext-123")
    assert granted["AssumedRoleUser"]["Arn"].startswith("arn:aws:sts::333333333333:")


def test_chained_hop_over_one_hour_fails(aws: Clients, hub: dict[str, Any]) -> None:
    code, message, status = aws_error(
        lambda: aws.assume(hub, AUDIT, ExternalId="ext-123", DurationSeconds=3601)
    )
    assert (code, message, status) == ("ValidationError", CHAINING_CAP, 400)


def test_first_hop_from_a_session_principal_is_chained(aws: Clients, sb: SandboxInfo) -> None:
    task = sb.principals["task"]
    assert "AWS_SESSION_TOKEN" in task
    code, message, _ = aws_error(lambda: aws.assume(task, HUB, DurationSeconds=7200))
    assert (code, message) == ("ValidationError", CHAINING_CAP)


def test_user_first_hop_may_exceed_an_hour_up_to_max_session_duration(
    aws: Clients, ops: dict[str, str]
) -> None:
    assert aws.assume(ops, HUB, DurationSeconds=4 * 3600)["Credentials"]["AccessKeyId"]
    code, message, status = aws_error(lambda: aws.assume(ops, HUB, DurationSeconds=4 * 3600 + 1))
    assert (code, message, status) == ("ValidationError", MAX_SESSION, 400)


def test_root_user_may_not_assume_roles(aws: Clients, sb: SandboxInfo) -> None:
    code, message, status = aws_error(lambda: aws.assume(sb.principals["boss"], HUB))
    assert (code, message, status) == ("AccessDenied", ROOT_REFUSED, 403)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"RoleSessionName": "bad name!"},
            "1 validation error detected: Value 'bad name!' at 'roleSessionName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ),
        (
            {"RoleSessionName": "x" * 65},
            f"1 validation error detected: Value '{'x' * 65}' at 'roleSessionName' failed to "
            "satisfy constraint: Member must have length less than or equal to 64",
        ),
        (
            {"ExternalId": "has space"},
            "1 validation error detected: Value 'has space' at 'externalId' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: "
            "[\\w+=,.@:/-]*",
        ),
        (
            {"SourceIdentity": "aws:reserved"},
            "1 validation error detected: Value 'aws:reserved' at 'sourceIdentity' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ),
        (
            {"DurationSeconds": 43201},
            "1 validation error detected: Value '43201' at 'durationSeconds' failed to "
            "satisfy constraint: Member must have value less than or equal to 43200",
        ),
        (
            {"RoleSessionName": "a b", "ExternalId": "c d"},
            "2 validation errors detected: Value 'a b' at 'roleSessionName' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*; "
            "Value 'c d' at 'externalId' failed to satisfy constraint: Member must satisfy "
            "regular expression pattern: [\\w+=,.@:/-]*",
        ),
    ],
)
def test_parameter_patterns_and_lengths(
    aws: Clients, ops: dict[str, str], kwargs: dict[str, Any], expected: str
) -> None:
    code, message, status = aws_error(lambda: aws.assume(ops, HUB, **kwargs))
    assert (code, message, status) == ("ValidationError", expected, 400)


def test_session_policy_over_2048_characters_fails(aws: Clients, ops: dict[str, str]) -> None:
    statement = {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement] * 40})
    assert len(policy) > 2048
    code, message, _ = aws_error(lambda: aws.assume(ops, HUB, Policy=policy))
    assert code == "ValidationError"
    assert message.endswith(
        "at 'policy' failed to satisfy constraint: Member must have length less than or "
        "equal to 2048"
    )
    small = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    assert aws.assume(ops, HUB, Policy=small)["PackedPolicySize"] > 0


def test_more_than_ten_policy_arns_fail(aws: Clients, ops: dict[str, str]) -> None:
    arns = [{"arn": f"arn:aws:iam::222222222222:policy/p{i}"} for i in range(11)]
    code, message, _ = aws_error(lambda: aws.assume(ops, HUB, PolicyArns=arns))
    assert code == "ValidationError"
    assert (
        "at 'policyArns' failed to satisfy constraint: Member must have length less than" in message
    )


def test_more_than_fifty_tags_fail(aws: Clients, ops: dict[str, str]) -> None:
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    code, message, _ = aws_error(lambda: aws.assume(ops, HUB, Tags=tags))
    assert code == "ValidationError"
    assert (
        "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50"
        in message
    )


def test_tags_need_sts_tag_session_in_the_trust_policy(aws: Clients, ops: dict[str, str]) -> None:
    code, message, status = aws_error(
        lambda: aws.assume(ops, HUB, Tags=[{"Key": "team", "Value": "sec"}])
    )
    assert (code, status) == ("AccessDenied", 403)
    assert message == f"User: {OPS} is not authorized to perform: sts:TagSession on resource: {HUB}"


def test_source_identity_persists_and_cannot_change(aws: Clients, ops: dict[str, str]) -> None:
    first = aws.assume(ops, HUB, SourceIdentity="alice")
    assert first["SourceIdentity"] == "alice"
    hub = first["Credentials"]
    inherited = aws.assume(hub, AUDIT, ExternalId="ext-123")
    assert inherited["SourceIdentity"] == "alice"
    assert aws.assume(hub, AUDIT, ExternalId="ext-123", SourceIdentity="alice")
    code, message, status = aws_error(
        lambda: aws.assume(hub, AUDIT, ExternalId="ext-123", SourceIdentity="mallory")
    )
    assert (code, status) == ("AccessDenied", 403)
    assert "source identity" in message


def test_source_identity_needs_set_source_identity_in_the_trust(
    aws: Clients, sb: SandboxInfo
) -> None:
    # 'lonely' does not set a source identity, but the chain does elsewhere, so every
    # provisioned trust allows sts:SetSourceIdentity: the session just carries it.
    task = sb.principals["task"]
    granted = aws.assume(task, "arn:aws:iam::222222222222:role/Lonely", SourceIdentity="bob")
    assert granted["SourceIdentity"] == "bob"


def test_expired_credentials_fail_in_every_service(
    aws: Clients, sb: SandboxInfo, ops: dict[str, str]
) -> None:
    creds = aws.assume(ops, HUB, RoleSessionName="short")["Credentials"]
    sb.state.expire(creds["AccessKeyId"])
    sts = aws_error(lambda: aws.client("sts", creds).get_caller_identity())
    assert sts == ("ExpiredToken", EXPIRED_TOKEN, 400)
    s3 = aws_error(lambda: aws.client("s3", creds).list_buckets())
    assert s3 == ("ExpiredToken", "The provided token has expired.", 400)
    iam = aws_error(lambda: aws.client("iam", creds).list_roles())
    assert iam == ("ExpiredToken", EXPIRED_TOKEN, 400)
    orgs = aws_error(lambda: aws.client("organizations", creds).list_accounts())
    assert orgs == ("ExpiredTokenException", EXPIRED_TOKEN, 400)
    chained = aws_error(lambda: aws.assume(creds, AUDIT, ExternalId="ext-123"))
    assert chained == ("ExpiredToken", EXPIRED_TOKEN, 400)


def test_unknown_access_key_is_invalid(aws: Clients) -> None:
    fake = {"AWS_ACCESS_KEY_ID": "AKIANOTISSUED0000000", "AWS_SECRET_ACCESS_KEY": "x"}
    code, message, status = aws_error(lambda: aws.client("sts", fake).get_caller_identity())
    assert (code, message, status) == (
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
        403,
    )


def test_calls_are_routed_to_the_session_account(aws: Clients, hub: dict[str, Any]) -> None:
    audit = aws.assume(hub, AUDIT, ExternalId="ext-123")["Credentials"]
    buckets = sorted(b["Name"] for b in aws.client("s3", audit).list_buckets()["Buckets"])
    assert buckets == ["rolechain-backups-333333333333", "rolechain-logs-333333333333"]
    role = aws.client("iam", audit).get_role(RoleName="Audit")["Role"]
    assert role["MaxSessionDuration"] == 3600
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": "ext-123"}}
    assert statement["Principal"]["AWS"] in (HUB, [HUB])


def test_callers_cannot_pick_their_account_with_moto_headers(
    aws: Clients, ops: dict[str, str]
) -> None:
    s3 = aws.client("s3", ops)
    s3.meta.events.register(
        "before-sign.s3.*",
        lambda request, **_: request.headers.__setitem__("x-moto-account-id", "333333333333"),
    )
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert not any("333333333333" in n for n in names)


def test_counters_record_calls_and_denials(sb: SandboxInfo) -> None:
    assert sb.state.calls["AssumeRole"] > 0
    assert sb.state.denied["AccessDenied"] > 0


def test_session_token_must_belong_to_the_key(aws: Clients, hub: dict[str, Any]) -> None:
    forged = {**hub, "SessionToken": "not-the-token"}
    code, _, status = aws_error(lambda: aws.client("sts", forged).get_caller_identity())
    assert (code, status) == ("InvalidClientTokenId", 403)
    without = {k: v for k, v in hub.items() if k != "SessionToken"}
    code, _, _ = aws_error(lambda: aws.client("s3", without).list_buckets())
    assert code == "InvalidAccessKeyId"


def test_iam_access_keys_made_in_the_sandbox_work(aws: Clients, hub: dict[str, Any]) -> None:
    iam = aws.client("iam", hub)
    iam.create_user(UserName="made-here")
    key = iam.create_access_key(UserName="made-here")["AccessKey"]
    identity = aws.client("sts", key).get_caller_identity()
    assert identity["Account"] == "222222222222"
    assert identity["Arn"] == "arn:aws:iam::222222222222:user/made-here"


def test_expiration_is_like_aws_never_past_now_plus_duration(
    aws: Clients, ops: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    expiration = aws.assume(ops, HUB, DurationSeconds=900)["Credentials"]["Expiration"]
    after = datetime.now(UTC)
    assert expiration <= after + timedelta(seconds=900)
    assert expiration >= before + timedelta(seconds=899)
    assert expiration.microsecond == 0


# -- signatures (issue 18): the right key id with a wrong secret is refused as AWS does ------
# Every form botocore signs (query POSTs, S3 payload hashes, multipart and streaming uploads,
# SigV2 and SigV4 presigned URLs) still passes with the right secret.

WRONG = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _wrong(creds: dict[str, Any]) -> dict[str, Any]:
    if "SecretAccessKey" in creds:
        return {**creds, "SecretAccessKey": WRONG}
    return {**creds, "AWS_SECRET_ACCESS_KEY": WRONG}


def _presigner(aws: Clients, creds: dict[str, Any], version: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        region_name=aws.region,
        endpoint_url=aws.endpoint,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(signature_version=version),
    )


def test_a_wrong_secret_is_refused_in_every_service(
    aws: Clients, ops: dict[str, str], hub: dict[str, Any]
) -> None:
    for creds in (ops, hub):
        wrong = _wrong(creds)
        assert aws_error(lambda c=wrong: aws.client("sts", c).get_caller_identity()) == (
            "SignatureDoesNotMatch",
            SIGNATURE_MISMATCH,
            403,
        )
        assert aws_error(lambda c=wrong: aws.client("iam", c).list_roles()) == (
            "SignatureDoesNotMatch",
            SIGNATURE_MISMATCH,
            403,
        )
        assert aws_error(lambda c=wrong: aws.client("s3", c).list_buckets()) == (
            "SignatureDoesNotMatch",
            S3_MESSAGES["SignatureDoesNotMatch"],
            403,
        )
    assert aws_error(lambda: aws.client("organizations", _wrong(ops)).describe_organization()) == (
        "InvalidSignatureException",
        SIGNATURE_MISMATCH,
        400,
    )
    code, _, status = aws_error(lambda: aws.assume(_wrong(ops), HUB))
    assert (code, status) == ("SignatureDoesNotMatch", 403)


def test_the_right_secret_passes_every_kind_of_request(aws: Clients, hub: dict[str, Any]) -> None:
    s3 = aws.client("s3", hub)
    bucket = "rolechain-signatures-222222222222"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a key/with spaces+plus=é", Body=b"x" * 1000)
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    # a multipart upload, its parts streamed from a file object
    big = io.BytesIO(b"y" * (6 * 1024 * 1024))
    config = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024
    )
    s3.upload_fileobj(big, bucket, "big", Config=config)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="a key/")["Contents"]]
    assert keys == ["a key/with spaces+plus=é"]
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == 6 * 1024 * 1024
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""
    # presigned URLs, SigV2 (botocore's default for S3) and SigV4: the right secret is
    # served, a wrong secret or a changed URL refused
    params = {"Bucket": bucket, "Key": "a key/with spaces+plus=é"}
    changes = {"s3": ("Expires=", "Expires=1"), "s3v4": ("Expires=3600", "Expires=7200")}
    for version, changed in changes.items():
        url = _presigner(aws, hub, version).generate_presigned_url("get_object", Params=params)
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.read() == b"x" * 1000
        wrong = _presigner(aws, _wrong(hub), version).generate_presigned_url(
            "get_object", Params=params
        )
        assert changed[0] in url
        for bad in (wrong, url.replace(*changed)):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(bad, timeout=30)
            assert refused.value.code == 403, version
            assert b"<Code>SignatureDoesNotMatch</Code>" in refused.value.read()
    iam = aws.client("iam", hub)
    assert iam.list_roles()["Roles"] is not None
    sts = aws.client("sts", hub)
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/Hub/hub-session")


def test_a_body_changed_after_signing_is_refused(aws: Clients, ops: dict[str, str]) -> None:
    sts = aws.client("sts", ops)

    def tamper(request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        request.body = body.replace(b"RoleSessionName=one", b"RoleSessionName=two")

    sts.meta.events.register("before-send.sts.AssumeRole", tamper)
    code, message, status = aws_error(lambda: sts.assume_role(RoleArn=HUB, RoleSessionName="one"))
    assert (code, message, status) == ("SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403)

"""The sandbox checks SigV4 signatures as AWS does: the right key id with the wrong secret is
``SignatureDoesNotMatch``, in every service and for presigned URLs; every form botocore
signs (query POSTs, S3 payload hashes, multipart and streaming uploads, presigned URLs)
still passes with the right secret."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from rolechain.sandbox import SandboxInfo, sandbox
from rolechain.sandbox.responses import S3_MESSAGES, SIGNATURE_MISMATCH

from .conftest import Clients, aws_error, chain_from

CHAIN = """
version: 1
principals:
  ops: {kind: user, account: "181818181818", arn: "arn:aws:iam::181818181818:user/ops"}
roles:
  hub: {arn: "arn:aws:iam::282828282828:role/Hub", trusts: [ops]}
"""
HUB = "arn:aws:iam::282828282828:role/Hub"
WRONG = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


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
    return dict(aws.assume(ops, HUB, RoleSessionName="sig")["Credentials"])


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
    bucket = "rolechain-signatures-282828282828"
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
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/Hub/sig")


def test_a_body_changed_after_signing_is_refused(aws: Clients, ops: dict[str, str]) -> None:
    sts = aws.client("sts", ops)

    def tamper(request: Any, **_: Any) -> None:
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        request.body = body.replace(b"RoleSessionName=one", b"RoleSessionName=two")

    sts.meta.events.register("before-send.sts.AssumeRole", tamper)
    code, message, status = aws_error(lambda: sts.assume_role(RoleArn=HUB, RoleSessionName="one"))
    assert (code, message, status) == ("SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403)

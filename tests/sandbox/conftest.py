"""Helpers for sandbox tests: chains from YAML text, boto3 clients against a sandbox."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from rolechain.model.chain import Chain
from rolechain.model.loader import loads

NO_RETRIES = Config(retries={"total_max_attempts": 1})
# One boto3 session for every test: clients from it are cheap, and a second boto3 session
# on the same botocore session would register boto3's S3 injections twice.
_SESSION = boto3.session.Session(botocore_session=botocore.session.get_session())


def chain_from(text: str) -> Chain:
    return loads(text, file="test.yaml")


class Clients:
    """boto3 clients against one sandbox endpoint, from one shared botocore session."""

    def __init__(self, endpoint: str, region: str = "us-east-1") -> None:
        self.endpoint = endpoint
        self.region = region
        self._session = _SESSION

    def client(self, service: str, creds: Mapping[str, Any]) -> Any:
        return self._session.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id=creds.get("AccessKeyId") or creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds.get("SecretAccessKey") or creds["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=creds.get("SessionToken") or creds.get("AWS_SESSION_TOKEN"),
            config=NO_RETRIES,
        )

    def assume(self, creds: Mapping[str, Any], role_arn: str, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("RoleSessionName", "test-session")
        response = self.client("sts", creds).assume_role(RoleArn=role_arn, **kwargs)
        return dict(response)


def aws_error(call: Callable[[], Any]) -> tuple[str, str, int]:
    """(code, message, HTTP status) of the ClientError ``call`` raises."""
    with pytest.raises(ClientError) as info:
        call()
    error = info.value.response["Error"]
    return (
        error["Code"],
        error["Message"],
        info.value.response["ResponseMetadata"]["HTTPStatusCode"],
    )

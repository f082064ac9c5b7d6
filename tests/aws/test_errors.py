from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)

from rolechain.aws.errors import aws_call, describe_foreign, translate
from rolechain.errors import (
    AccessDeniedError,
    AwsContext,
    AwsValidationError,
    ExpiredTokenError,
    InvalidCredentialsError,
    PermanentAwsError,
    RegionDisabledError,
    TaskError,
    TransientAwsError,
)

ASSUME = AwsContext(hop="hub -> audit@222222222222", operation="AssumeRole", region="us-east-1")


def client_error(code: str, message: str = "m", status: int = 400) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "AssumeRole",
    )


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("Throttling", 400, TransientAwsError),
        ("ThrottlingException", 400, TransientAwsError),
        ("RequestLimitExceeded", 503, TransientAwsError),
        ("ServiceUnavailable", 503, TransientAwsError),
        ("InternalFailure", 500, TransientAwsError),
        ("SomethingNew", 502, TransientAwsError),
        ("TooManyRequests", 429, TransientAwsError),
        ("RequestTimeout", 400, TransientAwsError),
        ("IDPCommunicationError", 400, TransientAwsError),
        ("ExpiredToken", 400, ExpiredTokenError),
        ("AccessDenied", 403, AccessDeniedError),
        ("ValidationError", 400, AwsValidationError),
        ("MalformedPolicyDocument", 400, AwsValidationError),
        ("PackedPolicyTooLarge", 400, AwsValidationError),
        ("RegionDisabledException", 403, RegionDisabledError),
        ("InvalidClientTokenId", 403, InvalidCredentialsError),
        ("NoSuchBucket", 404, PermanentAwsError),
    ],
)
def test_classification(code: str, status: int, expected: type) -> None:
    error = translate(client_error(code, status=status), ASSUME)
    assert type(error) is expected
    assert error.code == code
    assert error.status == status
    assert error.retryable == (expected in (TransientAwsError, ExpiredTokenError))
    assert error.context.hop == ASSUME.hop


def test_access_denied_on_assume_role_names_the_causes() -> None:
    error = translate(client_error("AccessDenied", "not authorized", 403), ASSUME)
    assert "trust policy" in (error.hint or "")
    assert "ExternalId" in (error.hint or "")
    assert "SCP" in (error.hint or "")
    assert "hub -> audit@222222222222" in str(error)


def test_root_user_access_denied_says_so() -> None:
    error = translate(
        client_error("AccessDenied", "Roles may not be assumed by root accounts"), ASSUME
    )
    assert "root user" in (error.hint or "")


def test_chaining_cap_validation_error() -> None:
    message = (
        "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
        "role chaining."
    )
    error = translate(client_error("ValidationError", message), ASSUME)
    assert isinstance(error, AwsValidationError)
    assert "3600" in (error.hint or "")


def test_max_session_duration_validation_error() -> None:
    message = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
    error = translate(client_error("ValidationError", message), ASSUME)
    assert "MaxSessionDuration" in (error.hint or "")


def test_region_disabled_and_invalid_token_hints() -> None:
    assert "activate" in (
        translate(client_error("RegionDisabledException", status=403), ASSUME).hint or ""
    )
    assert "access key" in (
        translate(client_error("InvalidClientTokenId", status=403), ASSUME).hint or ""
    )


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://sts.amazonaws.com"),
        ConnectTimeoutError(endpoint_url="https://sts.amazonaws.com"),
        ReadTimeoutError(endpoint_url="https://sts.amazonaws.com"),
    ],
)
def test_network_errors_are_transient(exc: Exception) -> None:
    error = translate(exc, ASSUME)
    assert isinstance(error, TransientAwsError)
    assert error.code == type(exc).__name__


def test_other_botocore_errors() -> None:
    assert isinstance(translate(NoCredentialsError()), InvalidCredentialsError)
    validation = translate(ParamValidationError(report="Missing required parameter"))
    assert isinstance(validation, AwsValidationError)
    assert validation.code == "ParamValidation"


def test_aws_call_translates_and_lets_rolechain_errors_through() -> None:
    with pytest.raises(AccessDeniedError) as info, aws_call(ASSUME):
        raise client_error("AccessDenied", status=403)
    assert isinstance(info.value.__cause__, ClientError)
    with pytest.raises(TaskError), aws_call(ASSUME):
        raise TaskError("mine")
    with pytest.raises(ValueError, match="not AWS"), aws_call(ASSUME):
        raise ValueError("not AWS")


def test_describe_foreign() -> None:
    assert describe_foreign(ValueError("x")) is None
    found = describe_foreign(client_error("AccessDenied", status=403))
    assert isinstance(found, AccessDeniedError)


def test_translate_refuses_non_botocore() -> None:
    with pytest.raises(TypeError):
        translate(ValueError("x"))

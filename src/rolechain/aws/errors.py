"""The one seam between botocore's exceptions and rolechain's error tree.

Nothing else in rolechain catches :class:`botocore.exceptions.ClientError` or
:class:`botocore.exceptions.BotoCoreError`. Every AWS call is wrapped in :func:`aws_call`
(or its exception handed to :func:`translate`), which turns the exception into one of:

* :class:`~rolechain.errors.TransientAwsError` (throttling, 5xx, timeouts, dropped
  connections): retried with backoff by :mod:`rolechain.aws.calls`;
* :class:`~rolechain.errors.ExpiredTokenError`: the *caller's* credentials expired; the hop
  tree refreshes the parent hop and retries;
* a :class:`~rolechain.errors.PermanentAwsError` subclass: fails at once, with the likely
  cause and the fix (trust policy, ExternalId, SCP, chaining cap, region disabled...).

The classification follows the STS API reference's error list and botocore's own list of
throttling codes (docs/aws-rules.md lists them, with the AWS pages they come from).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore import exceptions as bce

from rolechain.errors import (
    AccessDeniedError,
    AwsContext,
    AwsError,
    AwsValidationError,
    ExpiredTokenError,
    InvalidCredentialsError,
    PermanentAwsError,
    RegionDisabledError,
    RolechainError,
    TransientAwsError,
)

# Error codes AWS uses for throttling (botocore's retryhandler and standard retry mode list
# these, plus the STS/EC2 spellings).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)

TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "IDPCommunicationError",
        "IDPCommunicationErrorException",
    }
)

EXPIRED_CODES = frozenset(
    {"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired", "RequestExpired"}
)

INVALID_CREDENTIAL_CODES = frozenset(
    {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
     "InvalidAccessKeyId", "AuthFailure"}
)  # fmt: skip

ACCESS_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden",
     "AWSOrganizationsNotInUseException"}
)  # fmt: skip

VALIDATION_CODES = frozenset(
    {"ValidationError", "ValidationException", "InvalidParameterValue", "InvalidParameter",
     "InvalidParameterCombination", "MalformedPolicyDocument", "PackedPolicyTooLarge",
     "InvalidIdentityToken", "InvalidAuthorizationMessageException"}
)  # fmt: skip

REGION_DISABLED_CODES = frozenset({"RegionDisabledException", "OptInRequired"})


def _assume_role_hint(code: str, message: str, context: AwsContext) -> str | None:
    """The likely cause of a failed AssumeRole and what to do about it."""
    hop = context.hop or "this hop"
    lowered = message.lower()
    if code in ACCESS_DENIED_CODES:
        if "root" in lowered:
            return "the root user cannot assume roles: start from an IAM user or a role session"
        return (
            f"for {hop}: the role's trust policy must allow the caller (sts:AssumeRole, and "
            "sts:TagSession / sts:SetSourceIdentity when tags or a source identity are passed); "
            "the ExternalId in the chain file must match the trust policy's sts:ExternalId "
            "condition; the caller's own policy must allow sts:AssumeRole on the role; and no "
            "SCP or permissions boundary may deny it. Check CloudTrail in the role's account "
            "for the denied call."
        )
    if code in VALIDATION_CODES:
        if "1 hour session limit" in lowered or "role chaining" in lowered:
            return (
                f"{hop} is chained (its caller is a role session): AWS caps chained sessions at "
                "one hour. Set 'duration' to 3600 or less for this role."
            )
        if "durationseconds" in lowered or "maximum session duration" in lowered:
            return (
                "the requested DurationSeconds is above the role's MaxSessionDuration: lower "
                "'duration' or raise the role's MaxSessionDuration (and 'max_session_duration' "
                "in the chain file to match)"
            )
        if code == "PackedPolicyTooLarge":
            return "the session policy and tags are too large once packed: trim them"
        if code == "MalformedPolicyDocument":
            return "the inline session policy is not a valid IAM policy document"
        return "AWS rejected a parameter of this AssumeRole call; see the message above"
    if code in REGION_DISABLED_CODES:
        return (
            "STS is not activated in this region for the role's account: activate it in IAM "
            "(Account settings > Security Token Service regions) or set 'region' on the hop "
            "to an active region"
        )
    if code in INVALID_CREDENTIAL_CODES:
        return (
            "the caller's access key or session token is not valid (deleted key, wrong "
            "partition, or credentials from another AWS environment): check the principal's "
            "credentials"
        )
    return None


def _generic_hint(code: str, message: str, context: AwsContext) -> str | None:
    if context.operation in ("AssumeRole", "sts:AssumeRole"):
        return _assume_role_hint(code, message, context)
    if code in ACCESS_DENIED_CODES:
        return (
            "the target role's policies (or an SCP / permissions boundary) do not allow this "
            "call: grant the action to the role"
        )
    if code in INVALID_CREDENTIAL_CODES:
        return "the credentials are not valid: check the principal's access key and token"
    if code in REGION_DISABLED_CODES:
        return "the region is not enabled for this account: enable it or drop it from 'regions'"
    return None


def fix_for(code: str, message: str, *, hop: str | None, assume: bool) -> str | None:
    """What to do about an error a record kept (``assume``: AssumeRole failed at ``hop``)."""
    context = AwsContext(hop=hop, operation="sts:AssumeRole" if assume else None)
    return _generic_hint(code, message, context)


def _classify(code: str, status: int | None) -> type[AwsError]:
    if code in EXPIRED_CODES:
        return ExpiredTokenError
    if code in THROTTLING_CODES or code in TRANSIENT_CODES:
        return TransientAwsError
    if code in REGION_DISABLED_CODES:
        return RegionDisabledError
    if code in INVALID_CREDENTIAL_CODES:
        return InvalidCredentialsError
    if code in ACCESS_DENIED_CODES:
        return AccessDeniedError
    if code in VALIDATION_CODES:
        return AwsValidationError
    if status is not None and (status >= 500 or status == 429):
        return TransientAwsError
    return PermanentAwsError


def translate(exc: BaseException, context: AwsContext | None = None) -> AwsError:
    """The rolechain error for a botocore exception (or an AwsError with more context)."""
    context = context or AwsContext()
    if isinstance(exc, AwsError):
        return exc if exc.context.describe() else exc.with_context(context)
    if isinstance(exc, bce.ClientError):
        response: dict[str, Any] = getattr(exc, "response", {}) or {}
        error = response.get("Error", {}) or {}
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or exc)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        status = int(status) if status is not None else None
        cls = _classify(code, status)
        return cls(
            message,
            code=code,
            context=context,
            hint=_generic_hint(code, message, context),
            status=status,
        )
    if isinstance(exc, bce.BotoCoreError):
        return _translate_botocore(exc, context)
    raise TypeError(f"not a botocore exception: {type(exc).__name__}")


def _translate_botocore(exc: bce.BotoCoreError, context: AwsContext) -> AwsError:
    name = type(exc).__name__
    text = str(exc)
    if isinstance(
        exc,
        bce.ConnectionError | bce.HTTPClientError | bce.IncompleteReadError,
    ):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
        # ConnectionClosedError, ResponseStreamingError...: the network, worth retrying.
        return TransientAwsError(
            text,
            code=name,
            context=context,
            hint="a network error: check connectivity to the AWS endpoint (or AWS_ENDPOINT_URL)",
        )
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return InvalidCredentialsError(
            text,
            code=name,
            context=context,
            hint="no usable starting credentials: set AWS_PROFILE, AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, or the principal's 'source'/'profile' in the chain file",
        )
    if isinstance(exc, bce.ProfileNotFound):
        return InvalidCredentialsError(
            text, code=name, context=context, hint="the AWS profile is not in ~/.aws/config"
        )
    if isinstance(exc, bce.TokenRetrievalError | bce.CredentialRetrievalError):
        return InvalidCredentialsError(
            text,
            code=name,
            context=context,
            hint="the credential provider failed (expired SSO login? run 'aws sso login')",
        )
    if isinstance(exc, bce.ParamValidationError | bce.ValidationError):
        return AwsValidationError(
            text, code="ParamValidation", context=context, hint="fix the call's parameters"
        )
    if isinstance(exc, bce.UnknownServiceError):
        return PermanentAwsError(
            text, code="UnknownService", context=context, hint="use a boto3 service name"
        )
    if isinstance(exc, bce.OperationNotPageableError):
        return PermanentAwsError(text, code="NotPageable", context=context)
    return PermanentAwsError(text, code=name, context=context)


def is_throttle(exc: BaseException | None) -> bool:
    """Whether ``exc`` is AWS saying "slow down" (a throttling code), not another failure."""
    return isinstance(exc, TransientAwsError) and exc.code in THROTTLING_CODES


@contextmanager
def aws_call(context: AwsContext | None = None) -> Iterator[None]:
    """Run AWS calls inside; botocore exceptions leave it as rolechain errors.

    rolechain errors raised inside (for example by a credential refresh that failed) pass
    through unchanged.
    """
    try:
        yield
    except RolechainError:
        raise
    except (bce.ClientError, bce.BotoCoreError) as exc:
        raise translate(exc, context) from exc


def describe_foreign(exc: BaseException, context: AwsContext | None = None) -> AwsError | None:
    """The rolechain error for a botocore exception that escaped user code, else None.

    A ``python`` task's function may call boto3 itself; its ClientErrors are reported with
    their AWS code like every other AWS error.
    """
    if isinstance(exc, bce.ClientError | bce.BotoCoreError):
        return translate(exc, context)
    return None

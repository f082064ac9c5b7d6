"""AWS error responses, in the shape each protocol uses.

STS, IAM and other query-protocol services answer an XML ``ErrorResponse``; S3 answers a
bare XML ``Error``; JSON services (Organizations, ...) answer ``{"__type", "message"}``.
botocore parses each into the same ``ClientError`` code and message.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

Protocol = Literal["query", "s3", "json", "rest-json"]

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"

# Error codes differ by protocol for the same condition.
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)
JSON_CODES = {
    "ExpiredToken": "ExpiredTokenException",
    "Throttling": "ThrottlingException",
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "AccessDenied": "AccessDeniedException",
}
S3_CODES = {"InvalidClientTokenId": "InvalidAccessKeyId", "Throttling": "SlowDown"}
S3_MESSAGES = {
    "ExpiredToken": "The provided token has expired.",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "SlowDown": "Please reduce your request rate.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the "
    "signature you provided. Check your key and signing method.",
}
S3_STATUS = {"SlowDown": 503}


@dataclass(frozen=True)
class AwsFault:
    """An error the sandbox answers instead of moto: AWS's code, message and HTTP status."""

    code: str
    message: str
    status: int = 400

    @property
    def sender(self) -> bool:
        return self.status < 500


@dataclass(frozen=True)
class Rendered:
    status: str
    headers: list[tuple[str, str]]
    body: bytes


_REASONS = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error", 503: "Slow Down"}


def _status(code: int) -> str:
    return f"{code} {_REASONS.get(code, 'Error')}"


def render(fault: AwsFault, protocol: Protocol) -> Rendered:
    """The HTTP response AWS would send for ``fault`` in ``protocol``."""
    request_id = str(uuid.uuid4())
    if protocol == "s3":
        code = S3_CODES.get(fault.code, fault.code)
        message = S3_MESSAGES.get(code, fault.message)
        status = S3_STATUS.get(code, fault.status)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        return Rendered(_status(status), headers, body)
    if protocol in ("json", "rest-json"):
        code = JSON_CODES.get(fault.code, fault.code)
        bad_caller = ("UnrecognizedClientException", "InvalidSignatureException")
        status = 400 if code in bad_caller else fault.status
        body = json.dumps({"__type": code, "message": fault.message}).encode()
        content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
        headers = [
            ("Content-Type", content_type),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", code),
        ]
        return Rendered(_status(status), headers, body)
    kind = "Sender" if fault.sender else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(fault.code)}</Code><Message>{escape(fault.message)}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    return Rendered(_status(fault.status), headers, body)


def xml_response(body: str) -> Rendered:
    data = body.encode()
    return Rendered("200 OK", [("Content-Type", "text/xml")], data)


# The messages, in one place, so tests and docs quote the same text.
EXPIRED_TOKEN = "The security token included in the request is expired"  # noqa: S105
INVALID_TOKEN = "The security token included in the request is invalid."  # noqa: S105
RATE_EXCEEDED = "Rate exceeded"
ROOT_REFUSED = "Roles may not be assumed by root accounts."
CHAINING_CAP = (
    "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
    "role chaining."
)
MAX_SESSION = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."


def not_authorized(caller_arn: str, action: str, resource: str) -> AwsFault:
    return AwsFault(
        "AccessDenied",
        f"User: {caller_arn} is not authorized to perform: {action} on resource: {resource}",
        403,
    )

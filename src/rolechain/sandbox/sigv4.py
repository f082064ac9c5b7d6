"""Check a request's Signature Version 4 signature against the secret the sandbox issued.

AWS refuses a request whose signature was not made with the access key's secret
(``SignatureDoesNotMatch``, HTTP 403); moto accepts any. A rehearsal that passes with a
wrong secret hides a bug (a client holding another session's secret, a key mixed up
between hops) that production shows, so the sandbox checks every signed request.

The expected signature is computed by botocore's own signer (:class:`SigV4Auth`,
:class:`S3SigV4Auth`, and their presigned-URL forms) on an :class:`AWSRequest` rebuilt from
what came over the wire: the method, the raw path and query, the headers the client listed
in ``SignedHeaders``, and the body (or the ``X-Amz-Content-SHA256`` value the client
signed, which covers S3's unsigned and streaming payloads). The signer's
``canonical_request``, ``string_to_sign`` and ``signature`` are given the request's own
``X-Amz-Date`` instead of the current time.
"""

from __future__ import annotations

import hmac
import io
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<headers>[^,\s]+)\s*,\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*$"
)
_SIGNATURE_PARAM = "x-amz-signature"
# environ key: headers the middleware took out of the request before checking its signature
# (NAME_IN_WSGI_FORM -> value); they were signed as sent
REMOVED_HEADERS = "rolechain.sandbox.removed_headers"


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, percent-decoded ('+' stays '+', as AWS reads it)."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((unquote(name), unquote(value)))
    return pairs


def _raw_target(environ: Mapping[str, Any]) -> tuple[str, str]:
    """The path and query as the client sent them."""
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if uri:
        path, _, query = str(uri).partition("?")
        return path or "/", query
    path = quote(str(environ.get("PATH_INFO") or "/"), safe="/~!$&'()*+,;=:@%")
    return path, str(environ.get("QUERY_STRING", ""))


def _header(environ: Mapping[str, Any], name: str) -> str | None:
    key = name.upper().replace("-", "_")
    removed = environ.get(REMOVED_HEADERS, {})
    if key in removed:
        return str(removed[key])
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        found = environ.get(key)
        return None if found is None else str(found)
    found = environ.get("HTTP_" + key)
    return None if found is None else str(found)


def read_body(environ: dict[str, Any]) -> bytes:
    """The request body, read once and put back for the application."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ["wsgi.input"]
    if length > 0:
        body = stream.read(length)
    elif environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING"):
        body = stream.read()  # chunked: the server ends the stream with the body
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    if length > 0 or body:
        environ["CONTENT_LENGTH"] = str(len(body))
    return bytes(body)


_V2_HEADER_RE = re.compile(r"^AWS (?P<key>[^:\s]+):(?P<signature>\S+)$")


def v2_access_key(environ: Mapping[str, Any]) -> str | None:
    """The access key of an S3 request signed with Signature Version 2 (a header, or the
    query of a presigned URL, which botocore still makes by default for S3)."""
    found = _V2_HEADER_RE.match(_header(environ, "Authorization") or "")
    if found:
        return found.group("key")
    _, query = _raw_target(environ)
    params = dict(_query_pairs(query))
    if "Signature" in params and "Expires" in params:
        return params.get("AWSAccessKeyId")
    return None


def _v2_matches(environ: dict[str, Any], secret: str, token: str | None, key: str) -> bool:
    from botocore.awsrequest import HTTPHeaders
    from botocore.credentials import Credentials

    from rolechain.aws.botocore_adapter import hmac_v1_signature

    path, query = _raw_target(environ)
    params = dict(_query_pairs(query))
    found = _V2_HEADER_RE.match(_header(environ, "Authorization") or "")
    headers = HTTPHeaders()
    for name, value in environ.items():
        if name.startswith("HTTP_") and name != "HTTP_AUTHORIZATION":
            headers[name[5:].replace("_", "-").lower()] = str(value)
    for name in ("CONTENT_TYPE", "CONTENT_MD5"):
        if environ.get(name) is not None:
            headers[name.replace("_", "-").lower()] = str(environ[name])
    presigned = found is None
    if found is None:
        stamp, given = params.get("Expires", ""), params.get("Signature", "")
    else:
        stamp, given = _header(environ, "Date") or "", found.group("signature")
    url = f"http://{_header(environ, 'Host') or ''}{path}" + (f"?{query}" if query else "")
    expected = hmac_v1_signature(
        Credentials(key, secret, token),
        str(environ.get("REQUEST_METHOD", "GET")),
        url,
        headers,
        stamp,
        presigned=presigned,
    )
    return bool(given) and hmac.compare_digest(expected, given)


def signature_matches(
    environ: dict[str, Any],
    *,
    access_key: str,
    secret: str,
    token: str | None,
    region: str,
    service: str,
) -> bool:
    """Whether the request is signed with ``secret`` (header or presigned-URL SigV4)."""
    from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    if service == "s3" and v2_access_key(environ) == access_key:
        return _v2_matches(environ, secret, token, access_key)
    path, query = _raw_target(environ)
    pairs = _query_pairs(query)
    authorization = _header(environ, "Authorization")
    presigned = authorization is None
    if presigned:
        params = {k.lower(): v for k, v in pairs}
        given = params.get(_SIGNATURE_PARAM, "")
        signed = params.get("x-amz-signedheaders", "")
        timestamp = params.get("x-amz-date", "")
        pairs = [(k, v) for k, v in pairs if k.lower() != _SIGNATURE_PARAM]
    else:
        found = _AUTH_RE.match(authorization or "")
        if found is None:
            return False
        given, signed = found.group("signature"), found.group("headers")
        timestamp = _header(environ, "X-Amz-Date") or ""
    if not given or not timestamp:
        return False
    headers: dict[str, str] = {}
    for name in signed.split(";"):
        value = _header(environ, name)
        if value is not None:
            headers[name] = value
    body = b""
    if "x-amz-content-sha256" not in {n.lower() for n in headers}:
        body = read_body(environ)
    host = _header(environ, "Host") or ""
    # the query in AWS's canonical encoding (the signer sorts its pairs)
    encoded = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    request = AWSRequest(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        url=f"http://{host}{path}" + (f"?{encoded}" if encoded else ""),
        headers=headers,
        data=body,
    )
    request.context["timestamp"] = timestamp
    credentials = Credentials(access_key, secret, token)
    if presigned:
        signer: SigV4Auth = (S3SigV4QueryAuth if service == "s3" else SigV4QueryAuth)(
            credentials, service, region
        )
    else:
        signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(credentials, service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, given.lower())

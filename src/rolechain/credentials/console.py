"""A console sign-in URL for a target's session, through the AWS federation endpoint.

As the IAM user guide describes ("Enable custom identity broker access to the AWS
console"): the session's credentials go to ``Action=getSigninToken`` (with an optional
``SessionDuration`` of 900..43200 seconds, which AWS refuses for credentials obtained by role
chaining: such a console session lasts as long as the credentials), and the sign-in token
comes back in an ``Action=login`` URL that opens the console as the role. The URL signs in
whoever opens it within 15 minutes: it is a credential.

``AWS_ENDPOINT_URL_SIGNIN`` (or ``AWS_ENDPOINT_URL``, as the sandbox sets it, plus
``/federation``) replaces the endpoint.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from rolechain.credentials.process import TargetCredentials
from rolechain.errors import CredentialsError, UsageError

MIN_DURATION, MAX_DURATION = 900, 43200
_SIGNIN = {
    "aws": "https://signin.aws.amazon.com/federation",
    "aws-us-gov": "https://signin.amazonaws-us-gov.com/federation",
    "aws-cn": "https://signin.amazonaws.cn/federation",
}
_CONSOLE = {
    "aws": "https://console.aws.amazon.com/",
    "aws-us-gov": "https://console.amazonaws-us-gov.com/",
    "aws-cn": "https://console.amazonaws.cn/",
}
ISSUER = "rolechain"


def partition_of(creds: TargetCredentials) -> str:
    parts = creds.role_arn.split(":")
    return parts[1] if len(parts) > 1 else "aws"


def federation_endpoint(partition: str, environ: Mapping[str, str]) -> str:
    override = environ.get("AWS_ENDPOINT_URL_SIGNIN")
    if override:
        return override.rstrip("/") + ("" if override.rstrip("/").endswith("/federation")
                                       else "/federation")  # fmt: skip
    if environ.get("AWS_ENDPOINT_URL"):
        return environ["AWS_ENDPOINT_URL"].rstrip("/") + "/federation"
    if partition not in _SIGNIN:
        raise UsageError(f"no console sign-in endpoint is known for partition {partition!r}")
    return _SIGNIN[partition]


def console_home(partition: str, region: str | None) -> str:
    base = _CONSOLE.get(partition, _CONSOLE["aws"])
    return base + (f"console/home?region={region}" if region else "console/home")


def _get(url: str, opener: Callable[..., Any]) -> dict[str, Any]:
    try:
        with opener(url, timeout=30) as response:
            document: dict[str, Any] = json.loads(response.read().decode("utf-8"))
            return document
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        try:
            message = json.loads(body).get("message", body)
        except ValueError:
            message = body.strip()[:300] or exc.reason
        raise CredentialsError(
            f"the federation endpoint refused the session ({exc.code}): {message}",
            hint="the target's credentials must be a role session that has not expired",
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CredentialsError(f"the federation endpoint could not be reached: {exc}") from None


def signin_url(
    creds: TargetCredentials,
    *,
    chained: bool,
    duration: int | None = None,
    destination: str | None = None,
    environ: Mapping[str, str],
    opener: Callable[..., Any] = urllib.request.urlopen,
) -> str:
    """The ``Action=login`` URL that opens the console as ``creds``' role session."""
    if duration is not None:
        if chained:
            raise UsageError(
                f"the credentials of {creds.target} come from role chaining, and AWS refuses a "
                "SessionDuration for them: the console session lasts as long as they do "
                "(at most 1h)",
                hint="drop --duration",
            )
        if not MIN_DURATION <= duration <= MAX_DURATION:
            raise UsageError("--duration must be 15m to 12h (900 to 43200 seconds)")
    partition = partition_of(creds)
    endpoint = federation_endpoint(partition, environ)
    session = json.dumps(
        {
            "sessionId": creds.access_key_id,
            "sessionKey": creds.secret_access_key,
            "sessionToken": creds.session_token,
        }
    )
    params = {"Action": "getSigninToken", "Session": session}
    if duration is not None:
        params["SessionDuration"] = str(duration)
    token = _get(f"{endpoint}?{urlencode(params)}", opener).get("SigninToken")
    if not token:
        raise CredentialsError("the federation endpoint answered without a SigninToken")
    login = {
        "Action": "login",
        "Issuer": ISSUER,
        "Destination": destination or console_home(partition, creds.region),
        "SigninToken": token,
    }
    return f"{endpoint}?{urlencode(login)}"

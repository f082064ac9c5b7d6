"""The environment variables that make an AWS SDK pick credentials other than the ones
rolechain hands a child process.

botocore reads ``AWS_SECURITY_TOKEN`` before ``AWS_SESSION_TOKEN``, a selected profile
(``AWS_PROFILE``) before the ``AWS_*`` keys, and older SDKs read ``AWS_ACCESS_KEY`` and
``AWS_SECRET_KEY``; web identity, container credentials and another credentials file are
sources of their own. A child given a target's keys must see none of these, or it may run
as another identity (an ``InvalidClientTokenId`` at best). The ``exec`` task of
``rolechain run``, ``rolechain exec`` and ``rolechain env`` (as ``unset`` lines) all remove
exactly this list; ``run --sandbox`` removes it while the sandbox runs.
"""

from __future__ import annotations

CONFLICTING_VARIABLES: tuple[str, ...] = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)

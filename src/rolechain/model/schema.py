"""The chain file, as pydantic models.

These models check everything that can be checked one value at a time (types, patterns,
AWS limits of single fields). Checks that need the whole file (references, duplicate names,
globs) live in :mod:`rolechain.model.references`; checks that need a path of hops live in
the planner. ``ChainFile.model_json_schema()`` is the schema ``rolechain schema`` prints.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from rolechain.cron import CronError, expand, zone
from rolechain.model.durations import DURATION_PATTERN, parse_duration
from rolechain.model.regions import region_problem
from rolechain.tasks.registry import TASKS, check_jmespath, task_names, validate_task_params

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

# Digits are ASCII ([0-9]) everywhere AWS wants digits: pydantic's regex engine, like
# Python's, reads \d and \w as Unicode (Arabic-Indic and full-width digits match \d).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ACCOUNT_PATTERN = r"^[0-9]{12}$"
_IAM_CHARS = r"[A-Za-z0-9_+=,.@-]"
ROLE_ARN_PATTERN = (
    rf"^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{{12}}):role/((?:{_IAM_CHARS}+/)*)"
    rf"({_IAM_CHARS}{{1,64}})$"
)
ROLE_NAME_PATTERN = rf"^(?:{_IAM_CHARS}+/)*{_IAM_CHARS}{{1,64}}$"
PRINCIPAL_ARN_PATTERN = (
    rf"^arn:(aws|aws-cn|aws-us-gov):(?:iam::([0-9]{{12}}):(?:root|user/(?:{_IAM_CHARS}+/)*"
    rf"{_IAM_CHARS}{{1,64}}|role/(?:{_IAM_CHARS}+/)*{_IAM_CHARS}{{1,64}})"
    rf"|sts::([0-9]{{12}}):assumed-role/{_IAM_CHARS}{{1,64}}/{_IAM_CHARS}{{2,64}})$"
)
MFA_SERIAL_PATTERN = (
    r"^(arn:(aws|aws-cn|aws-us-gov):iam::[0-9]{12}:mfa/[A-Za-z0-9_+=,.@/-]+|[A-Z0-9]{9,32})$"
)
POLICY_ARN_PATTERN = (
    r"^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}|aws):policy/[A-Za-z0-9_+=,.@/-]+$"
)
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_+=,.@:/-]+$"
SOURCE_IDENTITY_PATTERN = r"^[A-Za-z0-9_+=,.@-]+$"
# AWS allows letters, numbers and separators of any script in tags ([\p{L}\p{Z}\p{N}...]),
# but no control characters: a space, not \s (which takes newlines and tabs).
TAG_KEY_PATTERN = r"^[\w .:/=+@-]+$"
TAG_VALUE_PATTERN = r"^[\w .:/=+@-]*$"
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$"
OU_PATTERN = r"^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$"
# What each pattern accepts, in words: how a value that does not match is explained.
PATTERN_DESCRIPTIONS: dict[str, str] = {
    NAME_PATTERN: "a valid name (letters, digits, '_', '.', '-'; starting with a letter "
    "or digit; up to 64 characters)",
    ACCOUNT_PATTERN: "a 12-digit AWS account id",
    ROLE_ARN_PATTERN: "a valid role ARN (arn:<partition>:iam::<account>:role/<name>)",
    PRINCIPAL_ARN_PATTERN: "an IAM principal ARN (user, role, account root or assumed-role)",
    ROLE_NAME_PATTERN: "a valid role name (optionally with a path, 'ops/audit')",
    MFA_SERIAL_PATTERN: "an MFA device ARN (arn:<partition>:iam::<account>:mfa/<name>) "
    "or a hardware serial",
    POLICY_ARN_PATTERN: "a managed policy ARN (arn:<partition>:iam::<account or aws>:"
    "policy/<name>)",
    EXTERNAL_ID_PATTERN: "a valid external id (letters, digits and _+=,.@:/-)",
    SOURCE_IDENTITY_PATTERN: "a valid source identity (letters, digits and _+=,.@-)",
    TAG_KEY_PATTERN: "a valid tag key (letters, digits, spaces and _.:/=+-@)",
    TAG_VALUE_PATTERN: "a valid tag value (letters, digits, spaces and _.:/=+-@)",
    REGION_PATTERN: "a region name such as 'us-east-1'",
    OU_PATTERN: "an OU id ('ou-xxxx-xxxxxxxx') or root id ('r-xxxx')",
}
MAX_ROLE_PATH = 512  # IAM: a path is at most 512 characters, a name at most 64
MAX_RUNTIME = 366 * 86400
MAX_TIMEOUT = 7 * 86400
MAX_JSON_DEPTH = 32

SESSION_NAME_VARIABLES = (
    "job", "run_id", "principal", "role", "target", "account", "partition", "depth",
)  # fmt: skip

Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description="a name: letters, digits, '_', '.', '-'; up to 64 characters"),
]


def _one_line(value: str) -> str:
    """Free text (``description``) is one line of printable text: exports and reports write
    it into comments and headers, where a line break would start a line of code."""
    for index, char in enumerate(value):
        if not char.isprintable() and char != " ":
            raise ValueError(
                f"character {index + 1} is U+{ord(char):04X}, a control or line-separator "
                "character: a description is one line of printable text"
            )
    return value


FreeText = Annotated[
    str,
    AfterValidator(_one_line),
    Field(description="one line of printable text (no control characters or line breaks)"),
]


def _account(value: object) -> object:
    # An int is taken as written: zero-padding it would turn a mistyped 11-digit id (or a
    # YAML 1.1 octal) into some other account. The loader reads 12 digits as a string.
    if isinstance(value, int) and not isinstance(value, bool):
        spelling = getattr(value, "spelling", None)
        if spelling is not None:
            raise ValueError(
                f"{spelling!r} is not a 12-digit account id: write the id's twelve digits, "
                "quoted, with no sign, '0x' or '0o'"
            )
        return str(value)
    return value


def _assume_rate(value: object) -> object:
    """``auto`` (adaptive pacing) or a positive, finite number of calls per second."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    rate: float | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            rate = float(value)
        except ValueError:
            rate = None
    if rate is None or not 0 < rate < math.inf:
        raise ValueError(
            "must be 'auto' (adapt to the calling account's STS quota, the default) or a "
            "positive number of AssumeRole calls per second (a ceiling)"
        )
    return rate


def _role_path(value: str) -> str:
    """IAM limits a role's path (the part between ``role/`` and the name) to 512 chars."""
    tail = value.split(":role/", 1)[-1] if value.startswith("arn:") else value
    path = tail.rpartition("/")[0]
    if len(path) + 2 > MAX_ROLE_PATH:  # IAM counts the path with its leading and final '/'
        raise ValueError(
            f"the role's path is {len(path) + 2:,} characters; IAM allows at most {MAX_ROLE_PATH}"
        )
    return value


def json_depth(value: object) -> int:
    """How deeply ``value`` (JSON-like data) nests, counted without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


AccountId = Annotated[
    str,
    BeforeValidator(_account),
    StringConstraints(pattern=ACCOUNT_PATTERN),
    Field(description="a 12-digit AWS account id (quote it in YAML)"),
]

Duration = Annotated[
    int,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": DURATION_PATTERN},
            ],
            "description": "seconds, or a duration such as '45m', '1h', '1h30m'",
        }
    ),
]


def _known_region(value: str) -> str:
    problem = region_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Region = Annotated[str, StringConstraints(pattern=REGION_PATTERN), AfterValidator(_known_region)]

AssumeRate = Annotated[
    float | Literal["auto"],
    BeforeValidator(_assume_rate),
    WithJsonSchema(
        {
            "anyOf": [{"const": "auto"}, {"type": "number", "exclusiveMinimum": 0}],
            "description": "'auto' (adaptive pacing per calling account) or a ceiling in "
            "AssumeRole calls per second",
        }
    ),
]


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The choice most like ``word``, for 'did you mean' hints.

    No guess for a word longer than any name (difflib's cost grows with its square) or
    among more than :data:`MAX_GUESS_CHOICES` choices."""
    if len(word) > 128 or len(choices) > MAX_GUESS_CHOICES:
        return None
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


MAX_GUESS_CHOICES = 5000


def unknown_choice(kind: str, word: str, choices: list[str] | tuple[str, ...]) -> str:
    """'unknown task 'x'; valid: a, b; did you mean 'a'?'"""
    listed = ", ".join(sorted(choices)) or "(none defined)"
    text = f"unknown {kind} {word!r}; valid: {listed}"
    guess = closest(word, choices)
    if guess:
        text += f"; did you mean {guess!r}?"
    return text


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


class Principal(_Model):
    """Where credentials start."""

    source: Literal["default", "profile", "env"] = Field(
        default="default",
        description="default: boto3's default credential chain; profile: a named AWS profile; "
        "env: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN",
    )
    profile: str | None = Field(default=None, description="the AWS profile (source: profile)")
    kind: Literal["user", "session"] = Field(
        default="session",
        description="user: long-term IAM user keys (first hop is not chained); session: a role "
        "session, SSO, instance/task role or MFA session (first hop is chained). Defaults to "
        "session, the safe assumption AWS also makes for anything with a session token.",
    )
    arn: Annotated[str, StringConstraints(pattern=PRINCIPAL_ARN_PATTERN)] | None = Field(
        default=None,
        description="the identity these credentials are expected to have (an IAM user, role, "
        "account root or assumed-role ARN); checked at run time",
    )
    account: AccountId | None = Field(default=None, description="the account of the principal")
    region: Region | None = Field(default=None, description="region for STS calls")
    description: FreeText | None = None

    @model_validator(mode="after")
    def _profile_iff_profile_source(self) -> Principal:
        if self.source == "profile" and not self.profile:
            raise ValueError("source 'profile' needs a 'profile' name")
        if self.source != "profile" and self.profile:
            raise ValueError("'profile' is only used with source: profile")
        return self

    @property
    def account_id(self) -> str | None:
        if self.account:
            return self.account
        if self.arn:
            parts = self.arn.split(":")
            if len(parts) > 4 and re.fullmatch(r"[0-9]{12}", parts[4]):
                return parts[4]
        return None

    @property
    def is_root(self) -> bool:
        return bool(self.arn and re.fullmatch(r"arn:[a-z-]+:iam::[0-9]{12}:root", self.arn))


class SessionPolicy(_Model):
    """A session policy: it can only narrow what the role allows."""

    inline: dict[str, Any] | str | None = Field(
        default=None, description="an IAM policy document (mapping or JSON text)"
    )
    managed: list[Annotated[str, StringConstraints(pattern=POLICY_ARN_PATTERN)]] = Field(
        default_factory=list, max_length=10, description="up to 10 managed policy ARNs"
    )

    @field_validator("inline")
    @classmethod
    def _inline_is_json(cls, value: dict[str, Any] | str | None) -> dict[str, Any] | str | None:
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"inline policy is not valid JSON: {exc}") from None
            except RecursionError:
                raise ValueError(
                    f"inline policy nests more than {MAX_JSON_DEPTH} levels deep"
                ) from None
            if not isinstance(parsed, dict):
                raise ValueError("inline policy must be a JSON object")
        else:
            parsed = value
        if json_depth(parsed) > MAX_JSON_DEPTH:
            raise ValueError(f"inline policy nests more than {MAX_JSON_DEPTH} levels deep")
        return value

    @property
    def inline_json(self) -> str | None:
        """The inline policy, minified as AWS counts its length."""
        if self.inline is None:
            return None
        doc = json.loads(self.inline) if isinstance(self.inline, str) else self.inline
        return json.dumps(doc, separators=(",", ":"), sort_keys=False)


class VerifySettings(_Model):
    """How ``rolechain verify`` reads a role from IAM."""

    reader: Name | None = Field(
        default=None,
        description="a role or role set whose credentials read roles with iam:GetRole when "
        "a role cannot read itself: a role set's member in the role's account, or a role in "
        "that account",
    )


class HopSettings(_Model):
    """What rolechain passes to AssumeRole for a role, and who the role trusts."""

    trusts: list[str] = Field(
        default_factory=list,
        description="names of principals, roles, role sets or role-set members this role "
        "trusts, or ARNs (an account root ARN trusts every declared identity in that account), "
        "or '*' (every AWS identity)",
    )
    max_session_duration: Duration = Field(
        default=3600, ge=3600, le=43200, description="the role's MaxSessionDuration (1h..12h)"
    )
    duration: Duration | None = Field(
        default=None,
        ge=900,
        le=43200,
        description="DurationSeconds to request; default: max_session_duration, capped at 1h "
        "when the hop is chained",
    )
    external_id: (
        Annotated[
            str, StringConstraints(pattern=EXTERNAL_ID_PATTERN, min_length=2, max_length=1224)
        ]
        | None
    ) = Field(default=None, description="ExternalId (2..1224 chars of A-Z a-z 0-9 _+=,.@:/-)")
    mfa_serial: Annotated[str, StringConstraints(pattern=MFA_SERIAL_PATTERN)] | None = Field(
        default=None, description="MFA device ARN or serial; the token is asked for at run time"
    )
    session_policy: SessionPolicy | None = None
    tags: dict[
        Annotated[str, StringConstraints(pattern=TAG_KEY_PATTERN, min_length=1, max_length=128)],
        Annotated[str, StringConstraints(pattern=TAG_VALUE_PATTERN, max_length=256)],
    ] = Field(default_factory=dict, max_length=50, description="session tags (at most 50)")
    transitive_tag_keys: list[str] = Field(
        default_factory=list, max_length=50, description="tag keys that persist down the chain"
    )
    source_identity: (
        Annotated[
            str, StringConstraints(pattern=SOURCE_IDENTITY_PATTERN, min_length=2, max_length=64)
        ]
        | None
    ) = Field(default=None, description="SourceIdentity; once set it persists down the chain")
    region: Region | None = Field(default=None, description="STS region for this hop")
    verify: VerifySettings | None = Field(
        default=None, description="how 'rolechain verify' reads this role (default: settings)"
    )
    description: FreeText | None = None

    @field_validator("source_identity")
    @classmethod
    def _no_aws_prefix(cls, value: str | None) -> str | None:
        if value is not None and value.lower().startswith("aws:"):
            raise ValueError("source_identity may not start with 'aws:'")
        return value

    @field_validator("tags")
    @classmethod
    def _tag_keys_unique(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for key in value:
            if key.lower() in seen:
                raise ValueError(
                    f"tag keys are case-insensitive: {seen[key.lower()]!r} and {key!r} clash"
                )
            seen[key.lower()] = key
        return value

    @model_validator(mode="after")
    def _transitive_keys_are_tags(self) -> HopSettings:
        lowered = {k.lower() for k in self.tags}
        missing = [k for k in self.transitive_tag_keys if k.lower() not in lowered]
        if missing:
            raise ValueError(f"transitive_tag_keys {missing} are not keys of 'tags'")
        return self


class Role(HopSettings):
    """One IAM role."""

    arn: Annotated[str, StringConstraints(pattern=ROLE_ARN_PATTERN), AfterValidator(_role_path)] = (
        Field(description="arn:<partition>:iam::<account>:role/<path/>name")
    )

    @property
    def account_id(self) -> str:
        return self.arn.split(":")[4]

    @property
    def partition(self) -> str:
        return self.arn.split(":")[1]


class OrganizationQuery(_Model):
    """Accounts discovered from AWS Organizations at run time."""

    via: str = Field(
        description="principal or role whose credentials call Organizations (the management "
        "account or a delegated administrator)"
    )
    ous: list[Annotated[str, StringConstraints(pattern=OU_PATTERN)]] = Field(
        default_factory=list,
        description="OU ids (ou-...) or the root (r-...); searched recursively. Empty: all",
    )
    tags: dict[str, str | list[str]] = Field(
        default_factory=dict, description="account tags that must match (a list: any of)"
    )
    exclude: list[AccountId] = Field(default_factory=list, description="accounts to leave out")
    region: Region = Field(default="us-east-1", description="region for Organizations calls")


class RoleSet(HopSettings):
    """One role name in many accounts. Members are addressed as ``name@account``."""

    role_name: Annotated[
        str, StringConstraints(pattern=ROLE_NAME_PATTERN), AfterValidator(_role_path)
    ] = Field(description="the role's name, with its path if any (e.g. 'audit' or 'ops/audit')")
    partition: Literal["aws", "aws-cn", "aws-us-gov"] = "aws"
    accounts: list[AccountId] | None = Field(default=None, description="explicit account ids")
    organization: OrganizationQuery | None = Field(
        default=None, description="discover the accounts from AWS Organizations at run time"
    )
    exclude: list[AccountId] = Field(default_factory=list, description="accounts to leave out")

    @model_validator(mode="after")
    def _one_source(self) -> RoleSet:
        if (self.accounts is None) == (self.organization is None):
            raise ValueError("a role set takes exactly one of 'accounts' or 'organization'")
        if self.accounts is not None and len(set(self.accounts)) != len(self.accounts):
            dupes = sorted({a for a in self.accounts if self.accounts.count(a) > 1})
            raise ValueError(f"accounts listed twice: {', '.join(dupes)}")
        return self

    def member_arn(self, account: str) -> str:
        return f"arn:{self.partition}:iam::{account}:role/{self.role_name}"

    @property
    def members(self) -> list[str]:
        """Listed account ids, less excludes (empty for an organization query)."""
        return [a for a in (self.accounts or []) if a not in set(self.exclude)]


class RetrySettings(_Model):
    attempts: int = Field(default=5, ge=1, le=20, description="tries per AWS call, first included")
    max_wait: Duration = Field(default=20, ge=1, le=600, description="longest single back-off")
    initial_wait: float = Field(default=0.5, gt=0, le=60, description="first back-off, seconds")


def _task_params_schema(schema: dict[str, Any]) -> None:
    """Let editors check ``with:`` against the parameters of the task named in ``task``."""
    schema["allOf"] = [
        {
            "if": {"properties": {"task": {"const": name}}, "required": ["task"]},
            "then": {"properties": {"with": info.params.model_json_schema()}},
        }
        for name, info in sorted(TASKS.items())
    ]
    schema["properties"]["task"]["enum"] = task_names()


class TaskSpec(_Model):
    """One task of a job. In YAML a bare task name is short for ``{task: name}``."""

    model_config = ConfigDict(json_schema_extra=_task_params_schema)

    task: str = Field(description="a registered task: " + ", ".join(task_names()))
    id: Name | None = Field(default=None, description="name for results; default: the task")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="parameters")
    regions: list[Region] | Literal["all"] | None = Field(
        default=None, description="regions for this task; default: the job's"
    )
    timeout: Duration | None = Field(
        default=None, ge=1, le=MAX_TIMEOUT, description="per target and region (up to 7d)"
    )
    rows: str | None = Field(
        default=None,
        description="JMESPath over the task's result giving a list of objects: one row each "
        "(docs/inventory.md); default: the task's own (s3.list_buckets: buckets)",
    )
    key: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description="the fields (JMESPath) that identify a row, e.g. [InstanceId]; default: "
        "the task's own (s3.list_buckets: [name]), else the whole row",
    )

    @field_validator("rows")
    @classmethod
    def _rows_compile(cls, value: str | None) -> str | None:
        if value is not None:
            check_jmespath(value, "rows expression")
        return value

    @field_validator("key")
    @classmethod
    def _key_compiles(cls, value: list[str] | None) -> list[str] | None:
        for field in value or ():
            check_jmespath(field, "key field")
        return value

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(unknown_choice("task", value, task_names()))
        return value

    @model_validator(mode="after")
    def _params_fit_task(self) -> TaskSpec:
        from pydantic import ValidationError

        try:
            validate_task_params(self.task, self.with_)
        except ValidationError as exc:
            details = "; ".join(
                f"with.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                if err["loc"]
                else err["msg"]
                for err in exc.errors()
            )
            raise ValueError(f"bad parameters for task {self.task!r}: {details}") from None
        return self

    @property
    def result_id(self) -> str:
        return self.id or self.task


TASK_NAMES = tuple(task_names())

WEBHOOK_PATTERN = r"^https?://[^\s]+$"


def _private_webhook(url: str) -> bool:
    """An https:// URL, or http:// to a loopback address (the request never leaves the host)."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Alert(_Model):
    """Where to say that a scheduled run failed, succeeded, recovered or changed."""

    command: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description="a program and its arguments (no shell); the run's summary JSON on stdin",
    )
    shell: str | None = Field(
        default=None, description="a command line run by /bin/sh -c; summary JSON on stdin"
    )
    webhook: Annotated[str, StringConstraints(pattern=WEBHOOK_PATTERN)] | None = Field(
        default=None, description="a URL that receives the summary JSON as an HTTP POST"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers for the webhook (e.g. Authorization)"
    )
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict,
        description="environment variables for the command (it gets only PATH, HOME, "
        "LANG, TZ, the ROLECHAIN_* facts and these)",
    )
    timeout: Duration = Field(
        default=10, ge=1, le=3600, description="longest wait for the command or one POST"
    )
    retries: int = Field(
        default=2, ge=0, le=10, description="further POSTs after a failed one (back-off)"
    )

    @field_validator("headers")
    @classmethod
    def _headers_need_https(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        webhook = info.data.get("webhook")
        if value and webhook is not None and not _private_webhook(webhook):
            raise ValueError(
                "headers (tokens) are sent only to an https:// webhook (http:// only to a "
                "loopback address): http:// would send them in clear"
            )
        return value

    @model_validator(mode="after")
    def _has_a_destination(self) -> Alert:
        if self.command is None and self.shell is None and self.webhook is None:
            raise ValueError("an alert needs 'command', 'shell' or 'webhook'")
        if self.command is not None and self.shell is not None:
            raise ValueError("give 'command' (no shell) or 'shell', not both")
        return self


class RetryFailed(_Model):
    """Re-run only the failed targets of a failed scheduled run."""

    after: Duration = Field(default=600, ge=0, description="wait after the failed run ends")
    times: int = Field(default=1, ge=0, le=20, description="retries per scheduled run")


class Keep(_Model):
    """How much scheduled-run history the store keeps per job."""

    runs: int = Field(default=100, ge=1, description="newest runs kept per job")
    days: int = Field(default=30, ge=1, description="runs older than this are deleted")


Overlap = Literal["skip", "queue", "replace"]
CatchUp = Literal["none", "latest", "all"]


def _check_zone(value: str | None) -> str | None:
    if value is not None:
        try:
            zone(value)
        except CronError as exc:
            raise ValueError(str(exc)) from None
    return value


class ScheduleSettings(_Model):
    """Defaults for every scheduled job (``settings.schedule``)."""

    timezone: str = Field(default="UTC", description="IANA time zone of the cron fields")
    overlap: Overlap = Field(
        default="skip", description="when the previous run still goes: skip, queue, replace"
    )
    catch_up: CatchUp = Field(
        default="latest", description="fires missed while down: none, latest, all"
    )
    starting_deadline: Duration = Field(
        default=3600, ge=1, description="a fire not started within this is missed"
    )
    jitter: Duration = Field(
        default=0,
        ge=0,
        description="deterministic per-job delay, up to this long (default 0: start on time, "
        "as cron, systemd and Kubernetes do)",
    )
    retry_failed: RetryFailed = Field(default_factory=RetryFailed)
    keep: Keep = Field(default_factory=Keep)
    on_failure: Alert | None = None
    on_success: Alert | None = None
    on_recovery: Alert | None = None
    on_change: Alert | None = Field(
        default=None,
        description="an alert when a run's rows differ from the previous complete run's "
        "(the diff's summary and first changes; docs/inventory.md)",
    )

    _zone = field_validator("timezone")(_check_zone)


def _task_entry(value: object) -> object:
    if isinstance(value, str):
        return {"task": value}
    return value


class Job(_Model):
    """From where, to which targets, in which regions, running which tasks."""

    from_: str = Field(alias="from", description="the principal the job starts from")
    to: str | list[str] = Field(
        description="targets: a role, a role set, a member 'set@account', or a glob over "
        "role and member names ('audit@*'); or a list of these"
    )
    via: list[str] = Field(
        default_factory=list,
        description="roles the path must pass through, in order; list every intermediate role "
        "to pin the path exactly",
    )
    regions: list[Region] | Literal["all"] | None = Field(
        default=None, description="regions tasks run in ('all': enabled in the target account)"
    )
    tasks: list[
        Annotated[
            TaskSpec,
            BeforeValidator(_task_entry, json_schema_input_type=Literal[*TASK_NAMES] | TaskSpec),
        ]
    ] = Field(default_factory=list, description="task names, or mappings with 'task' and 'with'")
    concurrency: int | None = Field(default=None, ge=1, le=1024)
    session_name: str | None = Field(
        default=None,
        description="RoleSessionName template; variables: "
        + ", ".join("{" + v + "}" for v in SESSION_NAME_VARIABLES),
    )
    schedule: str | None = Field(
        default=None, description="cron expression (5 fields or a macro such as @daily)"
    )
    timezone: str | None = Field(default=None, description="IANA zone; default UTC")
    overlap: Overlap | None = Field(default=None, description="skip (default), queue, replace")
    catch_up: CatchUp | None = Field(default=None, description="none, latest (default), all")
    starting_deadline: Duration | None = Field(default=None, ge=1, description="default 1h")
    jitter: Duration | None = Field(default=None, ge=0, description="default 0 (off)")
    retry_failed: RetryFailed | None = None
    keep: Keep | None = None
    on_failure: Alert | None = None
    on_success: Alert | None = None
    on_recovery: Alert | None = None
    on_change: Alert | None = Field(
        default=None,
        description="an alert when a run's rows differ from the previous complete run's "
        "(the diff's summary and first changes; docs/inventory.md)",
    )
    runtime: Duration | None = Field(
        default=None,
        ge=1,
        le=MAX_RUNTIME,
        description="how long the job may run (up to 366d); the plan checks every hop can "
        "refresh for it",
    )
    retry: RetrySettings | None = None
    description: FreeText | None = None

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            expand(value)
        except CronError as exc:
            raise ValueError(f"{value!r} is not a cron expression: {exc}") from None
        return value

    _zone = field_validator("timezone")(_check_zone)

    @model_validator(mode="after")
    def _schedule_keys_need_a_schedule(self) -> Job:
        if self.schedule is None:
            given = [key for key in SCHEDULE_KEYS if getattr(self, key) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to a "
                    "job with a 'schedule'"
                )
        return self

    @field_validator("session_name")
    @classmethod
    def _known_variables(cls, value: str | None) -> str | None:
        if value is None:
            return value
        for name in re.findall(r"{([^{}]*)}", value):
            if name not in SESSION_NAME_VARIABLES:
                raise ValueError(
                    unknown_choice("session_name variable", name, SESSION_NAME_VARIABLES)
                )
        return value

    @field_validator("tasks")
    @classmethod
    def _unique_task_ids(cls, value: list[TaskSpec]) -> list[TaskSpec]:
        ids = [t.result_id for t in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"task ids must be unique; give each an 'id': {', '.join(dupes)}")
        return value

    @property
    def targets(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


SCHEDULE_KEYS = tuple(ScheduleSettings.model_fields)


CLUSTER_PATTERN = r"^(tcp|tls)://[^\s/]+$"


class EngineSettings(_Model):
    """Where a job's tasks run: threads in this process, or a Dask cluster.

    Written as a name (``engine: dask``) or as a mapping with the Dask options.
    """

    kind: Literal["threads", "dask"] = Field(
        default="threads",
        description="threads: a pool in the rolechain process (the default); dask: batches of "
        "targets on Dask workers (pip install 'rolechain[dask]')",
    )
    cluster: Annotated[str, StringConstraints(pattern=CLUSTER_PATTERN)] | None = Field(
        default=None,
        description="the address of an existing Dask scheduler (tcp://host:8786 or "
        "tls://host:8786); without it, a local cluster of 'workers' processes",
    )
    workers: int | None = Field(
        default=None, ge=1, le=1024, description="worker processes of a local Dask cluster"
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=100_000, description="targets per Dask task (default: chosen)"
    )
    ship_credentials: bool = Field(
        default=False,
        description="hand the principal's credentials to the workers instead of each worker "
        "starting from its own environment; refused unless the cluster connection is TLS",
    )
    dashboard: bool = Field(
        default=False,
        description="serve a local cluster's Dask dashboard on 127.0.0.1 (default: none)",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dask_options_need_dask(self) -> EngineSettings:
        if self.cluster is not None and self.workers is not None:
            raise ValueError(
                "give 'cluster' (an existing scheduler) or 'workers' (a local cluster), not both"
            )
        dask_only = ("cluster", "workers", "batch_size")
        used = [name for name in dask_only if getattr(self, name) is not None]
        used += [name for name in ("ship_credentials", "dashboard") if getattr(self, name)]
        if self.kind != "dask" and used:
            raise ValueError(f"{', '.join(used)} only apply to kind: dask")
        return self


class Settings(_Model):
    """Defaults for every job in the chain file."""

    max_hops: int = Field(default=10, ge=1, le=50, description="longest path allowed")
    concurrency: int = Field(default=16, ge=1, le=1024, description="targets worked at once")
    assume_rate: AssumeRate = Field(
        default="auto",
        description="AssumeRole pacing per calling account: 'auto' starts unpaced, slows "
        "down when STS throttles and speeds up again; a number is a ceiling in calls per second",
    )
    throttle_budget: Duration = Field(
        default=120,
        ge=1,
        le=86400,
        description="how long one call may go on being throttled before it fails (never "
        "past the run's deadline)",
    )
    retry: RetrySettings = Field(default_factory=RetrySettings)
    region: Region = Field(default="us-east-1", description="default region for STS and tasks")
    session_name: str = Field(
        default="rolechain-{job}-{run_id}", description="default RoleSessionName template"
    )
    schedule: ScheduleSettings = Field(
        default_factory=ScheduleSettings, description="defaults for scheduled jobs"
    )
    verify: VerifySettings = Field(
        default_factory=VerifySettings,
        description="how 'rolechain verify' reads roles; a role or role set may override it",
    )
    engine: EngineSettings = Field(
        default_factory=EngineSettings,
        description="where jobs run: 'threads' (default) or 'dask', or a mapping with the "
        "Dask cluster's address or local worker count",
    )
    store: str | None = Field(
        default=None,
        min_length=1,
        description="where 'run' and 'schedule' record runs when neither --store nor "
        "$ROLECHAIN_STORE says: a SQLite file (relative to the chain file's directory) or a "
        "postgresql:// URL (a password in it as ${env:NAME}, or from PGPASSWORD/~/.pgpass)",
    )


class ChainFile(_Model):
    """A chain file, or several merged into one namespace."""

    version: Literal[1] = 1
    settings: Settings = Field(default_factory=Settings)
    principals: dict[Name, Principal] = Field(default_factory=dict)
    roles: dict[Name, Role] = Field(default_factory=dict)
    role_sets: dict[Name, RoleSet] = Field(default_factory=dict)
    jobs: dict[Name, Job] = Field(default_factory=dict)

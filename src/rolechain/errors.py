"""The rolechain error tree.

Every error rolechain raises is a :class:`RolechainError`. Errors carry the context a user
needs to act (job, target, hop, file:line) and, where there is one, the fix.

    RolechainError
    ├── ChainFileError          a chain file is invalid (all problems at once)         exit 2
    ├── PlanError               a job cannot be planned within AWS's rules             exit 2
    ├── UsageError              a job or target asked for does not fit the chain       exit 2
    ├── CredentialsError        starting credentials missing, root user, wrong kind
    ├── EngineError             the chosen engine cannot run (extra missing, no TLS...) exit 2
    ├── AwsError                an AWS call failed (made only by rolechain.aws.errors)
    │   ├── TransientAwsError   throttling, 5xx, timeouts, connection errors: retried
    │   ├── ExpiredTokenError   the caller's credentials expired: refresh the parent, retry
    │   └── PermanentAwsError   access denied, validation, region disabled...: fail fast
    │       ├── AccessDeniedError
    │       ├── AwsValidationError
    │       ├── RegionDisabledError
    │       └── InvalidCredentialsError
    └── TaskError               a task failed inside a target (timeout, bad result, exit code)

Only :mod:`rolechain.aws.errors` translates botocore exceptions into these types; nothing
else in rolechain catches ``botocore.exceptions.ClientError``.

Every error survives pickling (a distributed engine carries them between processes): it is
rebuilt with the same type, message and attributes, whatever its constructor takes.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, order=True)
class Location:
    """A place in a chain file. Lines and columns are 1-based."""

    file: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One problem in a chain file, reported as ``file:line:column: message``."""

    message: str
    location: Location | None = None
    key: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


@dataclass(frozen=True)
class Violation:
    """One AWS rule a planned hop would break, found before any call is made."""

    rule: str
    message: str
    fix: str
    hop: str | None = None
    location: Location | None = None
    source: str | None = None
    target: str | None = None

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        hop = f" [hop {self.hop}]" if self.hop else ""
        text = f"{where}{self.rule}{hop}: {self.message}\n    fix: {self.fix}"
        if self.source:
            text += f"\n    see: {self.source}"
        return text


class RolechainError(Exception):
    """Base class of every error rolechain raises."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Exception pickles as cls(*args), which keyword-only constructors cannot take.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[RolechainError], args: tuple[object, ...], state: dict[str, object]
) -> RolechainError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ChainFileError(RolechainError):
    """One or more chain files are invalid. ``problems`` lists all of them."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem], *, omitted: int = 0) -> None:
        self.problems: tuple[Problem, ...] = tuple(
            sorted(problems, key=lambda p: (p.location or Location("", 0), p.message))
        )
        self.omitted = omitted  # problems found but not listed (there were too many)
        count = len(self.problems) + omitted
        head = f"{count:,} problem{'s' if count != 1 else ''} in chain file"
        lines = [head + ":", *(str(p) for p in self.problems)]
        if omitted:
            lines.append(f"... and {omitted:,} more (fix these first)")
        super().__init__("\n".join(lines))


class PlanError(RolechainError):
    """A job cannot be planned within AWS's rules. ``violations`` lists all of them."""

    exit_code = 2

    def __init__(
        self, job: str, violations: Sequence[Violation], *, note: str | None = None
    ) -> None:
        self.job = job
        self.violations: tuple[Violation, ...] = tuple(violations)
        self.note = note  # why the job was planned the way it was, when that is news
        count = len(self.violations)
        head = f"job {job!r} cannot be planned: {count} violation{'s' if count != 1 else ''}"
        lines = [head, *([f"  {note}"] if note else []), *(str(v) for v in self.violations)]
        super().__init__("\n".join(lines))


class UsageError(RolechainError):
    """A job or target named by the caller is unknown or ambiguous. Nothing was called."""

    exit_code = 2


class CredentialsError(RolechainError):
    """The starting credentials are missing, unusable, or not what the chain file says."""


class EngineError(RolechainError):
    """The engine a run asks for cannot run it: its optional extra is not installed, the
    cluster cannot be reached, or an option it needs is refused (``--ship-credentials``
    without TLS). Raised before any task runs."""

    exit_code = 2


@dataclass(frozen=True)
class AwsContext:
    """Where an AWS call was made, so an error can say what to fix."""

    job: str | None = None
    target: str | None = None
    hop: str | None = None
    operation: str | None = None
    region: str | None = None
    location: Location | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = []
        if self.job:
            parts.append(f"job {self.job}")
        if self.target:
            parts.append(f"target {self.target}")
        if self.hop:
            parts.append(f"hop {self.hop}")
        if self.operation:
            parts.append(self.operation)
        if self.region:
            parts.append(self.region)
        if self.location:
            parts.append(str(self.location))
        return ", ".join(parts)


class AwsError(RolechainError):
    """An AWS call failed. Raised only by the seam in :mod:`rolechain.aws.errors`."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str,
        context: AwsContext | None = None,
        hint: str | None = None,
        status: int | None = None,
    ) -> None:
        self.code = code
        self.aws_message = message
        self.context = context or AwsContext()
        self.status = status
        where = self.context.describe()
        text = f"{code}: {message}" + (f" [{where}]" if where else "")
        super().__init__(text, hint=hint)

    def with_context(self, context: AwsContext) -> AwsError:
        """The same error with more context (used as errors travel up the hop tree)."""
        return type(self)(
            self.aws_message, code=self.code, context=context, hint=self.hint, status=self.status
        )


class TransientAwsError(AwsError):
    """Throttling, a server error, a timeout or a dropped connection: worth retrying."""

    retryable = True


class ExpiredTokenError(AwsError):
    """The caller's credentials expired: refresh the parent hop, then retry."""

    retryable = True


class PermanentAwsError(AwsError):
    """An error that retrying cannot fix."""


class AccessDeniedError(PermanentAwsError):
    """Trust policy, permissions, SCP, or a missing/wrong ExternalId."""


class AwsValidationError(PermanentAwsError):
    """AWS rejected a parameter (chaining cap, MaxSessionDuration, patterns, sizes)."""


class RegionDisabledError(PermanentAwsError):
    """STS is not active in that region for the role's account."""


class InvalidCredentialsError(PermanentAwsError):
    """The access key or token is not valid at all."""


class TaskError(RolechainError):
    """A task failed inside one target (timeout, non-zero exit, bad parameters at run time)."""

    def __init__(self, message: str, *, code: str = "TaskError", hint: str | None = None) -> None:
        self.code = code
        super().__init__(message, hint=hint)


# -- what users see ----------------------------------------------------------------------
#
# Values interpolated from ``${env:NAME}`` may be secrets (external ids, account ids a team
# keeps out of the repository). The loader records each one here as it reads it; every
# message rolechain prints goes through :func:`redact`, which shows "the value from
# ${env:NAME}" instead. Short values (under 4 characters) are replaced only where a message
# quotes them, so that a value such as "1" does not mangle every number in a message.

MIN_BARE_REDACTION = 4
_ENV_VALUES: dict[str, str] = {}  # value -> the variable it came from
_ENV_LOCK = threading.Lock()
# built when first needed after a change: the pattern, and every form of a value -> name
_ENV_PATTERN: tuple[re.Pattern[str], dict[str, str]] | None = None


def remember_env_value(name: str, value: str) -> None:
    """Record that ``value`` came from ``${env:name}``, so :func:`redact` hides it."""
    global _ENV_PATTERN
    if not value:
        return
    with _ENV_LOCK:
        if value not in _ENV_VALUES:
            _ENV_VALUES[value] = name
            _ENV_PATTERN = None


def forget_env_values() -> None:
    """Forget every recorded value (tests, long-lived processes that reload)."""
    global _ENV_PATTERN
    with _ENV_LOCK:
        _ENV_VALUES.clear()
        _ENV_PATTERN = None


def env_source(name: str) -> str:
    """How a message names a value that came from the environment."""
    return f"the value from ${{env:{name}}}"


def _env_pattern() -> tuple[re.Pattern[str], dict[str, str]] | None:
    global _ENV_PATTERN
    with _ENV_LOCK:
        if _ENV_PATTERN is None and _ENV_VALUES:
            alternatives = []
            shown: dict[str, str] = {}
            for value in sorted(_ENV_VALUES, key=len, reverse=True):
                for form in _forms(value):
                    shown.setdefault(form, _ENV_VALUES[value])
                    quoted = "|".join(re.escape(q + form + q) for q in ("'", '"'))
                    alternatives.append(quoted)
                    if len(form) >= MIN_BARE_REDACTION:
                        alternatives.append(re.escape(form))
            _ENV_PATTERN = (re.compile("|".join(alternatives)), shown)
        return _ENV_PATTERN


def _forms(value: str) -> list[str]:
    """How a message may show ``value``: as it is, and as ``repr`` escapes it."""
    escaped = repr(value)[1:-1]
    return [value] if escaped == value else [value, escaped]


def redact(text: str) -> str:
    """``text`` with every recorded ``${env:...}`` value replaced by where it came from."""
    built = _env_pattern()
    if built is None:
        return text
    pattern, shown = built

    def name_of(match: re.Match[str]) -> str:
        found = match.group(0)
        name = shown.get(found) or shown.get(found[1:-1])
        return env_source(name) if name else found

    return pattern.sub(name_of, text)


def redact_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` with :func:`redact` applied to every string in it."""
    if isinstance(data, str):
        built = _env_pattern()
        if built is None:
            return data
        return env_source(built[1][data]) if data in built[1] else redact(data)
    if isinstance(data, dict):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(v) for v in data]
    return data


# What a terminal must never receive raw: control characters (C0 but newline and tab, DEL,
# C1), format characters (bidirectional overrides and isolates that reorder what is shown,
# zero-width characters that hide text), line and paragraph separators, private-use and
# unassigned code points, and lone surrogates (undecodable bytes of a file name). They are
# shown as escapes, so nothing a chain file, an environment or an AWS answer holds can move
# the cursor, retitle the terminal or hide text. ASCII is checked by a regular expression;
# only characters beyond it are looked up in the Unicode database.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
_CANDIDATES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\U0010ffff]")
_CANDIDATES_IN_NAMES = re.compile("[\x00-\x1f\x7f-\U0010ffff]")


def unsafe_character(ch: str) -> bool:
    """Whether ``ch`` must not reach a terminal as it is (newline and tab aside)."""
    return ch not in "\n\t" and unicodedata.category(ch) in _UNSAFE_CATEGORIES


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch not in "\n\t" and not unsafe_character(ch):
        return ch
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_controls(text: str, *, newlines: bool = False) -> str:
    """``text`` with terminal control characters shown as ``\\x1b``-style escapes.

    ``newlines``: escape newlines and tabs too (for a name, such as a file name, that is
    printed inside a line and must not start a line of its own).
    """
    if text.isascii() and text.isprintable():
        return text
    return (_CANDIDATES_IN_NAMES if newlines else _CANDIDATES).sub(_escape, text)


def printable(text: object, *, newlines: bool = False) -> str:
    """What rolechain prints for ``text``: redacted, then control characters escaped
    (``newlines``: newlines and tabs too, for a value printed inside one line)."""
    return escape_controls(redact(str(text)), newlines=newlines)


# -- URLs with a password (a PostgreSQL store's) ------------------------------------------

ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def redact_url(url: str) -> str:
    """``url`` as it may be printed: its password (in the URL or a ``password=``
    parameter) is ``***``; a ``${env:NAME}`` reference in its place stays as it is (it
    says where the password is, not what it is)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split(":", 1)[0] + "://***"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            name, secret = user.split(":", 1)
            user = f"{name}:{secret if ENV_REFERENCE.fullmatch(secret) else '***'}"
        netloc = f"{user}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*${}:"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_has_password(url: str) -> bool:
    """Whether ``url`` holds a password itself (not a ``${env:NAME}`` reference)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    written = [parts.password or ""] + [
        value for key, value in parse_qsl(parts.query) if key.lower() == "password"
    ]
    return any(value and not ENV_REFERENCE.fullmatch(unquote(value)) for value in written)

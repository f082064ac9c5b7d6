"""An on-disk cache of issued role credentials, one file per hop.

Layout: ``<cache dir>/<key>.json``, the directory 0700 and every file 0600, each written
atomically (a temporary file in the same directory, fsync, ``os.replace``), so two processes
writing the same entry at once leave one complete file, never a torn one.

The key of a hop covers its whole path: the fingerprint of the starting credentials (see
:func:`root_fingerprint`) followed by every hop's AssumeRole parameters (role ARN,
ExternalId, session name, source identity, MFA serial, policies, tags, transitive tag keys,
duration). A hop shared by several targets (a hub) therefore has one entry that all of
them reuse, and changing anything about a hop, or anything before it, changes its key.

Reading never fails: a missing, corrupt, foreign (another format, another version, another
owner, a key that does not match its name) or unreadable file is a miss, and so is
anything that is not a small regular file (a FIFO is opened without blocking and refused; a
deeply nested JSON document is refused, not a RecursionError). An entry is used only while
its remaining validity exceeds a margin (:class:`Freshness`).

The directory is used only when it is the user's own: not a symlink, owned by the user,
made 0700, and every parent directory the user owns is a real directory, not a symlink
(a parent owned by root, such as ``/tmp`` or a system-made ``/var`` link, is fine; one owned
by another user, or writable by everyone without the sticky bit, is not). Otherwise the
cache is not used (a warning says why) and credentials are still issued.

Secrets are written only to the entry files; nothing this module returns for listing
(:class:`EntryInfo`) carries them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rolechain.planner.plan import Hop

CACHE_FORMAT = "rolechain-credentials"
CACHE_VERSION = 1
ENV_CACHE_DIR = "ROLECHAIN_CACHE_DIR"
ENV_NO_CACHE = "ROLECHAIN_NO_CACHE"
DEFAULT_MARGIN_SECONDS = 900
DEFAULT_MARGIN_FRACTION = 0.5
_KEY_CHARS = frozenset("0123456789abcdef")
_KEY_LENGTH = 64
_MAX_ENTRY_BYTES = 64 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$ROLECHAIN_CACHE_DIR``, else ``<user cache dir>/rolechain/credentials``."""
    env = os.environ if environ is None else environ
    override = env.get(ENV_CACHE_DIR)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rolechain", appauthor=False)) / "credentials"


def cache_disabled_by_env(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``ROLECHAIN_NO_CACHE`` is set to a true value (1, true, yes, on)."""
    env = os.environ if environ is None else environ
    return env.get(ENV_NO_CACHE, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, repr=False)
class CachedCredentials:
    """Temporary credentials and when they expire (always timezone-aware UTC)."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime
    issued_at: datetime | None = None

    def __repr__(self) -> str:  # never show the secret or the token
        return (
            f"CachedCredentials(access_key_id={self.access_key_id!r}, "
            f"expiration={self.expiration.isoformat()})"
        )

    def remaining(self, now: datetime | None = None) -> float:
        """Seconds of validity left (negative once expired)."""
        return (self.expiration - (now or _utcnow())).total_seconds()


@dataclass(frozen=True)
class Freshness:
    """When a cached entry is still good enough to hand out.

    An entry is used only while its remaining validity exceeds
    ``min(margin_seconds, fraction * duration_seconds)``. The default margin, 15 minutes,
    is botocore's advisory refresh window: credentials handed to the AWS CLI or an SDK
    through ``credential_process`` then do not trigger a refresh on their first use. The
    fraction keeps short sessions cacheable (a 15-minute session is reused for 7.5 minutes).
    ``at_least`` raises the bar for one request (``exec --expect-runtime``).
    """

    margin_seconds: float = DEFAULT_MARGIN_SECONDS
    fraction: float = DEFAULT_MARGIN_FRACTION
    at_least: float = 0.0

    def required(self, duration_seconds: int) -> float:
        return max(min(self.margin_seconds, self.fraction * duration_seconds), self.at_least)


def root_fingerprint(
    access_key_id: str,
    *,
    principal: str,
    endpoint: str | None = None,
) -> str:
    """A fingerprint of the starting credentials, without the secret.

    AWS access key ids are unique per credential set (a new SSO or role session gets a new
    ``ASIA...`` id), so the key id names the identity without a GetCallerIdentity call. The
    principal's name and any STS endpoint override (``AWS_ENDPOINT_URL[_STS]``, e.g. a local
    sandbox) are mixed in so the same fake key id against two endpoints never shares
    entries. Only a hash of the key id is used.
    """
    material = {
        "kind": "root",
        "access_key_id_sha256": hashlib.sha256(access_key_id.encode()).hexdigest(),
        "principal": principal,
        "endpoint": endpoint or "",
    }
    return _digest(material)


def hop_key(parent_key: str, hop: Hop) -> str:
    """The cache key of ``hop`` given the key of its caller (the root or the parent hop)."""
    params = hop.assume_role_params()
    material = {"kind": "hop", "parent": parent_key, "params": params}
    return _digest(material)


def path_keys(root_key: str, hops: list[Hop]) -> dict[str, str]:
    """Cache keys of a path of hops (first hop first), by hop id."""
    keys: dict[str, str] = {}
    parent = root_key
    for hop in hops:
        parent = hop_key(parent, hop)
        keys[hop.id] = parent
    return keys


def _digest(material: Mapping[str, Any]) -> str:
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _is_key(text: str) -> bool:
    return len(text) == _KEY_LENGTH and set(text) <= _KEY_CHARS


@dataclass(frozen=True)
class EntryInfo:
    """What ``rolechain cache list`` shows about an entry: no secrets."""

    key: str
    role_arn: str
    session_name: str
    hop: str
    duration_seconds: int
    issued_at: datetime
    expiration: datetime
    path: Path

    def remaining(self, now: datetime | None = None) -> float:
        return (self.expiration - (now or _utcnow())).total_seconds()

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "key": self.key,
            "role_arn": self.role_arn,
            "session_name": self.session_name,
            "hop": self.hop,
            "duration_seconds": self.duration_seconds,
            "issued_at": _iso(self.issued_at),
            "expiration": _iso(self.expiration),
            "remaining_seconds": int(self.remaining(now)),
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a timestamp")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("timestamp without a timezone")
    return moment.astimezone(UTC)


@dataclass
class CacheStats:
    """Counts for one process: how many lookups were served, missed, written."""

    hits: int = 0
    misses: int = 0
    writes: int = 0
    rejected: int = 0  # files that were corrupt, foreign or unreadable


@dataclass
class CredentialCache:
    """The credential cache in ``directory``. Never raises on a bad file or a full disk.

    Problems that make the cache unusable (a directory owned by someone else, no space) are
    collected in :attr:`problems` for the CLI to show; the lookup is then a miss and the
    write is skipped, so credentials are still issued, just not cached.
    """

    directory: Path
    freshness: Freshness = field(default_factory=Freshness)
    now: Callable[[], datetime] = _utcnow
    stats: CacheStats = field(default_factory=CacheStats)
    problems: list[str] = field(default_factory=list)

    def _entry_path(self, key: str) -> Path:
        if not _is_key(key):
            raise ValueError(f"not a cache key: {key!r}")
        return self.directory / f"{key}.json"

    def _directory_ok(self, create: bool) -> bool:
        """The directory exists (or was made), is ours, is no symlink, and is 0700."""
        unsafe = _unsafe_parent(self.directory)
        if unsafe is not None:
            self._problem(f"cache directory {self.directory} is not used: {unsafe}")
            return False
        try:
            if create:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.lstat()
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._problem(f"cache directory {self.directory} is unusable: {exc.strerror}")
            return False
        if stat.S_ISLNK(info.st_mode):
            self._problem(
                f"cache directory {self.directory} is a symlink; not used (point "
                f"{ENV_CACHE_DIR} at the real directory)"
            )
            return False
        if not stat.S_ISDIR(info.st_mode):
            self._problem(f"cache path {self.directory} is not a directory")
            return False
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            self._problem(f"cache directory {self.directory} belongs to another user; not used")
            return False
        if stat.S_IMODE(info.st_mode) != 0o700:
            try:
                self.directory.chmod(0o700)
            except OSError as exc:
                self._problem(f"cannot make {self.directory} private (0700): {exc.strerror}")
                return False
        return True

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    # reading -------------------------------------------------------------------------

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The parsed entry at ``path`` if it is a valid entry of this cache, else None."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)  # a FIFO opens at once instead of waiting for a writer
        except FileNotFoundError:
            return None
        except OSError:
            self.stats.rejected += 1
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_ENTRY_BYTES:
                raise ValueError("not a small regular file")
            if hasattr(os, "getuid") and info.st_uid != os.getuid():
                raise ValueError("owned by another user")
            if stat.S_IMODE(info.st_mode) & 0o077:
                raise ValueError("readable by others")
            with os.fdopen(fd, "rb") as handle:
                fd = -1
                data = json.loads(handle.read(_MAX_ENTRY_BYTES + 1).decode("utf-8"))
            return self._validate(data, path)
        except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError):
            self.stats.rejected += 1
            return None
        finally:
            if fd >= 0:
                os.close(fd)

    @staticmethod
    def _validate(data: object, path: Path) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValueError("not an object")
        if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION:
            raise ValueError("another format or version")
        if data.get("key") != path.stem:
            raise ValueError("key does not match the file name")
        creds = data["credentials"]
        if not isinstance(creds, dict):
            raise ValueError("credentials are not an object")
        for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"):
            if not isinstance(creds.get(name), str) or not creds[name]:
                raise ValueError(f"missing {name}")
        for name in ("role_arn", "session_name", "hop"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"missing {name}")
        if not isinstance(data.get("duration_seconds"), int):
            raise ValueError("missing duration_seconds")
        data["expiration"] = _parse_time(data["expiration"])
        data["issued_at"] = _parse_time(data["issued_at"])
        return data

    def get(self, key: str, *, at_least: float = 0.0) -> CachedCredentials | None:
        """The entry for ``key`` while it is fresh enough, else None (a miss)."""
        path = self._entry_path(key)
        if not self._directory_ok(create=False):
            self.stats.misses += 1
            return None
        data = self._read(path)
        if data is None:
            self.stats.misses += 1
            return None
        creds = data["credentials"]
        found = CachedCredentials(
            access_key_id=creds["AccessKeyId"],
            secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expiration=data["expiration"],
            issued_at=data["issued_at"],
        )
        needed = max(self.freshness.required(data["duration_seconds"]), at_least)
        if found.remaining(self.now()) <= needed:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return found

    # writing -------------------------------------------------------------------------

    def put(self, key: str, hop: Hop, credentials: CachedCredentials) -> bool:
        """Store ``credentials`` for ``hop`` under ``key`` atomically. False if not stored."""
        path = self._entry_path(key)
        if not self._directory_ok(create=True):
            return False
        record = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "key": key,
            "role_arn": hop.role_arn,
            "session_name": hop.session_name,
            "hop": hop.label,
            "duration_seconds": hop.duration_seconds,
            "issued_at": _iso(credentials.issued_at or self.now()),
            "expiration": _iso(credentials.expiration),
            "credentials": {
                "AccessKeyId": credentials.access_key_id,
                "SecretAccessKey": credentials.secret_access_key,
                "SessionToken": credentials.session_token,
            },
        }
        payload = json.dumps(record, indent=1, sort_keys=True).encode()
        try:
            _atomic_write(path, payload)
        except OSError as exc:
            self._problem(f"cannot write to the credential cache {self.directory}: {exc}")
            return False
        self.stats.writes += 1
        return True

    # managing ------------------------------------------------------------------------

    def entries(self) -> Iterator[EntryInfo]:
        """Every valid entry (expired ones included), sorted by expiry. No secrets."""
        if not self._directory_ok(create=False):
            return iter(())
        found: list[EntryInfo] = []
        for path in sorted(self.directory.glob("*.json")):
            if not _is_key(path.stem):
                continue
            data = self._read(path)
            if data is None:
                continue
            found.append(
                EntryInfo(
                    key=data["key"],
                    role_arn=data["role_arn"],
                    session_name=data["session_name"],
                    hop=data["hop"],
                    duration_seconds=data["duration_seconds"],
                    issued_at=data["issued_at"],
                    expiration=data["expiration"],
                    path=path,
                )
            )
        found.sort(key=lambda e: (e.expiration, e.key))
        return iter(found)

    def clear(self, *, expired_only: bool = False) -> int:
        """Delete entries (all, or only expired and unreadable ones); returns how many.

        Only files this cache could have written are touched: ``<64 hex>.json`` entries and
        leftover ``.tmp-*`` files from an interrupted write.
        """
        if not self._directory_ok(create=False):
            return 0
        removed = 0
        now = self.now()
        for path in self.directory.iterdir():
            name = path.name
            is_entry = name.endswith(".json") and _is_key(path.stem)
            is_temp = name.startswith(".tmp-") and name.endswith(".json")
            if not (is_entry or is_temp):
                continue
            if expired_only and is_entry:
                data = self._read(path)
                if data is not None and data["expiration"] > now:
                    continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed


def _unsafe_parent(directory: Path) -> str | None:
    """Why a parent of ``directory`` makes it unsafe to keep credentials in, or None.

    Every existing parent the user owns must be a real directory: a symlink there could be
    re-pointed to send the next write elsewhere. A parent owned by another user (root
    excepted) could be swapped by that user, and one writable by everyone without the
    sticky bit by anyone.
    """
    if not hasattr(os, "getuid"):  # pragma: no cover - Windows has no owners to compare
        return None
    uid = os.getuid()
    current = Path(os.path.abspath(directory)).parent
    for parent in (current, *current.parents):
        try:
            info = parent.lstat()
        except FileNotFoundError:
            continue  # made by mkdir below, as ours
        except OSError as exc:
            return f"cannot inspect {parent}: {exc.strerror}"
        if info.st_uid not in (uid, 0):
            return f"its parent {parent} belongs to another user"
        if stat.S_ISLNK(info.st_mode):
            if info.st_uid == uid:
                return (
                    f"its parent {parent} is a symlink you own (point {ENV_CACHE_DIR} at "
                    "the real directory)"
                )
            continue  # a link the system made (/var -> /private/var)
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            return f"its parent {parent} is writable by every user"
    return None


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` as 0600 via a temporary file and ``os.replace``."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def to_cached(
    access_key_id: str,
    secret: str,
    token: str,
    expiration: datetime,
    *,
    issued_at: datetime | None = None,
) -> CachedCredentials:
    """Build :class:`CachedCredentials`, with times in aware UTC, whole seconds (rounded
    down, as the cache stores them: never later than the real expiry)."""

    def utc(moment: datetime) -> datetime:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(microsecond=0)

    return CachedCredentials(
        access_key_id,
        secret,
        token,
        utc(expiration),
        utc(issued_at) if issued_at is not None else None,
    )


__all__ = [
    "CACHE_FORMAT",
    "CACHE_VERSION",
    "DEFAULT_MARGIN_FRACTION",
    "DEFAULT_MARGIN_SECONDS",
    "ENV_CACHE_DIR",
    "ENV_NO_CACHE",
    "CacheStats",
    "CachedCredentials",
    "CredentialCache",
    "EntryInfo",
    "Freshness",
    "cache_disabled_by_env",
    "default_cache_dir",
    "hop_key",
    "path_keys",
    "root_fingerprint",
    "to_cached",
]

"""Where the store lives: a SQLite file (the default), or a PostgreSQL database.

Everything that differs between the two is here, behind :class:`Connection`: how to
connect, the schema's few words that differ, placeholders, the id of a row just inserted,
transactions, the schema version and the lock taken while migrating, JSON built in SQL,
and how a failure is said. The store (:mod:`rolechain.results.store`) and its readers
write one SQL, SQLite's, with ``?`` (or ``:name``) placeholders; the PostgreSQL
connection rewrites the placeholders (once per statement text) and the schema's words.

A store is named by a path (SQLite) or a URL, ``postgresql://[user[:password]@][host]
[:port]/database[?param=value]`` (``postgres://`` too), read by libpq: anything the URL
leaves out comes from the ``PG*`` environment variables, and a password from
``PGPASSWORD`` or ``~/.pgpass``. A ``${env:NAME}`` reference in the URL is replaced by
the variable's value when the store is opened (and is redacted from every message). A
password is never shown: :func:`shown` puts ``***`` in its place.

PostgreSQL's driver is psycopg 3 (``rolechain[postgres]``), imported only when a URL is
opened.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from rolechain.errors import ENV_REFERENCE as _ENV_REF
from rolechain.errors import RolechainError, redact, remember_env_value
from rolechain.errors import redact_url as shown
from rolechain.locations import is_url
from rolechain.results.lifecycle import StoreFailure, failure_of

INSTALL = "pip install 'rolechain[postgres]'"

# What SQLite's schema says (in SCHEMA and MIGRATIONS) and PostgreSQL's way to say it.
_JSON_SET = "json_set(k.row, '$.' || r.row_key, k.key)"
SQLITE_ROW_SQL = f"CASE WHEN r.row_key IS NULL THEN k.row ELSE {_JSON_SET} END"
# json_set's result, as text: the key field appended last to the row's (compact) JSON.
_APPEND_KEY = (
    "(left(k.row, -1) || CASE WHEN k.row = '{}' THEN '' ELSE ',' END "
    "|| to_json(r.row_key)::text || ':' || to_json(k.key)::text || '}')"
)
POSTGRES_ROW_SQL = SQLITE_ROW_SQL.replace(_JSON_SET, _APPEND_KEY)


_INSERT_ROWS = "INSERT INTO record_rows (record_id, key, row) VALUES (?, ?, ?)"


class Rows(Protocol):
    """A cursor over a query's rows (tuples, or rows read by name and position)."""

    def __iter__(self) -> Iterator[Any]: ...
    def __next__(self) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchmany(self, size: int = ...) -> list[Any]: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def description(self) -> Any: ...
    @property
    def rowcount(self) -> int: ...


def expand(url: str, env: dict[str, str] | None = None) -> str:
    """``url`` with each ``${env:NAME}`` replaced by its value (remembered for
    :func:`~rolechain.errors.redact`), URL-quoted where it is a user or password."""
    source = os.environ if env is None else env

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in source:
            raise StoreUnavailable(
                f"the store URL {shown(url)} names ${{env:{name}}}, which is not set",
                hint=f"export {name}=..., or give the password in PGPASSWORD or ~/.pgpass",
            )
        found = source[name]
        remember_env_value(name, found)
        return quote(found, safe="")

    return _ENV_REF.sub(value, url)


def _password(url: str) -> str | None:
    """The password written in ``url`` (after ``${env:}`` expansion), to scrub it from
    a driver's messages."""
    parts = urlsplit(url)
    found = parts.password
    for key, value in parse_qsl(parts.query):
        if key.lower() == "password":
            found = value
    return unquote(found) if found else None


# -- placeholders ------------------------------------------------------------------------

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|:([A-Za-z_]\w*)|\?|%")


@functools.lru_cache(maxsize=512)
def to_format(sql: str) -> str:
    """SQLite's SQL with ``?`` and ``:name`` placeholders as psycopg's ``%s`` and
    ``%(name)s``; quoted text and ``::`` casts are left alone, and every ``%`` is doubled
    (the query is always sent with parameters, so psycopg reads every ``%``)."""

    def swap(match: re.Match[str]) -> str:
        found = match.group(0)
        if found == "?":
            return "%s"
        if match.group(1):
            return f"%({match.group(1)})s"
        return found.replace("%", "%%")

    return _TOKENS.sub(swap, sql)


# The schema's words that differ: an auto-numbered (8-byte) id, 8-byte floats, bytes (the stored
# plan), views replaced, the rows' JSON, and an explicit ``rowid`` (SQLite gives every
# table one; the store orders by it).
_POSTGRES_DDL = (
    ("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    ("record_id INTEGER", "record_id BIGINT"),
    (" REAL", " DOUBLE PRECISION"),
    ("plan TEXT", "plan BYTEA"),
    ("CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW"),
    (_JSON_SET, _APPEND_KEY),
)
_ROWID_TABLES = re.compile(r"(CREATE TABLE IF NOT EXISTS (runs|record_rows|units) \()")


def postgres_ddl(statement: str) -> str:
    for sqlite_words, postgres_words in _POSTGRES_DDL:
        statement = statement.replace(sqlite_words, postgres_words)
    return _ROWID_TABLES.sub(r"\1\n    rowid BIGINT GENERATED ALWAYS AS IDENTITY,", statement)


def statements(script: str) -> list[str]:
    return [s for s in script.split(";") if s.strip()]


class Connection:
    """What the store needs of a database (see the module docs)."""

    kind: str  # "sqlite" or "postgresql"
    shown: str  # how messages name it (never with a password)
    row_sql: str  # a row as it was, over ``record_rows k JOIN records r``
    errors: tuple[type[BaseException], ...]  # what a failed write raises

    def execute(self, sql: str, args: Any = ()) -> Rows:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def insert(self, sql: str, args: Any) -> int:
        """Run an INSERT into a table with an ``id``; the new row's id."""
        raise NotImplementedError

    def tuples(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        raise NotImplementedError

    def insert_with_rows(self, sql: str, record: Any, rows: Sequence[tuple[str, str]]) -> None:
        """A record (``sql``, an INSERT into ``records``) and its rows (key, row JSON), in
        ``record_rows`` in their order, committed together."""
        raise NotImplementedError

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        """A block whose writes are committed together when it ends."""
        raise NotImplementedError

    def write(self, sql: str, args: Any = ()) -> None:
        """One statement, committed."""
        raise NotImplementedError

    def migrate(self, schema: str, migrations: Sequence[str]) -> None:
        """Make the schema current: version 1 (``schema``) on an empty database, then every
        step of ``migrations`` from the stored version, in one transaction. A database of a
        newer version is refused."""
        raise NotImplementedError

    def json_object(self, pairs: str) -> str:
        """SQL giving one row's JSON text from ``'name', expression, ...``."""
        raise NotImplementedError

    def json_value(self, text: str) -> str:
        """SQL making JSON text a JSON value (not a string) inside :meth:`json_object`."""
        raise NotImplementedError

    def failure(self, exc: BaseException) -> StoreFailure:
        """Why a write failed with ``exc``, and its fix."""
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def too_new(where: str, version: int, current: int) -> RolechainError:
    return RolechainError(
        f"{where} was written by a newer rolechain (store version {version}; "
        f"this one reads up to {current})",
        hint="upgrade rolechain, or use another --store",
    )


class SqliteConnection(Connection):
    """A SQLite file in WAL mode (readers are not blocked while a run writes)."""

    kind = "sqlite"
    row_sql = SQLITE_ROW_SQL
    errors = (sqlite3.Error, OSError)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown = str(path)
        self.db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        # bound once: these are called per record
        self.execute = self.db.execute  # type: ignore[method-assign,assignment]
        self.executemany = self.db.executemany  # type: ignore[method-assign,assignment]

    def insert(self, sql: str, args: Any) -> int:
        return int(self.db.execute(sql, args).lastrowid or 0)

    def tuples(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        cursor = self.db.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, args)

    def insert_with_rows(self, sql: str, record: Any, rows: Sequence[tuple[str, str]]) -> None:
        with self.db:
            record_id = self.db.execute(sql, record).lastrowid
            self.db.executemany(_INSERT_ROWS, ((record_id, key, text) for key, text in rows))

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        return self.db

    def write(self, sql: str, args: Any = ()) -> None:
        with self.db:
            self.db.execute(sql, args)

    def migrate(self, schema: str, migrations: Sequence[str]) -> None:
        current = len(migrations) + 1
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")  # one migrator at a time
            (version,) = self.db.execute("PRAGMA user_version").fetchone()
            fresh = not self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'"
            ).fetchone()
            if version > current:
                raise too_new(self.shown, version, current)
            if fresh or version < current:
                # Version 1's tables (CREATE ... IF NOT EXISTS: a table of an older file
                # stays as it is), then every step from the file's version on.
                for statement in statements(schema):
                    self.db.execute(statement)
            if fresh:
                version = 1
            for step in range(max(version, 1), current):
                for statement in statements(migrations[step - 1]):
                    self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version={current}")

    def json_object(self, pairs: str) -> str:
        return f"json_object({pairs})"

    def json_value(self, text: str) -> str:
        return f"json({text})"

    def failure(self, exc: BaseException) -> StoreFailure:
        return failure_of(exc, self.path)

    def commit(self) -> None:
        self.db.commit()

    def close(self) -> None:
        self.db.close()


class _Row(tuple):  # type: ignore[type-arg]
    """A row read by position or by column name, as :class:`sqlite3.Row` is."""

    names: tuple[str, ...] = ()
    positions: dict[str, int] = {}  # set per query, on its own subclass

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.positions[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> tuple[str, ...]:
        return self.names


def _named_rows(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    names = tuple(d.name for d in cursor.description or ())
    positions = {name: index for index, name in enumerate(names)}
    kind = type("Row", (_Row,), {"names": names, "positions": positions, "__slots__": ()})

    def make(values: Sequence[Any]) -> _Row:
        return kind(values)  # type: ignore[no-any-return]

    return make


class _Cursor:
    """psycopg's cursor with ``next()`` (as sqlite3's has)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._cursor.description is None:  # a statement that gives no rows
            raise StopIteration
        row = self._cursor.fetchone()
        if row is None:
            raise StopIteration
        return row

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchmany(self, size: int = 1) -> list[Any]:
        return list(self._cursor.fetchmany(size))

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall()) if self._cursor.description is not None else []


# A fixed key for pg_advisory_xact_lock while migrating ("rolechain" in ASCII, truncated).
MIGRATION_LOCK = 0x726F6C65636861


class StoreUnavailable(RolechainError):
    """The store's database cannot be reached, or refused us (exit 2: nothing was done)."""

    exit_code = 2


def connect_error(url: str, exc: BaseException, doing: str = "open") -> StoreUnavailable:
    text = scrub(str(exc).strip() or type(exc).__name__, url)
    lower = text.lower()
    if "role" in lower and "does not exist" in lower:
        fix = "name a user the server knows in the URL (or PGUSER), or create it (createuser)"
    elif "password" in lower or "authentication" in lower:
        fix = (
            "give the password in PGPASSWORD, ~/.pgpass or a ${env:NAME} reference in the "
            "URL, and check the user may log in (pg_hba.conf)"
        )
    elif "does not exist" in lower and "database" in lower:
        fix = "create the database (createdb NAME), or name another in the URL"
    else:
        fix = (
            "check that the server is running and accepts connections at the URL's host and "
            "port (PGHOST/PGPORT when the URL leaves them out)"
        )
    return StoreUnavailable(f"cannot {doing} the store {shown(url)}: {text}", hint=fix)


def scrub(text: str, url: str) -> str:
    """A driver's message with the URL's password (and ``${env:}`` values) hidden."""
    try:
        secret = _password(expand(url, env={**os.environ}))
    except (RolechainError, ValueError):
        secret = None
    if secret:
        text = text.replace(secret, "***")
    return redact(text)


class PostgresConnection(Connection):
    """A PostgreSQL database through psycopg 3, in autocommit mode: each write is its own
    transaction (or a :meth:`transaction` block), so a reader never holds one open."""

    kind = "postgresql"
    row_sql = POSTGRES_ROW_SQL

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise MissingDriver(
                f"the store {shown(url)} is a PostgreSQL database, and its driver (psycopg) "
                "is not installed",
                hint=f"install it with: {INSTALL}",
            ) from None
        self._psycopg = psycopg
        self.url = url
        self.shown = shown(url)
        self.errors = (psycopg.Error, StoreUnavailable, OSError)
        try:
            self.db = psycopg.connect(
                expand(url),
                autocommit=True,
                connect_timeout=int(os.environ.get("PGCONNECT_TIMEOUT", "10")),
                # a scheduler replica names its connections (rolechain.scheduler.lease)
                application_name=os.environ.get("PGAPPNAME", "rolechain"),
            )
        except psycopg.Error as exc:
            raise connect_error(url, exc) from None
        # A commit returns once the server has it, before its WAL reaches the disk: as
        # SQLite's synchronous=NORMAL, a killed client loses nothing (the server has every
        # commit); a crash of the server's host may lose the last few.
        with self._said():
            self.db.execute("SET synchronous_commit = off")

    @contextlib.contextmanager
    def _said(self) -> Iterator[None]:
        """A lost connection (server down, network cut, terminated) as a StoreUnavailable
        with its fix, not a driver's traceback; other errors as they are."""
        try:
            yield
        except self._psycopg.OperationalError as exc:
            raise connect_error(self.url, exc, "read or write") from None

    def execute(self, sql: str, args: Any = ()) -> Rows:
        with self._said():
            cursor = self.db.cursor(row_factory=_named_rows)
            cursor.execute(to_format(sql), args if isinstance(args, dict) else list(args))
        return _Cursor(cursor)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self._said():
                self.db.cursor().executemany(to_format(sql), rows)

    def insert(self, sql: str, args: Any) -> int:
        with self._said():
            cursor = self.db.cursor()
            cursor.execute(to_format(sql + " RETURNING id"), args)
            found = cursor.fetchone()
        return int(found[0]) if found else 0

    def tuples(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        with self._said():
            cursor = self.db.cursor()
            cursor.execute(to_format(sql), list(args))
        return _Cursor(cursor)

    def insert_with_rows(self, sql: str, record: Any, rows: Sequence[tuple[str, str]]) -> None:
        # one statement, so one round trip and its own transaction: the record, then its
        # rows numbered in their order
        statement = (  # sql is the store's own constant; values are bound parameters
            f"WITH r AS ({sql} RETURNING id) INSERT INTO record_rows (record_id, key, row) "  # noqa: S608
            "SELECT r.id, k.key, k.row FROM r, unnest(:keys::text[], :texts::text[]) "
            "WITH ORDINALITY AS k(key, row, n) ORDER BY k.n"
        )
        keys = [key for key, _ in rows]
        texts = [text for _, text in rows]
        self.execute(statement, {**record, "keys": keys, "texts": texts})

    def transaction(self) -> contextlib.AbstractContextManager[Any]:
        # (psycopg's pipeline mode measured no quicker for these few small statements)
        return self.db.transaction()

    def write(self, sql: str, args: Any = ()) -> None:
        # autocommit: one statement is its own transaction, one round trip (BEGIN and
        # COMMIT around it would be two more)
        self.execute(sql, args)

    def migrate(self, schema: str, migrations: Sequence[str]) -> None:
        try:
            self._migrate(schema, migrations)
        except self._psycopg.OperationalError as exc:
            raise connect_error(self.url, exc) from None
        except self._psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot make or update the schema of the store {self.shown}: "
                f"{scrub(str(exc).strip(), self.url)}",
                hint="the URL's user needs CREATE on the database's schema the first time and "
                "after an upgrade (run rolechain once as the database's owner)",
            ) from None

    def _migrate(self, schema: str, migrations: Sequence[str]) -> None:
        current = len(migrations) + 1
        with self.db.transaction():
            # Two processes opening a new database at once: the second waits here, then
            # finds it current. The lock ends with the transaction.
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS rolechain_schema (version INTEGER NOT NULL)"
            )
            found = self.db.execute("SELECT version FROM rolechain_schema").fetchone()
            fresh = found is None
            version = 1 if found is None else int(found[0])
            if version > current:
                raise too_new(self.shown, version, current)
            if fresh:
                for statement in statements(schema):
                    self.db.execute(postgres_ddl(statement))
                self.db.execute("INSERT INTO rolechain_schema (version) VALUES (1)")
            for step in range(version, current):
                for statement in statements(migrations[step - 1]):
                    self.db.execute(postgres_ddl(statement))
            if version != current:
                # PostgreSQL expands a view's * when the view is made (SQLite, when it is
                # read): made again, a view over runs has the columns added since.
                for script in migrations:
                    for statement in statements(script):
                        if statement.strip().startswith("CREATE VIEW"):
                            self.db.execute(postgres_ddl(statement))
                self.db.execute("UPDATE rolechain_schema SET version = %s", (current,))

    def json_object(self, pairs: str) -> str:
        return f"json_build_object({pairs})::text"

    def json_value(self, text: str) -> str:
        return f"({text})::json"

    def failure(self, exc: BaseException) -> StoreFailure:
        text = scrub(str(exc).strip() or type(exc).__name__, self.url)
        lower = text.lower()
        if "connection" in lower or "server closed" in lower or "terminat" in lower:
            fix = f"check the database server of {self.shown} and the network to it"
        elif "permission denied" in lower or "read-only" in lower:
            fix = f"grant this user INSERT and UPDATE on the store's tables in {self.shown}"
        elif "disk" in lower or "space" in lower:
            fix = f"free space on the database server of {self.shown}"
        else:
            fix = f"check the database server of {self.shown}, or give --store another store"
        return StoreFailure(self.shown, text, fix)

    def commit(self) -> None:
        """Nothing waits: the connection commits each statement or block."""

    def close(self) -> None:
        self.db.close()


class MissingDriver(RolechainError):
    """psycopg is not installed (exit 2)."""

    exit_code = 2


def open_connection(location: str | Path) -> Connection:
    """The connection to a store: a URL is PostgreSQL, anything else a SQLite file."""
    if is_url(str(location)):
        return PostgresConnection(str(location))
    path = Path(location)
    if str(location) != ":memory:":
        from rolechain.private import ensure_private

        # task output lives here: 0600 in a 0700 directory when rolechain creates it
        # (SQLite gives its -wal and -shm files the database's mode), never a symlink
        ensure_private(path)
    return SqliteConnection(path)

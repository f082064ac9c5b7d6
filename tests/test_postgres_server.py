"""The throwaway PostgreSQL server the store and scheduler tests run on (tests/postgres.py)."""

from __future__ import annotations

import psycopg
import pytest

from postgres import PostgresServer


def test_a_fresh_database_takes_the_password_over_tcp(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url) as conn:
        (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
        (tables,) = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone() or (None,)
    assert postgres_url.endswith("/" + name)
    assert tables == 0
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(postgres_server.url(name, password=False), connect_timeout=10).close()


def test_each_test_gets_its_own_database(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    assert postgres_server.password in first
    assert postgres_server.password.startswith("pg-")
    assert postgres_server.password != PostgresServer(postgres_server.bin).password

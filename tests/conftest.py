from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.postgres import ENV_REQUIRE, NoPostgres, postgres_server, throwaway_database


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A real PostgreSQL server's admin DSN; skips locally without one, fails in CI."""
    try:
        with postgres_server() as dsn:
            yield dsn
    except NoPostgres as exc:
        if os.environ.get(ENV_REQUIRE):
            pytest.fail(f"PostgreSQL is required here ({ENV_REQUIRE} is set) but none was found: {exc}")
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh, uniquely named, empty database, dropped after the test."""
    with throwaway_database(pg_admin_dsn) as dsn:
        yield dsn

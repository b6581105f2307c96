"""One xrozen source database and one pipeline run shared by the end-to-end tests.

Loading the quirky fixture and running the whole pipeline takes a few seconds; doing it once per
session lets dozens of assertions look at the same run folder and target without slowing the suite.
The run uses a DSN that carries a password (trust auth ignores it) so every test can look for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pipeline.runner import RunOutcome, run
from tests.support.postgres import throwaway_database
from tests.support.xrozen import BOB, CAROL, INVITED, XrozenFixture, load_xrozen_fixture

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.yaml"
MIGRATIONS = ROOT / "target_schema"
TEST_PASSWORD = "Sup3r-S3cret-PW"
# Live-looking auth tokens (the fixture leaves them empty) so the secret scan has tokens to look for.
SOURCE_TOKENS: tuple[tuple[str, str, str], ...] = (
    (BOB, "recovery_token", "7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e"),
    (INVITED, "confirmation_token", "c0nf1rm-9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e"),
    (CAROL, "reauthentication_token", "reauth-41d2c3b4a5968778695a4b3c2d1e0f9a"),
)


def dsn_with_password(dsn: str) -> tuple[str, str]:
    """The DSN as a URI that carries a password, and that password.

    A server reached with trust auth ignores the password we add; a DSN that already has one keeps it
    (it is then the secret the tests look for).
    """
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    password = str(info.get("password") or TEST_PASSWORD)
    user = info.get("user") or "postgres"
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or 5432
    return f"postgresql://{user}:{password}@{host}:{port}/{info['dbname']}", password


@dataclass(frozen=True)
class LiveRun:
    fixture: XrozenFixture
    dsn: str  # plain DSN for the tests' own queries
    secret_dsn: str  # what the pipeline was given
    password: str
    root: Path
    outcome: RunOutcome

    @property
    def target(self) -> Path:
        assert self.outcome.target is not None
        return self.outcome.target

    @property
    def run_dir(self) -> Path:
        return self.outcome.run_dir


@pytest.fixture(scope="session")
def xrozen_source(pg_admin_dsn: str) -> Iterator[tuple[str, XrozenFixture]]:
    """The quirky Supabase-shaped database, loaded once per session; tests must not write to it."""
    with throwaway_database(pg_admin_dsn, prefix="smlive") as dsn:
        fx = load_xrozen_fixture(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for uid, column, token in SOURCE_TOKENS:
                conn.execute(f"UPDATE auth.users SET {column} = %s WHERE id = %s", (token, uid))
        yield dsn, fx


@pytest.fixture(scope="session")
def live_run(xrozen_source: tuple[str, XrozenFixture], tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    """`supamigrate run` of the default config against the xrozen source, through a password DSN."""
    dsn, fx = xrozen_source
    secret_dsn, password = dsn_with_password(dsn)
    root = tmp_path_factory.mktemp("live")
    outcome = run(CONFIG, source=secret_dsn, runs_dir=str(root / "runs"), target=str(root / "app.db"))
    assert outcome.exit_code == 0, outcome.report.get("error")
    return LiveRun(fx, dsn, secret_dsn, password, root, outcome)

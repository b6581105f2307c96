"""Issue 7: the Supabase REST API as a source, against the PostgREST/GoTrue protocol double.

The double (tests/support/postgrest_double.py) serves the same real Postgres fixture the live source
reads, so every comparison here is REST against the database itself: same tables and types, same
migrated content, exact counts through the 1000-row cap, throttling and dropped connections.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.checks import checksum_sqlite
from pipeline.errors import ConfigError, SourceError
from pipeline.runner import run
from pipeline.sources import open_source
from pipeline.sources.base import TableInfo
from pipeline.sources.postgres import PostgresSource
from pipeline.sources.rest import RestSource, describe_key
from tests.support.postgres import throwaway_database
from tests.support.postgrest_double import (
    TEST_JWT_SECRET,
    TEST_PUBLISHABLE_KEY,
    TEST_SECRET_KEY,
    DoubleConfig,
    PostgrestDouble,
    mint_key,
)
from tests.support.xrozen import PAYMENT_AMOUNTS, XrozenFixture, load_xrozen_fixture

ROOT = Path(__file__).resolve().parents[3]
SERVICE = mint_key("service_role")
KEY_ENV = "SUPAMIGRATE_TEST_REST_KEY"


@pytest.fixture(scope="module")
def small_db(pg_admin_dsn: str) -> Iterator[XrozenFixture]:
    with throwaway_database(pg_admin_dsn, prefix="smrest") as dsn:
        yield load_xrozen_fixture(dsn)


@pytest.fixture(scope="module")
def big_db(pg_admin_dsn: str) -> Iterator[XrozenFixture]:
    """Over 5,000 messages and over 1,000 users, profiles and roles: several capped pages each."""
    with throwaway_database(pg_admin_dsn, prefix="smrestbig") as dsn:
        yield load_xrozen_fixture(dsn, messages=6200, bulk_users=1200)


@pytest.fixture
def double(small_db: XrozenFixture) -> Iterator[PostgrestDouble]:
    with PostgrestDouble(small_db.dsn) as d:
        yield d


def _read_all(src: RestSource | PostgresSource, table: TableInfo, batch_rows: int = 20_000) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for b in src.read(table, batch_rows=batch_rows):
        rows.extend(b.data.to_pylist())
    return rows


# description -------------------------------------------------------------------------------------
def test_tables_and_types_match_the_live_source(double: PostgrestDouble, small_db: XrozenFixture) -> None:
    with RestSource(double.url, service_key=SERVICE) as rest, PostgresSource(small_db.dsn) as live:
        r = {t.qualified: t for t in rest.tables()}
        lv = {t.qualified: t for t in live.tables()}
        assert {n for n in lv if n.startswith("public.")} == {n for n in r if n.startswith("public.")}
        assert "public.project_overview" in rest.skipped_relations  # a view, as the live source skips it
        assert "auth.identities" not in r  # the auth schema is not exposed over REST; users come from GoTrue
        for name, t in r.items():
            if name == "auth.users":
                continue
            live_t = lv[name]
            assert t.primary_key == live_t.primary_key, name
            live_cols = {c.name: c for c in live_t.columns}
            assert [c.name for c in t.columns] == [c.name for c in live_t.columns], name
            for c in t.columns:
                expect = live_cols[c.name].pg_type
                if expect.startswith("numeric("):
                    expect = "numeric"  # PostgREST drops a catalog type's modifiers
                assert c.pg_type == expect, (name, c.name)
                assert c.enum_values == live_cols[c.name].enum_values, (name, c.name)
        users = r["auth.users"]
        live_users = {c.name: c.pg_type for c in lv["auth.users"].columns}
        assert all(live_users[c.name] == c.pg_type for c in users.columns)
        assert users.row_estimate == small_db.row_counts["auth.users"]


def test_values_are_postgres_text(double: PostgrestDouble) -> None:
    with RestSource(double.url, service_key=SERVICE) as rest:
        tables = {t.qualified: t for t in rest.tables()}
        payments = {r["id"]: r for r in _read_all(rest, tables["public.payments"])}
        assert {k: v["amount"] for k, v in payments.items()} == PAYMENT_AMOUNTS
        config = _read_all(rest, tables["public.database_config"])
        assert json.loads(config[0]["config"])["nested"]["big"] == 12345678901234567890
        assert config[0]["is_active"] == "t"
        users = _read_all(rest, tables["auth.users"], batch_rows=7)
        assert all(u["encrypted_password"] is None for u in users)
        assert {u["is_anonymous"] for u in users} <= {"t", "f"}


# paging ------------------------------------------------------------------------------------------
def test_the_1000_row_cap_is_paged_through_with_exact_counts(big_db: XrozenFixture) -> None:
    with PostgrestDouble(big_db.dsn) as d, RestSource(d.url, service_key=SERVICE, page_size=5000,
                                                      users_per_page=2000) as rest:
        tables = {t.qualified: t for t in rest.tables()}
        for name in ("public.messages", "public.profiles", "public.user_roles", "auth.users"):
            rows = _read_all(rest, tables[name])
            assert big_db.row_counts[name] > (5000 if name == "public.messages" else 1000)
            assert len(rows) == big_db.row_counts[name], name
            assert len({r["id"] for r in rows}) == len(rows), name
            assert rest.count_checks[name] == {"mode": "exact", "expected": len(rows), "read": len(rows)}
        assert d.stats.max_limit_seen == 5000  # we asked for more than the cap and were silently cut
        assert d.stats.offset_without_order == 0


def test_resume_token_continues_after_the_last_key(double: PostgrestDouble, small_db: XrozenFixture) -> None:
    with RestSource(double.url, service_key=SERVICE, page_size=30) as rest:
        messages = next(t for t in rest.tables() if t.qualified == "public.messages")
        first = next(iter(rest.read(messages, batch_rows=70)))
        rest_rows = [r for b in rest.read(messages, batch_rows=70, resume_token=first.resume_token)
                     for r in b.data.to_pylist()]
        ids = [r["id"] for r in first.data.to_pylist()] + [r["id"] for r in rest_rows]
        assert first.resume_token["after"] == [first.data.to_pylist()[-1]["id"]]
        assert len(ids) == len(set(ids)) == small_db.row_counts["public.messages"]
        assert rest.count_checks["public.messages"]["read"] == small_db.row_counts["public.messages"]


def test_count_mismatch_is_an_error(double: PostgrestDouble, small_db: XrozenFixture) -> None:
    with RestSource(double.url, service_key=SERVICE) as rest:
        payments = next(t for t in rest.tables() if t.qualified == "public.payments")
        token = {"after": None, "rows": 0, "expected": 99, "count_mode": "exact"}
        with pytest.raises(SourceError, match="read 5 rows over REST but the server counted 99"):
            _read_all_token(rest, payments, token)


def _read_all_token(rest: RestSource, table: TableInfo, token: dict[str, Any]) -> int:
    return sum(b.data.num_rows for b in rest.read(table, batch_rows=1000, resume_token=token))


def test_throttling_and_dropped_connections_still_give_exact_counts(small_db: XrozenFixture) -> None:
    cfg = DoubleConfig(rate_limit=8, rate_window=1.0, drop_every=3, max_rows=50)
    with PostgrestDouble(small_db.dsn, cfg) as d, RestSource(d.url, service_key=SERVICE, retry_base=0.01) as rest:
        tables = {t.qualified: t for t in rest.tables()}
        for name in ("public.messages", "public.profiles", "auth.users"):
            assert len(_read_all(rest, tables[name])) == small_db.row_counts[name], name
            assert rest.count_checks[name]["read"] == small_db.row_counts[name]
        assert d.stats.throttled > 0 and d.stats.dropped > 0
        assert rest.retries >= d.stats.throttled + d.stats.dropped


# keys --------------------------------------------------------------------------------------------
def test_the_anon_key_is_named_not_repeated(double: PostgrestDouble) -> None:
    anon = mint_key("anon")
    with RestSource(double.url, service_key=SERVICE) as good:
        payments = next(t for t in good.tables() if t.qualified == "public.payments")
    with RestSource(double.url, service_key=anon) as rest:
        with pytest.raises(SourceError) as exc:
            _read_all(rest, payments)
        message = str(exc.value)
        assert "HTTP 401" in message and "this is the anon key; use the service_role key" in message
        assert anon not in message and anon.split(".")[1] not in message
        with pytest.raises(SourceError, match=r"HTTP 403.*this is the anon key"):
            rest.tables()  # the admin users API refuses it too


def test_key_kinds(double: PostgrestDouble) -> None:
    with pytest.raises(ConfigError, match="publishable key") as exc:
        RestSource(double.url, service_key=TEST_PUBLISHABLE_KEY)
    assert TEST_PUBLISHABLE_KEY not in str(exc.value)
    with pytest.raises(ConfigError, match=r"needs source\.service_key"):
        RestSource(double.url)
    with pytest.raises(ConfigError, match=r"only for 127\.0\.0\.1/localhost"):
        RestSource("http://example.com", service_key=SERVICE)
    with RestSource(double.url, service_key=TEST_SECRET_KEY) as rest:
        assert any(t.qualified == "auth.users" for t in rest.tables())
    wrong = mint_key("service_role", "not-this-projects-secret-0123456789abcdef")
    with RestSource(double.url, service_key=wrong) as rest, pytest.raises(SourceError) as err:
        rest.tables()
    assert "service_role key" in str(err.value) and wrong not in str(err.value)
    assert "anon key" in describe_key(mint_key("anon")) and "sb_secret_" in describe_key(TEST_SECRET_KEY)


def test_a_key_minted_from_the_jwt_secret_works(double: PostgrestDouble, small_db: XrozenFixture) -> None:
    src = open_source(double.url, jwt_secret=TEST_JWT_SECRET, schemas=("public", "auth"))
    try:
        assert src.kind == "rest"
        users = next(t for t in src.tables() if t.qualified == "auth.users")
        assert sum(b.data.num_rows for b in src.read(users, batch_rows=1000)) == small_db.row_counts["auth.users"]
        assert TEST_JWT_SECRET not in json.dumps(src.identity())
    finally:
        src.close()


# end to end --------------------------------------------------------------------------------------
def _config(tmp: Path) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    data["target"]["migrations"] = str(ROOT / "target_schema")
    data["source"]["service_key"] = "${" + KEY_ENV + "}"
    # REST has no hashes: users get the reset marker in both runs so the same users (and so the same
    # profiles, whose id references users) load; argon2 users are kept for the same reason.
    data["users"]["missing_hash"] = "reset_token"
    data["users"]["other_algorithms"] = "keep"
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _checksums(db: Path, tables: list[str], skip: dict[str, set[str]]) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        out: dict[str, str] = {}
        for t in tables:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")') if r[1] not in skip.get(t, set())]
            out[t] = checksum_sqlite(conn, t, cols).digest
        return out


def test_rest_and_live_migrate_identical_content(
    double: PostgrestDouble, small_db: XrozenFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, SERVICE)
    config = _config(tmp_path)
    live = run(config, source=small_db.dsn, runs_dir=str(tmp_path / "live-runs"), target=str(tmp_path / "live.db"))
    assert live.exit_code == 0, live.report.get("error")
    rest = run(config, source=double.url, runs_dir=str(tmp_path / "rest-runs"), target=str(tmp_path / "rest.db"))
    assert rest.exit_code == 0, rest.report.get("error")
    assert rest.report["source"]["kind"] == "rest"

    with closing(sqlite3.connect(tmp_path / "live.db")) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                             "'\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%' ORDER BY name")]
    assert "messages" in tables and "users" in tables
    # password_hash is the only column REST cannot give, and so reset tokens go to more users.
    tables.remove("password_reset_tokens")
    skip = {"users": {"password_hash"}}
    assert _checksums(tmp_path / "rest.db", tables, skip) == _checksums(tmp_path / "live.db", tables, skip)
    live_reset, rest_reset = _reset_users(tmp_path / "live.db"), _reset_users(tmp_path / "rest.db")
    assert live_reset < rest_reset
    def counts(report: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        return {t["name"]: (t["source_rows"], t["loaded"], t["rejected"], t["filtered"])
                for t in report["tables"] if t["name"] != "password_reset_tokens"}

    assert counts(rest.report) == counts(live.report)

    with closing(sqlite3.connect(tmp_path / "rest.db")) as conn:
        hashes = {r[0] for r in conn.execute("SELECT DISTINCT password_hash FROM users WHERE id IN "
                                             "(SELECT id FROM profiles)")}
    assert hashes <= {"!reset-required"} | _profile_hashes(small_db)  # never an auth hash: REST has none
    finding = [f for f in rest.report["findings"] if f["kind"] == "password_hashes_unavailable"]
    assert finding and "every migrated user will need a password reset" in finding[0]["message"]
    assert "password reset" in (rest.run_dir / "report.md").read_text(encoding="utf-8")
    for path in rest.run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".md", ".html"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert SERVICE not in text and SERVICE.split(".")[2] not in text, path


def _reset_users(db: Path) -> set[str]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        tokens = {r[0] for r in conn.execute("SELECT user_id FROM password_reset_tokens")}
        marked = {r[0] for r in conn.execute("SELECT id FROM users WHERE password_hash = '!reset-required'")}
    assert tokens == marked
    return tokens


def _profile_hashes(fx: XrozenFixture) -> set[str]:
    import psycopg

    with psycopg.connect(fx.dsn) as conn:
        return {r[0] for r in conn.execute("SELECT password_hash FROM public.profiles WHERE password_hash IS NOT NULL")}

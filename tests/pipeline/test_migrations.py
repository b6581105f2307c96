from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, TargetError
from pipeline.migrations import (
    MigrationError,
    discover,
    migrate_down,
    migrate_up,
    schema_checksum,
    split_statements,
    status,
)
from pipeline.sqlite_settings import apply_app_pragmas, apply_bulk_load_pragmas

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "target_schema"
APP_TABLES = {
    "users",
    "profiles",
    "user_roles",
    "projects",
    "editors",
    "clients",
    "project_clients",
    "video_versions",
    "messages",
    "payments",
    "project_types",
    "database_config",
    "password_reset_tokens",
}
SQLITE_NOW = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _master(path: Path) -> list[tuple[str, str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    finally:
        conn.close()
    return [(str(t), str(n), s) for t, n, s in rows]


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "target.db"


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    d = tmp_path / "schema"
    shutil.copytree(SCHEMA_DIR, d)
    return d


def test_initial_schema_creates_the_13_app_tables_and_the_version_tables(db: Path) -> None:
    assert migrate_up(db, SCHEMA_DIR) == [1]
    names = {n for t, n, _ in _master(db) if t == "table"}
    assert names - {"_migrations", "_supamigrate_migrations"} == APP_TABLES
    assert len(APP_TABLES) == 13
    indexes = {n for t, n, _ in _master(db) if t == "index" and not n.startswith("sqlite_autoindex")}
    assert {"idx_users_email", "idx_projects_deadline", "idx_messages_created_at", "idx_payments_status"} <= indexes
    assert len(indexes) == 15


def test_declared_types_never_give_numeric_affinity(db: Path) -> None:
    migrate_up(db, SCHEMA_DIR)
    conn = _connect(db)
    for table in APP_TABLES:
        for row in conn.execute(f"PRAGMA table_info({table})"):
            assert row[2] in {"TEXT", "INTEGER", "REAL", "BLOB"}, (table, row[1], row[2])
    conn.execute("INSERT INTO users (id, email, password_hash, full_name) VALUES ('u1', 'a@x', 'h', '0012')")
    assert conn.execute("SELECT full_name, typeof(full_name) FROM users").fetchone() == ("0012", "text")


def test_defaults_have_the_app_types(db: Path) -> None:
    migrate_up(db, SCHEMA_DIR)
    conn = _connect(db)
    conn.execute("INSERT INTO users (id, email, password_hash) VALUES ('u1', 'a@x', 'h')")
    conn.execute("INSERT INTO profiles (id, email) VALUES ('u1', 'a@x')")
    conn.execute("INSERT INTO database_config (id) VALUES ('c1')")
    created, kind, category = conn.execute("SELECT created_at, typeof(created_at), user_category FROM users").fetchone()
    assert kind == "text" and SQLITE_NOW.match(created) and category == "editor"
    assert conn.execute(
        "SELECT typeof(subscription_active), subscription_active, subscription_tier FROM profiles"
    ).fetchone() == ("integer", 1, "basic")
    assert conn.execute("SELECT provider, config, typeof(config) FROM database_config").fetchone() == (
        "sqlite",
        "{}",
        "text",
    )


def test_checks_and_foreign_keys_are_enforced(db: Path) -> None:
    migrate_up(db, SCHEMA_DIR)
    conn = _connect(db)
    conn.execute("INSERT INTO users (id, email, password_hash) VALUES ('u1', 'a@x', 'h')")
    conn.execute("INSERT INTO user_roles (id, user_id, role) VALUES ('r1', 'u1', 'agency')")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("INSERT INTO user_roles (id, user_id, role) VALUES ('r2', 'u1', 'admin')")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute("INSERT INTO user_roles (id, user_id, role) VALUES ('r3', 'u1', 'agency')")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute("INSERT INTO profiles (id, email) VALUES ('nobody', 'n@x')")
    conn.execute("INSERT INTO profiles (id, email) VALUES ('u1', 'a@x')")
    conn.execute("INSERT INTO editors (id, user_id, full_name, email) VALUES ('e1', 'u1', 'E', 'e@x')")
    conn.execute("DELETE FROM users WHERE id = 'u1'")
    assert conn.execute("SELECT count(*) FROM profiles").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM user_roles").fetchone() == (0,)
    assert conn.execute("SELECT user_id FROM editors").fetchone() == (None,)


def test_version_table_has_exactly_the_app_columns(db: Path) -> None:
    migrate_up(db, SCHEMA_DIR)
    conn = _connect(db)
    cols = [(r[1], r[2], r[3], r[5]) for r in conn.execute("PRAGMA table_info(_migrations)")]
    assert cols == [("version", "INTEGER", 0, 1), ("name", "TEXT", 1, 0), ("applied_at", "TEXT", 1, 0)]
    version, name, applied_at = conn.execute("SELECT version, name, applied_at FROM _migrations").fetchone()
    assert (version, name) == (1, "initial_schema")
    assert SQLITE_NOW.match(applied_at)
    checksum = conn.execute("SELECT checksum FROM _supamigrate_migrations WHERE version = 1").fetchone()[0]
    assert checksum == discover(SCHEMA_DIR)[0].checksum


def test_status_up_down_round_trip(db: Path) -> None:
    assert [(s.version, s.state) for s in status(db, SCHEMA_DIR)] == [(1, "pending")]
    assert not db.exists()
    migrate_up(db, SCHEMA_DIR)
    first = _master(db)
    st = status(db, SCHEMA_DIR)
    assert [(s.version, s.name, s.state) for s in st] == [(1, "initial_schema", "applied")]
    assert st[0].applied_at is not None
    assert migrate_down(db, SCHEMA_DIR) == [1]
    assert [s.state for s in status(db, SCHEMA_DIR)] == ["pending"]
    assert {n for _, n, _ in _master(db)} == {"_migrations", "_supamigrate_migrations"}
    assert migrate_up(db, SCHEMA_DIR) == [1]
    assert _master(db) == first
    assert migrate_up(db, SCHEMA_DIR) == []


def test_an_applied_migration_edited_afterwards_is_refused(db: Path, schema_copy: Path) -> None:
    migrate_up(db, schema_copy)
    f = schema_copy / "001_initial_schema.sql"
    f.write_text(f.read_text() + "\n-- a harmless-looking edit\n")
    assert [s.state for s in status(db, schema_copy)] == ["changed"]
    _write(schema_copy, "002_more.sql", "-- migrate:up\nCREATE TABLE more (id TEXT PRIMARY KEY);\n")
    with pytest.raises(MigrationError) as exc:
        migrate_up(db, schema_copy)
    assert "001" in str(exc.value) and "001_initial_schema.sql" in str(exc.value)
    assert "edited after being applied" in str(exc.value)
    assert exc.value.exit_code == 2 and isinstance(exc.value, ConfigError)
    assert "more" not in {n for _, n, _ in _master(db)}
    with pytest.raises(MigrationError, match="edited after being applied"):
        migrate_down(db, schema_copy)


def test_a_migration_file_that_disappears_is_reported_missing(db: Path, schema_copy: Path) -> None:
    migrate_up(db, schema_copy)
    (schema_copy / "001_initial_schema.sql").unlink()
    _write(
        schema_copy, "002_more.sql", "-- migrate:up\nCREATE TABLE more (id TEXT);\n-- migrate:down\nDROP TABLE more;\n"
    )
    assert [(s.version, s.name, s.state) for s in status(db, schema_copy)] == [
        (1, "initial_schema", "missing"),
        (2, "more", "pending"),
    ]
    assert migrate_up(db, schema_copy) == [2]
    with pytest.raises(MigrationError, match="missing"):
        migrate_down(db, schema_copy, to_version=0)
    assert [s.state for s in status(db, schema_copy)] == ["missing", "applied"]


def test_duplicate_versions_and_misnamed_files_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "001_a.sql", "-- migrate:up\nCREATE TABLE a (x TEXT);\n")
    _write(tmp_path, "1_b.sql", "-- migrate:up\nCREATE TABLE b (x TEXT);\n")
    with pytest.raises(MigrationError, match="version 1 is used by both"):
        discover(tmp_path)
    (tmp_path / "1_b.sql").unlink()
    _write(tmp_path, "extra.sql", "-- migrate:up\nSELECT 1;\n")
    with pytest.raises(MigrationError, match=r"extra\.sql"):
        discover(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CREATE TABLE a (x TEXT);\n", "exactly one '-- migrate:up'"),
        ("-- migrate:up\n-- only a comment\n", "empty up section"),
        ("CREATE TABLE z (x);\n-- migrate:up\nCREATE TABLE a (x TEXT);\n", "SQL before"),
        ("-- migrate:up\nBEGIN;\nCREATE TABLE a (x TEXT);\nCOMMIT;\n", "controls transactions"),
        ("-- migrate:up\nCREATE TABLE a (x TEXT DEFAULT 'oops);\n", "incomplete SQL"),
    ],
)
def test_malformed_migration_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    _write(tmp_path, "001_a.sql", text)
    with pytest.raises(MigrationError, match=message):
        discover(tmp_path)


def test_sections_split_and_statements_respect_strings_comments_and_triggers(tmp_path: Path) -> None:
    sql = (
        "-- migrate:up\n"
        "CREATE TABLE t (x TEXT DEFAULT 'a;b'); -- trailing; comment\n"
        "/* block; comment */ CREATE TABLE log (x TEXT);\n"
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (new.x); END;\n"
        "INSERT INTO t VALUES ('1'); INSERT INTO t VALUES ('2')\n"
        "-- migrate:down\n"
        "DROP TRIGGER tr; DROP TABLE log; DROP TABLE t;\n"
    )
    _write(tmp_path, "007_triggers.sql", sql)
    (mig,) = discover(tmp_path)
    assert (mig.version, mig.name) == (7, "triggers")
    assert mig.down_sql is not None
    assert len(split_statements(mig.up_sql)) == 5
    assert len(split_statements(mig.down_sql)) == 3
    db = tmp_path / "t.db"
    migrate_up(db, tmp_path)
    conn = _connect(db)
    assert conn.execute("SELECT x FROM log ORDER BY x").fetchall() == [("1",), ("2",)]
    assert conn.execute("SELECT dflt_value FROM pragma_table_info('t')").fetchone() == ("'a;b'",)


def test_a_failing_migration_is_rolled_back_whole(tmp_path: Path) -> None:
    _write(tmp_path, "001_ok.sql", "-- migrate:up\nCREATE TABLE a (x TEXT);\n-- migrate:down\nDROP TABLE a;\n")
    _write(
        tmp_path,
        "002_bad.sql",
        "-- migrate:up\nCREATE TABLE b (x TEXT);\nINSERT INTO no_such_table VALUES (1);\n",
    )
    db = tmp_path / "t.db"
    with pytest.raises(MigrationError, match=r"migration 002 \(002_bad.sql\) failed and was rolled back"):
        migrate_up(db, tmp_path)
    names = {n for _, n, _ in _master(db)}
    assert "a" in names and "b" not in names
    assert [(s.version, s.state) for s in status(db, tmp_path)] == [(1, "applied"), (2, "pending")]


def test_to_version_and_steps(tmp_path: Path) -> None:
    for v in (1, 2, 3):
        _write(
            tmp_path,
            f"00{v}_t{v}.sql",
            f"-- migrate:up\nCREATE TABLE t{v} (x TEXT);\n-- migrate:down\nDROP TABLE t{v};\n",
        )
    db = tmp_path / "t.db"
    assert migrate_up(db, tmp_path, to_version=2) == [1, 2]
    assert migrate_up(db, tmp_path) == [3]
    assert migrate_down(db, tmp_path, steps=2) == [3, 2]
    assert migrate_up(db, tmp_path) == [2, 3]
    assert migrate_down(db, tmp_path, to_version=0) == [3, 2, 1]
    assert [s.state for s in status(db, tmp_path)] == ["pending"] * 3


def test_down_refuses_a_migration_without_a_down_section_before_touching_anything(tmp_path: Path) -> None:
    _write(tmp_path, "001_nodown.sql", "-- migrate:up\nCREATE TABLE a (x TEXT);\n")
    _write(tmp_path, "002_down.sql", "-- migrate:up\nCREATE TABLE b (x TEXT);\n-- migrate:down\nDROP TABLE b;\n")
    db = tmp_path / "t.db"
    migrate_up(db, tmp_path)
    with pytest.raises(MigrationError, match=r"001 \(001_nodown.sql\) has no '-- migrate:down' section"):
        migrate_down(db, tmp_path, to_version=0)
    assert [s.state for s in status(db, tmp_path)] == ["applied", "applied"]
    assert migrate_down(db, tmp_path) == [2]


def test_a_pending_migration_older_than_an_applied_one_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "002_b.sql", "-- migrate:up\nCREATE TABLE b (x TEXT);\n")
    db = tmp_path / "t.db"
    migrate_up(db, tmp_path)
    _write(tmp_path, "001_a.sql", "-- migrate:up\nCREATE TABLE a (x TEXT);\n")
    with pytest.raises(MigrationError, match=r"001 .* is pending but the newer version 002"):
        migrate_up(db, tmp_path)


def test_a_foreign_version_table_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE _migrations (id INTEGER PRIMARY KEY, filename TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(MigrationError, match="_migrations has columns id, filename"):
        migrate_up(db, SCHEMA_DIR)


def test_a_passed_connection_keeps_its_settings_and_must_not_be_in_a_transaction(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE scratch (x TEXT)")
    conn.execute("INSERT INTO scratch VALUES ('1')")
    assert conn.in_transaction
    with pytest.raises(MigrationError, match="open transaction"):
        migrate_up(conn, SCHEMA_DIR)
    conn.commit()
    assert migrate_up(conn, SCHEMA_DIR) == [1]
    assert conn.isolation_level is not None and conn.isolation_level.upper() in ("", "DEFERRED")
    assert [s.state for s in status(conn, SCHEMA_DIR)] == ["applied"]
    conn.close()


def test_a_file_that_is_not_sqlite_is_a_target_error(db: Path) -> None:
    db.write_bytes(b"this is not a database, just some bytes " * 50)
    with pytest.raises(TargetError, match="cannot be used as a SQLite database"):
        migrate_up(db, SCHEMA_DIR)


def test_schema_checksum_follows_file_content_and_names(schema_copy: Path) -> None:
    a = schema_checksum(schema_copy)
    assert a == schema_checksum(schema_copy)
    f = schema_copy / "001_initial_schema.sql"
    f.write_text(f.read_text() + "\n")
    b = schema_checksum(schema_copy)
    assert b != a
    f.rename(schema_copy / "001_renamed.sql")
    assert schema_checksum(schema_copy) not in (a, b)


def test_app_pragmas_are_the_apps_settings(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    apply_app_pragmas(conn)
    got = {
        p: conn.execute(f"PRAGMA {p}").fetchone()[0]
        for p in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "cache_size", "temp_store")
    }
    assert got == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 5000,
        "cache_size": -65536,
        "temp_store": 2,
    }
    apply_bulk_load_pragmas(conn)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 0
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 0
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("BEGIN")
    with pytest.raises(TargetError, match="inside a transaction"):
        apply_app_pragmas(conn)
    conn.execute("ROLLBACK")
    conn.close()


def test_status_leaves_no_files_beside_a_wal_target(db: Path) -> None:
    migrate_up(db, SCHEMA_DIR)
    conn = sqlite3.connect(db, isolation_level=None)
    apply_app_pragmas(conn)
    conn.close()
    before = sorted(p.name for p in db.parent.iterdir())
    assert [s.state for s in status(db, SCHEMA_DIR)] == ["applied"]
    assert sorted(p.name for p in db.parent.iterdir()) == before == ["target.db"]

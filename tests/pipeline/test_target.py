from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.target import (
    TargetForeignKey,
    TargetSchema,
    load_target_schema,
    parse_check_in_lists,
    storage_for_declared_type,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "target_schema"


@pytest.fixture(scope="module")
def schema() -> TargetSchema:
    return load_target_schema(SCHEMA_DIR)


def _one_migration(tmp_path: Path, up: str) -> TargetSchema:
    (tmp_path / "001_t.sql").write_text("-- migrate:up\n" + up, encoding="utf-8")
    return load_target_schema(tmp_path)


def test_only_the_app_tables_are_read(schema: TargetSchema) -> None:
    assert len(schema.tables) == 13
    assert not any(n.startswith(("_", "sqlite_")) for n in schema.tables)


def test_allowed_values_come_from_the_check_constraints(schema: TargetSchema) -> None:
    assert schema.table("user_roles").column("role").allowed_values == ("editor", "client", "agency")
    assert schema.table("profiles").column("subscription_tier").allowed_values == ("basic", "pro", "premium")
    assert schema.table("payments").column("status").allowed_values == ("pending", "paid", "overdue")
    assert schema.table("editors").column("employment_type").allowed_values == ("fulltime", "freelance")
    assert schema.table("projects").column("status").allowed_values is None


def test_foreign_keys_of_projects(schema: TargetSchema) -> None:
    assert set(schema.table("projects").foreign_keys) == {
        TargetForeignKey(("creator_id",), "users", ("id",), "CASCADE"),
        TargetForeignKey(("parent_project_id",), "projects", ("id",), "CASCADE"),
    }
    assert TargetForeignKey(("user_id",), "users", ("id",), "SET NULL") in schema.table("editors").foreign_keys
    assert TargetForeignKey(("uploaded_by",), "profiles", ("id",), "NO ACTION") in (
        schema.table("video_versions").foreign_keys
    )


def test_unique_column_sets(schema: TargetSchema) -> None:
    assert schema.table("user_roles").unique == (("user_id", "role"),)
    assert schema.table("project_clients").unique == (("project_id", "client_id"),)
    assert schema.table("users").unique == (("email",),)
    assert schema.table("project_types").unique == (("name",),)
    assert schema.table("password_reset_tokens").unique == (("token",),)
    assert schema.table("messages").unique == ()


def test_columns_storage_notnull_default_and_pk(schema: TargetSchema) -> None:
    projects = schema.table("projects")
    assert projects.primary_key == ("id",)
    assert projects.column("fee").storage == "REAL"
    assert projects.column("deadline").storage == "TEXT"
    assert projects.column("is_subproject").storage == "INTEGER"
    assert projects.column("creator_id").notnull
    vv = schema.table("video_versions")
    assert (vv.column("version_number").storage, vv.column("is_approved").storage) == ("INTEGER", "INTEGER")
    assert schema.table("users").column("created_at").default == "datetime('now')"
    assert schema.table("database_config").column("config").default == "'{}'"
    assert [c.name for c in schema.table("user_roles").columns] == ["id", "user_id", "role", "created_at"]
    assert schema.numeric_affinity_columns() == []


def test_dependency_order_puts_parents_first(schema: TargetSchema) -> None:
    order = schema.dependency_order()
    assert sorted(order) == sorted(schema.tables)
    assert order.index("users") < order.index("profiles") < order.index("messages")
    assert order.index("projects") < order.index("messages")
    for table in schema.tables.values():
        for fk in table.foreign_keys:
            if fk.parent != table.name:
                assert order.index(fk.parent) < order.index(table.name), (fk.parent, table.name)
    assert order == load_target_schema(SCHEMA_DIR).dependency_order()


def test_a_cycle_is_an_error_naming_only_the_tables_in_it(tmp_path: Path) -> None:
    s = _one_migration(
        tmp_path,
        "CREATE TABLE a (id TEXT PRIMARY KEY, b_id TEXT REFERENCES b(id));\n"
        "CREATE TABLE b (id TEXT PRIMARY KEY, a_id TEXT REFERENCES a(id));\n"
        "CREATE TABLE c (id TEXT PRIMARY KEY, a_id TEXT REFERENCES a(id));\n",
    )
    with pytest.raises(ConfigError, match=r"cycle among tables a, b;"):
        s.dependency_order()


@pytest.mark.parametrize(
    ("decl", "storage", "affinity"),
    [
        ("TEXT", "TEXT", "TEXT"),
        ("VARCHAR(10)", "TEXT", "TEXT"),
        ("INTEGER", "INTEGER", "INTEGER"),
        ("BIGINT", "INTEGER", "INTEGER"),
        ("REAL", "REAL", "REAL"),
        ("DOUBLE PRECISION", "REAL", "REAL"),
        ("FLOAT", "REAL", "REAL"),
        ("BLOB", "BLOB", "BLOB"),
        ("", "BLOB", "BLOB"),
        ("numeric(10,2)", "TEXT", "NUMERIC"),
        ("boolean", "TEXT", "NUMERIC"),
        ("uuid", "TEXT", "NUMERIC"),
        ("json", "TEXT", "NUMERIC"),
        ("POINT", "INTEGER", "INTEGER"),
    ],
)
def test_storage_follows_sqlite_affinity_rules(decl: str, storage: str, affinity: str) -> None:
    assert storage_for_declared_type(decl) == (storage, affinity)


def test_numeric_affinity_columns_are_flagged(tmp_path: Path) -> None:
    s = _one_migration(
        tmp_path,
        "CREATE TABLE t (id TEXT PRIMARY KEY, price numeric(10,2), ok boolean, ref uuid, n INTEGER, x);\n",
    )
    t = s.table("t")
    assert t.column("price").storage == "TEXT" and t.column("price").numeric_affinity
    assert not t.column("n").numeric_affinity
    assert t.column("x").storage == "BLOB"
    assert s.numeric_affinity_columns() == [("t", "price"), ("t", "ok"), ("t", "ref")]


def test_check_lists_are_parsed_robustly() -> None:
    sql = """CREATE TABLE t (
      id TEXT PRIMARY KEY,
      "Kind" TEXT, [mode] TEXT, `flag` TEXT, s TEXT, n TEXT, both_ TEXT,
      CONSTRAINT k CHECK ( "Kind"
          IN
        ( 'a' ,  'it''s' ) ),
      CHECK(mode in('x','y')),
      CHECK (`flag` IN ('on', /* a comment ) */ 'off')), -- CHECK (s IN ('nope'))
      CHECK (s NOT IN ('z')),
      CHECK (length(n) > 2),
      CHECK (n IN ('p', upper('q'))),
      CHECK (both_ IN ('1', '2', '3')), CHECK (both_ IN ('3', '2'))
    )"""
    assert parse_check_in_lists(sql) == {
        "kind": ("a", "it's"),
        "mode": ("x", "y"),
        "flag": ("on", "off"),
        "both_": ("2", "3"),
    }


def test_quoted_and_mixed_case_check_columns_reach_their_column(tmp_path: Path) -> None:
    s = _one_migration(
        tmp_path,
        "CREATE TABLE t (id TEXT PRIMARY KEY, \"Kind\" TEXT,\n  CHECK (\"Kind\"\n IN ('a',\n'b')));\n",
    )
    assert s.table("t").column("Kind").allowed_values == ("a", "b")


def test_generated_and_implicit_foreign_key_columns(tmp_path: Path) -> None:
    s = _one_migration(
        tmp_path,
        "CREATE TABLE p (k1 TEXT, k2 TEXT, PRIMARY KEY (k2, k1));\n"
        "CREATE TABLE c (id TEXT PRIMARY KEY, a TEXT, b TEXT, n INTEGER,\n"
        "  twice INTEGER GENERATED ALWAYS AS (n * 2) STORED,\n"
        "  FOREIGN KEY (a, b) REFERENCES p ON DELETE SET NULL,\n"
        "  UNIQUE (b, a));\n"
        "CREATE UNIQUE INDEX c_n ON c(n);\n"
        "CREATE UNIQUE INDEX c_expr ON c(lower(a));\n"
        "CREATE UNIQUE INDEX c_partial ON c(b) WHERE b IS NOT NULL;\n",
    )
    c = s.table("c")
    assert [col.name for col in c.columns] == ["id", "a", "b", "n"]
    assert c.generated_columns == ("twice",)
    assert c.foreign_keys == (TargetForeignKey(("a", "b"), "p", ("k2", "k1"), "SET NULL"),)
    assert c.unique == (("b", "a"), ("n",))
    assert s.table("p").primary_key == ("k2", "k1")


def test_strict_tables_and_lookup_errors(tmp_path: Path) -> None:
    s = _one_migration(tmp_path, "CREATE TABLE t (id TEXT PRIMARY KEY, v ANY, n INT) STRICT;\n")
    t = s.table("t")
    assert t.strict and not t.without_rowid
    assert (t.column("v").storage, t.column("n").storage) == ("BLOB", "INTEGER")
    with pytest.raises(KeyError, match="no table 'nope'"):
        s.table("nope")
    with pytest.raises(KeyError, match="no column 'nope'"):
        t.column("nope")
    assert TargetSchema.from_migrations(tmp_path) == s

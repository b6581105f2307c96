from __future__ import annotations

import datetime
import random
import sqlite3
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.checks import (
    CheckResult,
    TableChecksum,
    checksum_parquet,
    checksum_result,
    checksum_rows,
    checksum_sqlite,
    combine_checksums,
    count_equation,
    count_result,
    count_rows,
    equation_result,
    foreign_key_report,
    foreign_key_results,
    foreign_key_violations,
    integrity_check,
    integrity_result,
    quick_check,
    row_digest,
)

COLUMNS = ("id", "n", "amount", "note", "payload")
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("n", pa.int64()),
        ("amount", pa.float64()),
        ("note", pa.string()),
        ("payload", pa.binary()),
    ]
)
DDL = "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, amount REAL, note TEXT, payload BLOB)"

Row = tuple[object, ...]


def typed_rows() -> list[Row]:
    return [
        ("a", 1, 0.1, "plain", b"\x00\x01\x02"),
        ("b", None, None, None, None),
        ("c", -(2**62), 1e300, "Zoë ✓ 𝄞 café", b""),
        ("d", 0, -0.0, "", b"\xff" * 300),
        ("e", 2**63 - 1, 12.5, "0.10", b"0.10"),
        ("f", 42, 3.0, "line\nbreak 'quoted' \"dq\"", None),
        ("g", 7, 1.0 / 3.0, "日本語テキスト", bytes(range(256))),
    ]


def write_parquet(path: Path, rows: Sequence[Row], row_group_size: int = 2) -> Path:
    columns: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in COLUMNS]
    table = pa.Table.from_arrays(
        [pa.array(list(col), type=field.type) for col, field in zip(columns, SCHEMA, strict=True)],
        schema=SCHEMA,
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def sqlite_with(rows: Sequence[Row], ddl: str = DDL) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute(ddl)
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    return conn


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    c = sqlite_with(typed_rows())
    yield c
    c.close()


def test_parquet_and_sqlite_agree_on_typed_data(tmp_path: Path, conn: sqlite3.Connection) -> None:
    rows = typed_rows()
    parts = [
        write_parquet(tmp_path / "p1.parquet", rows[:3]),
        write_parquet(tmp_path / "p2.parquet", rows[3:]),
    ]
    from_parquet = checksum_parquet(parts, COLUMNS)
    from_sqlite = checksum_sqlite(conn, "t", COLUMNS)
    assert from_parquet == from_sqlite
    assert from_parquet.rows == len(rows)
    assert len(from_parquet.digest) == 16
    assert from_parquet == checksum_rows(rows)


def test_checksum_reads_columns_by_name_not_position(tmp_path: Path, conn: sqlite3.Connection) -> None:
    path = write_parquet(tmp_path / "p.parquet", typed_rows())
    reordered = ("payload", "id", "amount")
    assert checksum_parquet([path], reordered) == checksum_sqlite(conn, "t", reordered)
    assert checksum_parquet([path], reordered) != checksum_parquet([path], ("id", "payload", "amount"))


def test_changed_value_changes_checksum(conn: sqlite3.Connection) -> None:
    before = checksum_sqlite(conn, "t", COLUMNS)
    conn.execute("UPDATE t SET note = 'plain ' WHERE id = 'a'")
    after = checksum_sqlite(conn, "t", COLUMNS)
    assert after.rows == before.rows
    assert after.digest != before.digest


def test_missing_row_changes_checksum(tmp_path: Path, conn: sqlite3.Connection) -> None:
    expected = checksum_parquet([write_parquet(tmp_path / "p.parquet", typed_rows())], COLUMNS)
    conn.execute("DELETE FROM t WHERE id = 'g'")
    actual = checksum_sqlite(conn, "t", COLUMNS)
    assert actual.rows == expected.rows - 1
    assert actual.digest != expected.digest


def test_duplicated_row_in_place_of_another_changes_checksum() -> None:
    rows = typed_rows()
    conn = sqlite_with(rows, DDL.replace(" PRIMARY KEY", ""))
    expected = checksum_sqlite(conn, "t", COLUMNS)
    conn.execute("DELETE FROM t WHERE id = 'b'")
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows[0])
    actual = checksum_sqlite(conn, "t", COLUMNS)
    assert actual.rows == expected.rows
    assert actual.digest != expected.digest


def test_numeric_affinity_rewriting_text_is_caught(tmp_path: Path) -> None:
    rows: list[Row] = [("x", 1, 1.0, "0.10", None), ("y", 2, 2.0, "007", None)]
    expected = checksum_parquet([write_parquet(tmp_path / "p.parquet", rows)], COLUMNS)

    text_column = sqlite_with(rows)
    assert checksum_sqlite(text_column, "t", COLUMNS) == expected

    numeric_column = sqlite_with(rows, DDL.replace("note TEXT", "note NUMERIC"))
    stored = numeric_column.execute("SELECT note, typeof(note) FROM t ORDER BY id").fetchall()
    assert stored == [(0.1, "real"), (7, "integer")]
    assert checksum_sqlite(numeric_column, "t", COLUMNS) != expected


def test_int_stored_as_text_is_caught(tmp_path: Path) -> None:
    rows: list[Row] = [("x", 5, 1.5, "n", None)]
    expected = checksum_parquet([write_parquet(tmp_path / "p.parquet", rows)], COLUMNS)
    as_text = sqlite_with(rows, DDL.replace("n INTEGER", "n TEXT"))
    assert as_text.execute("SELECT typeof(n) FROM t").fetchone() == ("text",)
    assert checksum_sqlite(as_text, "t", COLUMNS) != expected


def test_order_and_batching_do_not_matter(tmp_path: Path) -> None:
    rows = [(f"id{i:05d}", i, i / 7, f"note {i}", str(i).encode()) for i in range(3000)]
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    one = checksum_parquet([write_parquet(tmp_path / "one.parquet", rows, row_group_size=1000)], COLUMNS)
    parts = [
        write_parquet(tmp_path / f"part{i}.parquet", shuffled[i * 700 : (i + 1) * 700], row_group_size=97)
        for i in range(5)
    ]
    many = checksum_parquet(reversed(parts), COLUMNS)
    assert one == many
    conn = sqlite_with(shuffled)
    assert checksum_sqlite(conn, "t", COLUMNS) == one
    halves = [checksum_rows(rows[:1234]), checksum_rows(rows[1234:])]
    assert combine_checksums(halves) == one


def test_row_digest_separates_field_boundaries_and_storage_classes() -> None:
    assert row_digest(("a", "bc")) != row_digest(("ab", "c"))
    assert row_digest(("a", "")) != row_digest(("a",))
    distinct = [(5,), ("5",), (5.0,), (b"5",), (None,), ("",), (b"",), ("N",), (0,), (0.0,)]
    assert len({row_digest(r) for r in distinct}) == len(distinct)
    assert row_digest((0.1,)) != row_digest(("0.10",))
    assert row_digest((-0.0,)) == row_digest((0.0,))
    assert row_digest((True,)) == row_digest((1,))
    assert row_digest((bytearray(b"ab"),)) == row_digest((b"ab",))
    assert 0 <= row_digest(("x",)) < 2**64


@pytest.mark.parametrize("value", [Decimal("0.10"), datetime.date(2024, 1, 1), [1, 2]])
def test_row_digest_refuses_values_sqlite_cannot_hold(value: object) -> None:
    with pytest.raises(TypeError, match="cannot checksum"):
        row_digest(("ok", value))


def test_checksum_parquet_names_missing_columns(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "p.parquet", typed_rows())
    with pytest.raises(ValueError, match="nope"):
        checksum_parquet([path], ("id", "nope"))


def test_empty_inputs_give_the_zero_checksum(tmp_path: Path) -> None:
    empty = TableChecksum(rows=0, digest="0" * 16)
    assert checksum_parquet([], COLUMNS) == empty
    assert checksum_parquet([write_parquet(tmp_path / "e.parquet", [])], COLUMNS) == empty
    assert checksum_sqlite(sqlite_with([]), "t", COLUMNS) == empty


FK_DDL = """
CREATE TABLE profiles (id TEXT PRIMARY KEY);
CREATE TABLE projects (id TEXT PRIMARY KEY, parent_project_id TEXT REFERENCES projects(id));
CREATE TABLE messages (
  id TEXT PRIMARY KEY,
  project_id TEXT REFERENCES projects(id),
  sender_id TEXT NOT NULL REFERENCES profiles(id),
  recipient_id TEXT REFERENCES profiles(id)
);
CREATE TABLE tags (project_id TEXT REFERENCES projects(id), tag TEXT);
CREATE TABLE pairs (a TEXT, b TEXT, project_id TEXT REFERENCES projects(id), PRIMARY KEY (a, b))
  WITHOUT ROWID;
"""


@pytest.fixture
def fk_db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    conn.executescript(FK_DDL)
    conn.executemany("INSERT INTO profiles VALUES (?)", [("u1",), ("u2",)])
    conn.executemany("INSERT INTO projects VALUES (?, ?)", [("p1", None), ("p2", "p1"), ("p3", "gone")])
    conn.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?)",
        [
            ("m1", "p1", "u1", "u2"),
            ("m2", "orphan-project", "u1", None),
            ("m3", "p2", "ghost-sender", "ghost-recipient"),
            ("m4", "orphan-2", "u2", "u1"),
        ],
    )
    conn.executemany("INSERT INTO tags VALUES (?, ?)", [("p1", "ok"), ("nowhere", "bad")])
    conn.executemany("INSERT INTO pairs VALUES (?, ?, ?)", [("k", "1", "p1"), ("k", "2", "missing")])
    yield conn
    conn.close()


def test_foreign_key_violations_name_child_keys_and_columns(fk_db: sqlite3.Connection) -> None:
    violations = foreign_key_violations(fk_db)
    found = {(v.table, v.key_text, v.columns, v.parent) for v in violations}
    assert ("messages", "m2", ("project_id",), "projects") in found
    assert ("messages", "m4", ("project_id",), "projects") in found
    assert ("messages", "m3", ("sender_id",), "profiles") in found
    assert ("messages", "m3", ("recipient_id",), "profiles") in found
    assert ("projects", "p3", ("parent_project_id",), "projects") in found
    m2 = next(v for v in violations if v.key_text == "m2")
    assert m2.values == ("orphan-project",)
    assert m2.key_columns == ("id",)
    assert m2.parent_columns == ("id",)
    assert "m2" in m2.describe() and "orphan-project" in m2.describe()


def test_foreign_key_violation_without_primary_key_uses_rowid(fk_db: sqlite3.Connection) -> None:
    tag = next(v for v in foreign_key_violations(fk_db) if v.table == "tags")
    assert tag.key_columns == ("rowid",)
    assert tag.key == (tag.rowid,)
    assert tag.values == ("nowhere",)


def test_foreign_key_violation_in_without_rowid_table_is_still_counted(fk_db: sqlite3.Connection) -> None:
    report = foreign_key_report(fk_db)
    assert report.counts[("pairs", "projects")] == 1
    pair = next(v for v in report.violations if v.table == "pairs")
    assert pair.rowid is None and pair.key is None


def test_foreign_key_counts_are_complete_while_samples_are_limited(fk_db: sqlite3.Connection) -> None:
    fk_db.executemany(
        "INSERT INTO messages VALUES (?, ?, 'u1', NULL)", [(f"x{i}", f"lost{i}") for i in range(50)]
    )
    report = foreign_key_report(fk_db, limit_per_table=3)
    assert report.counts[("messages", "projects")] == 52
    assert report.counts[("messages", "profiles")] == 2
    assert sum(1 for v in report.violations if v.table == "messages") == 3
    by_fk = {k: n for k, n in report.counts_by_fk.items() if k[0] == "messages"}
    assert sorted(by_fk.values()) == [1, 1, 52]
    assert report.total == 52 + 2 + 1 + 1 + 1


def test_no_foreign_key_violations_in_a_clean_database() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(FK_DDL)
    conn.execute("INSERT INTO projects VALUES ('p1', NULL)")
    conn.execute("INSERT INTO tags VALUES ('p1', 'fine')")
    assert foreign_key_violations(conn) == []
    results = foreign_key_results(foreign_key_report(conn), tables=["projects", "tags"])
    assert [(r.table, r.ok) for r in results] == [("projects", True), ("tags", True)]


def test_foreign_key_results_fail_per_table_with_sample_keys(fk_db: sqlite3.Connection) -> None:
    results = {r.table: r for r in foreign_key_results(foreign_key_report(fk_db), tables=["profiles"])}
    assert results["profiles"].ok
    assert not results["messages"].ok
    assert "2 row(s) -> projects" in results["messages"].detail
    assert "m2" in results["messages"].detail


def test_integrity_and_quick_check_pass_on_a_sound_file(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    conn.execute("CREATE TABLE t (a INTEGER NOT NULL CHECK (a > 0))")
    conn.execute("CREATE INDEX t_a ON t(a)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1, 500)])
    conn.commit()
    assert integrity_check(conn) == ["ok"]
    assert quick_check(conn) == ["ok"]
    assert integrity_result(conn).ok


def test_integrity_check_reports_a_violated_check_constraint() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER CHECK (a > 0))")
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("INSERT INTO t VALUES (-1)")
    conn.execute("PRAGMA ignore_check_constraints = OFF")
    lines = integrity_check(conn)
    assert lines != ["ok"]
    assert any("CHECK" in line for line in lines)
    result = integrity_result(conn)
    assert not result.ok and "CHECK" in result.detail


def test_count_rows_and_count_result(conn: sqlite3.Connection) -> None:
    assert count_rows(conn, "t") == len(typed_rows())
    assert count_result("t", 7, count_rows(conn, "t")).ok
    bad = count_result("t", 8, 7)
    assert not bad.ok and "expected 8" in bad.detail


def test_quoted_identifiers_survive_odd_names() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE "we""ird table" ("select" TEXT, "a b" INTEGER)')
    conn.execute('INSERT INTO "we""ird table" VALUES (?, ?)', ("v", 1))
    assert count_rows(conn, 'we"ird table') == 1
    assert checksum_sqlite(conn, 'we"ird table', ("select", "a b")) == checksum_rows([("v", 1)])


@pytest.mark.parametrize(
    ("counts", "ok"),
    [
        ((10, 7, 2, 1), True),
        ((0, 0, 0, 0), True),
        ((10, 7, 2, 0), False),
        ((10, 8, 2, 1), False),
        ((1, 2, -1, 0), False),
    ],
)
def test_count_equation(counts: tuple[int, int, int, int], ok: bool) -> None:
    assert count_equation(*counts) is ok
    result = equation_result("t", *counts)
    assert result.ok is ok
    assert ("!=" in result.detail) is not ok


def test_checksum_result_compares_rows_and_digest() -> None:
    a = checksum_rows([("x", 1)])
    b = checksum_rows([("x", 2)])
    assert checksum_result("t", a, a).ok
    mismatch = checksum_result("t", a, b)
    assert not mismatch.ok and a.digest in mismatch.detail and b.digest in mismatch.detail


def test_check_result_dict_is_redacted() -> None:
    secret_hash = "$2b$12$" + "A" * 53
    result = CheckResult(
        "foreign_keys", "users", False, f"row u1 has {secret_hash} via postgres://me:hunter2@db/x"
    )
    as_dict = result.to_dict()
    assert secret_hash not in as_dict["detail"]
    assert "hunter2" not in as_dict["detail"]
    assert as_dict["name"] == "foreign_keys" and as_dict["ok"] is False


def _reference_digest(values: Sequence[object]) -> int:
    """The encoding as first written (one _encode_field per value), to pin the fast paths to it."""
    import hashlib

    from pipeline.checks import _encode_field

    encoded = b"".join(_encode_field(v) for v in values)
    return int.from_bytes(hashlib.blake2b(encoded, digest_size=8).digest(), "big")


def test_fast_paths_keep_the_encoding(tmp_path: Path) -> None:
    from pipeline.checks import checksum_arrow

    rows = typed_rows() + [(str(i), random.Random(i).randint(-(2**63), 2**63 - 1), None, "é" * i, None)
                           for i in range(300)]
    expected = sum(_reference_digest(r) for r in rows) % (1 << 64)
    assert all(row_digest(r) == _reference_digest(r) for r in rows)
    assert int(checksum_rows(rows).digest, 16) == expected
    table = pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in rows], schema=SCHEMA)
    assert int(checksum_arrow(table, COLUMNS).digest, 16) == expected
    large = table.cast(pa.schema([("id", pa.large_string()), ("n", pa.int64()), ("amount", pa.float64()),
                                  ("note", pa.large_string()), ("payload", pa.large_binary())]))
    assert checksum_arrow(large, COLUMNS) == checksum_arrow(table, COLUMNS)
    flags = pa.table({"b": pa.array([True, False, None])})
    assert checksum_arrow(flags, ["b"]) == checksum_rows([(True,), (False,), (None,)]) == checksum_rows(
        [(1,), (0,), (None,)])
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE m (a, b)")  # no affinity: a column may mix storage classes
    mixed = [(1, "1"), ("1", 1), (1.5, b"x"), (None, None), ("z", 2**40)]
    conn.executemany("INSERT INTO m VALUES (?, ?)", mixed)
    assert checksum_sqlite(conn, "m", ("a", "b")) == checksum_rows(mixed)


def test_run_checks_use_stored_batch_checksums_or_read_the_files(tmp_path: Path) -> None:
    from pipeline.runner import _transformed_checksum

    rows = typed_rows()
    path = write_parquet(tmp_path / "p.parquet", rows)
    true = checksum_parquet([path], COLUMNS)
    stored = {"b1": {"checksum": {"columns": list(COLUMNS), "rows": 1, "digest": "00000000000000ff"}}}
    assert _transformed_checksum(stored, [path], list(COLUMNS)) == TableChecksum(1, "00000000000000ff")
    assert _transformed_checksum({"b1": {}}, [path], list(COLUMNS)) == true  # an older manifest
    other = {"b1": {"checksum": {"columns": ["id"], "rows": 1, "digest": "00000000000000ff"}}}
    assert _transformed_checksum(other, [path], list(COLUMNS)) == true

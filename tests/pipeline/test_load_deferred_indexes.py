"""Secondary indexes are dropped for the bulk load and rebuilt identically, also across a resume."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipeline.load import defer_secondary_indexes, prepare_staging, restore_deferred_indexes
from pipeline.migrations import migrate_up

MIGRATIONS = Path(__file__).resolve().parents[2] / "target_schema"


def _schema(path: Path) -> set[tuple[str, str, str | None]]:
    with sqlite3.connect(path) as conn:
        return {(str(t), str(n), s) for t, n, s in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name NOT LIKE '\\_supamigrate\\_%' ESCAPE '\\'")}


def _indexes(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_deferred_indexes_are_rebuilt_exactly(tmp_path: Path) -> None:
    reference = tmp_path / "reference.db"
    with sqlite3.connect(reference, isolation_level=None) as conn:
        migrate_up(conn, MIGRATIONS)
    staging = tmp_path / "staging.db"
    prepare_staging(staging, MIGRATIONS)
    with sqlite3.connect(staging, isolation_level=None) as conn:
        deferred = [str(r[0]) for r in conn.execute("SELECT name FROM _supamigrate_deferred_indexes")]
        assert "idx_messages_sender_id" in deferred
        assert not _indexes(conn) & set(deferred)
        # unique constraints keep their indexes during the load
        assert any(name.startswith("sqlite_autoindex_users") for name in _indexes(conn))
        assert sorted(restore_deferred_indexes(conn)) == sorted(deferred)
        assert restore_deferred_indexes(conn) == []
    assert _schema(staging) == _schema(reference)
    ref = {x for x in _schema(reference) if x[0] == "index"}
    assert {x for x in _schema(staging) if x[0] == "index"} == ref


def test_a_resumed_load_keeps_indexes_deferred_until_it_finishes(tmp_path: Path) -> None:
    staging = tmp_path / "staging.db"
    prepare_staging(staging, MIGRATIONS)
    with sqlite3.connect(staging, isolation_level=None) as conn:
        conn.execute("INSERT INTO _supamigrate_ledger VALUES ('users', 'b1', 0, 'x', 'now')")
    prepare_staging(staging, MIGRATIONS)          # the resumed run prepares the same file again
    with sqlite3.connect(staging, isolation_level=None) as conn:
        assert "idx_messages_sender_id" not in _indexes(conn)
        restore_deferred_indexes(conn)
        assert "idx_messages_sender_id" in _indexes(conn)
    prepare_staging(staging, MIGRATIONS)          # loaded once: a later resume does not drop them again
    with sqlite3.connect(staging, isolation_level=None) as conn:
        assert defer_secondary_indexes(conn) == []
        assert "idx_messages_sender_id" in _indexes(conn)

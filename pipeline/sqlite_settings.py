"""Connection settings for the two kinds of SQLite file we open.

The live target is opened the way the Xrozen app opens it, so checks see the database the app will see
(foreign keys enforced, WAL). The staging file is private to one run until the swap, so it trades
durability for speed: with synchronous OFF a killed process still loses nothing that was committed
(the pages are with the OS), and only a power loss can cost the staging file, which a fresh run
rebuilds; the live target is never written with these settings.
"""

from __future__ import annotations

import sqlite3

from pipeline.errors import TargetError

APP_BUSY_TIMEOUT_MS = 5000
APP_CACHE_SIZE_KIB = 65536
BULK_CACHE_SIZE_KIB = 16384  # 64 MB cost ~70 MB RSS and no speed (key-order inserts, one index build)


def _is_file_database(conn: sqlite3.Connection) -> bool:
    row = conn.execute("PRAGMA database_list").fetchone()
    return bool(row and row[2])


def _set_journal_wal(conn: sqlite3.Connection) -> None:
    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
    if mode != "wal" and _is_file_database(conn):
        raise TargetError(
            f"could not switch the SQLite file to WAL (journal_mode stayed {mode!r}); "
            "is it on a network filesystem or opened by another process in exclusive mode?"
        )


def _set_foreign_keys(conn: sqlite3.Connection, on: bool) -> None:
    if conn.in_transaction:
        raise TargetError("PRAGMA foreign_keys is ignored inside a transaction; set it before BEGIN")
    conn.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")
    if bool(conn.execute("PRAGMA foreign_keys").fetchone()[0]) != on:
        raise TargetError("this SQLite build does not support foreign key enforcement")


def apply_app_pragmas(conn: sqlite3.Connection) -> None:
    """The app's settings: WAL, synchronous NORMAL, foreign keys on, 5 s busy timeout, 64 MB cache,
    temp tables in memory."""
    _set_foreign_keys(conn, True)
    _set_journal_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA busy_timeout = {APP_BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size = -{APP_CACHE_SIZE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")


def apply_bulk_load_pragmas(conn: sqlite3.Connection) -> None:
    """Settings for the run's staging file, which nobody else reads while we load it: no fsync per
    commit, no foreign-key checks per row (the checks stage verifies them in one pass), a 64 MB cache."""
    _set_foreign_keys(conn, False)
    _set_journal_wal(conn)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute(f"PRAGMA busy_timeout = {APP_BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size = -{BULK_CACHE_SIZE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")

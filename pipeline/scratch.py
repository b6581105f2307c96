"""A private on-disk SQLite file per transformed table, for sets and maps that grow with the table.

The transform decides each batch against what the whole table holds (the profiles of every user, the
unique values taken so far, the settled self-references). Held as Python objects those grew with the
table: at 10M source rows the users table's profiles, auth ids and e-mails cost hundreds of MB. In a
SQLite file they cost what its page cache is allowed (`CACHE_KIB`) plus one batch of lookups.

The file lives in the run folder (0700) and is created 0600, since it can hold password hashes and
e-mail addresses. It is never trusted across processes: a file left by a killed run is deleted when
the table starts again, and everything is rebuilt from committed files, so a resume decides the same.
Rollback journal off and no fsync: losing the file loses nothing, the table's next attempt rebuilds it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.runs import RunDir, make_private_dir

SCRATCH_DIR = "scratch"
CACHE_KIB = 8192  # the lookups come a batch at a time, sorted by the B-tree: a small cache is enough


def _file_name(table: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", table) + ".sqlite3"


class Scratch:
    """One table's scratch file, opened on first use and deleted by `close` (or leaving the `with`)."""

    def __init__(self, run: RunDir, table: str) -> None:
        self.path = run.root / SCRATCH_DIR / _file_name(table)
        self._conn: sqlite3.Connection | None = None
        self._names = itertools.count(1)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def opened(self) -> bool:
        return self._conn is not None

    @property
    def db(self) -> sqlite3.Connection:
        """The connection (autocommit; write through `write`), creating a fresh private file first."""
        if self._conn is None:
            self._conn = _open_private(self.path)
        return self._conn

    def new_table(self, prefix: str) -> str:
        """A table name no other user of this scratch has (several sets share one file)."""
        return f"{prefix}_{next(self._names)}"

    def write(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """executemany in one transaction (autocommit would write the changed pages after every row)."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(sql, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def with_ids(self, table: str, ids: Iterable[Any], columns: str = "*") -> sqlite3.Cursor:
        """The rows of table (keyed by an `id` column) whose id is one of ids: one query per batch."""
        return self.db.execute(f"SELECT {columns} FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
                               (json_values(ids),))

    def close(self) -> None:
        """Close and delete the file (also one left by an earlier, killed attempt at the table)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        _remove(self.path)


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-journal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _open_private(path: Path) -> sqlite3.Connection:
    make_private_dir(path.parent)
    _remove(path)  # a killed attempt's file is never reused: its content is not known to be whole
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE",
                   f"cache_size = -{CACHE_KIB}",
                   # a batch's probe tables only: bounded by the batch, and no temp file outside the run
                   "temp_store = MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


def json_values(values: Iterable[Any]) -> str:
    """A JSON array of values for `json_each(?)`: one parameter for a whole batch of keys."""
    return json.dumps(list(values), ensure_ascii=False)


def fetch_in_chunks(cursor: sqlite3.Cursor, size: int = 10_000) -> Iterator[list[Any]]:
    """A query's rows a block at a time, so a whole table is never one Python list."""
    while True:
        rows = cursor.fetchmany(size)
        if not rows:
            return
        yield rows

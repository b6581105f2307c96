"""The raw ceilings the pipeline is measured against, on the same data as the run.

(a) Postgres: the same rows read with `COPY (SELECT cols FROM t) TO STDOUT`, bytes read and
discarded, so the figure is the server's and the wire's speed with no parsing on our side.
(b) SQLite: the run's own transformed Parquet rows inserted into a fresh file with the same target
schema (migrations, so the same indexes) and the staging file's pragmas, one `executemany` per table
in one transaction and nothing else: no ledger, no checks, no backups.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
from psycopg import sql

from pipeline.migrations import migrate_up
from pipeline.sqlite_settings import apply_bulk_load_pragmas


def _extract_columns(conn: psycopg.Connection[tuple[Any, ...]], schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
        " AND a.attgenerated = '' ORDER BY a.attnum",
        (schema, table),
    ).fetchall()
    return [str(r[0]) for r in rows]


def copy_ceiling(dsn: str, tables: list[str]) -> dict[str, Any]:
    """(a): COPY every table's extract columns to STDOUT and discard the bytes."""
    per_table: dict[str, dict[str, float]] = {}
    total_rows = 0
    total_bytes = 0
    t_all = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET extra_float_digits = 3")
        for qualified in tables:
            schema, name = qualified.split(".", 1)
            cols = _extract_columns(conn, schema, name)
            query = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in cols), sql.Identifier(schema, name))
            t0 = time.perf_counter()
            rows = 0
            nbytes = 0
            with conn.cursor() as cur, cur.copy(query) as copy:
                while data := copy.read():
                    rows += bytes(data).count(b"\n")
                    nbytes += len(data)
            secs = time.perf_counter() - t0
            per_table[qualified] = {"rows": rows, "bytes": nbytes, "seconds": round(secs, 4)}
            total_rows += rows
            total_bytes += nbytes
    secs = time.perf_counter() - t_all
    return {"rows": total_rows, "bytes": total_bytes, "seconds": round(secs, 4),
            "rows_per_second": round(total_rows / secs, 1), "mb_per_second": round(total_bytes / secs / 1e6, 2),
            "tables": per_table}


def _parquet_rows(files: list[Path]) -> Iterator[tuple[Any, ...]]:
    for f in files:
        pf = pq.ParquetFile(f)
        for rb in pf.iter_batches(batch_size=50_000):
            yield from zip(*[c.to_pylist() for c in rb.columns], strict=True)


def _transform_files(run_dir: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for d in sorted((run_dir / "transform").iterdir()):
        files = sorted(d.glob("*.parquet"))
        if files:
            out[d.name] = files
    return out


def insert_ceiling(run_dir: Path, migrations_dir: Path, db_path: Path) -> dict[str, Any]:
    """(b): the run's transformed rows, one executemany per table, all in one transaction.

    The Parquet-to-Python conversion is timed on its own too, so `insert_only` shows what SQLite
    itself costs; the headline figure includes the conversion, which any loader must do.
    """
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    tables = _transform_files(run_dir)
    t0 = time.perf_counter()
    convert_rows = sum(1 for t in tables.values() for _ in _parquet_rows(t))
    convert_s = time.perf_counter() - t0
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        apply_bulk_load_pragmas(conn)
        migrate_up(conn, migrations_dir)
        per_table: dict[str, dict[str, float]] = {}
        total = 0
        t_all = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for table, files in tables.items():
            names = pq.ParquetFile(files[0]).schema_arrow.names
            stmt = (f'INSERT INTO "{table}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
                    f"VALUES ({', '.join('?' * len(names))})")
            t0 = time.perf_counter()
            before = conn.total_changes
            conn.executemany(stmt, _parquet_rows(files))
            n = conn.total_changes - before
            per_table[table] = {"rows": n, "seconds": round(time.perf_counter() - t0, 4)}
            total += n
        conn.execute("COMMIT")
        secs = time.perf_counter() - t_all
    finally:
        conn.close()
    insert_only = max(secs - convert_s, 1e-9)
    return {"rows": total, "seconds": round(secs, 4), "rows_per_second": round(total / secs, 1),
            "convert_seconds": round(convert_s, 4), "convert_rows": convert_rows,
            "insert_only_rows_per_second": round(total / insert_only, 1),
            "db_bytes": db_path.stat().st_size, "tables": per_table}

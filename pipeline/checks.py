"""Post-load integrity checks: row counts, foreign keys, content checksums, SQLite's own checks.

The content checksum is the check that catches what counts cannot: a value SQLite's column affinity
rewrote on the way in ('0.10' into REAL 0.1, an integer kept as text), a row lost and another
duplicated. It is computed the same way over the transformed Parquet (what we meant to load) and over
the SQLite table (what is there), both typed as SQLite storage classes, and summed modulo 2**64 so
batches and rows may arrive in any order.
"""

from __future__ import annotations

import array
import hashlib
import sqlite3
import struct
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.redact import redact_text

_MOD = 1 << 64
_FETCH_ROWS = 5000
_PARQUET_BATCH_ROWS = 16384


_PACK_LENGTH = struct.Struct(">Q").pack
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


def _length(n: int) -> bytes:
    return _PACK_LENGTH(n)


def _encode_field(value: object) -> bytes:
    if value is None:
        return b"N"
    if type(value) is str:
        data = value.encode("utf-8")
        return b"s" + _length(len(data)) + data
    if type(value) is int or type(value) is bool:
        data = str(int(value)).encode("ascii")
        return b"i" + _length(len(data)) + data
    if type(value) is float:
        # SQLite stores -0.0 in a REAL column as 0.0; the sign of zero is not a lost value.
        data = (0.0 if value == 0.0 else value).hex().encode("ascii")
        return b"r" + _length(len(data)) + data
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return b"b" + _length(len(raw)) + raw
    if isinstance(value, str | int | float):
        return _encode_field(_plain(value))
    raise TypeError(
        f"cannot checksum a {type(value).__name__} value: only None/int/float/str/bytes "
        "(SQLite storage classes) can be compared"
    )


def _plain(value: str | int | float) -> object:
    """Subclasses (IntEnum, StrEnum, numpy.float64) hash as their base class, as SQLite stores them."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    return float(value)


def row_digest(values: Sequence[object]) -> int:
    """One row's 64-bit digest over a length-prefixed, storage-class-tagged encoding.

    The type tag makes integer 5 differ from text '5' and REAL 0.1 from text '0.10'; the length
    prefix makes ('a', 'bc') differ from ('ab', 'c').
    """
    parts: list[bytes] = []
    append = parts.append
    for v in values:
        # the common storage classes inline (same bytes as _encode_field), the rest through it
        t = type(v)
        if t is str:
            data = v.encode("utf-8")  # type: ignore[attr-defined]
            append(b"s" + _PACK_LENGTH(len(data)) + data)
        elif v is None:
            append(b"N")
        elif t is int:
            data = str(v).encode("ascii")
            append(b"i" + _PACK_LENGTH(len(data)) + data)
        else:
            append(_encode_field(v))
    return _from_bytes(_blake2b(b"".join(parts), digest_size=8).digest(), "big")


def _length_prefixes(lengths: pa.Array) -> pa.Array:
    """Each length as the 8 big-endian bytes `_length` gives it, built in C (no per-row Python)."""
    n = len(lengths)
    as_u64 = lengths.fill_null(0).cast(pa.uint64())
    words = array.array("Q")
    words.frombytes(as_u64.buffers()[1].to_pybytes()[as_u64.offset * 8:(as_u64.offset + n) * 8])
    if sys.byteorder == "little":
        words.byteswap()
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(8), n, [None, pa.py_buffer(words.tobytes())])
    return fixed.cast(pa.binary())


def _tagged(tag: bytes, data: pa.Array, lengths: pa.Array) -> pa.Array:
    typ = data.type
    joined = pc.binary_join_element_wise(pa.scalar(tag, typ), _length_prefixes(lengths).cast(typ), data,
                                         pa.scalar(b"", typ))
    return joined.fill_null(pa.scalar(b"N", joined.type))


def _encode_arrow_column(column: pa.Array) -> pa.Array:
    """`_encode_field` of every value of one Arrow column, as a binary array of the same length.

    Text, integer, boolean and binary columns are encoded by Arrow compute (an int64 cast to text is
    exactly `str(int)`); any other type goes value by value through `_encode_field`, so the bytes
    are always the ones `row_digest` hashes.
    """
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        data = column.cast(pa.large_binary() if pa.types.is_large_string(t) else pa.binary())
        return _tagged(b"s", data, pc.binary_length(data))
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        text = (column.cast(pa.int8()) if pa.types.is_boolean(t) else column).cast(pa.string())
        data = text.cast(pa.binary())
        return _tagged(b"i", data, pc.binary_length(data))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        data = column.cast(pa.large_binary() if pa.types.is_large_binary(t) else pa.binary())
        return _tagged(b"b", data, pc.binary_length(data))
    return pa.array([_encode_field(v) for v in column.to_pylist()], pa.binary())


def checksum_arrow(data: pa.Table | pa.RecordBatch, columns: Sequence[str]) -> TableChecksum:
    """Checksum of the given columns of an Arrow table: the same value `checksum_rows` gives for
    its rows as Python values, with the per-field encoding done column-wise by Arrow."""
    wanted = list(columns)
    if not wanted:
        raise ValueError("no columns to checksum")
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(f"no column(s) {', '.join(missing)} to checksum")
    total = 0
    rows = 0
    for start in range(0, table.num_rows, _PARQUET_BATCH_ROWS):
        part = table.slice(start, _PARQUET_BATCH_ROWS)
        total += _sum_digests([_encode_arrow_column(part.column(c).combine_chunks()) for c in wanted])
        rows += part.num_rows
    return TableChecksum(rows=rows, digest=f"{total % _MOD:016x}")


def _sum_digests(encoded: list[pa.Array]) -> int:
    """Sum (mod 2**64) of the row digests of rows whose fields are already encoded, column by column."""
    if any(pa.types.is_large_binary(e.type) for e in encoded):
        encoded = [e.cast(pa.large_binary()) for e in encoded]
    joined = encoded[0] if len(encoded) == 1 else pc.binary_join_element_wise(
        *encoded, pa.scalar(b"", encoded[0].type))
    total = 0
    for row in joined.to_pylist():
        total += _from_bytes(_blake2b(row, digest_size=8).digest(), "big")
    return total % _MOD


@dataclass(frozen=True)
class TableChecksum:
    """A table's row count and order-independent content digest (16 hex digits)."""

    rows: int
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "digest": self.digest}


class ChecksumAccumulator:
    """Adds rows one batch at a time, so a caller that already streams rows need not stream twice."""

    def __init__(self) -> None:
        self.rows = 0
        self.total = 0

    def add(self, row: Sequence[object]) -> None:
        self.total = (self.total + row_digest(row)) % _MOD
        self.rows += 1

    def add_rows(self, rows: Iterable[Sequence[object]]) -> None:
        total = self.total
        count = 0
        for row in rows:
            total += row_digest(row)
            count += 1
        self.total = total % _MOD
        self.rows += count

    def merge(self, other: ChecksumAccumulator) -> None:
        self.total = (self.total + other.total) % _MOD
        self.rows += other.rows

    def result(self) -> TableChecksum:
        return TableChecksum(rows=self.rows, digest=f"{self.total:016x}")


def checksum_rows(rows: Iterable[Sequence[object]]) -> TableChecksum:
    """Checksum of any iterable of rows; the building block of the Parquet and SQLite sides."""
    acc = ChecksumAccumulator()
    acc.add_rows(rows)
    return acc.result()


def combine_checksums(parts: Iterable[TableChecksum]) -> TableChecksum:
    """Checksums of disjoint row sets add up, so per-batch checksums can be stored and summed later."""
    rows = 0
    total = 0
    for part in parts:
        rows += part.rows
        total = (total + int(part.digest, 16)) % _MOD
    return TableChecksum(rows=rows, digest=f"{total:016x}")


def checksum_parquet(paths: Iterable[Path], columns: Sequence[str]) -> TableChecksum:
    """Checksum of the given columns over Parquet files, one record batch in memory at a time."""
    parts: list[TableChecksum] = []
    wanted = list(columns)
    if not wanted:
        raise ValueError("no columns to checksum")
    for path in paths:
        parquet = pq.ParquetFile(path)
        try:
            missing = [c for c in wanted if c not in parquet.schema_arrow.names]
            if missing:
                raise ValueError(f"{path.name}: no column(s) {', '.join(missing)} to checksum")
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=wanted):
                parts.append(checksum_arrow(batch, wanted))
        finally:
            parquet.close()
    return combine_checksums(parts)


def quote_ident(name: str) -> str:
    """Quote an SQLite identifier; table and column names come from schemas, never from users."""
    return '"' + name.replace('"', '""') + '"'


def checksum_sqlite(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> TableChecksum:
    """Checksum of the given columns of an SQLite table, streamed with fetchmany."""
    if not columns:
        raise ValueError(f"{table}: no columns to checksum")
    select = ", ".join(quote_ident(c) for c in columns)
    parts: list[TableChecksum] = []
    cursor = conn.execute(f"SELECT {select} FROM {quote_ident(table)}")
    try:
        while True:
            rows = cursor.fetchmany(_FETCH_ROWS)
            if not rows:
                break
            parts.append(TableChecksum(rows=len(rows), digest=f"{_sum_digests(_encoded_columns(rows)):016x}"))
    finally:
        cursor.close()
    return combine_checksums(parts)


def _encoded_columns(rows: list[Any]) -> list[pa.Array]:
    """The fetched rows column by column as `_encode_field` bytes, by the classes the values have.

    A column goes through Arrow as text or integer only when every value is a str (or every one an
    int) or None; anything else (REAL, BLOB, a column mixing classes, as SQLite allows) is encoded
    value by value, so each value keeps the storage class SQLite returned.
    """
    out: list[pa.Array] = []
    for values in zip(*rows, strict=True):
        kinds = set(map(type, values))
        kinds.discard(type(None))
        if kinds == {str}:
            out.append(_encode_arrow_column(pa.array(values, pa.string())))
        elif kinds == {int}:
            out.append(_encode_arrow_column(pa.array(values, pa.int64())))
        else:
            out.append(pa.array([_encode_field(v) for v in values], pa.binary()))
    return out


def count_rows(conn: sqlite3.Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()
    return int(row[0])


@dataclass(frozen=True)
class FkViolation:
    """One child row whose foreign key points at no parent row.

    key is the child's primary key (or its rowid when it declares none); None for a WITHOUT ROWID
    table, which PRAGMA foreign_key_check cannot point into.
    """

    table: str
    rowid: int | None
    parent: str
    fk_index: int
    columns: tuple[str, ...]
    parent_columns: tuple[str | None, ...]
    key_columns: tuple[str, ...]
    key: tuple[object, ...] | None
    values: tuple[object, ...] | None

    @property
    def key_text(self) -> str:
        if self.key is None:
            return "?" if self.rowid is None else f"rowid={self.rowid}"
        return ",".join("NULL" if v is None else str(v) for v in self.key)

    def describe(self) -> str:
        cols = ",".join(self.columns)
        vals = "?" if self.values is None else ",".join("NULL" if v is None else str(v) for v in self.values)
        parent_cols = ",".join(c or "<pk>" for c in self.parent_columns)
        return redact_text(
            f"{self.table} row {self.key_text}: {cols}={vals} has no match in {self.parent}({parent_cols})"
        )


@dataclass
class FkReport:
    """Samples of foreign key violations and their full counts.

    counts is per (child table, parent table) as the report groups them; counts_by_fk separates two
    keys of one table that point at the same parent (messages.sender_id and recipient_id).
    """

    violations: list[FkViolation] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    counts_by_fk: Counter[tuple[str, int]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class _FkShape:
    columns: tuple[str, ...]
    parent_columns: tuple[str | None, ...]


@dataclass(frozen=True)
class _TableShape:
    key_columns: tuple[str, ...]
    has_rowid: bool
    fks: dict[int, _FkShape]


def _table_shape(conn: sqlite3.Connection, table: str) -> _TableShape:
    info = conn.execute("SELECT name, pk FROM pragma_table_info(?)", (table,)).fetchall()
    pk = tuple(str(name) for name, pos in sorted((r for r in info if r[1]), key=lambda r: int(r[1])))
    fk_rows = conn.execute(
        'SELECT id, seq, "from", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq', (table,)
    ).fetchall()
    grouped: dict[int, tuple[list[str], list[str | None]]] = {}
    for fk_id, _seq, col_from, col_to in fk_rows:
        cols, parents = grouped.setdefault(int(fk_id), ([], []))
        cols.append(str(col_from))
        parents.append(None if col_to is None else str(col_to))
    fks = {k: _FkShape(tuple(c), tuple(p)) for k, (c, p) in grouped.items()}
    has_rowid = True
    try:
        conn.execute(f"SELECT rowid FROM {quote_ident(table)} LIMIT 0").fetchall()
    except sqlite3.OperationalError:
        has_rowid = False
    return _TableShape(key_columns=pk, has_rowid=has_rowid, fks=fks)


def foreign_key_report(conn: sqlite3.Connection, limit_per_table: int = 20) -> FkReport:
    """Every foreign key violation counted, the first limit_per_table per table described.

    Works with PRAGMA foreign_keys off, which is how the load inserts batches out of dependency
    order; the rows are counted as the PRAGMA streams them so a huge orphan set stays cheap.
    """
    report = FkReport()
    shapes: dict[str, _TableShape] = {}
    sampled: Counter[str] = Counter()
    cursor = conn.execute("PRAGMA foreign_key_check")
    try:
        for table, rowid, parent, fk_id in cursor:
            table = str(table)
            parent = str(parent)
            report.counts[(table, parent)] += 1
            report.counts_by_fk[(table, int(fk_id))] += 1
            if sampled[table] >= limit_per_table:
                continue
            sampled[table] += 1
            shape = shapes.get(table)
            if shape is None:
                shape = shapes[table] = _table_shape(conn, table)
            fk = shape.fks.get(int(fk_id), _FkShape((), ()))
            key_columns = shape.key_columns or (("rowid",) if shape.has_rowid else ())
            key: tuple[object, ...] | None = None
            values: tuple[object, ...] | None = None
            if rowid is not None and shape.has_rowid:
                select = [quote_ident(c) for c in (*key_columns, *fk.columns)]
                found = conn.execute(
                    f"SELECT {', '.join(select) or 'NULL'} FROM {quote_ident(table)} WHERE rowid = ?",
                    (rowid,),
                ).fetchone()
                if found is not None:
                    key = tuple(found[: len(key_columns)])
                    values = tuple(found[len(key_columns) :])
            report.violations.append(
                FkViolation(
                    table=table,
                    rowid=None if rowid is None else int(rowid),
                    parent=parent,
                    fk_index=int(fk_id),
                    columns=fk.columns,
                    parent_columns=fk.parent_columns,
                    key_columns=key_columns,
                    key=key,
                    values=values,
                )
            )
    finally:
        cursor.close()
    return report


def foreign_key_violations(conn: sqlite3.Connection, limit_per_table: int = 20) -> list[FkViolation]:
    """Sample violations only; use foreign_key_report for the full counts from the same scan."""
    return foreign_key_report(conn, limit_per_table).violations


def integrity_check(conn: sqlite3.Connection, max_errors: int = 100) -> list[str]:
    """PRAGMA integrity_check: ['ok'] for a sound file, else up to max_errors problem lines."""
    return [str(r[0]) for r in conn.execute(f"PRAGMA integrity_check({int(max_errors)})")]


def quick_check(conn: sqlite3.Connection, max_errors: int = 100) -> list[str]:
    """PRAGMA quick_check: integrity_check without the index-content cross checks, O(N) not O(N log N)."""
    return [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({int(max_errors)})")]


@dataclass(frozen=True)
class CheckResult:
    name: str
    table: str | None
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "table": self.table, "ok": self.ok, "detail": redact_text(self.detail)}


def count_equation(source_rows: int, loaded: int, rejected: int, filtered: int) -> bool:
    """Invariant 1: every source row is loaded, rejected or filtered, exactly once."""
    counts = (source_rows, loaded, rejected, filtered)
    return all(c >= 0 for c in counts) and source_rows == loaded + rejected + filtered


def integrity_result(conn: sqlite3.Connection, quick: bool = False) -> CheckResult:
    lines = quick_check(conn) if quick else integrity_check(conn)
    name = "quick_check" if quick else "integrity_check"
    ok = lines == ["ok"]
    more = f" (+{len(lines) - 10} more)" if len(lines) > 10 else ""
    detail = "ok" if ok else "; ".join(lines[:10]) + more
    return CheckResult(name=name, table=None, ok=ok, detail=redact_text(detail))


def foreign_key_results(report: FkReport, tables: Iterable[str] = ()) -> list[CheckResult]:
    """One result per table with violations, and a passing one per named table without any."""
    by_table: dict[str, list[tuple[str, int]]] = {}
    for (table, parent), n in sorted(report.counts.items()):
        by_table.setdefault(table, []).append((parent, n))
    results: list[CheckResult] = []
    for table in sorted(set(tables) - set(by_table)):
        results.append(CheckResult("foreign_keys", table, True, "no violations"))
    for table, parents in sorted(by_table.items()):
        samples = [v.key_text for v in report.violations if v.table == table][:5]
        parts = ", ".join(f"{n} row(s) -> {parent}" for parent, n in parents)
        detail = f"{parts}; sample keys: {', '.join(samples)}" if samples else parts
        results.append(CheckResult("foreign_keys", table, False, redact_text(detail)))
    return results


def count_result(table: str, expected: int, actual: int) -> CheckResult:
    ok = expected == actual
    detail = f"{actual} rows" if ok else f"expected {expected} rows, found {actual}"
    return CheckResult("row_count", table, ok, detail)


def checksum_result(table: str, expected: TableChecksum, actual: TableChecksum) -> CheckResult:
    ok = expected == actual
    if ok:
        detail = f"{actual.rows} rows, digest {actual.digest}"
    else:
        detail = (
            f"transformed data: {expected.rows} rows digest {expected.digest}; "
            f"target: {actual.rows} rows digest {actual.digest}"
        )
    return CheckResult("content_checksum", table, ok, detail)


def equation_result(table: str, source_rows: int, loaded: int, rejected: int, filtered: int) -> CheckResult:
    ok = count_equation(source_rows, loaded, rejected, filtered)
    relation = "=" if ok else "!="
    detail = f"source {source_rows} {relation} loaded {loaded} + rejected {rejected} + filtered {filtered}"
    return CheckResult("count_equation", table, ok, detail)

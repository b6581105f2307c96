"""The live Postgres source: one read-only snapshot, catalog introspection, keyset-paged COPY.

Everything is read inside a single REPEATABLE READ READ ONLY transaction so every table comes from
the same instant. Rows travel as COPY output (CSV for keyed tables, parsed by Arrow in C; text for
the ctid path) and are never parsed by the driver's type loaders, so the checkpoint
holds each type's own output function result (numeric scale, infinity, BC dates, huge years, 't'/'f')
byte-for-byte as pg_dump would write it; a `::text` cast would differ for boolean, char(n) and inet.
Paging is keyset on the primary key, never OFFSET, so a resume token stays valid after a restart and
each query costs the same however deep into the table it is.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from pipeline.errors import SourceError, TransientSourceError
from pipeline.redact import redact_dsn, redact_text
from pipeline.sources.base import Column, ForeignKey, SourceBatch, TableInfo

_SESSION_SETTINGS: tuple[tuple[str, str], ...] = (
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    # COPY bytes go to Arrow's CSV reader, which reads UTF-8 only.
    ("client_encoding", "UTF8"),
    # Empty search_path makes format_type() schema-qualify every non-pg_catalog type.
    ("search_path", ""),
    # Off makes a row-level security policy raise an error instead of silently hiding rows.
    ("row_security", "off"),
    ("statement_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("application_name", "supamigrate"),
)

_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::float8
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(schemas)s)
  AND NOT (c.relispartition AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_class r
        JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
        WHERE r.oid = pg_catalog.pg_partition_root(c.oid) AND r.oid <> c.oid
          AND rn.nspname = ANY(%(schemas)s)))
ORDER BY n.nspname, c.relname
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attgenerated <> '', a.atttypid
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_TYPES_SQL = """
SELECT t.oid, t.typtype, t.typelem, t.typbasetype, pg_catalog.format_type(t.typbasetype, t.typtypmod),
       t.typcategory
FROM pg_catalog.pg_type t
WHERE t.typtype IN ('e', 'd') OR (t.typcategory = 'A' AND t.typelem <> 0)
"""

_ENUMS_SQL = """
SELECT e.enumtypid, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
FROM pg_catalog.pg_enum e GROUP BY e.enumtypid
"""

_PKS_SQL = """
SELECT i.indrelid, array_agg(a.attname::text ORDER BY k.ord)
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisprimary AND i.indrelid = ANY(%(oids)s)
GROUP BY i.indrelid
"""

_FKS_SQL = """
SELECT con.conrelid, pn.nspname, pc.relname,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class pc ON pc.oid = con.confrelid
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s) AND con.conparentid = 0
ORDER BY con.conrelid, con.conname
"""

# Non-primary indexes over plain columns only: an expression or partial index has no exact SQLite
# counterpart (its SQL is Postgres's), so auto schema leaves it out rather than guess.
_INDEXES_SQL = """
SELECT i.indrelid, i.indisunique,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
             WHERE k.o <= i.indnkeyatts ORDER BY k.o)
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = ANY(%(oids)s) AND NOT i.indisprimary AND i.indpred IS NULL AND i.indexprs IS NULL
  AND i.indisvalid AND NOT (0 = ANY(i.indkey::int2[]))
ORDER BY i.indrelid, ic.relname
"""


@dataclass(frozen=True)
class _PgType:
    typtype: str
    elem: int
    basetype: int
    base_format: str
    category: str


def _scrub(text: str, dsn: str) -> str:
    """Redact a driver message; also drop the literal password in case libpq echoed it."""
    out = redact_text(text)
    try:
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        out = out.replace(str(password), "***")
    return out.strip()


class PostgresSource:
    """A Supabase (or any) Postgres database read at one consistent snapshot."""

    kind = "postgres"

    def __init__(
        self, dsn: str, *, schemas: tuple[str, ...] = ("public", "auth"), connect_timeout: int = 10
    ) -> None:
        self._dsn = dsn
        self.schemas = schemas
        self.connect_timeout = connect_timeout
        self.snapshot_id: str | None = None
        self.reconnects = 0
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._identity: dict[str, str] | None = None
        self._tables: list[TableInfo] | None = None

    @property
    def display_name(self) -> str:
        return redact_dsn(self._dsn)

    # connection ----------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        # Once a session existed, failing to get another one (a server restarting, a failover) is worth
        # a retry; a first connection that fails is a wrong DSN or an unreachable host, reported at once.
        again = self._identity is not None
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self.connect_timeout)
        except psycopg.Error as exc:
            kind = TransientSourceError if again and isinstance(exc, psycopg.OperationalError) else SourceError
            raise kind(
                f"cannot connect to {self.display_name}: {_scrub(str(exc), self._dsn)}"
            ) from None
        try:
            for name, value in _SESSION_SETTINGS:
                conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
            system_id = self._system_identifier(conn)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            self.snapshot_id = self._export_snapshot(conn)
            row = conn.execute(
                "SELECT pg_catalog.current_database()::text, pg_catalog.current_setting('server_version'),"
                " pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot())::text"
            ).fetchone()
        except psycopg.Error as exc:
            closed = conn.closed
            conn.close()
            lost = again and (closed or isinstance(exc, psycopg.OperationalError))
            raise (TransientSourceError if lost else SourceError)(
                f"cannot start a snapshot on {self.display_name}: {_scrub(str(exc), self._dsn)}"
            ) from None
        assert row is not None
        if again and self._identity is not None and self._identity["system_identifier"] != system_id:
            conn.close()
            raise SourceError(f"{self.display_name} is another server since the reconnect (system identifier "
                              f"{system_id}, was {self._identity['system_identifier']}); start over with --fresh")
        self._identity = {
            "kind": self.kind,
            "system_identifier": system_id,
            "database": row[0],
            "server_version": row[1],
            "snapshot_xmin": row[2],
        }
        self._conn = conn
        return conn

    def _system_identifier(self, conn: psycopg.Connection[tuple[Any, ...]]) -> str:
        """pg_control_system() needs privileges hosted Postgres rarely grants; fall back gracefully."""
        try:
            row = conn.execute("SELECT system_identifier::text FROM pg_catalog.pg_control_system()").fetchone()
            if row and row[0]:
                return str(row[0])
        except psycopg.Error:
            pass
        row = conn.execute("SELECT pg_catalog.current_setting('cluster_name', true)").fetchone()
        if row and row[0]:
            return f"cluster_name:{row[0]}"
        address = f"{conn.info.host}:{conn.info.port}"
        return "address:" + hashlib.sha256(address.encode()).hexdigest()[:16]

    @staticmethod
    def _export_snapshot(conn: psycopg.Connection[tuple[Any, ...]]) -> str | None:
        """Keep the snapshot id for parallel readers; a server that refuses (a standby) still works.

        pg_export_snapshot() cannot run in a subtransaction, so a refusal restarts the transaction.
        """
        try:
            row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
        except psycopg.Error:
            if conn.closed:
                raise
            conn.execute("ROLLBACK")
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return None
        return str(row[0]) if row else None

    def _lost(self, what: str, exc: psycopg.Error) -> SourceError:
        """A dropped connection is worth a retry (on a new snapshot); anything else is not."""
        message = f"{what} on {self.display_name}: {_scrub(str(exc), self._dsn)}"
        if isinstance(exc, psycopg.errors.InsufficientPrivilege) and "row-level security" in str(exc):
            message += " (connect as a role with BYPASSRLS, e.g. postgres, so no row is hidden)"
        if isinstance(exc, psycopg.OperationalError) or (self._conn is not None and self._conn.closed):
            self.close()
            return TransientSourceError(message)
        return SourceError(message)

    # protocol ------------------------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        self._connection()
        assert self._identity is not None
        return dict(self._identity)

    def tables(self) -> list[TableInfo]:
        if self._tables is None:
            conn = self._connection()
            try:
                self._tables = self._introspect(conn)
            except psycopg.Error as exc:
                raise self._lost("cannot read the catalog", exc) from None
        return list(self._tables)

    def read(
        self, table: TableInfo, *, batch_rows: int, resume_token: dict[str, Any] | None = None
    ) -> Iterator[SourceBatch]:
        if batch_rows < 1:
            raise ValueError("batch_rows must be positive")
        if table.primary_key:
            return self._read_keyset(table, batch_rows, resume_token)
        return self._read_ctid(table, batch_rows, resume_token)

    def reconnect(self) -> None:
        """Drop a broken session and open a new one for the retry (pipeline.extract calls this).

        The old snapshot died with its session (an exported snapshot lives only as long as its
        transaction), so reading continues from the last committed key in a newer one; the run
        records that and verifies each table's count afterwards. A failed attempt is left to the next
        read, which raises TransientSourceError into the same bounded retry.
        """
        self.close()
        self.reconnects += 1
        with contextlib.suppress(TransientSourceError):
            self._connection()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
            conn.close()

    def __enter__(self) -> PostgresSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # introspection -------------------------------------------------------------------------------
    def _introspect(self, conn: psycopg.Connection[tuple[Any, ...]]) -> list[TableInfo]:
        rels = conn.execute(_TABLES_SQL, {"schemas": list(self.schemas)}).fetchall()
        oids = [r[0] for r in rels]
        types = {
            r[0]: _PgType(r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(_TYPES_SQL).fetchall()
        }
        enums: dict[int, tuple[str, ...]] = {r[0]: tuple(r[1]) for r in conn.execute(_ENUMS_SQL).fetchall()}
        columns: dict[int, list[Column]] = {}
        for relid, name, fmt, notnull, generated, typid in conn.execute(
            _COLUMNS_SQL, {"oids": oids}
        ).fetchall():
            enum_values, base_type = _resolve_type(typid, types, enums)
            columns.setdefault(relid, []).append(
                Column(name=name, pg_type=fmt, nullable=not notnull, generated=bool(generated),
                       enum_values=enum_values, base_type=base_type)
            )
        pks = {r[0]: tuple(r[1]) for r in conn.execute(_PKS_SQL, {"oids": oids}).fetchall()}
        fks: dict[int, list[ForeignKey]] = {}
        for relid, pschema, pname, cols, pcols in conn.execute(_FKS_SQL, {"oids": oids}).fetchall():
            fks.setdefault(relid, []).append(ForeignKey(tuple(cols), f"{pschema}.{pname}", tuple(pcols)))
        uniques: dict[int, list[tuple[str, ...]]] = {}
        indexes: dict[int, list[tuple[str, ...]]] = {}
        for relid, is_unique, cols in conn.execute(_INDEXES_SQL, {"oids": oids}).fetchall():
            bucket = (uniques if is_unique else indexes).setdefault(relid, [])
            if tuple(cols) not in bucket:
                bucket.append(tuple(cols))
        out: list[TableInfo] = []
        for oid, schema, name, _kind, reltuples in rels:
            out.append(TableInfo(
                schema=schema,
                name=name,
                columns=tuple(columns.get(oid, [])),
                primary_key=pks.get(oid, ()),
                row_estimate=int(reltuples) if reltuples is not None and reltuples >= 0 else None,
                foreign_keys=tuple(fks.get(oid, [])),
                unique=tuple(uniques.get(oid, [])),
                indexes=tuple(indexes.get(oid, [])),
            ))
        return out

    def count_rows(self, table: TableInfo) -> int:
        """Rows the table holds in the current snapshot: the after-the-fact check once a dropped
        connection forced a new snapshot (or a resume started one)."""
        conn = self._connection()
        try:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table.schema, table.name))
            ).fetchone()
        except psycopg.Error as exc:
            raise self._lost(f"cannot count {table.qualified}", exc) from None
        return int(row[0]) if row else 0

    # reading -------------------------------------------------------------------------------------
    def _copy_rows(self, query: sql.Composable, what: str) -> list[tuple[str | None, ...]]:
        """Run one bounded COPY and return its rows as text; nothing outlives the batch."""
        conn = self._connection()
        try:
            with conn.cursor() as cur, cur.copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as copy:
                return [tuple(r) for r in copy.rows()]
        except psycopg.Error as exc:
            raise self._lost(f"cannot read {what}", exc) from None

    def _copy_table(self, query: sql.Composable, what: str, names: list[str]) -> pa.Table:
        """Run one bounded COPY in CSV form and parse it in C with Arrow's CSV reader.

        CSV carries the same output-function text as the text format, but an unquoted empty field is
        NULL and a quoted one ("") the empty string, which Arrow's reader tells apart; values with
        newlines are quoted. Parsed there instead of into Python tuples and then Arrow arrays, the 1M
        bench's extract went from 6.3 s to 5.7 s (bench/README.md).
        """
        conn = self._connection()
        chunks: list[bytes] = []
        try:
            with conn.cursor() as cur, cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(query)) as copy:
                for chunk in copy:
                    chunks.append(bytes(chunk))
        except psycopg.Error as exc:
            raise self._lost(f"cannot read {what}", exc) from None
        data = b"".join(chunks)
        del chunks
        if not data:
            return pa.table({n: pa.array([], pa.string()) for n in names})
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False,
                                           block_size=min(len(data) + 1, 2**31 - 1)),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=True, null_values=[""],
                quoted_strings_can_be_null=False),
        )

    def _read_keyset(
        self, table: TableInfo, batch_rows: int, resume_token: dict[str, Any] | None
    ) -> Iterator[SourceBatch]:
        extract = table.extract_columns
        names = [c.name for c in extract]
        extra_pk = [k for k in table.primary_key if k not in names]
        select_names = names + extra_pk
        key_pos = [select_names.index(k) for k in table.primary_key]
        pk_types = [table.column(k).pg_type for k in table.primary_key]
        rel = sql.Identifier(table.schema, table.name)
        select_list = sql.SQL(", ").join(sql.Identifier(n) for n in select_names)
        pk_list = sql.SQL(", ").join(sql.Identifier(k) for k in table.primary_key)
        after: list[str] | None = None
        if resume_token and resume_token.get("after") is not None:
            after = [str(v) for v in resume_token["after"]]
            if len(after) != len(table.primary_key):
                raise SourceError(f"{table.qualified}: resume token does not match the primary key")
        while True:
            if after is None:
                where: sql.Composable = sql.SQL("")
            else:
                bound = sql.SQL(", ").join(
                    sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t)) for v, t in zip(after, pk_types, strict=True)
                )
                where = sql.SQL(" WHERE ({}) > ({})").format(pk_list, bound)
            query = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
                select_list, rel, where, pk_list, sql.Literal(batch_rows)
            )
            got = self._copy_table(query, table.qualified, select_names)
            if got.num_rows == 0:
                return
            after = [str(got.column(i)[got.num_rows - 1].as_py()) for i in key_pos]
            batch = got.select(names).combine_chunks().to_batches()
            data = batch[0] if batch else pa.RecordBatch.from_pylist([], schema=table.arrow_schema())
            if not names:
                data = pa.RecordBatch.from_struct_array(pa.array([{}] * got.num_rows, type=pa.struct([])))
            yield SourceBatch(data.cast(table.arrow_schema()) if names else data, {"after": list(after)})
            if got.num_rows < batch_rows:
                return

    def _read_ctid(
        self, table: TableInfo, batch_rows: int, resume_token: dict[str, Any] | None
    ) -> Iterator[SourceBatch]:
        """Tables without a key are paged by physical position, which the snapshot holds still.

        ORDER BY ctid over the rest of a table would sort all of it for every batch, so each query
        is confined to a window of blocks (a TID range scan) and windows advance through the file.
        Partitioned tables are read one leaf partition at a time, since ctid is per partition.
        """
        token = resume_token or {}
        leaf_names = self._leaves(table)
        leaves = [f"{s}.{n}" for s, n in leaf_names]
        partitioned = len(leaves) > 1
        start = 0
        if partitioned and token.get("partition") is not None:
            if token["partition"] not in leaves:
                raise SourceError(f"{table.qualified}: resume token names an unknown partition")
            start = leaves.index(token["partition"])
        after: str | None = token.get("after_ctid")
        n_cols = len(table.extract_columns)
        select_list = sql.SQL(", ").join(
            [sql.Identifier(c.name) for c in table.extract_columns] + [sql.SQL("ctid")]
        )
        buffered: list[tuple[str | None, ...]] = []
        last_partition = leaves[start]

        def flush() -> SourceBatch:
            tok: dict[str, Any] = {"after_ctid": str(buffered[-1][-1])}
            if partitioned:
                tok["partition"] = last_partition
            return SourceBatch(_to_batch(table, buffered, n_cols), tok)

        for partition, (schema, name) in zip(leaves[start:], leaf_names[start:], strict=True):
            rel = sql.Identifier(schema, name)
            nblocks, window = self._block_layout(schema, name, batch_rows)
            block = _ctid_block(after) if after is not None else 0
            while block < nblocks:
                end = block + window
                lower = after if after is not None else f"({block},0)"
                op = sql.SQL(">") if after is not None else sql.SQL(">=")
                query = sql.SQL(
                    "SELECT {} FROM {} WHERE ctid {} {}::tid AND ctid < {}::tid ORDER BY ctid LIMIT {}"
                ).format(select_list, rel, op, sql.Literal(lower), sql.Literal(f"({end},0)"),
                         sql.Literal(batch_rows - len(buffered)))
                rows = self._copy_rows(query, table.qualified)
                if rows:
                    buffered.extend(rows)
                    last_partition = partition
                if len(buffered) >= batch_rows:
                    after = str(buffered[-1][-1])
                    yield flush()
                    buffered = []
                    block = _ctid_block(after)
                    continue
                after = f"({end - 1},65535)"
                block = end
                if not rows:
                    window = min(window * 2, 1 << 20)
            after = None
        if buffered:
            yield flush()

    def _leaves(self, table: TableInfo) -> list[tuple[str, str]]:
        conn = self._connection()
        try:
            rows = conn.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_partition_tree(%s::regclass) t"
                " JOIN pg_catalog.pg_class c ON c.oid = t.relid"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE t.isleaf ORDER BY n.nspname, c.relname",
                (sql.Identifier(table.schema, table.name).as_string(conn),),
            ).fetchall()
        except psycopg.Error as exc:
            raise self._lost(f"cannot list partitions of {table.qualified}", exc) from None
        leaves = [(s, n) for s, n, kind in rows if kind == "r"]
        return leaves or [(table.schema, table.name)]

    def _block_layout(self, schema: str, name: str, batch_rows: int) -> tuple[int, int]:
        """Blocks in the relation now (enough for our snapshot) and a first window size."""
        conn = self._connection()
        try:
            row = conn.execute(
                "SELECT pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int,"
                " c.reltuples::float8, c.relpages FROM pg_catalog.pg_class c"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s",
                (schema, name),
            ).fetchone()
        except psycopg.Error as exc:
            raise self._lost(f"cannot size {schema}.{name}", exc) from None
        if row is None:
            raise SourceError(f"table {schema}.{name} no longer exists")
        nblocks, reltuples, relpages = int(row[0]), float(row[1]), int(row[2])
        per_page = reltuples / relpages if reltuples > 0 and relpages > 0 else 50.0
        window = max(1, int(batch_rows / max(per_page, 1.0)) + 1)
        return nblocks, window


def _ctid_block(ctid: str) -> int:
    return int(ctid.strip("()").split(",")[0])


def _resolve_type(
    typid: int, types: dict[int, _PgType], enums: dict[int, tuple[str, ...]]
) -> tuple[tuple[str, ...] | None, str | None]:
    """Enum labels (also through arrays and domains) and a domain's base type text."""
    base_type: str | None = None
    t = types.get(typid)
    seen = 0
    while t is not None and t.typtype == "d" and seen < 16:
        base_type = t.base_format
        typid, t, seen = t.basetype, types.get(t.basetype), seen + 1
    if typid in enums:
        return enums[typid], base_type
    if t is not None and t.category == "A" and t.elem:
        elem, et = t.elem, types.get(t.elem)
        while et is not None and et.typtype == "d" and seen < 16:
            elem, et, seen = et.basetype, types.get(et.basetype), seen + 1
        if elem in enums:
            return enums[elem], base_type
    return None, base_type


def _to_batch(table: TableInfo, rows: Sequence[tuple[str | None, ...]], n_cols: int) -> pa.RecordBatch:
    schema = table.arrow_schema()
    if n_cols == 0:
        return pa.RecordBatch.from_struct_array(pa.array([{}] * len(rows), type=pa.struct([])))
    arrays = [pa.array([r[i] for r in rows], type=pa.string()) for i in range(n_cols)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)

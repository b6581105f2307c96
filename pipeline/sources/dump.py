"""A pg_dump file as a source, read without any PostgreSQL server.

Plain dumps (pg_dump's default, `supabase db dump`) are read directly: one pass over the file builds
the catalog from its DDL and remembers the byte offset where each table's data starts, so reading
tables one after another costs one seek each, never a rescan. Custom (`-Fc`) and tar (`-Ft`) archives
are turned into plain SQL by `pg_restore`, one table at a time, streamed through a pipe. Either way
memory stays flat: lines and statements are consumed as they arrive and at most `batch_rows` rows
are held.

A dump is a snapshot that cannot be re-queried, so every ambiguity is an error rather than a guess:
a file cut off inside a table's data fails that table's read after its last whole row, and a table
whose data would come after the cut fails too, so the caller never sees a truncated table as complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from pipeline.errors import SourceError
from pipeline.redact import redact_text
from pipeline.sources.base import SourceBatch, TableInfo
from pipeline.sources.dump_sql import (
    DEFAULT,
    IDENT,
    META,
    NUMBER,
    OP,
    QIDENT,
    STRING,
    Catalog,
    DumpSyntaxError,
    Lexer,
    Tok,
    Truncated,
    _Cursor,
    decode_copy_line,
    fast_value,
    literal_value,
    python_encoding,
)

_NO_PG_RESTORE = (
    "reading a custom-format dump needs pg_restore (PostgreSQL client tools), which is not on PATH: "
    "install the client tools (e.g. `apt install postgresql-client`), or make a plain dump instead "
    "(`pg_dump --format=plain -f dump.sql ...`, or convert this file where pg_restore exists: "
    "`pg_restore -f dump.sql FILE`)"
)
_TOC_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (\S+) (.+) (\S+)$")
_BUFFER = 1 << 20


@dataclass
class _Segment:
    """Where one run of a table's data starts: the first COPY data line or the first INSERT."""

    kind: str
    offset: int
    columns: tuple[str, ...] | None
    encoding: str
    std_strings: bool
    search_path: str
    complete: bool = True


@dataclass
class _Scan:
    catalog: Catalog
    segments: dict[tuple[str, str], list[_Segment]] = field(default_factory=dict)
    truncated: str | None = None
    saw_header: bool = False


def detect_format(path: Path) -> str:
    """'plain', 'custom' or 'tar', from the file's first bytes (never from its name)."""
    if path.is_dir():
        raise SourceError(
            f"{path} is a directory: directory-format dumps are not supported; make one file with "
            "`pg_dump -Fc` or `pg_dump -Fp`"
        )
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise SourceError(f"cannot read dump file {path}: {exc.strerror}") from None
    if head.startswith(b"PGDMP"):
        return "custom"
    if head.startswith(b"\x1f\x8b"):
        raise SourceError(f"{path} is gzip-compressed: decompress it first (`gunzip -k {path.name}`)")
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "plain"


def _stat_key(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


def _copy_header(toks: list[Tok], catalog: Catalog) -> tuple[tuple[str, str], tuple[str, ...] | None] | None:
    """The table and column list of `COPY t (cols) FROM stdin`, or None for any other COPY."""
    try:
        c = _Cursor(toks[1:])
        key = catalog.qualify(c.name())
        cols = c.name_list() if c.is_op("(") else None
        if not c.accept("from", "stdin"):
            return None
    except DumpSyntaxError:
        return None
    rest = [t.text.lower() for t in toks[1 + c.i :] if t.kind != OP]
    if rest and rest not in (["with", "format", "text"], ["with", "text"]):
        raise DumpSyntaxError(
            f"the COPY of table {key[0]}.{key[1]} has options ({' '.join(rest)}); only pg_dump's plain "
            "text COPY can be read"
        )
    return key, cols


def _read_into_name(lx: Lexer, catalog: Catalog) -> tuple[tuple[str, str], Tok | None]:
    """After INSERT: the target table, and the token that follows its name."""
    t = lx.next()
    if t is None:
        raise Truncated()
    if not (t.kind == IDENT and t.text == "into"):
        raise DumpSyntaxError("INSERT without INTO")
    parts: list[str] = []
    while True:
        t = lx.next()
        if t is None:
            raise Truncated()
        if t.kind not in (IDENT, QIDENT):
            raise DumpSyntaxError("INSERT INTO without a table name")
        parts.append(t.text)
        nxt = lx.next()
        if nxt is not None and nxt.kind == OP and nxt.text == ".":
            continue
        return catalog.qualify(parts), nxt


def _apply_set(lx: Lexer, toks: list[Tok]) -> None:
    """Follow SET client_encoding / standard_conforming_strings: they change how bytes decode."""
    if len(toks) < 3 or toks[0].text != "set":
        return
    name = toks[1].text
    value = toks[-1].text
    if name == "client_encoding":
        try:
            lx.encoding = python_encoding(value)
        except DumpSyntaxError as exc:
            raise SourceError(str(exc)) from None
    elif name == "standard_conforming_strings":
        lx.std_strings = value.lower() in ("on", "true", "1", "yes")


def _walk(lx: Lexer, scan: _Scan, *, ddl: bool, seekable: bool, label: str) -> None:
    """One pass over a SQL script: feed DDL to the catalog, note where each table's data starts."""
    catalog = scan.catalog
    last_insert: tuple[str, str] | None = None
    inside: tuple[str, str] | None = None
    try:
        while True:
            tok = lx.next()
            if tok is None:
                break
            if tok.kind == META and re.match(r"\\c(onnect)?\b", tok.text) and (catalog.tables or scan.segments):
                raise SourceError(
                    f"{label} holds more than one database (a pg_dumpall file?): dump the one database "
                    "with pg_dump"
                )
            if tok.kind == META or (tok.kind == OP and tok.text == ";"):
                continue
            word = tok.text if tok.kind == IDENT else ""
            if word == "insert":
                key, nxt = _read_into_name(lx, catalog)
                inside = key
                if last_insert != key:
                    seg = _Segment("insert", tok.offset, None, lx.encoding, lx.std_strings, catalog.search_path)
                    scan.segments.setdefault(key, []).append(seg)
                if not (nxt is not None and nxt.kind == OP and nxt.text == ";"):
                    lx.skip_statement()
                inside = None
                last_insert = key
                continue
            last_insert = None
            if word == "copy":
                head = _copy_header([tok, *lx.statement_rest()], catalog)
                if head is None:
                    continue
                key, cols = head
                seg = _Segment("copy", lx.next_off, cols, lx.encoding, lx.std_strings, catalog.search_path)
                scan.segments.setdefault(key, []).append(seg)
                inside = key
                if seekable:
                    seg.complete = lx.skip_copy_data()
                    if not seg.complete:
                        raise Truncated()
                else:
                    for _ in lx.copy_lines():
                        pass
                inside = None
            elif word in ("create", "alter", "set", "drop"):
                toks = [tok, *lx.statement_rest()]
                if word == "set":
                    _apply_set(lx, toks)
                if ddl or word == "set":
                    try:
                        catalog.feed(toks)
                    except DumpSyntaxError as exc:
                        if word == "create" and len(toks) > 1 and toks[1].text in ("table", "unlogged"):
                            raise SourceError(
                                f"{label}: cannot read the CREATE TABLE at byte {tok.offset}: {exc}"
                            ) from None
            else:
                lx.skip_statement()
    except Truncated:
        if inside is not None:
            segs = scan.segments.get(inside)
            if segs:
                segs[-1].complete = False
            scan.truncated = f"it ends inside the data of table {inside[0]}.{inside[1]}"
        else:
            scan.truncated = "it ends inside a statement"
    except UnicodeDecodeError:
        raise SourceError(
            f"{label} is not a readable SQL dump: the text near byte {lx.line_off} is not valid "
            f"{lx.encoding}"
        ) from None
    except DumpSyntaxError as exc:
        raise SourceError(f"{label}: {exc} (near byte {lx.line_off})") from None
    scan.saw_header = lx.saw_header
    if scan.truncated is None and lx.saw_header and not lx.saw_trailer:
        scan.truncated = "it lacks pg_dump's closing '-- PostgreSQL database dump complete' line"


class _Mapping:
    """From a data block's column list to the table's extract columns."""

    def __init__(
        self, table: TableInfo, dump_cols: tuple[str, ...] | None, *, copy: bool, layout: TableInfo | None = None
    ) -> None:
        """`layout` is the table whose column order a list-less COPY or INSERT follows: a leaf partition's
        own order can differ from its root's."""
        q = table.qualified
        if dump_cols is None:
            lay = layout or table
            dump_cols = tuple(c.name for c in (lay.extract_columns if copy else lay.columns))
        known = {c.name: c for c in table.columns}
        for name in dump_cols:
            if name not in known:
                raise SourceError(f"the dump's data for {q} has a column {name!r} that its schema lacks")
        self.table = q
        self.n = len(dump_cols)
        self.positions: list[int] = []
        for col in table.extract_columns:
            if col.name not in dump_cols:
                raise SourceError(f"the dump's data for {q} has no column {col.name!r}")
            self.positions.append(dump_cols.index(col.name))
        self.identity = self.positions == list(range(self.n))
        self.types = [known[n].base_type or known[n].pg_type for n in dump_cols]
        self.names = [c.name for c in table.extract_columns]

    def project(self, vals: list[Any], rowno: int) -> list[Any]:
        if len(vals) != self.n:
            raise SourceError(
                f"row {rowno} of table {self.table} in the dump has {len(vals)} values; "
                f"its column list has {self.n}"
            )
        return vals if self.identity else [vals[i] for i in self.positions]


class _Emitter:
    """Counts the table's rows, skips those a resume token says were taken, cuts batches."""

    def __init__(self, table: TableInfo, batch_rows: int, skip: int) -> None:
        self.schema = table.arrow_schema()
        self.ncols = len(table.extract_columns)
        self.batch_rows = batch_rows
        self.skip = skip
        self.count = 0
        self.rows: list[list[Any]] = []

    def skipping(self) -> bool:
        if self.count < self.skip:
            self.count += 1
            return True
        return False

    def add(self, row: list[Any]) -> SourceBatch | None:
        self.count += 1
        self.rows.append(row)
        if len(self.rows) >= self.batch_rows:
            return self.flush()
        return None

    def flush(self) -> SourceBatch:
        rows, self.rows = self.rows, []
        if self.ncols == 0:
            data = pa.RecordBatch.from_struct_array(pa.array([{}] * len(rows), type=pa.struct([])))
        else:
            arrays = [pa.array(col, type=pa.string()) for col in zip(*rows, strict=True)]
            data = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        return SourceBatch(data=data, resume_token={"rows": self.count})


def _copy_batches(
    lx: Lexer, table: TableInfo, cols: tuple[str, ...] | None, em: _Emitter, layout: TableInfo
) -> Iterator[SourceBatch]:
    mapping = _Mapping(table, cols, copy=True, layout=layout)
    enc = lx.encoding
    for line in lx.copy_lines():
        if em.skipping():
            continue
        vals = decode_copy_line(line, enc) if mapping.n else []
        batch = em.add(mapping.project(vals, em.count + 1))
        if batch is not None:
            yield batch


def _values_row(lx: Lexer) -> list[list[Tok]]:
    """The items of one parenthesised VALUES row; the opening parenthesis is already consumed."""
    items: list[list[Tok]] = []
    cur: list[Tok] = []
    depth = 0
    while True:
        t = lx.next()
        if t is None:
            raise Truncated()
        if t.kind == OP:
            if t.text in ("(", "["):
                depth += 1
            elif t.text in (")", "]"):
                if depth == 0 and t.text == ")":
                    items.append(cur)
                    return items
                depth -= 1
            elif t.text == "," and depth == 0:
                items.append(cur)
                cur = []
                continue
        cur.append(t)


def _item_value(item: list[Tok], pg_type: str, rowno: int, table: TableInfo) -> Any:
    if len(item) == 1 and (item[0].kind == NUMBER or (item[0].kind == STRING and not item[0].prefix)):
        return item[0].text
    try:
        return literal_value(item, pg_type)
    except DumpSyntaxError as exc:
        raise DumpSyntaxError(f"row {rowno} of table {table.qualified}: {exc}") from None


def _insert_batches(
    lx: Lexer,
    table: TableInfo,
    em: _Emitter,
    first: Tok | None,
    search_path: str,
    key: tuple[str, str],
    layout: TableInfo,
) -> Iterator[SourceBatch]:
    """Rows of consecutive `INSERT INTO key ... VALUES (...), (...);` statements, streamed.

    `key` is the table itself or, for a partitioned table, the leaf partition being read.
    """
    catalog = Catalog()
    catalog.search_path = search_path
    mappings: dict[tuple[str, ...] | None, _Mapping] = {}
    tok = first
    while True:
        if tok is None:
            tok = lx.next()
        while tok is not None and (tok.kind == META or (tok.kind == OP and tok.text == ";")):
            tok = lx.next()
        if tok is None or not (tok.kind == IDENT and tok.text == "insert"):
            return
        target, nxt = _read_into_name(lx, catalog)
        if target != key:
            return
        cols: tuple[str, ...] | None = None
        if nxt is not None and nxt.kind == OP and nxt.text == "(":
            names: list[str] = []
            while True:
                t = lx.next()
                if t is None:
                    raise Truncated()
                if t.kind in (IDENT, QIDENT):
                    names.append(t.text)
                elif t.kind == OP and t.text == ")":
                    break
            cols = tuple(names)
            nxt = lx.next()
        if nxt is not None and nxt.kind == IDENT and nxt.text == "overriding":
            lx.next()
            lx.next()
            nxt = lx.next()
        if nxt is None:
            raise Truncated()
        if not (nxt.kind == IDENT and nxt.text == "values"):
            raise DumpSyntaxError(f"an INSERT into {table.qualified} has no VALUES list")
        mapping = mappings.get(cols)
        if mapping is None:
            mapping = mappings[cols] = _Mapping(table, cols, copy=False, layout=layout)
        types = mapping.types
        while True:
            raw = lx.fast_row()
            items: list[list[Tok]] | None = None
            if raw is None:
                t = lx.next()
                if t is None:
                    raise Truncated()
                if not (t.kind == OP and t.text == "("):
                    raise DumpSyntaxError(f"malformed VALUES list in an INSERT into {table.qualified}")
                items = _values_row(lx)
            if not em.skipping():
                rowno = em.count + 1
                vals: list[Any]
                if raw is not None:
                    if len(raw) != mapping.n:
                        mapping.project(raw, rowno)
                    vals = [fast_value(b, types[i], lx.encoding) for i, b in enumerate(raw)]
                else:
                    assert items is not None
                    if len(items) != mapping.n:
                        mapping.project(items, rowno)
                    vals = [_item_value(item, types[i], rowno, table) for i, item in enumerate(items)]
                row = mapping.project(vals, rowno)
                for name, v in zip(mapping.names, row, strict=True):
                    if v is DEFAULT:
                        raise SourceError(
                            f"row {rowno} of table {table.qualified} in the dump gives DEFAULT for column "
                            f"{name!r}: the value is not in the dump"
                        )
                batch = em.add(row)
                if batch is not None:
                    yield batch
            t = lx.next()
            if t is None:
                raise Truncated()
            if t.kind == OP and t.text == ",":
                continue
            if not (t.kind == OP and t.text == ";"):
                lx.skip_statement()
            break
        tok = None


def _resume_rows(resume_token: dict[str, Any] | None) -> int:
    if not resume_token:
        return 0
    rows = resume_token.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise SourceError("the dump resume token is not {'rows': N} with N >= 0")
    return rows


class DumpSource:
    """pg_dump output (plain SQL, custom or tar archive) as a Source; see the module docstring.

    `schema_path` names a schema dump (plain or custom) to take the tables from, for data-only dumps;
    when given, the main file's own DDL is not used. Only tables in `schemas` are listed, though data
    of any schema in the file is indexed. `row_estimate` is None: counting would cost a full scan.
    """

    kind = "dump"

    def __init__(
        self,
        path: str | Path,
        *,
        schema_path: str | Path | None = None,
        schemas: tuple[str, ...] = ("public", "auth"),
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"dump file not found: {self.path}")
        self.format = detect_format(self.path)
        self.schema_path = Path(schema_path) if schema_path is not None else None
        if self.schema_path is not None and not self.schema_path.exists():
            raise SourceError(f"schema file not found: {self.schema_path}")
        self.schemas = tuple(schemas)
        self._scan: _Scan | None = None
        self._stat: tuple[int, int] | None = None
        self._archive_data: set[tuple[str, str]] | None = None
        self._tables: list[TableInfo] | None = None
        self._leaves: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._layouts: dict[tuple[str, str], TableInfo] = {}
        self._identity: dict[str, str] | None = None
        self._procs: set[subprocess.Popen[bytes]] = set()

    # ------------------------------------------------------------------ identity and catalog

    def identity(self) -> dict[str, str]:
        if self._identity is None:
            ident = {
                "kind": "dump",
                "format": self.format,
                "sha256": _sha256(self.path),
                "size": str(self.path.stat().st_size),
            }
            if self.schema_path is not None:
                ident["schema_sha256"] = _sha256(self.schema_path)
            self._identity = ident
        return dict(self._identity)

    def tables(self) -> list[TableInfo]:
        if self._tables is None:
            catalog, data_keys, scanned = self._load()
            if not catalog.tables and not data_keys and not scanned:
                raise SourceError(
                    f"{self.path.name} does not look like a pg_dump file: it has no CREATE TABLE, "
                    "COPY or INSERT statement"
                )
            missing = sorted(k for k in data_keys if k[0] in self.schemas and k not in catalog.tables)
            if missing:
                names = ", ".join(f"{s}.{n}" for s, n in missing)
                where = f"the schema file {self.schema_path.name}" if self.schema_path else "the dump"
                raise SourceError(
                    f"the dump has data for table {names} but {where} has no CREATE TABLE for it: "
                    "pass a schema dump (`pg_dump --schema-only`) as schema_path"
                )
            listed = catalog.listed(self.schemas)
            self._leaves = {k: catalog.leaves(k) for k in listed}
            self._layouts = {
                leaf: catalog.table_info(leaf) for k in listed for leaf in self._leaves[k] if leaf != k
            }
            self._tables = [catalog.table_info(k) for k in listed]
        return list(self._tables)

    def _load(self) -> tuple[Catalog, set[tuple[str, str]], bool]:
        """The catalog, the tables that have data, and whether the file carries pg_dump's header."""
        if self.format == "plain":
            scan = self._index()
            catalog = scan.catalog if self.schema_path is None else self._schema_catalog(self.schema_path)
            return catalog, set(scan.segments), scan.saw_header
        data = self._toc_data()
        if self.schema_path is not None:
            catalog = self._schema_catalog(self.schema_path)
        else:
            catalog = self._archive_catalog(self.path, self.path.name)
        return catalog, data, True

    def _index(self) -> _Scan:
        if self._scan is None:
            scan = _Scan(Catalog())
            stat = _stat_key(self.path)
            with self.path.open("rb", buffering=_BUFFER) as f:
                _walk(Lexer(f), scan, ddl=self.schema_path is None, seekable=True, label=self.path.name)
            self._scan, self._stat = scan, stat
        return self._scan

    def _schema_catalog(self, path: Path) -> Catalog:
        fmt = detect_format(path)
        if fmt != "plain":
            return self._archive_catalog(path, path.name)
        scan = _Scan(Catalog())
        with path.open("rb", buffering=_BUFFER) as f:
            _walk(Lexer(f), scan, ddl=True, seekable=True, label=path.name)
        if scan.truncated is not None:
            raise SourceError(f"the schema file {path.name} is truncated: {scan.truncated}")
        return scan.catalog

    def _archive_catalog(self, path: Path, label: str) -> Catalog:
        scan = _Scan(Catalog())
        with self._restore([str(path), "--schema-only"], f"the schema of {label}") as out:
            _walk(Lexer(out), scan, ddl=True, seekable=False, label=label)
        if scan.truncated is not None:
            raise SourceError(f"pg_restore's output for {label} is incomplete: {scan.truncated}")
        return scan.catalog

    def _toc_data(self) -> set[tuple[str, str]]:
        if self._archive_data is None:
            exe = self._pg_restore()
            try:
                proc = subprocess.run(
                    [exe, "-l", str(self.path)], capture_output=True, stdin=subprocess.DEVNULL, check=False
                )
            except FileNotFoundError:
                raise SourceError(_NO_PG_RESTORE) from None
            if proc.returncode != 0:
                raise SourceError(
                    f"pg_restore cannot list {self.path.name}: {_stderr_text(proc.stderr)}"
                )
            found: set[tuple[str, str]] = set()
            for line in proc.stdout.decode("utf-8", "replace").splitlines():
                m = _TOC_DATA.match(line.strip())
                if m:
                    found.add((m.group(1), m.group(2)))
            self._archive_data = found
        return self._archive_data

    # ------------------------------------------------------------------ reading

    def read(
        self, table: TableInfo, *, batch_rows: int, resume_token: dict[str, Any] | None = None
    ) -> Iterator[SourceBatch]:
        """Rows in file order, `batch_rows` at a time; an empty table yields no batch at all."""
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        skip = _resume_rows(resume_token)
        em = _Emitter(table, batch_rows, skip)
        q = table.qualified
        try:
            if self.format == "plain":
                yield from self._read_plain(table, em)
            else:
                yield from self._read_archive(table, em)
        except Truncated:
            if em.rows:
                yield em.flush()
            raise SourceError(
                f"dump ended inside the data of table {q} after {em.count} rows: the file is truncated"
            ) from None
        except DumpSyntaxError as exc:
            raise SourceError(f"cannot read the data of table {q} from {self.path.name}: {exc}") from None
        except UnicodeDecodeError:
            raise SourceError(
                f"the data of table {q} in {self.path.name} is not valid text in the dump's encoding "
                f"(near row {em.count + 1})"
            ) from None
        if em.rows:
            yield em.flush()

    def _read_plain(self, table: TableInfo, em: _Emitter) -> Iterator[SourceBatch]:
        scan = self._index()
        if self._stat != _stat_key(self.path):
            raise SourceError(f"{self.path.name} changed while it was being read: start a fresh run")
        segments: list[tuple[tuple[str, str], _Segment]] = []
        for leaf in self._leaves_of(table):
            found = scan.segments.get(leaf, [])
            if not found and scan.truncated is not None:
                raise SourceError(
                    f"the dump is truncated ({scan.truncated}); it holds no data for table "
                    f"{leaf[0]}.{leaf[1]}, which would have come after the cut"
                )
            segments.extend((leaf, seg) for seg in found)
        with self.path.open("rb", buffering=_BUFFER) as f:
            for leaf, seg in segments:
                lx = Lexer(f, seg.offset, seg.encoding, seg.std_strings)
                lx.seek(seg.offset)
                if seg.kind == "copy":
                    yield from _copy_batches(lx, table, seg.columns, em, self._layouts.get(leaf, table))
                else:
                    layout = self._layouts.get(leaf, table)
                    yield from _insert_batches(lx, table, em, None, seg.search_path, leaf, layout)
                if not seg.complete:
                    raise Truncated()

    def _leaves_of(self, table: TableInfo) -> list[tuple[str, str]]:
        """A partitioned table's rows live in its leaf partitions' data blocks."""
        if self._tables is None:
            self.tables()
        key = (table.schema, table.name)
        return self._leaves.get(key, [key])

    def _read_archive(self, table: TableInfo, em: _Emitter) -> Iterator[SourceBatch]:
        for leaf in self._leaves_of(table):
            yield from self._read_archive_table(table, leaf, em)

    def _read_archive_table(self, table: TableInfo, key: tuple[str, str], em: _Emitter) -> Iterator[SourceBatch]:
        if key not in self._toc_data():
            return
        args = [str(self.path), "--data-only", "-n", key[0], "-t", key[1]]
        with self._restore(args, f"the data of table {table.qualified}") as out:
            lx = Lexer(out)
            catalog = Catalog()
            while True:
                tok = lx.next()
                if tok is None:
                    break
                if tok.kind == META or (tok.kind == OP and tok.text == ";"):
                    continue
                word = tok.text if tok.kind == IDENT else ""
                if word == "copy":
                    head = _copy_header([tok, *lx.statement_rest()], catalog)
                    if head is None:
                        continue
                    if head[0] == key:
                        yield from _copy_batches(lx, table, head[1], em, self._layouts.get(key, table))
                        break
                    for _ in lx.copy_lines():
                        pass
                elif word == "insert":
                    layout = self._layouts.get(key, table)
                    yield from _insert_batches(lx, table, em, tok, catalog.search_path, key, layout)
                    break
                elif word == "set":
                    toks = [tok, *lx.statement_rest()]
                    _apply_set(lx, toks)
                    catalog.feed(toks)
                else:
                    lx.skip_statement()

    # ------------------------------------------------------------------ pg_restore

    def _pg_restore(self) -> str:
        exe = shutil.which("pg_restore")
        if exe is None:
            raise SourceError(_NO_PG_RESTORE)
        return exe

    @contextlib.contextmanager
    def _restore(self, args: list[str], what: str) -> Iterator[IO[bytes]]:
        """pg_restore's plain SQL on a pipe; a failure exit after the output was read is an error."""
        exe = self._pg_restore()
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    [exe, "-f", "-", *args], stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL
                )
            except FileNotFoundError:
                raise SourceError(_NO_PG_RESTORE) from None
            assert proc.stdout is not None
            self._procs.add(proc)
            finished = False
            try:
                yield proc.stdout
                while proc.stdout.read(_BUFFER):
                    pass
                finished = True
            finally:
                if not finished:
                    proc.kill()
                proc.stdout.close()
                rc = proc.wait()
                self._procs.discard(proc)
            if rc != 0:
                err.seek(0)
                raise SourceError(f"pg_restore could not read {what} from {self.path.name}: {_stderr_text(err.read())}")

    def close(self) -> None:
        for proc in list(self._procs):
            proc.kill()
            proc.wait()
        self._procs.clear()


def _stderr_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return redact_text(text[-1500:]) or "(no message)"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_BUFFER):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["DumpSource", "detect_format"]

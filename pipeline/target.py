"""What the target SQLite schema looks like, read back from the migrations themselves.

The transform needs the target's columns, storage classes, CHECK value lists and foreign keys to
decide row by row whether a value fits; reading them from a database built by the real migrations
keeps that knowledge in one place (the SQL) instead of a second copy in Python.
"""

from __future__ import annotations

import heapq
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError
from pipeline.migrations import APP_VERSION_TABLE, migrate_up

OWN_TABLE_PREFIX = "_supamigrate_"

StorageClass = Literal["TEXT", "INTEGER", "REAL", "BLOB"]
Affinity = Literal["TEXT", "NUMERIC", "INTEGER", "REAL", "BLOB"]


@dataclass(frozen=True)
class TargetColumn:
    name: str
    decl_type: str
    storage: StorageClass
    notnull: bool = False
    default: str | None = None
    pk: int = 0
    allowed_values: tuple[str, ...] | None = None
    affinity: Affinity | None = None

    @property
    def numeric_affinity(self) -> bool:
        """True when SQLite would coerce numeric-looking text in this column (a schema defect we flag)."""
        return self.affinity == "NUMERIC"


@dataclass(frozen=True)
class TargetForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"


@dataclass(frozen=True)
class TargetTable:
    name: str
    columns: tuple[TargetColumn, ...]
    foreign_keys: tuple[TargetForeignKey, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    strict: bool = False
    without_rowid: bool = False
    generated_columns: tuple[str, ...] = ()

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in sorted((c for c in self.columns if c.pk), key=lambda c: c.pk))

    def column(self, name: str) -> TargetColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"target table {self.name} has no column {name!r}")


@dataclass
class TargetSchema:
    tables: dict[str, TargetTable] = field(default_factory=dict)

    @classmethod
    def from_migrations(cls, migrations_dir: Path) -> TargetSchema:
        return load_target_schema(migrations_dir)

    def table(self, name: str) -> TargetTable:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"the target schema has no table {name!r}") from None

    def numeric_affinity_columns(self) -> list[tuple[str, str]]:
        """(table, column) pairs whose declared type gives NUMERIC affinity, for the schema check."""
        return [(t.name, c.name) for t in self.tables.values() for c in t.columns if c.numeric_affinity]

    def dependency_order(self) -> list[str]:
        """Tables with every foreign-key parent before its children, so a load with foreign keys on
        never meets a child before its parent. Self references are ignored (rows of one table are
        ordered by the loader, not here); ties break by name so the order is reproducible."""
        children: dict[str, set[str]] = {name: set() for name in self.tables}
        indegree: dict[str, int] = dict.fromkeys(self.tables, 0)
        for table in self.tables.values():
            parents = {fk.parent for fk in table.foreign_keys}
            for parent in parents:
                if parent == table.name or parent not in self.tables:
                    continue
                children[parent].add(table.name)
                indegree[table.name] += 1
        ready = [name for name, deg in indegree.items() if deg == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            name = heapq.heappop(ready)
            order.append(name)
            for child in sorted(children[name]):
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(ready, child)
        if len(order) < len(self.tables):
            remaining = {n for n in self.tables if n not in set(order)}
            pruned = True
            while pruned:
                pruned = False
                for n in sorted(remaining):
                    if not children[n] & remaining:
                        remaining.discard(n)
                        pruned = True
            raise ConfigError(
                "the target's foreign keys form a cycle among tables "
                f"{', '.join(sorted(remaining))}; no load order puts every parent first"
            )
        return order


def storage_for_declared_type(decl_type: str) -> tuple[StorageClass, Affinity]:
    """SQLite's column-affinity rules (datatype3.html section 3.1), applied in their order.

    NUMERIC affinity has no storage class of its own that keeps text intact; it maps to TEXT, and the
    affinity is returned so the caller can flag the column.
    """
    t = decl_type.upper()
    if "INT" in t:
        return "INTEGER", "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT", "TEXT"
    if "BLOB" in t or not t.strip():
        return "BLOB", "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL", "REAL"
    return "TEXT", "NUMERIC"


_Token = tuple[str, str]


def _tokenize(sql: str) -> list[_Token]:
    """Just enough of SQLite's lexer to find CHECK constraints: strings, quoted identifiers,
    words, punctuation; comments dropped."""
    tokens: list[_Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch in "'\"`":
            buf: list[str] = []
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        buf.append(ch)
                        j += 2
                        continue
                    break
                buf.append(sql[j])
                j += 1
            tokens.append(("str" if ch == "'" else "id", "".join(buf)))
            i = j + 1
        elif ch == "[":
            j = sql.find("]", i + 1)
            j = n if j < 0 else j
            tokens.append(("id", sql[i + 1 : j]))
            i = j + 1
        elif ch.isalnum() or ch == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            tokens.append(("word", sql[i:j]))
            i = j
        else:
            tokens.append(("punct", ch))
            i += 1
    return tokens


def _in_list(body: list[_Token]) -> tuple[str, tuple[str, ...]] | None:
    """`col IN ('a', 'b')` -> (col, ('a', 'b')); any other CHECK shape -> None."""
    if len(body) < 5 or body[0][0] not in ("word", "id"):
        return None
    if body[1] != ("word", body[1][1]) or body[1][1].upper() != "IN" or body[2] != ("punct", "("):
        return None
    if body[-1] != ("punct", ")"):
        return None
    inner = body[3:-1]
    values: list[str] = []
    for k, tok in enumerate(inner):
        if k % 2 == 0:
            if tok[0] != "str":
                return None
            values.append(tok[1])
        elif tok != ("punct", ","):
            return None
    if not values or len(inner) % 2 == 0:
        return None
    return body[0][1], tuple(values)


def parse_check_in_lists(create_sql: str) -> dict[str, tuple[str, ...]]:
    """Column name (as written) -> allowed values, from every `CHECK (col IN ('a', ...))` in a
    CREATE TABLE statement; other CHECK shapes are ignored because they are not value lists."""
    tokens = _tokenize(create_sql)
    found: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        opens = i + 1 < len(tokens) and tokens[i + 1] == ("punct", "(")
        if tok[0] == "word" and tok[1].upper() == "CHECK" and opens:
            depth = 0
            j = i + 1
            while j < len(tokens):
                if tokens[j] == ("punct", "("):
                    depth += 1
                elif tokens[j] == ("punct", ")"):
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            parsed = _in_list(tokens[i + 2 : j])
            if parsed is not None:
                col, values = parsed
                key = col.lower()
                if key in found:
                    values = tuple(v for v in found[key] if v in values)
                found[key] = values
            i = j + 1
        else:
            i += 1
    return found


def _is_app_table(name: str) -> bool:
    return not (name.startswith("sqlite_") or name == APP_VERSION_TABLE or name.startswith(OWN_TABLE_PREFIX))


def read_target_schema(conn: sqlite3.Connection) -> TargetSchema:
    """The app's tables as an open database defines them (bookkeeping tables left out)."""
    flags: dict[str, tuple[bool, bool]] = {}
    for row in conn.execute("PRAGMA main.table_list"):
        if row[2] == "table":
            flags[str(row[1])] = (bool(row[5]), bool(row[4]))
    tables: dict[str, TargetTable] = {}
    rows = conn.execute("SELECT name, sql FROM main.sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    for name, create_sql in rows:
        if not _is_app_table(name) or create_sql is None or create_sql.upper().startswith("CREATE VIRTUAL"):
            continue
        tables[name] = _read_table(conn, name, create_sql, *flags.get(name, (False, False)))
    return TargetSchema(tables)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _read_table(conn: sqlite3.Connection, name: str, create_sql: str, strict: bool, without_rowid: bool) -> TargetTable:
    checks = parse_check_in_lists(create_sql)
    columns: list[TargetColumn] = []
    generated: list[str] = []
    for _cid, col, decl, notnull, default, pk, hidden in conn.execute(f"PRAGMA table_xinfo({_quote(name)})"):
        if hidden:
            generated.append(str(col))
            continue
        decl_type = str(decl or "")
        storage: StorageClass
        affinity: Affinity
        if strict and decl_type.upper() == "ANY":
            storage, affinity = "BLOB", "BLOB"
        else:
            storage, affinity = storage_for_declared_type(decl_type)
        columns.append(
            TargetColumn(
                name=str(col),
                decl_type=decl_type,
                storage=storage,
                notnull=bool(notnull),
                default=None if default is None else str(default),
                pk=int(pk),
                allowed_values=checks.get(str(col).lower()),
                affinity=affinity,
            )
        )
    pk_cols = tuple(c.name for c in sorted((c for c in columns if c.pk), key=lambda c: c.pk))

    grouped: dict[int, list[tuple[int, str, str, str | None, str]]] = {}
    for fk_id, seq, parent, frm, to, _on_update, on_delete, _match in conn.execute(
        f"PRAGMA foreign_key_list({_quote(name)})"
    ):
        grouped.setdefault(int(fk_id), []).append((int(seq), str(parent), str(frm), to, str(on_delete)))
    fks: list[TargetForeignKey] = []
    for parts in grouped.values():
        parts.sort()
        parent = parts[0][1]
        parent_cols: tuple[str, ...]
        if all(p[3] is not None for p in parts):
            parent_cols = tuple(str(p[3]) for p in parts)
        else:
            parent_cols = _primary_key_of(conn, parent) if parent != name else pk_cols
        fks.append(
            TargetForeignKey(
                columns=tuple(p[2] for p in parts),
                parent=parent,
                parent_columns=parent_cols,
                on_delete=parts[0][4],
            )
        )
    positions = {c.name: i for i, c in enumerate(columns)}
    fks.sort(key=lambda fk: tuple(positions.get(c, len(positions)) for c in fk.columns))

    uniques: list[tuple[str, ...]] = []
    for _seq, index_name, unique, origin, partial in conn.execute(f"PRAGMA index_list({_quote(name)})"):
        if not unique or partial or origin not in ("u", "c"):
            continue
        cols = [r[2] for r in sorted(conn.execute(f"PRAGMA index_info({_quote(index_name)})"))]
        if any(c is None for c in cols):
            continue
        key = tuple(str(c) for c in cols)
        if key not in uniques:
            uniques.append(key)
    uniques.sort(key=lambda u: tuple(positions.get(c, len(positions)) for c in u))

    return TargetTable(
        name=name,
        columns=tuple(columns),
        foreign_keys=tuple(fks),
        unique=tuple(uniques),
        strict=strict,
        without_rowid=without_rowid,
        generated_columns=tuple(generated),
    )


def _primary_key_of(conn: sqlite3.Connection, table: str) -> tuple[str, ...]:
    rows = [r for r in conn.execute(f"PRAGMA table_info({_quote(table)})") if r[5]]
    return tuple(str(r[1]) for r in sorted(rows, key=lambda r: r[5]))


def load_target_schema(migrations_dir: Path) -> TargetSchema:
    """Build the target from the real migrations in memory and read it back, so the transform's view
    of the target can never drift from the SQL that creates it."""
    conn = sqlite3.connect(":memory:")
    try:
        migrate_up(conn, migrations_dir)
        return read_target_schema(conn)
    finally:
        conn.close()

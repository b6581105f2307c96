"""Auto schema: SQLite migrations generated from the source catalog, for tables nobody wrote one for.

A project that is not the sample app has no hand-written target schema; rather than make the user
write DDL for every table, we derive it from Postgres's own description (types, keys, NOT NULL,
unique constraints, enum labels, foreign keys, indexes) and write it as an ordinary
`NNN_auto_<table>.sql` migration. It is a file, not an in-memory schema, so the user can review and
edit it, the run fingerprint covers it, and a resumed run sees exactly the schema the first one did.

Declared types are only TEXT / INTEGER / REAL / BLOB: anything else (numeric, uuid, json, boolean)
would give NUMERIC affinity and let SQLite turn '0.10' into 0.1. Which storage class a Postgres type
gets follows the type rules in transforms/types.py, so the transform and the schema always agree.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import surrogates
from pipeline.config import Config, SourceConfig
from pipeline.errors import ConfigError
from pipeline.logs import get_logger
from pipeline.migrations import APP_VERSION_TABLE, discover, migrate_up, split_statements
from pipeline.plan import build_plan
from pipeline.runs import file_lock, fsync_dir
from pipeline.sources import open_source
from pipeline.sources.base import Column, Source, TableInfo
from pipeline.target import OWN_TABLE_PREFIX, StorageClass, TargetSchema, load_target_schema
from transforms.types import Kind, classify

log = get_logger(stage="auto_schema")

AUTO_SCHEMA = "public"  # plan.py feeds a target table `x` from `public.x` by default
_STORAGE: dict[Kind, StorageClass] = {
    "int": "INTEGER",
    "bool": "INTEGER",
    "float": "REAL",
    "bytea": "BLOB",
}
_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def storage_class(column: Column) -> StorageClass:
    """The SQLite storage class a source column is converted into (README type table).

    numeric and money are TEXT so their digits survive exactly; everything without a native SQLite
    counterpart (dates, uuid, json, arrays, ranges, composites, unknown types) is TEXT too.
    """
    kind, _ = classify(column.base_type or column.pg_type, is_enum=column.enum_values is not None)
    return _STORAGE.get(kind, "TEXT")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class TableDDL:
    """One generated table: its migration text and what was deliberately left out of it."""

    source: TableInfo
    name: str
    up: str = ""
    down: str = ""
    left_out: list[str] = field(default_factory=list)

    @property
    def file_stem(self) -> str:
        return "auto_" + (_SAFE.sub("_", self.name).strip("_") or "table")


@dataclass(frozen=True)
class _Fk:
    columns: tuple[str, ...]
    parent: str  # target table name
    parent_columns: tuple[str, ...]


def _index_name(table: str, cols: Sequence[str], unique: bool) -> str:
    base = _SAFE.sub("_", f"{table}_{'_'.join(cols)}").strip("_")
    return f"{base}_{'key' if unique else 'idx'}"


def table_ddl(table: TableInfo, name: str, *, strict: bool, fks: Sequence[_Fk], left_out: Sequence[str],
              surrogate: str | None = None, integer_refs: dict[str, str] | None = None) -> TableDDL:
    """CREATE TABLE (+ indexes) for one source table; comments say what each column was in Postgres.

    `surrogate` names the column that keeps the uuid when the primary key becomes an integer;
    `integer_refs` maps foreign key columns that hold a parent's integer key to that parent.
    """
    refs = integer_refs or {}
    cols = [c for c in table.columns if not c.generated]
    names = {c.name for c in cols}
    out = TableDDL(table, name, left_out=list(left_out))
    for c in table.columns:
        if c.generated:
            out.left_out.append(f"column {c.name} is generated in the source ({c.pg_type}); it is not copied")
    pk = tuple(table.primary_key)
    lines: list[str] = []
    for c in cols:
        is_key = surrogate is not None and c.name == pk[0]
        parts = [quote_ident(c.name), "INTEGER" if is_key or c.name in refs else storage_class(c)]
        if not c.nullable or c.name in pk:
            parts.append("NOT NULL")
        kind, _ = classify(c.base_type or c.pg_type, is_enum=c.enum_values is not None)
        if kind == "enum" and c.enum_values:
            parts.append(f"CHECK ({quote_ident(c.name)} IN ({', '.join(_quote_text(v) for v in c.enum_values)}))")
        note = surrogates.key_comment(surrogate) if surrogate and is_key else (
            surrogates.ref_comment(refs[c.name]) if c.name in refs else "")
        lines.append("  " + " ".join(parts) + ",  -- " + c.pg_type.replace("\n", " ") + note)
        if surrogate and is_key:
            lines.append(surrogates.uuid_line(surrogate, c.name, quote_ident(surrogate)))
    constraints: list[str] = []
    if pk:
        constraints.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in pk)})")
    uniques: list[tuple[str, ...]] = []
    for u in table.unique:
        if u == pk or u in uniques:
            continue
        if not set(u) <= names:
            out.left_out.append(f"unique ({', '.join(u)}) involves a generated column")
            continue
        uniques.append(u)
        constraints.append(f"UNIQUE ({', '.join(quote_ident(k) for k in u)})")
    for fk in fks:
        constraints.append(
            f"FOREIGN KEY ({', '.join(quote_ident(k) for k in fk.columns)}) REFERENCES "
            f"{quote_ident(fk.parent)} ({', '.join(quote_ident(k) for k in fk.parent_columns)})")
    body = lines + ["  " + c + "," for c in constraints]
    if body:
        last = body[-1]
        # the trailing comma sits before the column's type comment, when there is one
        body[-1] = last.replace(",  -- ", "  -- ", 1) if ",  -- " in last else last.rstrip(",")
    else:  # pragma: no cover - Postgres allows zero-column tables; SQLite does not
        body = ["  _empty INTEGER  -- the source table has no columns"]
    head = [f"-- Generated by supamigrate auto schema from {table.qualified}. Review it; edit it before the",
            "-- first run if you like (a later edit changes the schema checksum, so a run in progress restarts)."]
    head += [f"-- left out: {why}" for why in out.left_out]
    stmts = [f"CREATE TABLE {quote_ident(name)} (\n" + "\n".join(body) + "\n)" + (" STRICT" if strict else "") + ";"]
    # index every foreign key and every plain source index not already covered by a key
    covered: list[tuple[str, ...]] = [pk, *uniques]
    wanted: list[tuple[str, ...]] = [fk.columns for fk in fks] + [
        i for i in table.indexes if set(i) <= names]
    for cols_ in wanted:
        if any(k[: len(cols_)] == cols_ for k in covered if k):
            continue
        covered.append(cols_)
        stmts.append(f"CREATE INDEX {quote_ident(_index_name(name, cols_, False))} ON {quote_ident(name)} "
                     f"({', '.join(quote_ident(k) for k in cols_)});")
    out.up = "\n".join(head) + "\n-- migrate:up\n" + "\n".join(stmts) + "\n"
    out.down = f"-- migrate:down\nDROP TABLE IF EXISTS {quote_ident(name)};\n"
    return out


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        n = todo.pop()
        if n == goal:
            return True
        if n not in seen:
            seen.add(n)
            todo.extend(graph.get(n, ()))
    return False


def plan_ddl(
    chosen: Sequence[TableInfo],
    schema: TargetSchema,
    *,
    strict: bool = False,
    existing_sources: dict[str, str] | None = None,
    surrogate_keys: bool = False,
) -> list[TableDDL]:
    """DDL for the chosen tables, parents first; foreign keys only where the parent is migrated.

    `existing_sources` maps a source table to the existing target table it feeds, so a new table may
    reference a hand-written one. A foreign key that would close a cycle among new tables is left
    out (the load needs some order that puts every parent first) and said so in the file.
    """
    names = {t.qualified: t.name for t in chosen}
    targets = dict(existing_sources or {})
    targets.update(names)
    generated = {t.name: t for t in chosen}
    depends: dict[str, set[str]] = {t.name: set() for t in chosen}
    fks_of: dict[str, list[_Fk]] = {t.name: [] for t in chosen}
    left: dict[str, list[str]] = {t.name: [] for t in chosen}
    for t in sorted(chosen, key=lambda t: t.name):
        extract = {c.name for c in t.columns if not c.generated}
        for fk in t.foreign_keys:
            desc = f"foreign key ({', '.join(fk.columns)}) -> {fk.parent}({', '.join(fk.parent_columns)})"
            parent = targets.get(fk.parent)
            if parent is None:
                left[t.name].append(f"{desc}: {fk.parent} is not migrated")
                continue
            if not set(fk.columns) <= extract:
                left[t.name].append(f"{desc}: a generated column cannot hold a foreign key here")
                continue
            if parent in generated:
                ptable = generated[parent]
                keys = [tuple(ptable.primary_key), *ptable.unique]
                pcols = {c.name for c in ptable.columns if not c.generated}
            elif parent in schema.tables:
                tt = schema.tables[parent]
                keys = [tt.primary_key, *tt.unique]
                pcols = {c.name for c in tt.columns}
            else:
                left[t.name].append(f"{desc}: {parent} is not in the target")
                continue
            if not set(fk.parent_columns) <= pcols or tuple(fk.parent_columns) not in keys:
                left[t.name].append(f"{desc}: the parent columns are not a key of {parent} in the target")
                continue
            if parent != t.name and parent in generated and _reaches(depends, parent, t.name):
                left[t.name].append(f"{desc}: it would close a cycle of foreign keys")
                continue
            if parent != t.name and parent in generated:
                depends[t.name].add(parent)
            fks_of[t.name].append(_Fk(tuple(fk.columns), parent, tuple(fk.parent_columns)))
    own, int_refs = surrogates.layout(chosen, schema, fks_of, left, enabled=surrogate_keys)
    indegree = {n: len(d) for n, d in depends.items()}
    children: dict[str, list[str]] = {n: [] for n in depends}
    for n, ds in depends.items():
        for p in ds:
            children[p].append(n)
    ready = [n for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for c in children[n]:
            indegree[c] -= 1
            if indegree[c] == 0:
                heapq.heappush(ready, c)
    return [table_ddl(generated[n], n, strict=strict, fks=fks_of[n], left_out=left[n], surrogate=own.get(n),
                      integer_refs=int_refs.get(n)) for n in order]


def _reserved(name: str) -> bool:
    return name.startswith(("sqlite_", OWN_TABLE_PREFIX)) or name == APP_VERSION_TABLE


def choose_tables(
    source_tables: Sequence[TableInfo],
    schema: TargetSchema,
    *,
    tables: Sequence[str] | None,
    config: Config | None,
) -> tuple[list[TableInfo], dict[str, str]]:
    """The source tables to generate DDL for, and which existing target table each other source feeds.

    `tables=None` means every public table no rule migrates (ignore_tables excepted); a table whose
    target already exists is skipped, which makes generation idempotent across reruns and resumes.
    """
    cfg = config or Config(source=SourceConfig(uri="postgresql://"))
    by_name = {t.qualified: t for t in source_tables}
    plan = build_plan(cfg, list(source_tables), schema)
    fed = {s: tp.name for tp in plan.tables for s in tp.source_tables}
    if tables is None:
        ignored = set(cfg.ignore_tables)
        wanted = [n for n, _rows, _why in plan.unmigrated
                  if n not in ignored and by_name[n].schema == AUTO_SCHEMA]
    else:
        wanted = []
        for raw in tables:
            q = raw if "." in raw else f"{AUTO_SCHEMA}.{raw}"
            if q not in by_name:
                raise ConfigError(f"auto_schema.tables names {raw}, which the source does not have")
            if by_name[q].schema != AUTO_SCHEMA:
                raise ConfigError(
                    f"auto_schema.tables names {raw}: auto schema generates tables of schema {AUTO_SCHEMA} only "
                    "(a target table x is fed from public.x); write a migration and a tables rule for it")
            wanted.append(q)
    chosen: list[TableInfo] = []
    for q in wanted:
        t = by_name[q]
        if q in fed or t.name in schema.tables:
            continue
        if _reserved(t.name):
            log.warning("auto schema skips a table whose name SQLite or supamigrate reserves", table=q)
            continue
        chosen.append(t)
    return chosen, fed


def _next_version(migrations_dir: Path) -> int:
    versions = [m.version for m in discover(migrations_dir)]
    return max(versions, default=0) + 1


def _write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet: temporary file, then a hard link that fails if it does."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink()
    fsync_dir(path.parent)


def write_migrations(ddl: Sequence[TableDDL], migrations_dir: Path) -> list[Path]:
    """Check the DDL applies on top of the existing migrations, then write one file per table.

    Nothing is written when any statement fails, so a generation error never leaves half a schema.
    """
    if not ddl:
        return []
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        migrate_up(conn, migrations_dir)
        for d in ddl:
            try:
                for stmt in split_statements(d.up.split("-- migrate:up", 1)[1]):
                    conn.execute(stmt)
            except sqlite3.Error as exc:
                raise ConfigError(f"auto schema for {d.source.qualified} does not apply: {exc}") from None
    version = _next_version(migrations_dir)
    written: list[Path] = []
    for d in ddl:
        while True:
            path = migrations_dir / f"{version:03d}_{d.file_stem}.sql"
            version += 1
            if path.exists() or any(migrations_dir.glob(f"{path.name.split('_', 1)[0]}_*.sql")):
                continue
            try:
                _write_new(path, d.up + d.down)
            except FileExistsError:
                continue
            break
        written.append(path)
        log.info("auto schema migration written", table=d.source.qualified, file=path.name,
                 left_out=len(d.left_out))
    return written


def generate_for_source(
    src: Source,
    migrations_dir: Path,
    *,
    tables: Sequence[str] | None = None,
    strict: bool = False,
    config: Config | None = None,
    surrogate_keys: bool = False,
) -> list[Path]:
    """Generate and write migrations for `src`'s unmigrated (or the listed) tables; returns new files."""
    migrations_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(migrations_dir / ".supamigrate-auto-schema.lock", f"migrations folder {migrations_dir}"):
        schema = load_target_schema(migrations_dir)
        chosen, fed = choose_tables(src.tables(), schema, tables=tables, config=config)
        return write_migrations(plan_ddl(chosen, schema, strict=strict, existing_sources=fed,
                                         surrogate_keys=surrogate_keys), migrations_dir)


def generate_schema(
    source: str | Source,
    migrations_dir: str | Path,
    *,
    tables: Sequence[str] | None = None,
    strict: bool = False,
    schemas: Sequence[str] = ("public", "auth"),
    surrogate_keys: bool = False,
) -> list[Path]:
    """Library entry point: a source URI (or an open Source) in, new `NNN_auto_<table>.sql` files out.

    An open Source is left open for the caller; a URI is opened and closed here.
    """
    if isinstance(source, str):
        src = open_source(source, schemas=tuple(schemas))
        try:
            return generate_for_source(src, Path(migrations_dir), tables=tables, strict=strict,
                                       surrogate_keys=surrogate_keys)
        finally:
            src.close()
    return generate_for_source(source, Path(migrations_dir), tables=tables, strict=strict,
                               surrogate_keys=surrogate_keys)


def generate_for_config(config: Config, src: Source, migrations_dir: Path) -> list[Path]:
    """What `run` does when auto_schema.enabled: the config's table choice, ignore_tables respected."""
    ac = config.auto_schema
    tables = None if ac.tables == "unmigrated" else list(ac.tables)
    return generate_for_source(src, migrations_dir, tables=tables, strict=ac.strict, config=config,
                               surrogate_keys=ac.surrogate_keys)

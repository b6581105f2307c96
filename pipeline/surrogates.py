"""Integer surrogate keys for uuid primary keys (auto_schema.surrogate_keys).

Some users want compact rowid tables: `id INTEGER PRIMARY KEY` instead of a 36-character TEXT key
repeated in every child row. A table with such a key keeps its uuid next to it, in `<key>_uuid TEXT
NOT NULL UNIQUE`, so the app (and anything outside it holding old ids) can still find a row by the
uuid, and every foreign key column pointing at the key holds the parent's integer instead.

Which integer a row gets is its position in the source table's extract (1, 2, ...; primary-key
order for a live source, file order for a dump), not a counter of accepted rows: the number is
known before any row is decided, so a self reference to a row of a later batch maps without a second
pass, a resumed run assigns exactly the same numbers, and no hidden state exists. Rejected or
filtered rows leave gaps. The map is never stored on the side: each committed transform batch of the
table carries both columns, children read it back from those files the way foreign-key checks read
accepted keys, and in the target `SELECT <key>, <key>_uuid FROM <table>` is the map.

The convention is recognised in the target schema itself (a single INTEGER primary key `k`, a TEXT
column `k_uuid` that is UNIQUE, fed from a uuid source column), so the migration file stays the one
truth: a hand-written migration following it gets the same treatment, and a table generated earlier
keeps its integer keys whatever the config now says. Everything between staging and the last
foreign-key check runs on a "uuid-space" copy of the table (key and references as uuid TEXT, the
reference checked against the parent's `k_uuid`), so orphans, rejected parents, self references and
uniques behave exactly as for uuid keys; the integers are put in just before a batch is committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import IntegrityError
from pipeline.target import TargetSchema, TargetTable
from transforms.pgtext import PgTextError, parse_uuid

if TYPE_CHECKING:
    from pipeline.autoschema import _Fk
    from pipeline.config import TableRule
    from pipeline.plan import PlanIssue, TablePlan
    from pipeline.sources.base import Column, TableInfo
    from pipeline.transform import BatchInput, TransformContext

UUID_SUFFIX = "_uuid"
_CANONICAL = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


@dataclass(frozen=True)
class Ref:
    """A foreign key column that holds `parent`'s integer key; the uuid it stood for is in `parent_uuid`."""

    parent: str
    parent_key: str
    parent_uuid: str


@dataclass(frozen=True)
class SurrogateSpec:
    """What a target table has of the convention: its own integer key, references to integer keys, or both."""

    table: str
    key: str | None  # this table's integer primary key
    uuid_column: str | None  # where this table keeps its source uuid
    source_key: str | None  # the source column feeding `key`
    refs: dict[str, Ref] = field(default_factory=dict)
    work_target: TargetTable | None = None  # the uuid-space copy the transform decides rows on


def is_uuid(column: Column) -> bool:
    return (column.base_type or column.pg_type).strip().lower() == "uuid"


def uuid_column_of(table: TargetTable) -> str | None:
    """`k_uuid` when `table` follows the convention (single INTEGER primary key k, UNIQUE TEXT k_uuid)."""
    pk = table.primary_key
    if len(pk) != 1 or table.column(pk[0]).storage != "INTEGER" or table.without_rowid:
        return None
    name = pk[0] + UUID_SUFFIX
    col = next((c for c in table.columns if c.name == name), None)
    if col is None or col.storage != "TEXT" or (name,) not in table.unique:
        return None
    return name


# -- auto schema: which generated tables and columns become INTEGER -------------------------------------


def layout(
    chosen: Sequence[TableInfo],
    schema: TargetSchema,
    fks_of: dict[str, list[_Fk]],
    left: dict[str, list[str]],
    *,
    enabled: bool,
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Decide the DDL: generated table -> its uuid column, and generated table -> {FK column: parent}.

    A parent made earlier with an integer key (already in the schema) is followed whatever `enabled`
    says: its key is an integer now, so a new child's reference must be one too. A composite foreign
    key that includes an integer key cannot be kept (the child holds uuids), so it is left out and
    said so in the file. Mutates `fks_of` and `left`.
    """
    generated = {t.name: t for t in chosen}
    own: dict[str, str] = {}
    if enabled:
        for t in chosen:
            pk = t.primary_key
            if len(pk) != 1 or not is_uuid(t.column(pk[0])):
                continue
            uuid_col = pk[0] + UUID_SUFFIX
            if any(c.name == uuid_col for c in t.columns):
                left[t.name].append(f"integer surrogate key: the table already has a column {uuid_col}, "
                                    f"so {pk[0]} stays a uuid")
                continue
            own[t.name] = uuid_col
    keys = {name: generated[name].primary_key[0] for name in own}
    for name, tt in schema.tables.items():
        if uuid_column_of(tt) is not None:
            keys[name] = tt.primary_key[0]
    ints: dict[str, dict[str, str]] = {}
    for name, fks in fks_of.items():
        keep: list[_Fk] = []
        for fk in fks:
            key = keys.get(fk.parent)
            if key is None or key not in fk.parent_columns:
                keep.append(fk)
                continue
            child = generated[name]
            if len(fk.columns) == 1 and fk.parent_columns == (key,) and is_uuid(child.column(fk.columns[0])):
                ints.setdefault(name, {})[fk.columns[0]] = fk.parent
                keep.append(fk)
            elif fk.parent in own:
                left[name].append(
                    f"foreign key ({', '.join(fk.columns)}) -> {fk.parent}({', '.join(fk.parent_columns)}): "
                    f"{fk.parent}.{key} is an integer surrogate key, which only a single uuid column can refer to")
            else:
                keep.append(fk)
        fks[:] = keep
    return own, ints


def key_comment(uuid_column: str) -> str:
    return f" (integer surrogate key: the row's position in the source, 1, 2, ...; the uuid is in {uuid_column})"


def ref_comment(parent: str) -> str:
    return f" (holds the integer surrogate key of {parent})"


def uuid_line(uuid_column: str, key: str, quote: str) -> str:
    return f"  {quote} TEXT NOT NULL UNIQUE,  -- uuid: the source's {key}, kept so rows can be found by it"


# -- plan: the uuid-space copy of a target table ------------------------------------------------------


def detect(
    target: TargetTable, source: TableInfo, rule: TableRule, schema: TargetSchema, issues: list[PlanIssue]
) -> SurrogateSpec | None:
    """The convention as `target` (fed from `source` by `rule`) has it, or None when it has none of it.

    A reference to an integer key from a column not declared INTEGER would compare a uuid with an
    integer; that is a blocking plan issue rather than a table of orphans.
    """
    from pipeline.plan import PlanIssue

    feeds: dict[str, Column] = {}
    for c in source.columns:
        if c.name not in rule.drop and not c.generated:
            feeds[rule.rename.get(c.name, c.name)] = c
    key = uuid_col = source_key = None
    u = uuid_column_of(target)
    if u is not None and target.primary_key[0] in feeds and is_uuid(feeds[target.primary_key[0]]):
        key, uuid_col = target.primary_key[0], u
        source_key = feeds[key].name
    refs: dict[str, Ref] = {}
    for fk in target.foreign_keys:
        col = fk.columns[0]
        if len(fk.columns) != 1 or col not in feeds or not is_uuid(feeds[col]):
            continue
        parent = target if fk.parent == target.name else schema.tables.get(fk.parent)
        pu = uuid_column_of(parent) if parent is not None else None
        if parent is None or pu is None or fk.parent_columns != parent.primary_key:
            continue
        if fk.parent == target.name and key is None:
            continue
        if target.column(col).storage != "INTEGER":
            issues.append(PlanIssue(
                "blocking", "surrogate_reference_not_integer", target.name, col,
                f"{target.name}.{col} refers to {fk.parent}.{fk.parent_columns[0]}, an integer surrogate key, "
                f"but is declared {target.column(col).decl_type or target.column(col).storage}",
                f"declare {target.name}.{col} INTEGER"))
            continue
        refs[col] = Ref(fk.parent, fk.parent_columns[0], pu)
    if key is None and not refs:
        return None
    return SurrogateSpec(target.name, key, uuid_col, source_key, refs, _work_target(target, key, uuid_col, refs))


def _work_target(target: TargetTable, key: str | None, uuid_col: str | None, refs: dict[str, Ref]) -> TargetTable:
    as_text = {*refs, *([key] if key else [])}
    cols = tuple(
        replace(c, decl_type="TEXT", storage="TEXT", affinity="TEXT", default=None) if c.name in as_text else c
        for c in target.columns if c.name != uuid_col)
    fks = tuple(
        replace(fk, parent_columns=(refs[fk.columns[0]].parent_uuid,))
        if len(fk.columns) == 1 and fk.columns[0] in refs and fk.parent != target.name else fk
        for fk in target.foreign_keys)
    unique = tuple(u for u in target.unique if uuid_col not in u)
    return replace(target, columns=cols, foreign_keys=fks, unique=unique)


def working_plan(plan: TablePlan) -> TablePlan:
    """The plan the transform decides rows on: the uuid-space table when the convention applies."""
    spec = plan.surrogate
    if spec is None or spec.work_target is None:
        return plan
    return replace(plan, target=spec.work_target, surrogate=None)


# -- transform: uuid space <-> integers ---------------------------------------------------------------


def _canonical(values: pa.Array) -> pa.Array:
    """uuid text as the transform writes it (lowercase, hyphenated); anything unparsable becomes null."""
    low = pc.utf8_lower(values)
    if pc.all(pc.or_kleene(pc.is_null(low), pc.match_substring_regex(low, _CANONICAL))).as_py():
        return low
    out: list[str | None] = []
    for v in values.to_pylist():
        try:
            out.append(None if v is None else parse_uuid(v))
        except PgTextError:
            out.append(None)
    return pa.array(out, pa.string())


class KeyMap:
    """Puts the integers into one table's accepted batches, and takes them out again for a resume.

    Built per transform of a table; the own table's uuids come from its committed extract (position
    + 1 is the key), a parent's from its committed transform batches, so nothing here outlives the files.
    """

    def __init__(self, plan: TablePlan, inputs: Sequence[BatchInput], ctx: TransformContext) -> None:
        assert plan.surrogate is not None
        self.plan = plan
        self.spec = plan.surrogate
        self.inputs = list(inputs)
        self.ctx = ctx
        self._own: pa.Array | None = None
        self._parents: dict[str, tuple[pa.Array, pa.Array]] = {}

    def own_uuids(self) -> pa.Array:
        """Every extracted row's uuid in extract order: the key of row i is i + 1."""
        if self._own is None:
            assert self.spec.source_key is not None
            chunks: list[pa.Array] = []
            for b in self.inputs:
                chunks.extend(pq.read_table(b.extract_file, columns=[self.spec.source_key]).column(0).chunks)
            arr = pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())
            self._own = _canonical(arr)
        return self._own

    def parent(self, ref: Ref) -> tuple[pa.Array, pa.Array]:
        """(uuids, integer keys) of the rows the parent committed."""
        if ref.parent not in self._parents:
            uuids: list[pa.Array] = []
            ints: list[pa.Array] = []
            for p in self.ctx.committed_files(ref.parent):
                t = pq.read_table(p, columns=[ref.parent_uuid, ref.parent_key])
                uuids.extend(t.column(0).chunks)
                ints.extend(t.column(1).chunks)
            self._parents[ref.parent] = (
                pa.chunked_array(uuids, pa.string()).combine_chunks() if uuids else pa.array([], pa.string()),
                pa.chunked_array(ints, pa.int64()).combine_chunks() if ints else pa.array([], pa.int64()))
        return self._parents[ref.parent]

    def to_integers(self, values: pa.Array, column: str, ref: Ref | None) -> pa.Array:
        """uuids -> integer keys of the table `ref` points at (None, or a self reference: this table)."""
        ints: pa.Array | None = None
        if ref is None or ref.parent == self.plan.name:
            uuids, where = self.own_uuids(), self.plan.name
        else:
            (uuids, ints), where = self.parent(ref), ref.parent
        idx = pc.index_in(values, value_set=uuids)
        if idx.null_count != values.null_count:
            missing = pc.filter(values, pc.and_(pc.is_null(idx), pc.is_valid(values)))[0].as_py()
            raise IntegrityError(f"{self.plan.name}.{column}: uuid {missing} has no integer key in {where}, "
                                 "though it passed the foreign key check")
        if ints is None:
            return pc.add(idx.cast(pa.int64()), 1)
        return pc.take(ints, idx)

    def to_uuids(self, values: pa.Array, ref: Ref) -> pa.Array:
        if ref.parent == self.plan.name:
            return pc.take(self.own_uuids(), pc.subtract(values, 1))
        uuids, ints = self.parent(ref)
        return pc.take(uuids, pc.index_in(values, value_set=ints))

    def to_target(self, table: pa.Table) -> pa.Table:
        """An accepted uuid-space batch as the real target table: integers in, the uuid kept aside."""
        spec = self.spec
        names: list[str] = []
        arrays: list[pa.Array] = []
        for tc in self.plan.target.columns:
            if tc.name == spec.uuid_column and spec.key is not None:
                arr = table.column(spec.key).combine_chunks()
            elif tc.name == spec.key:
                arr = self.to_integers(table.column(tc.name).combine_chunks(), tc.name, None)
            elif tc.name in spec.refs:
                arr = self.to_integers(table.column(tc.name).combine_chunks(), tc.name, spec.refs[tc.name])
            elif tc.name in table.column_names:
                arr = table.column(tc.name).combine_chunks()
            else:
                continue
            names.append(tc.name)
            arrays.append(arr)
        schema = pa.schema([pa.field(n, a.type) for n, a in zip(names, arrays, strict=True)])
        return pa.Table.from_arrays(arrays, schema=schema)

    def uuid_space(self, path: Path) -> pa.Table:
        """A committed batch read back as the transform saw it (for the unique checks of a resume)."""
        t = pq.read_table(path)
        spec = self.spec
        assert spec.work_target is not None
        names: list[str] = []
        arrays: list[pa.Array] = []
        for tc in spec.work_target.columns:
            if tc.name == spec.key and spec.uuid_column is not None:
                arr = t.column(spec.uuid_column).combine_chunks()
            elif tc.name in spec.refs and tc.name in t.column_names:
                arr = self.to_uuids(t.column(tc.name).combine_chunks(), spec.refs[tc.name])
            elif tc.name in t.column_names:
                arr = t.column(tc.name).combine_chunks()
            else:
                continue
            names.append(tc.name)
            arrays.append(arr)
        return pa.Table.from_arrays(arrays, names=names)


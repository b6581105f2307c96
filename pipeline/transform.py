"""Extracted text batches into target-shaped Parquet batches plus rejects, table by table.

Tables run parents first, and everything a later table needs from an earlier one (the keys that
made it into the target, the reasons others did not) is read back from the committed files, so a
resumed transform decides every row exactly as an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import faults
from pipeline.checks import checksum_arrow
from pipeline.config import REJECT, Config, RowFilter
from pipeline.errors import Interrupted, SourceError
from pipeline.logs import get_logger
from pipeline.memory import release_memory
from pipeline.plan import MigrationPlan, TablePlan
from pipeline.runs import Manifest, RunDir, atomic_write_bytes, atomic_write_parquet, file_sha256
from pipeline.scratch import Scratch, json_values
from pipeline.sources.base import Column, TableInfo
from pipeline.surrogates import KeyMap, working_plan
from pipeline.target import StorageClass, TargetColumn
from transforms.policy import TypePolicy
from transforms.types import convert_column

log = get_logger(stage="transform")

ARROW_TYPES: dict[StorageClass, pa.DataType] = {
    "INTEGER": pa.int64(),
    "REAL": pa.float64(),
    "TEXT": pa.string(),
    "BLOB": pa.binary(),
}
SAMPLE_REJECTS = 20


@dataclass
class Staged:
    """One batch renamed into target columns, still text, with the row fates decided so far."""

    columns: dict[str, pa.Array]
    source_columns: dict[str, Column]
    keys: list[str]
    raw_table: pa.Table
    errors: dict[int, tuple[str, str | None, str]] = field(default_factory=dict)
    filtered: dict[int, str] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)

    def reject(self, i: int, code: str, column: str | None, reason: str) -> None:
        if i not in self.errors and i not in self.filtered:
            self.errors[i] = (code, column, reason)

    @property
    def n(self) -> int:
        return len(self.keys)


def row_keys(data: pa.Table, pk: tuple[str, ...], offset: int) -> list[str]:
    if not pk:
        return [f"row {offset + i + 1}" for i in range(data.num_rows)]
    cols = [data.column(c).to_pylist() for c in pk]
    if len(cols) == 1:
        return ["NULL" if v is None else str(v) for v in cols[0]]
    return ["(" + ", ".join("NULL" if v is None else str(v) for v in vals) + ")" for vals in zip(*cols, strict=True)]


def _filter_keep(f: RowFilter, values: list[str | None]) -> list[bool]:
    if f.op == "is_null":
        return [v is None for v in values]
    if f.op == "not_null":
        return [v is not None for v in values]
    if f.op == "eq":
        return [v == f.value for v in values]
    if f.op == "ne":
        return [v != f.value for v in values]
    allowed = set(f.value or [])
    if f.op == "in":
        return [v in allowed for v in values]
    return [v not in allowed for v in values]


def _describe_filter(f: RowFilter) -> str:
    return f"filter {f.column} {f.op}" + (f" {f.value}" if f.value is not None else "")


def stage_table_batch(plan: TablePlan, data: pa.Table, offset: int) -> Staged:
    assert plan.source is not None
    keys = row_keys(data, plan.source.primary_key, offset)
    staged = Staged(columns={}, source_columns={}, keys=keys, raw_table=data)
    for f in plan.rule.filter:
        keep = _filter_keep(f, data.column(f.column).to_pylist())
        for i, ok in enumerate(keep):
            if not ok and i not in staged.filtered:
                staged.filtered[i] = _describe_filter(f)
    for cm in plan.columns:
        values = data.column(cm.source).combine_chunks()
        mapping = plan.rule.enum_map.get(cm.target.name)
        if mapping:
            out: list[str | None] = []
            for i, v in enumerate(values.to_pylist()):
                if v is not None and v in mapping:
                    m = mapping[v]
                    if m == REJECT:
                        staged.reject(i, "enum_rejected", cm.target.name,
                                      f"value {v!r} is rejected by tables.{plan.name}.enum_map.{cm.target.name}")
                        out.append(None)
                        continue
                    out.append(m)
                else:
                    out.append(v)
            values = pa.array(out, pa.string())
        staged.columns[cm.target.name] = values
        staged.source_columns[cm.target.name] = cm.source_column
    return staged


def _literal_default(default: str | None) -> str | int | float | None:
    """A constant SQL default as a value; None for expressions like datetime('now')."""
    if default is None:
        return None
    d = default.strip()
    while d.startswith("(") and d.endswith(")"):
        d = d[1:-1].strip()
    if len(d) >= 2 and d[0] == d[-1] == "'":
        return d[1:-1].replace("''", "'")
    try:
        return int(d)
    except ValueError:
        pass
    try:
        return float(d)
    except ValueError:
        return None


def _typed_constant(value: Any, tc: TargetColumn, n: int) -> pa.Array:
    t = ARROW_TYPES[tc.storage]
    if value is not None:
        if tc.storage == "INTEGER":
            value = int(value)
        elif tc.storage == "REAL":
            value = float(value)
        elif tc.storage == "TEXT":
            value = str(value)
    return pa.array([value] * n, t)


class TransformContext:
    """Read-through caches of what earlier tables committed: accepted keys and reject reasons."""

    def __init__(self, run: RunDir, manifest: Manifest) -> None:
        self.run = run
        self.manifest = manifest
        self._keys: dict[tuple[str, str], pa.ChunkedArray] = {}
        self._reasons: dict[str, dict[str, str]] = {}

    def committed_files(self, table: str) -> list[Path]:
        batches = self.manifest.transform_state(table)["batches"]
        return [self.run.root / b["file"] for _, b in sorted(batches.items())]

    def accepted(self, table: str, column: str) -> pa.ChunkedArray:
        """The non-null values of a parent column in the parent's committed batches, as read.

        A foreign key's parent column is a primary key or UNIQUE (SQLite refuses any other), and the
        transform commits no duplicate of either, so the values are distinct without a `unique`,
        whose hash table cost twice the 22 MB of 600k uuid keys at 10M.
        """
        key = (table, column)
        if key not in self._keys:
            chunks: list[pa.Array] = []
            for p in self.committed_files(table):
                pf = pq.ParquetFile(p)
                if column in pf.schema_arrow.names:
                    chunks.extend(pf.read(columns=[column]).column(0).chunks)
            self._keys[key] = pa.chunked_array(chunks, None if chunks else pa.string()).drop_null()
        return self._keys[key]

    def reject_reasons(self, table: str) -> dict[str, str]:
        if table not in self._reasons:
            reasons: dict[str, str] = {}
            for b in self.manifest.transform_state(table)["batches"].values():
                rf = b.get("rejects_file")
                if not rf:
                    continue
                for r in iter_jsonl(self.run.root / rf):
                    reasons.setdefault(r["key"], r["reason"])
            for b in self.manifest.transform_state(table)["batches"].values():
                for k, reason in (b.get("filtered_keys") or {}).items():
                    reasons.setdefault(k, f"filtered: {reason}")
            self._reasons[table] = reasons
        return self._reasons[table]

    def release(self) -> None:
        """Drop every cached parent: a table's parents are read again by the next table that needs
        them (a few hundred ms at 10M rows) rather than all of them held to the end of the stage."""
        self._keys.clear()
        self._reasons.clear()

    def forget(self, table: str) -> None:
        self._keys = {k: v for k, v in self._keys.items() if k[0] != table}
        self._reasons.pop(table, None)


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _key_text(value: Any) -> str:
    """A value as row_keys names a row keyed by it (a tuple for a multi-column key)."""
    if isinstance(value, tuple):
        return "(" + ", ".join("NULL" if v is None else str(v) for v in value) + ")"
    return "NULL" if value is None else str(value)


SPILL_VALUES = 25_000  # a unique constraint's values move to the scratch file past this many


def _named_by(value: Any, row: str) -> bool:
    """row == _key_text(value), without building the text where it cannot be equal (hot: every
    value a unique constraint takes is asked)."""
    if type(value) is str:
        return row == value
    if isinstance(value, tuple) and not row.startswith("("):
        return False
    return row == _key_text(value)


def _is_nan(value: Any) -> bool:
    """NaN equals nothing, itself included: a NaN value never collides (as in a Python set)."""
    if isinstance(value, tuple):
        return any(v != v for v in value)
    return bool(value != value)


class SeenValues:
    """The values of one unique constraint already taken, each with the row that took it first.

    Exact (every value is kept). In memory while small: a single-column value kept bare, and a value
    whose first row is named by the value itself (a primary key: the row key is the key's text) in a
    set, its row name rebuilt on a hit; only the others keep their row name in a dict. Past `limit`
    values, with a scratch file to go to, the values move there (a WITHOUT ROWID table keyed by the
    value's columns, the row name NULL where it is the value's own text) and each batch is looked up
    at once, so a big table's e-mails or (user_id, role) pairs no longer grow the heap. Both forms
    give the same answers: SQLite compares text and blobs by bytes and numbers by value, as Python's
    == does for the str, bytes, int and float a typed Arrow column yields.
    """

    __slots__ = ("_as_json", "_limit", "_named", "_other", "_scratch", "_size", "_table", "_width")

    def __init__(self, scratch: Scratch | None = None, limit: int | None = None) -> None:
        self._named: set[Any] = set()
        self._other: dict[Any, str] = {}
        self._scratch = scratch
        self._limit = SPILL_VALUES if limit is None else limit
        self._table: str | None = None
        self._width = 1
        self._as_json = False
        self._size = 0

    def __len__(self) -> int:
        return self._size if self._table is not None else len(self._named) + len(self._other)

    @property
    def spilled(self) -> bool:
        return self._table is not None

    def first(self, value: Any) -> str | None:
        """The row that took value, or None when it is free."""
        if self._table is None:
            if value in self._named:
                return _key_text(value)
            return self._other.get(value)
        found = self._found([value]) if not _is_nan(value) else {}
        return None if value not in found else found[value] or _key_text(value)

    def add(self, value: Any, row: str) -> None:
        """Record value as taken by row, unless it is taken already (the first row stays)."""
        self.claim([value], [row])

    def claim(self, values: Sequence[Any], rows: Sequence[str]) -> list[str | None]:
        """For each value in turn: the row that took it before (in an earlier call or earlier in
        values), or None, and then this row takes it. No value may be None or hold a None."""
        if self._table is not None:
            return self._claim_on_disk(values, rows)
        named, other = self._named, self._other
        out: list[str | None] = []
        for value, row in zip(values, rows, strict=True):
            if value in named:
                out.append(_key_text(value))
                continue
            first = other.get(value)
            out.append(first)
            if first is None:
                if _named_by(value, row):
                    named.add(value)
                else:
                    other[value] = row
        if self._scratch is not None and len(self) > self._limit:
            self._spill(self._scratch)
        return out

    def _columns(self) -> list[str]:
        return [f"v{k}" for k in range(self._width)]

    def _spill(self, scratch: Scratch) -> None:
        first = next(iter(self._named), None) if self._named else next(iter(self._other))
        parts = first if isinstance(first, tuple) else (first,)
        self._width = len(parts)
        # text and integers (the usual keys) travel as one JSON parameter per batch, parsed in C;
        # others (blobs, reals) row by row through executemany. A column's type is fixed by Arrow.
        self._as_json = all(type(x) in (str, int) for x in parts)
        self._table = scratch.new_table("seen")
        cols = ", ".join(self._columns())
        scratch.db.execute(f"CREATE TABLE {self._table} ({cols}, row TEXT, PRIMARY KEY ({cols})) WITHOUT ROWID")
        scratch.db.execute(f"CREATE TEMP TABLE probe_{self._table} ({cols})")  # no key: the join uses the set's
        self._size = 0
        self._insert([(v, None) for v in self._named if not _is_nan(v)])
        self._insert([(v, r) for v, r in self._other.items() if not _is_nan(v)])
        self._named, self._other = set(), {}

    def _params(self, value: Any) -> tuple[Any, ...]:
        return value if self._width > 1 else (value,)

    def _insert(self, taken: list[tuple[Any, str | None]]) -> None:
        assert self._scratch is not None and self._table is not None
        if self._as_json:
            picks = ", ".join(f"json_extract(value, '$[{k}]')" for k in range(self._width + 1))
            self._scratch.write(f"INSERT INTO {self._table} SELECT {picks} FROM json_each(?)",
                                [(json_values([*self._params(v), r] for v, r in taken),)])
        else:
            marks = ", ".join("?" * (self._width + 1))
            self._scratch.write(f"INSERT INTO {self._table} VALUES ({marks})",
                                ((*self._params(v), r) for v, r in taken))
        self._size += len(taken)

    def _found(self, values: Iterable[Any]) -> dict[Any, str | None]:
        """The values of this batch already taken, each with its first row, None for a row named by
        the value itself (named from the value asked, as the set does). One join in SQLite."""
        assert self._scratch is not None and self._table is not None
        db, probe, cols = self._scratch.db, f"temp.probe_{self._table}", self._columns()
        names = ", ".join("s." + c for c in cols)
        if self._as_json:
            on = " AND ".join(f"s.{c} = json_extract(j.value, '$[{k}]')" for k, c in enumerate(cols))
            sql = (f"SELECT {names}, s.row FROM {self._table} s WHERE s.v0 IN (SELECT value FROM json_each(?))"
                   if self._width == 1 else f"SELECT {names}, s.row FROM json_each(?) j JOIN {self._table} s ON {on}")
            return {r[0] if self._width == 1 else tuple(r[:-1]): r[-1]
                    for r in db.execute(sql, (json_values(values),))}
        self._scratch.write(f"INSERT INTO {probe} VALUES ({', '.join('?' * self._width)})",
                            (self._params(v) for v in values))
        on = " AND ".join(f"s.{c} = p.{c}" for c in cols)
        found: dict[Any, str | None] = {}
        try:
            for r in db.execute(f"SELECT {names}, s.row FROM {probe} p JOIN {self._table} s ON {on}"):
                found[r[0] if self._width == 1 else tuple(r[:-1])] = r[-1]
        finally:
            db.execute(f"DELETE FROM {probe}")
        return found

    def _claim_on_disk(self, values: Sequence[Any], rows: Sequence[str]) -> list[str | None]:
        fresh = [True] * len(values) if self._as_json else [not _is_nan(v) for v in values]
        taken = self._found(v for v, ok in zip(values, fresh, strict=True) if ok)
        new: list[tuple[Any, str | None]] = []
        out: list[str | None] = []
        for value, row, ok in zip(values, rows, fresh, strict=True):
            if not ok:
                out.append(None)
            elif value in taken:
                out.append(taken[value] or _key_text(value))
            else:
                out.append(None)
                named = _named_by(value, row)
                taken[value] = None if named else row
                new.append((value, None if named else row))
        if new:
            new.sort(key=itemgetter(0))  # B-tree inserts in key order touch each page once
            self._insert(new)
        return out


class UniqueGuard:
    """What one unique constraint has taken so far, in memory that need not grow with the table.

    Tables are extracted in primary-key order, so a key column usually arrives strictly increasing:
    then no value can repeat, and the largest one is all there is to keep. Only when a batch breaks
    the order (or the column is not text or integer) are the values taken so far read back from the
    committed batches (`reload`) into a `SeenValues`, which is exact and, past `SPILL_VALUES`, keeps
    them in the table's scratch file. Without a `reload` the guard keeps every value from the start.
    """

    __slots__ = ("_last", "_reload", "_seen")

    def __init__(self, reload: Callable[[], SeenValues] | None = None, scratch: Scratch | None = None) -> None:
        self._reload = reload
        self._last: Any = None
        self._seen: SeenValues | None = None if reload is not None else SeenValues(scratch)

    @property
    def ordered(self) -> bool:
        return self._seen is None

    def extend_in_order(self, values: pa.Array) -> bool:
        """Take non-null values if each is greater than every value taken so far; False when not.

        Arrow compares text by UTF-8 bytes and Python by code points: the same order.
        """
        if self._seen is not None:
            return False
        t = values.type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)):
            return False
        values = values.drop_null()
        n = len(values)
        if n == 0:
            return True
        if self._last is not None and not values[0].as_py() > self._last:
            return False
        if n > 1 and not pc.all(pc.greater(values.slice(1), values.slice(0, n - 1))).as_py():
            return False
        self._last = values[n - 1].as_py()
        return True

    def values(self) -> SeenValues:
        """Every value taken so far, each with the row that took it (leaves the ordered mode)."""
        if self._seen is None:
            assert self._reload is not None
            self._seen = self._reload()
        return self._seen


@dataclass
class TableState:
    """Per-table memory across batches: the unique constraints' guards (rebuilt from files on resume),
    the settled self-references, and the scratch file the big ones live in."""

    seen: dict[tuple[str, ...], UniqueGuard] = field(default_factory=dict)
    self_ok: SelfReferences | None = None
    scratch: Scratch | None = None


def _present_in(values: pa.Array, parents: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`pc.is_in(values, value_set=parents)`, with the hash table built on the smaller side.

    is_in hashes its value set on every call: for a 20k-row batch against 600k parent keys that is
    0.12 s per batch and foreign key (the 10M bench's messages: minutes in all), against 0.01 s for
    probing the parents with the batch's own distinct values and then the batch with the few found.
    """
    if len(parents) <= 4 * len(values):
        return pc.is_in(values, value_set=parents.combine_chunks() if isinstance(parents, pa.ChunkedArray)
                        else parents)
    found = parents.filter(pc.is_in(parents, value_set=pc.unique(values.drop_null())))
    return pc.is_in(values, value_set=found)


def finish_batch(
    plan: TablePlan,
    staged: Staged,
    policy: TypePolicy,
    ctx: TransformContext,
    state: TableState,
) -> pa.Table:
    """Convert, fill defaults, enforce NOT NULL, foreign keys and uniques; return the accepted rows."""
    n = staged.n
    target = plan.target
    out: dict[str, pa.Array] = {}
    for tc in target.columns:
        if tc.name in staged.columns:
            conv = convert_column(staged.columns[tc.name], staged.source_columns[tc.name], tc, policy)
            staged.notes.update({f"{tc.name}:{k}": v for k, v in conv.notes.items()})
            for i, reason in conv.errors.items():
                staged.reject(i, "invalid_value", tc.name, reason)
            out[tc.name] = conv.array
        elif tc.name in plan.rule.defaults:
            out[tc.name] = _typed_constant(plan.rule.defaults[tc.name], tc, n)
    for tc in target.columns:
        arr = out.get(tc.name)
        if arr is None or not tc.notnull or arr.null_count == 0:
            continue
        fill = plan.rule.defaults.get(tc.name)
        if fill is None:
            fill = _literal_default(tc.default)
        nulls = [i for i, v in enumerate(arr.is_null().to_pylist()) if v]
        if fill is not None:
            vals = arr.to_pylist()
            typed = _typed_constant(fill, tc, 1)[0].as_py()
            for i in nulls:
                if i not in staged.errors:
                    vals[i] = typed
                    staged.notes[f"{tc.name}:default_filled"] += 1
            out[tc.name] = pa.array(vals, ARROW_TYPES[tc.storage])
        else:
            for i in nulls:
                staged.reject(i, "missing_required", tc.name, f"{tc.name} is required by the target but is NULL")
    for fk in target.foreign_keys:
        if len(fk.columns) != 1 or fk.columns[0] not in out:
            continue
        col = fk.columns[0]
        arr = out[col]
        if fk.parent == target.name:
            assert state.self_ok is not None
            parent_set = state.self_ok.accepted(col, arr)
        else:
            parent_set = ctx.accepted(fk.parent, fk.parent_columns[0]).cast(arr.type)
        present = _present_in(arr, parent_set).to_pylist()
        valid = arr.is_valid().to_pylist()
        values: list[Any] | None = None
        tc = target.column(col)
        reasons = ctx.reject_reasons(fk.parent) if fk.parent != target.name else {}
        for i, (ok, isval) in enumerate(zip(present, valid, strict=True)):
            if ok or not isval or i in staged.errors or i in staged.filtered:
                continue
            if values is None:
                values = arr.to_pylist()
            v = values[i]
            if plan.rule.orphan_policy(col) == "set_null" and not tc.notnull and not tc.pk:
                values[i] = None
                staged.notes[f"{col}:orphan_set_null"] += 1
                continue
            why = reasons.get(str(v))
            if why:
                staged.reject(i, "parent_rejected", col,
                              f"{col} {v} refers to {fk.parent} row {v}, which was not migrated: {why}")
            else:
                staged.reject(i, "orphan", col, f"{col} {v} has no row in {fk.parent}")
        if values is not None:
            out[col] = pa.array(values, arr.type)
    uniques = [target.primary_key, *target.unique] if target.primary_key else list(target.unique)
    for cols in uniques:
        if not cols or any(c not in out for c in cols):
            continue
        guard = state.seen.setdefault(tuple(cols), UniqueGuard(scratch=state.scratch))
        if len(cols) == 1 and guard.ordered:
            live = pa.array([i not in staged.errors and i not in staged.filtered for i in range(n)], pa.bool_())
            if guard.extend_in_order(out[cols[0]].filter(live)):
                continue
        picked, values = _unique_values([out[c] for c in cols],
                                        [i for i in range(n) if i not in staged.errors and i not in staged.filtered])
        firsts = guard.values().claim(values, [staged.keys[i] for i in picked])
        for i, first in zip(picked, firsts, strict=True):
            if first is not None:
                staged.reject(i, "duplicate", cols[0] if len(cols) == 1 else None,
                              f"duplicate value for unique ({', '.join(cols)}) of {target.name}: "
                              f"already used by row {first}")
    alive = [i not in staged.errors and i not in staged.filtered for i in range(n)]
    mask = pa.array(alive, pa.bool_())
    names = [tc.name for tc in target.columns if tc.name in out]
    arrays = [out[c].filter(mask) for c in names]
    schema = pa.schema([pa.field(c, ARROW_TYPES[target.column(c).storage]) for c in names])
    return pa.Table.from_arrays(arrays, schema=schema)


def _unique_values(arrays: list[pa.Array], rows: Iterable[int]) -> tuple[list[int], list[Any]]:
    """The given rows that hold a whole value of a unique constraint (no NULL part), and those values
    (bare for one column, tuples for several): NULLs never collide."""
    lists = [a.to_pylist() for a in arrays]
    picked: list[int] = []
    values: list[Any] = []
    if len(lists) == 1:
        (col,) = lists
        for i in rows:
            if col[i] is not None:
                picked.append(i)
                values.append(col[i])
        return picked, values
    for i in rows:
        value = tuple(c[i] for c in lists)
        if all(v is not None for v in value):
            picked.append(i)
            values.append(value)
    return picked, values


def _rejects_lines(plan: TablePlan, staged: Staged, source_table: str) -> bytes:
    if not staged.errors:
        return b""
    order = sorted(staged.errors)
    # only the rejected rows become Python dicts, not the whole batch
    rows = staged.raw_table.take(order).to_pylist()
    lines = []
    for i, row in zip(order, rows, strict=True):
        code, column, reason = staged.errors[i]
        lines.append(json.dumps({
            "table": plan.name, "source_table": source_table, "key": staged.keys[i], "column": column,
            "code": code, "reason": reason, "row": row,
        }, ensure_ascii=False, default=str))
    return ("\n".join(lines) + "\n").encode()


@dataclass
class BatchInput:
    batch_id: str
    source_table: str
    extract_file: Path
    extract_sha256: str
    offset: int


def extract_batches(run: RunDir, manifest: Manifest, source_table: str, prefix: str) -> list[BatchInput]:
    out: list[BatchInput] = []
    offset = 0
    st = manifest.extract_state(source_table)
    if not st.get("done"):
        raise SourceError(f"extract of {source_table} is not complete; cannot transform it")
    for i, b in enumerate(st["batches"], start=1):
        out.append(BatchInput(f"{prefix}{i:05d}", source_table, run.root / b["file"], b["sha256"], offset))
        offset += b["rows"]
    return out


def load_table_info(run: RunDir, source_table: str) -> TableInfo:
    return TableInfo.from_dict(json.loads((run.extract_dir(source_table) / "schema.json").read_text()))


StageFn = Callable[[BatchInput, pa.Table], Staged]


def transform_table(
    plan: TablePlan,
    config: Config,
    run: RunDir,
    manifest: Manifest,
    ctx: TransformContext,
    *,
    progress: Callable[[str, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Transform every batch of one target table that is not already committed; return its totals.

    The table's scratch file (a fresh one: an earlier attempt's is deleted, never reused) is gone
    when this returns, whether or not the table finished.
    """
    while True:
        with Scratch(run, plan.name) as scratch:
            done = _transform_batches(plan, config, run, manifest, ctx, scratch, progress, should_stop)
        if done:
            manifest.finish_transform(plan.name)
            ctx.forget(plan.name)
            return table_totals(manifest, plan.name)
        _reset_table(run, manifest, ctx, plan.name)


def _transform_batches(
    plan: TablePlan, config: Config, run: RunDir, manifest: Manifest, ctx: TransformContext, scratch: Scratch,
    progress: Callable[[str, int], None] | None, should_stop: Callable[[], bool],
) -> bool:
    """Commit every batch not yet committed; False when the committed set is not this run's inputs'."""
    policy = config.types.policy()
    tstate = manifest.transform_state(plan.name)
    # integer surrogate keys: rows are decided on uuids, the integers go in just before the commit
    work = working_plan(plan)
    inputs, stage_fn = _inputs_and_stager(work, config, run, manifest, ctx, scratch)
    keymap = KeyMap(plan, inputs, ctx) if plan.surrogate is not None else None
    valid_ids = {b.batch_id for b in inputs}
    if not _committed_batches_valid(run, manifest, plan.name, inputs):
        _reset_table(run, manifest, ctx, plan.name)
        tstate = manifest.transform_state(plan.name)
    state = TableState(scratch=scratch)
    _rebuild_seen(work, run, tstate, state, keymap.uuid_space if keymap is not None else pq.read_table)
    if any(fk.parent == plan.name for fk in plan.target.foreign_keys):
        state.self_ok = _self_reference_closure(work, inputs, stage_fn, policy, ctx, scratch)
    for b in inputs:
        if b.batch_id in tstate["batches"]:
            continue
        t0 = time.perf_counter()
        data = pq.read_table(b.extract_file)
        staged = stage_fn(b, data)
        table = finish_batch(work, staged, policy, ctx, state)
        if keymap is not None:
            table = keymap.to_target(table)
        out_path = run.transform_dir(plan.name) / f"{b.batch_id}.parquet"
        digest = atomic_write_parquet(out_path, table)
        # the content checksum of exactly the rows committed, so the checks need not read them back
        content = checksum_arrow(table, table.column_names) if table.num_columns else None
        rej_rel = None
        rej = _rejects_lines(plan, staged, b.source_table)
        if rej:
            rej_path = run.rejects_dir(plan.name) / f"{b.batch_id}.jsonl"
            atomic_write_bytes(rej_path, rej)
            rej_rel = str(rej_path.relative_to(run.root))
        reasons = Counter(f"{code}:{col}" if col else code for code, col, _ in staged.errors.values())
        filter_reasons = Counter(staged.filtered.values())
        entry = {
            "file": str(out_path.relative_to(run.root)),
            "sha256": digest,
            "source_table": b.source_table,
            "extract_sha256": b.extract_sha256,
            "rows_in": staged.n,
            "loaded": table.num_rows,
            "rejected": len(staged.errors),
            "filtered": len(staged.filtered),
            "rejects_file": rej_rel,
            "reasons": dict(reasons),
            "filter_reasons": dict(filter_reasons),
            "filtered_keys": {staged.keys[i]: r for i, r in list(staged.filtered.items())[:10_000]},
            "notes": dict(staged.notes),
            "sample_keys": _samples(staged),
            "checksum": None if content is None else {
                "columns": table.column_names, "rows": content.rows, "digest": content.digest},
            "seconds": round(time.perf_counter() - t0, 4),
        }
        assert staged.n == entry["loaded"] + entry["rejected"] + entry["filtered"]
        manifest.commit_transform_batch(plan.name, b.batch_id, entry)
        faults.point("transform.batch")
        if progress:
            progress(plan.name, staged.n)
        if should_stop():
            raise Interrupted(f"interrupted during transform of {plan.name} after batch {b.batch_id}")
    return not set(tstate["batches"]) - valid_ids


def _samples(staged: Staged) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for i in sorted(staged.errors):
        code, col, _ = staged.errors[i]
        key = f"{code}:{col}" if col else code
        lst = out.setdefault(key, [])
        if len(lst) < SAMPLE_REJECTS:
            lst.append(staged.keys[i])
    return out


def table_totals(manifest: Manifest, table: str) -> dict[str, Any]:
    batches = manifest.transform_state(table)["batches"].values()
    reasons: Counter[str] = Counter()
    filters: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    samples: dict[str, list[str]] = {}
    for b in batches:
        reasons.update(b["reasons"])
        filters.update(b["filter_reasons"])
        notes.update(b["notes"])
        for k, keys in b.get("sample_keys", {}).items():
            lst = samples.setdefault(k, [])
            lst.extend(keys[: max(0, SAMPLE_REJECTS - len(lst))])
    return {
        "source_rows": sum(b["rows_in"] for b in batches),
        "loaded": sum(b["loaded"] for b in batches),
        "rejected": sum(b["rejected"] for b in batches),
        "filtered": sum(b["filtered"] for b in batches),
        "seconds": round(sum(b["seconds"] for b in batches), 4),
        "reject_reasons": dict(reasons),
        "filter_reasons": dict(filters),
        "notes": dict(notes),
        "sample_keys": samples,
    }


def _committed_batches_valid(run: RunDir, manifest: Manifest, table: str, inputs: list[BatchInput]) -> bool:
    by_id = {b.batch_id: b for b in inputs}
    for bid, entry in manifest.transform_state(table)["batches"].items():
        inp = by_id.get(bid)
        if inp is None or inp.extract_sha256 != entry["extract_sha256"]:
            return False
        p = run.root / entry["file"]
        if not p.is_file() or file_sha256(p) != entry["sha256"]:
            log.warning("transform checkpoint failed verification; redoing the table", table=table, batch=bid)
            return False
    return True


def _reset_table(run: RunDir, manifest: Manifest, ctx: TransformContext, table: str) -> None:
    for sub in ("transform", "rejects"):
        d = run.root / sub / table
        if d.is_dir():
            for p in d.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
    manifest.data["transform"][table] = {"done": False, "batches": {}}
    manifest.save()
    ctx.forget(table)


def _rebuild_seen(plan: TablePlan, run: RunDir, tstate: dict[str, Any], state: TableState,
                  read: Callable[[Path], pa.Table] = pq.read_table) -> None:
    """Guards for the table's unique constraints that know the batches committed before (a resume).

    A single-column constraint starts ordered and streams the committed batches to find the largest
    value; the values themselves are read into memory only if those batches already break the order.
    """
    target = plan.target
    uniques = [target.primary_key, *target.unique] if target.primary_key else list(target.unique)

    def committed() -> list[Path]:  # tstate is the manifest's own: it sees each batch committed later
        return [run.root / entry["file"] for _bid, entry in sorted(tstate["batches"].items())]

    for cols in uniques:
        if not cols:
            continue
        key = tuple(cols)
        guard = UniqueGuard(lambda key=key: _committed_values(plan, committed(), key, read, state.scratch))  # type: ignore[misc]
        state.seen[key] = guard
        if len(cols) > 1:
            guard.values()
            continue
        for path in committed():
            t = read(path)
            if cols[0] in t.column_names and not guard.extend_in_order(t.column(cols[0]).combine_chunks()):
                guard.values()
                break


def _committed_values(plan: TablePlan, files: list[Path], cols: tuple[str, ...],
                      read: Callable[[Path], pa.Table], scratch: Scratch | None = None) -> SeenValues:
    """The values of one unique constraint in committed batches, each named by its row's key."""
    seen = SeenValues(scratch)
    pk = plan.target.primary_key
    for path in files:
        t = read(path)
        if any(c not in t.column_names for c in cols):
            continue
        keys = t.column(pk[0]).to_pylist() if len(pk) == 1 and pk[0] in t.column_names else None
        picked, values = _unique_values([t.column(c).combine_chunks() for c in cols], range(t.num_rows))
        seen.claim(values, [str(keys[j]) for j in picked] if keys else ["an earlier row"] * len(picked))
    return seen


class SelfReferences:
    """Per self-referencing column, the rows a child may point at: those whose parent chain ends at a
    root through accepted rows only. Settled once in the scratch file, asked a batch at a time."""

    def __init__(self, scratch: Scratch | None, settled: dict[str, str]) -> None:
        self._scratch = scratch
        self._settled = settled  # column -> the scratch table of its settled keys

    def accepted(self, column: str, values: pa.Array) -> pa.Array:
        """The settled keys among values, in values' type (keys are settled by their text form, so an
        INTEGER key matches too)."""
        table = self._settled.get(column)
        wanted = pc.unique(values.drop_null()).to_pylist()
        if table is None or self._scratch is None or not wanted:
            return pa.array([], pa.string()).cast(values.type)
        rows = self._scratch.with_ids(table, (str(v) for v in wanted), "id")
        return pa.array(sorted(r[0] for r in rows), pa.string()).cast(values.type)


def _self_reference_closure(
    plan: TablePlan, inputs: list[BatchInput], stage_fn: StageFn, policy: TypePolicy, ctx: TransformContext,
    scratch: Scratch,
) -> SelfReferences:
    """Which rows of a self-referencing table survive, decided before any batch is written.

    A row whose parent row (same table) is rejected must be rejected too, even when the parent
    comes in a later batch; a dry pass writes every accepted row and its parent to the scratch file,
    then the survivors grow from the roots (parent NULL) one generation at a time. A row below a
    rejected row, or on a cycle, is never reached. Nothing of it is held in memory.
    """
    self_fks = [fk for fk in plan.target.foreign_keys if fk.parent == plan.name and len(fk.columns) == 1]
    pk = plan.target.primary_key
    if len(pk) != 1:
        return SelfReferences(None, {})
    probe_plan = TablePlan(target=_without_self_fks(plan), kind=plan.kind, rule=plan.rule, source=plan.source,
                           columns=plan.columns, extra_sources=plan.extra_sources)
    state = TableState(scratch=scratch)
    db = scratch.db
    nodes = {fk.columns[0]: scratch.new_table("nodes") for fk in self_fks}
    for table in nodes.values():
        db.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, parent TEXT) WITHOUT ROWID")
        # built row by row: a CREATE INDEX afterwards would sort the whole table in temp (memory) storage
        db.execute(f"CREATE INDEX {table}_parent ON {table} (parent)")
    for b in inputs:
        staged = stage_fn(b, pq.read_table(b.extract_file))
        table = finish_batch(probe_plan, staged, policy, ctx, state)
        ids = [str(i) for i in table.column(pk[0]).to_pylist()]
        for col, name in nodes.items():
            parents = (table.column(col).to_pylist() if col in table.column_names else [None] * len(ids))
            scratch.write(f"INSERT OR REPLACE INTO {name} VALUES (?, ?)",
                          zip(ids, (None if p is None else str(p) for p in parents), strict=True))
    settled: dict[str, str] = {}
    for col, name in nodes.items():
        good = settled[col] = scratch.new_table("settled")
        db.execute(f"CREATE TABLE {good} (id TEXT PRIMARY KEY, generation INTEGER NOT NULL) WITHOUT ROWID")
        db.execute(f"CREATE INDEX {good}_generation ON {good} (generation)")
        db.execute(f"INSERT INTO {good} SELECT id, 0 FROM {name} WHERE parent IS NULL")
        generation = 0
        while db.execute(f"INSERT OR IGNORE INTO {good} SELECT n.id, ? FROM {good} g JOIN {name} n "
                         "ON n.parent = g.id WHERE g.generation = ?", (generation + 1, generation)).rowcount:
            generation += 1
        db.execute(f"DROP TABLE {name}")
    return SelfReferences(scratch, settled)


def _without_self_fks(plan: TablePlan) -> Any:
    from dataclasses import replace

    return replace(plan.target, foreign_keys=tuple(fk for fk in plan.target.foreign_keys if fk.parent != plan.name))


def _inputs_and_stager(
    plan: TablePlan, config: Config, run: RunDir, manifest: Manifest, ctx: TransformContext, scratch: Scratch
) -> tuple[list[BatchInput], StageFn]:
    if plan.kind == "users":
        from pipeline.users import users_inputs_and_stager

        return users_inputs_and_stager(plan, config, run, manifest, scratch)
    if plan.kind == "reset_tokens":
        from pipeline.users import reset_tokens_inputs_and_stager

        return reset_tokens_inputs_and_stager(plan, config, run, manifest)
    assert plan.source is not None
    inputs = extract_batches(run, manifest, plan.source.qualified, "part-")

    def stage(b: BatchInput, data: pa.Table) -> Staged:
        return stage_table_batch(plan, data, b.offset)

    return inputs, stage


def transform_all(
    plan: MigrationPlan,
    config: Config,
    run: RunDir,
    manifest: Manifest,
    *,
    progress: Callable[[str, int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, dict[str, Any]]:
    ctx = TransformContext(run, manifest)
    totals: dict[str, dict[str, Any]] = {}
    for tp in plan.tables:
        if manifest.transform_state(tp.name).get("done"):
            with Scratch(run, tp.name) as scratch:  # the users builder's is only filled by its stager
                inputs, _ = _inputs_and_stager(tp, config, run, manifest, ctx, scratch)
            if _committed_batches_valid(run, manifest, tp.name, inputs) and set(
                manifest.transform_state(tp.name)["batches"]
            ) == {b.batch_id for b in inputs}:
                totals[tp.name] = table_totals(manifest, tp.name)
                continue
            _reset_table(run, manifest, ctx, tp.name)
            _invalidate_children(plan, tp.name, run, manifest, ctx)
        if progress:  # the table's clock starts here, not at its first committed batch
            progress(tp.name, 0)
        totals[tp.name] = transform_table(tp, config, run, manifest, ctx, progress=progress, should_stop=should_stop)
        ctx.release()
        release_memory()
    return totals


def _invalidate_children(plan: MigrationPlan, parent: str, run: RunDir, manifest: Manifest,
                         ctx: TransformContext) -> None:
    """A parent redone may accept other keys; every table after it decides again."""
    seen = False
    for tp in plan.tables:
        if tp.name == parent:
            seen = True
            continue
        if seen and manifest.transform_state(tp.name)["batches"]:
            _reset_table(run, manifest, ctx, tp.name)

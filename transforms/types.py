"""Postgres text values -> SQLite values, one column at a time.

The extract stage keeps every value as the text Postgres printed, so this module is the single
place where a value changes form. The rules follow DESIGN.md "Type rules": the source type decides
how to read the text, the target column's storage class decides what to write, and the TypePolicy
decides the awkward cases (infinity, NaN, numeric mode, unknown types). A value that does not fit is
never coerced silently: it becomes a per-row error (the row is rejected) or, when the policy says
so, a counted note.

A (source type, storage class) pair with no sensible rule (a uuid into a REAL column, say) is a
mapping mistake rather than a data problem, so it raises UnsupportedConversion before any row is
read instead of rejecting every row.

Error reasons name the column and say why; they never repeat a free-text value, which might be a
password hash or token. Only values checked against a short list of allowed values (enum labels)
are quoted, truncated.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.sources.base import Column
from pipeline.target import StorageClass, TargetColumn
from transforms import pgtext
from transforms.pgtext import PgArrayItem, PgOutOfRange, PgTextError
from transforms.policy import Choice, TypePolicy

Kind = Literal[
    "int", "float", "numeric", "money", "bool", "uuid", "text", "enum", "date", "time", "timetz",
    "timestamp", "timestamptz", "interval", "json", "bytea", "array", "passthrough", "unknown",
]

_KINDS: dict[str, Kind] = {
    **dict.fromkeys(
        ["smallint", "integer", "bigint", "int", "int2", "int4", "int8", "smallserial", "serial",
         "bigserial", "serial2", "serial4", "serial8"], "int"),
    **dict.fromkeys(["real", "double precision", "float", "float4", "float8"], "float"),
    **dict.fromkeys(["numeric", "decimal"], "numeric"),
    "money": "money",
    **dict.fromkeys(["boolean", "bool"], "bool"),
    "uuid": "uuid",
    **dict.fromkeys(
        ["text", "character varying", "varchar", "character", "char", "bpchar", "citext", "name",
         '"char"'], "text"),
    "date": "date",
    **dict.fromkeys(["time without time zone", "time"], "time"),
    **dict.fromkeys(["time with time zone", "timetz"], "timetz"),
    **dict.fromkeys(["timestamp without time zone", "timestamp"], "timestamp"),
    **dict.fromkeys(["timestamp with time zone", "timestamptz"], "timestamptz"),
    "interval": "interval",
    **dict.fromkeys(["json", "jsonb"], "json"),
    "bytea": "bytea",
    **dict.fromkeys(
        ["inet", "cidr", "macaddr", "macaddr8", "tsvector", "tsquery", "xml", "vector", "halfvec",
         "sparsevec", "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
         "int4multirange", "int8multirange", "nummultirange", "tsmultirange", "tstzmultirange",
         "datemultirange", "point", "line", "lseg", "box", "path", "polygon", "circle", "bit",
         "bit varying", "varbit", "pg_lsn", "oid", "regclass", "regtype", "regproc", "hstore", "ltree",
         "lquery", "geometry", "geography", "txid_snapshot", "pg_snapshot", "xid", "xid8", "cid",
         "tid", "aclitem", "jsonpath"], "passthrough"),
}

_TEXT_OUT: frozenset[Kind] = frozenset({"text", "enum", "passthrough", "interval", "unknown"})


class UnsupportedConversion(ValueError):
    """The mapping sends a source type to a storage class no rule covers; fix the mapping."""


@dataclass
class Converted:
    array: pa.Array
    errors: dict[int, str] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)


def classify(pg_type: str, *, is_enum: bool = False) -> tuple[Kind, str]:
    """The rule a Postgres type falls under, and the bare type name it was decided on.

    Schema-qualified names resolve when the bare name is a known extension type ('extensions.citext',
    'public.vector'); other qualified names without enum labels (composites) are unknown.
    """
    bare = pgtext.strip_typmod(pg_type).lower()
    if bare.endswith("[]"):
        return "array", bare
    if is_enum:
        return "enum", bare
    kind = _KINDS.get(bare)
    if kind is None and bare.startswith("interval"):
        kind = "interval"
    if kind is None and "." in bare:
        kind = _KINDS.get(bare.rsplit(".", 1)[1])
    return (kind or "unknown"), bare


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Null(Exception):
    """The policy turns this value into NULL (already counted in notes)."""


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


_DECIMAL_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)$"
_FLOAT_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


class _Rules:
    """Per-column conversion closures; notes are counted into the shared Counter as rows pass."""

    def __init__(self, source: Column, target: TargetColumn, policy: TypePolicy, notes: Counter[str]):
        self.source = source
        self.target = target
        self.policy = policy
        self.notes = notes
        self.storage: StorageClass = target.storage
        self.keep_micro = "%f" in policy.timestamp_format.replace("%%", "")
        self.format_ts = pgtext.timestamp_formatter(policy.timestamp_format)
        self.dates: dict[str, str] = {}

    # -- policy helpers ---------------------------------------------------------------------------

    def choice(self, choice: Choice, note: str, reject_reason: str) -> None:
        """Count the finding and act on a reject/null choice; returns only for keep."""
        self.notes[note] += 1
        if choice == "reject":
            raise _Reject(reject_reason)
        if choice == "null":
            raise _Null

    def infinity(self, word: str) -> None:
        self.choice(self.policy.infinity, "infinity",
                    f"value is {word!r} and the infinity policy is reject")

    def nan(self) -> None:
        self.choice(self.policy.nan, "nan", "numeric value NaN cannot be stored (nan policy reject)")

    def unsupported(self) -> UnsupportedConversion:
        return UnsupportedConversion(
            f"column {self.source.name}: no rule converts {self.source.pg_type} into a "
            f"{self.storage} column ({self.target.name})"
        )

    # -- numbers -----------------------------------------------------------------------------------

    def real_from_decimal(self, d: Decimal) -> float:
        f = float(d)
        if f in (float("inf"), float("-inf")):
            raise _Reject("numeric value is too large for a REAL column")
        if Decimal(repr(f)) != d:
            self.notes["precision_loss"] += 1
        return f

    def minor_units(self, d: Decimal) -> int:
        scale = self.policy.minor_units_scale
        q = d.scaleb(scale)
        if q != q.to_integral_value():
            raise _Reject(f"numeric value has more than {scale} decimal places and cannot be stored "
                          f"as integer minor units")
        n = int(q)
        if not pgtext.INT64_MIN <= n <= pgtext.INT64_MAX:
            raise _Reject("numeric value is out of the 64-bit integer range as minor units")
        return n

    def special_float(self, x: float, *, for_text: bool) -> float | str:
        """Apply the policy to NaN / infinity; returns what to store under keep."""
        if x != x:
            self.nan()
            if not for_text:
                raise _Reject(f"numeric value NaN can be kept only in a TEXT column, not {self.storage} "
                              "(SQLite turns NaN into NULL)")
            return "NaN"
        word = "Infinity" if x > 0 else "-Infinity"
        self.infinity(word)
        return word if for_text else x

    def numeric_fn(self, money: bool) -> Callable[[str], Any]:
        mode = self.policy.numeric_mode
        storage = self.storage
        ok = {
            "TEXT": {"auto", "text", "real", "minor_units"},
            "REAL": {"auto", "real"},
            "INTEGER": {"auto", "minor_units"},
        }.get(storage, set())
        if mode not in ok:
            raise UnsupportedConversion(
                f"column {self.source.name}: numeric_mode {mode} cannot fill a {storage} column "
                f"({self.target.name})"
            )
        parse = pgtext.parse_money if money else pgtext.parse_numeric

        def conv(s: str) -> Any:
            d = parse(s)
            if not d.is_finite():
                out = self.special_float(float(d), for_text=storage == "TEXT")
                if storage == "INTEGER":
                    raise _Reject("an infinite numeric value cannot be stored in an INTEGER column")
                return out
            if storage == "REAL":
                return self.real_from_decimal(d)
            if storage == "INTEGER":
                return self.minor_units(d)
            if mode == "real":
                return repr(self.real_from_decimal(d))
            if mode == "minor_units":
                return str(self.minor_units(d))
            return format(d, "f") if money else s

        return conv

    # -- dates and times ---------------------------------------------------------------------------

    def out_of_range(self, s: str, exc: PgOutOfRange) -> str:
        """BC or a year past 9999: keep the Postgres text when the policy says so, else reject."""
        if self.policy.out_of_range != "keep":
            raise _Reject(str(exc))
        self.notes["out_of_range_kept"] += 1
        return s

    def timestamp_text(self, s: str, *, with_tz: bool) -> str:
        try:
            v = pgtext.parse_timestamptz(s) if with_tz else pgtext.parse_timestamp(s)
            if isinstance(v, str):
                self.infinity(v)
                return v
            if with_tz:
                v = pgtext.to_utc(v)
        except PgOutOfRange as exc:
            return self.out_of_range(s, exc)
        if v.microsecond and not self.keep_micro:
            self.notes["microseconds_dropped"] += 1
        return self.format_ts(v)

    def date_text(self, s: str) -> str:
        known = self.dates.get(s)
        if known is not None:
            return known
        try:
            v = pgtext.parse_date(s)
        except PgOutOfRange as exc:
            return self.out_of_range(s, exc)
        if isinstance(v, str):
            self.infinity(v)
            return v
        out = f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
        if len(self.dates) < 100_000:
            self.dates[s] = out
        return out

    # -- scalar rules ------------------------------------------------------------------------------

    def scalar_fn(self, kind: Kind, bare: str) -> Callable[[str], Any]:
        st = self.storage
        if kind == "int":
            if st == "INTEGER":
                return pgtext.parse_integer
            if st == "TEXT":
                return lambda s: str(pgtext.parse_integer(s))
            if st == "REAL":
                return self.int_to_real
        elif kind == "float":
            if st in ("REAL", "TEXT"):
                return lambda s: self.float_value(s, for_text=st == "TEXT")
            if st == "INTEGER":
                return self.float_to_int
        elif kind in ("numeric", "money"):
            if st != "BLOB":
                return self.numeric_fn(money=kind == "money")
        elif kind == "bool":
            if st == "INTEGER":
                return lambda s: int(pgtext.parse_bool(s))
            if st == "REAL":
                return lambda s: float(pgtext.parse_bool(s))
            if st == "TEXT":
                return lambda s: "true" if pgtext.parse_bool(s) else "false"
        elif kind == "uuid":
            if st == "TEXT":
                return pgtext.parse_uuid
            if st == "BLOB":
                return lambda s: bytes.fromhex(pgtext.parse_uuid(s).replace("-", ""))
        elif kind == "date":
            if st == "TEXT":
                return self.date_text
        elif kind in ("timestamp", "timestamptz"):
            if st == "TEXT":
                return lambda s: self.timestamp_text(s, with_tz=kind == "timestamptz")
        elif kind in ("time", "timetz"):
            if st == "TEXT":
                return lambda s: pgtext.check_time(s, with_tz=kind == "timetz")
        elif kind == "json":
            if st == "TEXT":
                return self.json_text
        elif kind == "bytea":
            if st == "BLOB":
                return pgtext.parse_bytea
            if st == "TEXT":
                return lambda s: pgtext.format_bytea_hex(pgtext.parse_bytea(s))
        elif kind == "array":
            if st == "TEXT":
                return self.array_fn(bare)
        elif kind in _TEXT_OUT:
            return self.text_fn(kind, bare)
        raise self.unsupported()

    def int_to_real(self, s: str) -> float:
        n = pgtext.parse_integer(s)
        f = float(n)
        if int(f) != n:
            self.notes["precision_loss"] += 1
        return f

    def float_value(self, s: str, *, for_text: bool) -> float | str:
        x = pgtext.parse_float(s)
        if x != x or x in (float("inf"), float("-inf")):
            return self.special_float(x, for_text=for_text)
        return s if for_text else x

    def float_to_int(self, s: str) -> int:
        x = pgtext.parse_float(s)
        if x != x or x in (float("inf"), float("-inf")):
            self.special_float(x, for_text=False)
            raise _Reject("a non-finite number cannot be stored in an INTEGER column")
        if not x.is_integer():
            raise _Reject("number has a fractional part and the target column is INTEGER")
        return int(x)

    @staticmethod
    def _no_constants(name: str) -> Any:
        raise ValueError(name)

    def json_text(self, s: str) -> str:
        try:
            json.loads(s, parse_constant=self._no_constants)
        except ValueError:
            raise _Reject("not valid JSON") from None
        except RecursionError:
            # Postgres nests jsonb deeper than Python's recursive parser goes; check it flat.
            if not json_is_valid(s):
                raise _Reject("not valid JSON") from None
            self.notes["json_deeply_nested"] += 1
        return s

    def text_fn(self, kind: Kind, bare: str) -> Callable[[str], Any]:
        st = self.storage
        if kind == "unknown" and self.policy.unknown_type == "reject":
            def reject(_: str) -> Any:
                raise _Reject(f"type {bare} has no conversion rule and the unknown_type policy is reject")
            return reject
        if st == "TEXT":
            return self.text_value
        if kind in ("text", "unknown"):
            if st == "INTEGER":
                return self.text_to_int
            if st == "REAL":
                return lambda s: self.float_value(s, for_text=False)
            if st == "BLOB":
                return lambda s: s.encode("utf-8")
        raise self.unsupported()

    def text_value(self, s: str) -> str:
        if "\x00" in s:
            self.notes["nul_character"] += 1
        return s

    @staticmethod
    def text_to_int(s: str) -> int:
        try:
            return pgtext.parse_integer(s)
        except PgTextError:
            raise _Reject("text is not an integer and the target column is INTEGER") from None

    # -- arrays ------------------------------------------------------------------------------------

    def element_fn(self, kind: Kind) -> Callable[[str], Any]:
        """Element text -> JSON value: numbers for int/float, exact strings for numeric."""
        if kind == "int":
            return pgtext.parse_integer
        if kind == "float":
            def flt(s: str) -> Any:
                x = pgtext.parse_float(s)
                if x != x or x in (float("inf"), float("-inf")):
                    return self.special_float(x, for_text=True)
                return x
            return flt
        if kind in ("numeric", "money"):
            def num(s: str) -> Any:
                d = pgtext.parse_money(s) if kind == "money" else pgtext.parse_numeric(s)
                if not d.is_finite():
                    return self.special_float(float(d), for_text=True)
                return format(d, "f") if kind == "money" else s
            return num
        if kind == "bool":
            return pgtext.parse_bool
        if kind == "uuid":
            return pgtext.parse_uuid
        if kind == "date":
            return self.date_text
        if kind in ("timestamp", "timestamptz"):
            return lambda s: self.timestamp_text(s, with_tz=kind == "timestamptz")
        if kind in ("time", "timetz"):
            return lambda s: pgtext.check_time(s, with_tz=kind == "timetz")
        if kind == "json":
            def js(s: str) -> Any:
                try:
                    return json.loads(s, parse_constant=self._no_constants)
                except ValueError:
                    raise _Reject("array element is not valid JSON") from None
                except RecursionError:
                    raise _Reject("array element JSON is nested too deeply to embed in a JSON array") from None
            return js
        if kind == "bytea":
            return lambda s: pgtext.format_bytea_hex(pgtext.parse_bytea(s))
        return self.text_value

    def array_fn(self, bare: str) -> Callable[[str], str]:
        elem_type = bare[:-2]
        while elem_type.endswith("[]"):
            elem_type = elem_type[:-2]
        elem_kind, _ = classify(elem_type, is_enum=self.source.enum_values is not None)
        if elem_kind == "array":  # pragma: no cover - classify strips every '[]' above
            raise self.unsupported()
        delimiter = ";" if elem_type == "box" else ","
        if elem_kind == "unknown" and self.policy.unknown_type == "reject":
            def reject(_: str) -> str:
                raise _Reject(f"array element type {elem_type} has no conversion rule and the "
                              f"unknown_type policy is reject")
            return reject
        elem = self.element_fn(elem_kind)

        def walk(items: list[PgArrayItem]) -> list[Any]:
            out: list[Any] = []
            for it in items:
                if it is None:
                    out.append(None)
                elif isinstance(it, list):
                    out.append(walk(it))
                else:
                    try:
                        out.append(elem(it))
                    except _Null:
                        out.append(None)
            return out

        unknown_elements = elem_kind == "unknown"

        def conv(s: str) -> str:
            parsed = pgtext.parse_pg_array(s, delimiter)
            if unknown_elements:
                self.notes["unknown_type_as_text"] += 1
            if parsed.lower_bounds:
                self.notes["array_lower_bound_dropped"] += 1
            return json.dumps(walk(parsed.items), ensure_ascii=False, separators=(",", ":"))

        return conv


_JSON_TOKEN = re.compile(
    r'\s*(?:(?P<open>[\[{])|(?P<close>[\]}])|(?P<comma>,)|(?P<colon>:)'
    r'|(?P<str>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")'
    r'|(?P<scalar>-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null))'
)


def json_is_valid(text: str) -> bool:
    """A JSON validator with an explicit stack, for documents nested deeper than json.loads allows.

    A pushdown automaton over tokens: 'value' is expected at the start, after '[', ',' in an array,
    or ':'; 'key' after '{' or ',' in an object; 'next' after a complete value.
    """
    stack: list[str] = []
    expect = "value"
    pos, n = 0, len(text)
    while True:
        m = _JSON_TOKEN.match(text, pos)
        if m is None:
            return not stack and expect == "next" and not text[pos:].strip()
        pos = m.end()
        kind = m.lastgroup
        if expect in ("value", "value_or_close") and kind in ("str", "scalar"):
            expect = "next"
        elif expect in ("value", "value_or_close") and kind == "open":
            stack.append(m.group("open"))
            expect = "value_or_close" if m.group("open") == "[" else "key_or_close"
        elif kind == "close" and (expect == "next" or expect.endswith("_or_close")) and stack:
            want = "[" if m.group("close") == "]" else "{"
            if stack.pop() != want or (expect == "value_or_close" and want != "[") or (
                    expect == "key_or_close" and want != "{"):
                return False
            expect = "next"
        elif expect in ("key", "key_or_close") and kind == "str":
            expect = "colon"
        elif expect == "colon" and kind == "colon":
            expect = "value"
        elif expect == "next" and kind == "comma" and stack:
            expect = "value" if stack[-1] == "[" else "key"
        else:
            return False
        if pos >= n:
            return not stack and expect == "next"


_ARROW_TYPES: dict[str, pa.DataType] = {
    "INTEGER": pa.int64(),
    "REAL": pa.float64(),
    "TEXT": pa.string(),
    "BLOB": pa.binary(),
}


def convert_column(values: pa.Array, source: Column, target: TargetColumn, policy: TypePolicy) -> Converted:
    """Convert one extracted column (pa.string, Postgres text form) into the target's storage class.

    NULL stays NULL (NOT NULL is checked elsewhere). Rows that cannot be converted come back as NULL
    with a reason in ``errors``; findings worth reporting are counted in ``notes``.
    """
    return _convert_column(values, source, target, policy, vector_timestamps=True)


def _convert_column(values: pa.Array, source: Column, target: TargetColumn, policy: TypePolicy, *,
                    vector_timestamps: bool) -> Converted:
    """convert_column, with the timestamp kernels switchable so tests can compare them with the row loop."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type != pa.string():
        values = values.cast(pa.string())
    out_type = _ARROW_TYPES[target.storage]
    result = Converted(pa.nulls(0, out_type))
    kind, bare = classify(source.base_type or source.pg_type, is_enum=source.enum_values is not None)
    rules = _Rules(source, target, policy, result.notes)
    fn = rules.scalar_fn(kind, bare)
    prefix = _prefix(source, target)

    array = _fast_path(values, kind, rules, result)
    if array is None and vector_timestamps and kind in ("timestamp", "timestamptz") and rules.storage == "TEXT":
        array = _timestamp_kernels(values, kind == "timestamptz", fn, rules, result, prefix)
    if array is None:
        array = _row_loop(values, fn, out_type, result, prefix)
    result.array = _check_allowed(array, kind, source, target, result)
    return result


def _prefix(source: Column, target: TargetColumn) -> str:
    if source.name == target.name:
        return f"column {target.name}: "
    return f"column {source.name} -> {target.name}: "


def _row_loop(
    values: pa.Array, fn: Callable[[str], Any], out_type: pa.DataType, result: Converted, prefix: str
) -> pa.Array:
    return pa.array(_convert_rows(enumerate(values.to_pylist()), fn, result, prefix), type=out_type)


def _convert_rows(
    rows: Iterable[tuple[int, str | None]], fn: Callable[[str], Any], result: Converted, prefix: str
) -> list[Any]:
    """The per-value rule over (row index, text) pairs.

    The index keys the error, so a subset of a column (the rows the timestamp kernels leave over)
    reports under the same row numbers as the whole column would.
    """
    out: list[Any] = []
    append = out.append
    for i, v in rows:
        if v is None:
            append(None)
            continue
        try:
            append(fn(v))
        except _Null:
            append(None)
        except _Reject as exc:
            result.errors[i] = prefix + exc.reason
            append(None)
        except PgTextError as exc:
            result.errors[i] = prefix + str(exc)
            append(None)
    return out


# The text live Postgres (TimeZone=UTC, DateStyle=ISO) and PostgREST print for an AD timestamp with
# a four-digit year, in UTC for timestamptz. Month, day and time fields are range-checked here;
# year 0000 and the day against the month and leap year are checked on the digits afterwards.
_TS_BODY = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"[ T](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
)
_TS_UTC_SHAPE = _TS_BODY + r"\+00(?::00)?$"
_TS_NAIVE_SHAPE = _TS_BODY + "$"
_TS_MAX_LEN = len("YYYY-MM-DD HH:MM:SS.ffffff+00:00")
# Days in each month of a common year, indexed by month number (1..12).
_MONTH_DAYS = pa.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int16())


def _cut(ascii_text: pa.Array, start: int, stop: int) -> pa.Array:
    """Byte slices of ASCII strings, several times cheaper than utf8_slice_codeunits.

    The shape check admits ASCII only, so bytes are characters and the zero-copy views between
    string and binary are safe. stop is required: without one, pyarrow 26's binary_slice fails
    with 'Negative buffer resize' on arrays of two or more values (apache/arrow#51222).
    """
    return pc.binary_slice(ascii_text.view(pa.binary()), start, stop).view(pa.string())


def _number(ascii_text: pa.Array, start: int, stop: int) -> pa.Array:
    return pc.cast(_cut(ascii_text, start, stop), pa.int16())


def _divisible(n: pa.Array, by: int) -> pa.Array:
    return pc.equal(pc.modulo(n, by), 0)


def _real_dates(shaped: pa.Array) -> pa.Array:
    """Which shape-checked values name a real proleptic Gregorian date in years 1..9999.

    Computed from the digits because pc.strptime is no judge: it turns 2023-02-30 into 2023-03-02
    and accepts year 0000, both of which Python's datetime (and so the row loop) rejects.
    """
    year, month, day = _number(shaped, 0, 4), _number(shaped, 5, 7), _number(shaped, 8, 10)
    leap = pc.and_(_divisible(year, 4), pc.or_(pc.invert(_divisible(year, 100)), _divisible(year, 400)))
    last_day = pc.add(_MONTH_DAYS.take(month), pc.cast(pc.and_(leap, pc.equal(month, 2)), pa.int16()))
    return pc.and_(pc.greater_equal(year, 1), pc.less_equal(day, last_day))


def _timestamp_kernels(values: pa.Array, with_tz: bool, fn: Callable[[str], Any], rules: _Rules,
                       result: Converted, prefix: str) -> pa.Array | None:
    """Timestamps in the shape Postgres prints them in UTC, reformatted by string kernels.

    timestamp_text costs microseconds per value, which made it the largest cost of the transform.
    The rows taken here are exactly those on which it would only cut and pad text: a UTC offset
    (no shift), a four-digit AD year and a real calendar date (no error). Every other row (other
    offsets, infinity, BC, year 10000+, malformed) still goes through fn, so one odd value costs
    one slow row rather than the column. None (the row loop) when the target format is not
    ISO-shaped, since other strftime patterns are not cut-and-pad, or when no row qualifies.
    """
    iso = pgtext.iso_timestamp_format(rules.policy.timestamp_format)
    if iso is None:
        return None
    sep, micro, suffix = iso
    shape = _TS_UTC_SHAPE if with_tz else _TS_NAIVE_SHAPE
    shaped = pc.fill_null(pc.match_substring_regex(values, shape), False)
    candidates = values.filter(shaped)
    real = _real_dates(candidates)
    clean = candidates.filter(real)
    if not len(clean):
        return None  # nothing to gain: the plain row loop skips the gather and scatter below
    fast = pc.replace_with_mask(shaped, shaped, real)

    # What follows the seconds, without the offset and the fraction's trailing zeros: '' or '.' plus
    # digits ending in a non-zero one. The zeros come back with the padding, and a fraction is a
    # dropped microsecond exactly when a digit survives.
    fraction = pc.ascii_rtrim(_cut(clean, 19, _TS_MAX_LEN), "+0:")
    if not rules.keep_micro:
        dropped = int(pc.sum(pc.greater(pc.binary_length(fraction), 1)).as_py() or 0)
        if dropped:
            rules.notes["microseconds_dropped"] += dropped
    pieces: list[Any] = [_cut(clean, 0, 10), sep, _cut(clean, 11, 19)]
    if micro:
        pieces += [".", pc.ascii_rpad(_cut(fraction, 1, 7), 6, "0")]
    if suffix:
        pieces.append(suffix)
    formatted = pc.binary_join_element_wise(*pieces, "")

    if len(formatted) == len(values):
        return formatted
    array = pc.replace_with_mask(pa.nulls(len(values), pa.string()), fast, formatted)
    slow = pc.and_(pc.is_valid(values), pc.invert(fast))
    rows = pc.indices_nonzero(slow)
    if len(rows):
        converted = _convert_rows(zip(rows.to_pylist(), values.take(rows).to_pylist(), strict=True),
                                  fn, result, prefix)
        array = pc.replace_with_mask(array, slow, pa.array(converted, pa.string()))
    return array


def _all_valid(mask: pa.Array) -> bool:
    """True when the boolean mask is true wherever it is not null."""
    return bool(pc.all(mask, skip_nulls=True).as_py() is not False)


def _fast_path(values: pa.Array, kind: Kind, rules: _Rules, result: Converted) -> pa.Array | None:
    """Vectorised handling of the common clean cases; None sends the column to the row loop."""
    st = rules.storage
    policy = rules.policy
    nonnull = len(values) - values.null_count
    if nonnull == 0:
        return pa.nulls(len(values), _ARROW_TYPES[st])
    if st == "TEXT" and kind in _TEXT_OUT:
        if kind == "unknown":
            if policy.unknown_type == "reject":
                return None
            result.notes["unknown_type_as_text"] += nonnull
        nul = int(pc.sum(pc.match_substring(values, "\x00")).as_py() or 0)
        if nul:
            result.notes["nul_character"] += nul
        return values
    try:
        if kind == "int" and st in ("INTEGER", "TEXT"):
            if not _all_valid(pc.match_substring_regex(values, r"^[+-]?\d+$")):
                return None
            ints = pc.cast(values, pa.int64())
            return ints if st == "INTEGER" else pc.cast(ints, pa.string())
        if kind == "float" and st == "REAL":
            if not _all_valid(pc.match_substring_regex(values, _FLOAT_RE)):
                return None
            return pc.cast(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if kind == "bool" and st == "INTEGER":
        if not _all_valid(pc.is_in(values, value_set=pa.array(["t", "f"]))):
            return None
        return pc.cast(pc.equal(values, "t"), pa.int64())
    if kind == "uuid" and st == "TEXT":
        if not _all_valid(pc.match_substring_regex(values, pgtext.CANONICAL_UUID)):
            return None
        return values
    if kind == "numeric" and st == "TEXT" and policy.numeric_mode in ("auto", "text"):
        if not _all_valid(pc.match_substring_regex(values, _DECIMAL_RE)):
            return None
        return values
    return None


def _check_allowed(array: pa.Array, kind: Kind, source: Column, target: TargetColumn,
                   result: Converted) -> pa.Array:
    """Null out and report values outside the target's CHECK (col IN (...)) list."""
    allowed = target.allowed_values
    if allowed is None or target.storage not in ("TEXT", "INTEGER"):
        return array
    as_text = array if target.storage == "TEXT" else pc.cast(array, pa.string())
    ok = pc.is_in(as_text, value_set=pa.array(list(allowed), pa.string()))
    if _all_valid(ok):
        return array
    bad = pc.and_(pc.invert(ok), pc.is_valid(as_text))
    label = "enum value" if kind == "enum" else "value"
    listing = ", ".join(allowed)
    prefix = _prefix(source, target)
    for i in pc.indices_nonzero(bad).to_pylist():
        v = as_text[i].as_py()
        result.errors[i] = f"{prefix}{label} {_show(v)} is not allowed by the target (allowed: {listing})"
    return pc.if_else(bad, pa.nulls(len(array), array.type), array)


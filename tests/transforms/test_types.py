from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.sources.base import Column
from pipeline.target import StorageClass, TargetColumn
from transforms.pgtext import format_bytea_hex, format_pg_array
from transforms.policy import TypePolicy
from transforms.types import Converted, UnsupportedConversion, classify, convert_column

STORAGE_TYPES = {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string(), "BLOB": pa.binary()}


def conv(
    pg_type: str,
    storage: StorageClass,
    values: list[str | None],
    *,
    policy: TypePolicy | None = None,
    allowed: tuple[str, ...] | None = None,
    enum_values: tuple[str, ...] | None = None,
    base_type: str | None = None,
) -> Converted:
    result = convert_column(
        pa.array(values, pa.string()),
        Column("col", pg_type, enum_values=enum_values, base_type=base_type),
        TargetColumn("col", storage, storage, allowed_values=allowed),
        policy or TypePolicy(),
    )
    assert result.array.type == STORAGE_TYPES[storage]
    assert len(result.array) == len(values)
    for i in result.errors:
        assert result.array[i].as_py() is None
    return result


def out(result: Converted) -> list[Any]:
    values: list[Any] = result.array.to_pylist()
    return values


# --- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pg_type", "kind"),
    [
        ("integer", "int"),
        ("bigint", "int"),
        ("numeric(10,2)", "numeric"),
        ("character varying(255)", "text"),
        ("character(3)", "text"),
        ("timestamp(3) with time zone", "timestamptz"),
        ("timestamp without time zone", "timestamp"),
        ("time(0) with time zone", "timetz"),
        ("interval day to second", "interval"),
        ("text[]", "array"),
        ("extensions.citext", "text"),
        ("extensions.vector(3)", "passthrough"),
        ("public.address", "unknown"),
        ("jsonb", "json"),
        ('"char"', "text"),
    ],
)
def test_classify(pg_type: str, kind: str) -> None:
    assert classify(pg_type)[0] == kind


def test_classify_enum() -> None:
    assert classify("public.app_role", is_enum=True)[0] == "enum"
    assert classify("public.app_role[]", is_enum=True)[0] == "array"


# --- integers, floats, booleans -------------------------------------------------------------------


def test_integers() -> None:
    r = conv("bigint", "INTEGER", ["1", None, "-9223372036854775808", "9223372036854775807"])
    assert out(r) == [1, None, -(2**63), 2**63 - 1] and not r.errors
    r = conv("integer", "INTEGER", ["1", "x", "1.5", None])
    assert out(r) == [1, None, None, None]
    assert r.errors == {1: "column col: not a valid integer", 2: "column col: not a valid integer"}
    assert out(conv("smallint", "TEXT", ["-3", "70"])) == ["-3", "70"]
    r = conv("bigint", "REAL", ["9007199254740993", "2"])
    assert out(r) == [9007199254740992.0, 2.0] and r.notes["precision_loss"] == 1


def test_floats() -> None:
    r = conv("double precision", "REAL", ["1.5", "1e+20", "-0.1", None])
    assert out(r) == [1.5, 1e20, -0.1, None] and not r.errors
    assert out(conv("real", "TEXT", ["0.1", "3.4028235e+38"])) == ["0.1", "3.4028235e+38"]
    r = conv("double precision", "INTEGER", ["3", "3.5"])
    assert out(r) == [3, None] and "fractional part" in r.errors[1]


@pytest.mark.parametrize(
    ("policy", "storage", "expected", "errors"),
    [
        ("reject", "REAL", [None, None, None], {0, 1, 2}),
        ("null", "REAL", [None, None, None], set()),
        ("keep", "REAL", [math.inf, -math.inf, None], {2}),
        ("keep", "TEXT", ["Infinity", "-Infinity", "NaN"], set()),
    ],
)
def test_float_specials(policy: str, storage: StorageClass, expected: list[Any], errors: set[int]) -> None:
    p = TypePolicy(infinity=policy, nan=policy)  # type: ignore[arg-type]
    r = conv("double precision", storage, ["Infinity", "-Infinity", "NaN"], policy=p)
    assert out(r) == expected
    assert set(r.errors) == errors
    assert r.notes["infinity"] == 2 and r.notes["nan"] == 1
    if policy == "reject":
        assert r.errors[0] == "column col: value is 'Infinity' and the infinity policy is reject"
        assert r.errors[2] == "column col: numeric value NaN cannot be stored (nan policy reject)"
    if policy == "keep" and storage == "REAL":
        assert "SQLite turns NaN into NULL" in r.errors[2]


def test_booleans() -> None:
    assert out(conv("boolean", "INTEGER", ["t", "f", None])) == [1, 0, None]
    assert out(conv("boolean", "INTEGER", ["true", "false", "t"])) == [1, 0, 1]
    assert out(conv("boolean", "TEXT", ["t", "false"])) == ["true", "false"]
    r = conv("boolean", "INTEGER", ["t", "maybe"])
    assert out(r) == [1, None] and r.errors == {1: "column col: not a valid boolean"}


# --- numeric --------------------------------------------------------------------------------------


def test_numeric_text_keeps_digits() -> None:
    r = conv("numeric(10,2)", "TEXT", ["0.10", "1234.50", "-0.00", None, "1e+3"])
    assert out(r) == ["0.10", "1234.50", "-0.00", None, "1e+3"] and not r.errors


def test_numeric_real() -> None:
    r = conv("numeric(10,2)", "REAL", ["1234.50", "0.10", "99999999999999999999.99"])
    assert out(r) == [1234.5, 0.1, 1e20]
    assert r.notes["precision_loss"] == 1 and not r.errors
    r = conv("numeric", "REAL", ["1e400"])
    assert r.errors == {0: "column col: numeric value is too large for a REAL column"}


def test_numeric_minor_units() -> None:
    r = conv("numeric(10,2)", "INTEGER", ["1234.50", "0.01", "-3", "1.005"])
    assert out(r) == [123450, 1, -300, None]
    assert "more than 2 decimal places" in r.errors[3]
    r = conv("numeric", "INTEGER", ["1.005"], policy=TypePolicy(minor_units_scale=3))
    assert out(r) == [1005]


def test_numeric_nan_and_infinity() -> None:
    r = conv("numeric", "TEXT", ["NaN", "Infinity"])
    assert r.errors == {
        0: "column col: numeric value NaN cannot be stored (nan policy reject)",
        1: "column col: value is 'Infinity' and the infinity policy is reject",
    }
    keep = TypePolicy(nan="keep", infinity="keep")
    assert out(conv("numeric", "TEXT", ["NaN", "-Infinity"], policy=keep)) == ["NaN", "-Infinity"]
    r = conv("numeric", "REAL", ["NaN", "Infinity"], policy=keep)
    assert out(r) == [None, math.inf] and list(r.errors) == [0]
    r = conv("numeric", "INTEGER", ["Infinity", "NaN"], policy=keep)
    assert r.errors == {
        0: "column col: an infinite numeric value cannot be stored in an INTEGER column",
        1: "column col: numeric value NaN can be kept only in a TEXT column, not INTEGER "
           "(SQLite turns NaN into NULL)",
    }
    r = conv("numeric", "REAL", ["NaN"], policy=TypePolicy(nan="null"))
    assert out(r) == [None] and not r.errors and r.notes["nan"] == 1


def test_numeric_modes() -> None:
    assert out(conv("numeric", "TEXT", ["0.10"], policy=TypePolicy(numeric_mode="real"))) == ["0.1"]
    assert out(conv("numeric", "TEXT", ["0.10"], policy=TypePolicy(numeric_mode="minor_units"))) == ["10"]
    assert out(conv("numeric", "REAL", ["0.10"], policy=TypePolicy(numeric_mode="real"))) == [0.1]
    with pytest.raises(UnsupportedConversion, match="numeric_mode text"):
        conv("numeric", "REAL", ["1"], policy=TypePolicy(numeric_mode="text"))
    with pytest.raises(UnsupportedConversion):
        conv("numeric", "INTEGER", ["1"], policy=TypePolicy(numeric_mode="real"))


def test_money() -> None:
    assert out(conv("money", "REAL", ["$1,234.50", "-$0.99", None])) == [1234.5, -0.99, None]
    assert out(conv("money", "TEXT", ["$1,234.50"])) == ["1234.50"]
    assert out(conv("money", "INTEGER", ["$1,234.50"])) == [123450]
    r = conv("money", "REAL", ["twelve"])
    assert r.errors == {0: "column col: not a valid money amount"}


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_numeric_text_round_trips(d: Decimal) -> None:
    text = format(d, "f")
    r = conv("numeric", "TEXT", [text])
    assert out(r) == [text]
    assert Decimal(out(r)[0]) == d


# --- uuid, text, enums ------------------------------------------------------------------------------


def test_uuid() -> None:
    r = conv("uuid", "TEXT", ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                              "nope", None])
    assert out(r) == ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"] * 2 + [None, None]
    assert r.errors == {2: "column col: not a valid uuid"}
    blob = conv("uuid", "BLOB", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"])
    assert out(blob) == [bytes.fromhex("a0eebc999c0b4ef8bb6d6bb9bd380a11")]
    with pytest.raises(UnsupportedConversion, match="uuid into a REAL column"):
        conv("uuid", "REAL", [])


def test_text_passthrough() -> None:
    r = conv("character(5)", "TEXT", ["ab   ", "", None, "nul\x00x"])
    assert out(r) == ["ab   ", "", None, "nul\x00x"] and r.notes["nul_character"] == 1
    assert out(conv("text", "BLOB", ["é"])) == ["é".encode()]
    r = conv("text", "INTEGER", ["12", "twelve"])
    assert out(r) == [12, None] and "not an integer" in r.errors[1]
    assert "twelve" not in r.errors[1]


def test_domain_uses_base_type() -> None:
    r = conv("public.positive_amount", "REAL", ["1.50"], base_type="numeric(10,2)")
    assert out(r) == [1.5]


def test_unknown_type_policy() -> None:
    r = conv("public.address", "TEXT", ['("1 Main St",Springfield)', None])
    assert out(r) == ['("1 Main St",Springfield)', None] and r.notes["unknown_type_as_text"] == 1
    r = conv("public.address", "TEXT", ["(x)", None], policy=TypePolicy(unknown_type="reject"))
    assert out(r) == [None, None]
    assert r.errors == {0: "column col: type public.address has no conversion rule and the unknown_type "
                           "policy is reject"}


def test_passthrough_types() -> None:
    for pg_type, value in [("inet", "10.0.0.1/32"), ("tsvector", "'a':1"), ("interval", "1 day 02:00:00"),
                           ("extensions.vector(3)", "[1,2,3]"), ("tstzrange", '["2024-01-01 00:00:00+00",)')]:
        assert out(conv(pg_type, "TEXT", [value])) == [value]


def test_enum_checked_against_target() -> None:
    r = conv("public.app_role", "TEXT", ["editor", "admin", None], enum_values=("editor", "client", "admin"),
             allowed=("editor", "client", "agency"))
    assert out(r) == ["editor", None, None]
    assert r.errors == {
        1: "column col: enum value 'admin' is not allowed by the target (allowed: editor, client, agency)"
    }


def test_allowed_values_apply_to_any_source() -> None:
    r = conv("text", "TEXT", ["draft", "shipped"], allowed=("draft", "approved"))
    assert out(r) == ["draft", None]
    assert r.errors == {1: "column col: value 'shipped' is not allowed by the target (allowed: draft, approved)"}
    r = conv("integer", "INTEGER", ["0", "2"], allowed=("0", "1"))
    assert out(r) == [0, None] and list(r.errors) == [1]


def test_error_names_both_columns_when_renamed() -> None:
    r = convert_column(pa.array(["x"]), Column("uid", "uuid"), TargetColumn("user_id", "TEXT", "TEXT"),
                       TypePolicy())
    assert r.errors == {0: "column uid -> user_id: not a valid uuid"}


# --- dates and times ------------------------------------------------------------------------------


def test_date() -> None:
    r = conv("date", "TEXT", ["2024-02-29", None, "0044-03-15 BC", "10000-01-01", "2023-02-29"])
    assert out(r) == ["2024-02-29", None, None, None, None]
    assert r.errors == {
        2: "column col: BC date cannot be represented",
        3: "column col: date year beyond 9999",
        4: "column col: not a valid date",
    }
    with pytest.raises(UnsupportedConversion):
        conv("date", "INTEGER", [])


@pytest.mark.parametrize(
    ("policy", "expected", "n_errors"),
    [("reject", [None, None], 2), ("null", [None, None], 0), ("keep", ["infinity", "-infinity"], 0)],
)
def test_date_and_timestamp_infinity(policy: str, expected: list[Any], n_errors: int) -> None:
    p = TypePolicy(infinity=policy)  # type: ignore[arg-type]
    for pg_type in ("date", "timestamp with time zone", "timestamp without time zone"):
        r = conv(pg_type, "TEXT", ["infinity", "-infinity"], policy=p)
        assert out(r) == expected and len(r.errors) == n_errors and r.notes["infinity"] == 2


def test_timestamptz_to_utc() -> None:
    r = conv("timestamp with time zone", "TEXT", [
        "2024-01-01 01:00:00+01",
        "2024-01-01 05:30:00+05:30",
        "2024-01-01 00:00:00-03:30:15",
        "2024-01-02T03:04:05+00:00",
        "2024-01-02T03:04:05.123456Z",
        None,
    ])
    assert out(r) == ["2024-01-01 00:00:00", "2024-01-01 00:00:00", "2024-01-01 03:30:15",
                      "2024-01-02 03:04:05", "2024-01-02 03:04:05", None]
    assert r.notes["microseconds_dropped"] == 1 and not r.errors


def test_timestamptz_keeps_microseconds_when_the_format_does() -> None:
    p = TypePolicy(timestamp_format="%Y-%m-%dT%H:%M:%S.%fZ")
    r = conv("timestamp(6) with time zone", "TEXT", ["2024-01-01 01:00:00.5+01"], policy=p)
    assert out(r) == ["2024-01-01T00:00:00.500000Z"] and not r.notes


def test_timestamp_out_of_range() -> None:
    r = conv("timestamp with time zone", "TEXT", [
        "0044-03-15 10:00:00+00:53:28 BC", "10000-01-01 00:00:00+00", "9999-12-31 23:00:00-02",
        "0001-01-01 00:30:00+01", "garbage",
    ])
    assert out(r) == [None] * 5
    assert r.errors[0] == "column col: BC timestamp cannot be represented"
    assert r.errors[1] == "column col: timestamp year beyond 9999"
    assert "outside years 1..9999" in r.errors[2] and "outside years 1..9999" in r.errors[3]
    assert r.errors[4] == "column col: not a valid timestamp"


def test_timestamp_without_zone_is_not_shifted() -> None:
    r = conv("timestamp without time zone", "TEXT", ["2024-01-01 01:00:00", "2024-01-01 01:00:00+01"])
    assert out(r) == ["2024-01-01 01:00:00", None] and "carries a UTC offset" in r.errors[1]


def test_times() -> None:
    assert out(conv("time without time zone", "TEXT", ["13:45:00.25", "24:00:00"])) == ["13:45:00.25", "24:00:00"]
    assert out(conv("time with time zone", "TEXT", ["13:45:00+05:30"])) == ["13:45:00+05:30"]
    r = conv("time without time zone", "TEXT", ["25:00:00"])
    assert r.errors == {0: "column col: time of day out of range"}


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 30)),
    st.integers(min_value=-(15 * 3600), max_value=15 * 3600),
)
def test_timestamptz_random_offsets_same_instant(local: datetime, offset_s: int) -> None:
    aware = local.replace(tzinfo=timezone(timedelta(seconds=offset_s)))
    sign = "-" if offset_s < 0 else "+"
    h, rem = divmod(abs(offset_s), 3600)
    m, s = divmod(rem, 60)
    off = f"{sign}{h:02d}" + (f":{m:02d}" if m or s else "") + (f":{s:02d}" if s else "")
    frac = f".{local.microsecond:06d}" if local.microsecond else ""
    text = f"{local.year:04d}-{local:%m-%d %H:%M:%S}{frac}{off}"
    r = conv("timestamp with time zone", "TEXT", [text],
             policy=TypePolicy(timestamp_format="%Y-%m-%d %H:%M:%S.%f"))
    expected = aware.astimezone(UTC).replace(tzinfo=None)
    assert out(r) == [f"{expected.year:04d}-{expected:%m-%d %H:%M:%S.%f}"]


# --- json, arrays, bytea --------------------------------------------------------------------------


def test_json() -> None:
    text = '{"b": 1,  "a": [1.10, "\\u0000"]}'
    r = conv("jsonb", "TEXT", [text, "{bad", "NaN", "[1, Infinity]", None, '"s"'])
    assert out(r) == [text, None, None, None, None, '"s"']
    assert r.errors == {i: "column col: not valid JSON" for i in (1, 2, 3)}


def test_arrays() -> None:
    r = conv("text[]", "TEXT", ['{NULL,"a,b","c\\"d"}', "{}", "[0:1]={x,y}", None, "{é,\"b c\"}"])
    assert out(r) == ['[null,"a,b","c\\"d"]', "[]", '["x","y"]', None, '["é","b c"]']
    assert r.notes["array_lower_bound_dropped"] == 1
    assert out(conv("integer[]", "TEXT", ["{{1,2},{3,4}}", "{1,NULL}"])) == ["[[1,2],[3,4]]", "[1,null]"]
    assert out(conv("numeric(10,2)[]", "TEXT", ["{0.10,1234.50}"])) == ['["0.10","1234.50"]']
    assert out(conv("boolean[]", "TEXT", ["{t,f,NULL}"])) == ["[true,false,null]"]
    assert out(conv("double precision[]", "TEXT", ["{1.5,-2}"])) == ["[1.5,-2.0]"]
    assert out(conv("uuid[]", "TEXT", ["{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"])) == [
        '["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]'
    ]
    assert out(conv("timestamp with time zone[]", "TEXT", ['{"2024-01-01 01:00:00+01"}'])) == [
        '["2024-01-01 00:00:00"]'
    ]
    assert out(conv("jsonb[]", "TEXT", ['{"{\\"a\\": 1}",NULL}'])) == ['[{"a":1},null]']
    assert out(conv("public.app_role[]", "TEXT", ["{editor,admin}"], enum_values=("editor", "admin"))) == [
        '["editor","admin"]'
    ]


def test_array_errors_and_policies() -> None:
    r = conv("integer[]", "TEXT", ["{1,x}", "{1,2", "{NaN}"])
    assert out(r) == [None, None, None]
    assert r.errors[0] == "column col: not a valid integer"
    assert r.errors[1].startswith("column col: not a valid array literal")
    r = conv("double precision[]", "TEXT", ["{1,NaN,Infinity}"], policy=TypePolicy(nan="null", infinity="keep"))
    assert out(r) == ['[1.0,null,"Infinity"]'] and r.notes["nan"] == 1 and r.notes["infinity"] == 1
    r = conv("date[]", "TEXT", ["{2024-01-01,infinity}"])
    assert out(r) == [None] and "infinity policy is reject" in r.errors[0]
    r = conv("public.address[]", "TEXT", ['{"(1,x)",NULL}'])
    assert out(r) == ['["(1,x)",null]'] and r.notes["unknown_type_as_text"] == 1
    r = conv("public.address[]", "TEXT", ["{}"], policy=TypePolicy(unknown_type="reject"))
    assert "public.address has no conversion rule" in r.errors[0]
    with pytest.raises(UnsupportedConversion):
        conv("text[]", "INTEGER", [])


@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=6))
def test_text_array_becomes_equal_json(items: list[str | None]) -> None:
    r = conv("text[]", "TEXT", [format_pg_array(list(items))])
    assert json.loads(out(r)[0]) == items


def test_bytea() -> None:
    r = conv("bytea", "BLOB", ["\\x0a0b", "\\x", None, "ab\\\\\\001", "\\xzz"])
    assert out(r) == [b"\n\x0b", b"", None, b"ab\\\x01", None]
    assert r.errors == {4: "column col: not a valid bytea hex string"}
    assert out(conv("bytea", "TEXT", ["\\x0A0B"])) == ["\\x0a0b"]


@given(st.binary(max_size=64))
def test_bytea_round_trips(data: bytes) -> None:
    assert out(conv("bytea", "BLOB", [format_bytea_hex(data)])) == [data]


# --- shape and speed ------------------------------------------------------------------------------


def test_all_null_and_empty_columns() -> None:
    for pg_type, storage in [("integer", "INTEGER"), ("uuid", "TEXT"), ("bytea", "BLOB"), ("date", "TEXT")]:
        assert out(conv(pg_type, storage, [None, None])) == [None, None]  # type: ignore[arg-type]
        assert out(conv(pg_type, storage, [])) == []  # type: ignore[arg-type]


def test_chunked_and_large_string_input() -> None:
    values = pa.chunked_array([pa.array(["1"], pa.large_string()), pa.array(["2"], pa.large_string())])
    r = convert_column(values, Column("n", "integer"), TargetColumn("n", "INTEGER", "INTEGER"),
                       TypePolicy())
    assert r.array.to_pylist() == [1, 2]


def test_million_rows_of_text_and_int_are_fast() -> None:
    n = 1_000_000
    ints = pa.array([str(i) for i in range(n)], pa.string())
    texts = pa.array([f"name {i}" for i in range(n)], pa.string())
    uuids = pa.array(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"] * n, pa.string())
    bools = pa.array(["t", "f"] * (n // 2), pa.string())
    start = time.perf_counter()
    r1 = convert_column(ints, Column("n", "bigint"), TargetColumn("n", "INTEGER", "INTEGER"), TypePolicy())
    r2 = convert_column(texts, Column("s", "text"), TargetColumn("s", "TEXT", "TEXT"), TypePolicy())
    r3 = convert_column(uuids, Column("u", "uuid"), TargetColumn("u", "TEXT", "TEXT"), TypePolicy())
    r4 = convert_column(bools, Column("b", "boolean"), TargetColumn("b", "INTEGER", "INTEGER"), TypePolicy())
    elapsed = time.perf_counter() - start
    assert r1.array[n - 1].as_py() == n - 1 and r2.array[5].as_py() == "name 5"
    assert r3.array.null_count == 0 and r4.array[0].as_py() == 1
    assert elapsed < 1.0, elapsed

"""Issue 8: every Postgres type a Supabase project uses, through a real run, checked against its rule.

Hypothesis generates rows for one table with a column per type; each example inserts them into a real
PostgreSQL database (text literals plus casts, so Postgres itself parses every value), runs the whole
pipeline with auto schema into SQLite, and checks each stored value against the README's rule:
exact integers, float32-equal reals, exact numeric text, bit-for-bit bytea, JSON-equal jsonb,
instant-equal timestamptz, and for types stored "as Postgres prints them" (interval, inet, ranges,
composites, tsvector) that Postgres reads the stored text back as the same value.
pgvector is not installed on the test server, so its rule (text form) is tested in test_autoschema /
the pure conversion tests, not here.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.runner import run
from tests.support.postgres import throwaway_database

LABELS = ["sad", "it's ok", "ünïcode 🎉", "with space"]
SETUP = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE public.mood AS ENUM ('sad', 'it''s ok', 'ünïcode 🎉', 'with space');
CREATE DOMAIN public.posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN public.email AS citext;
CREATE TYPE public.pair AS (n integer, s text);
CREATE TABLE public.everything (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  c_serial serial,
  c_small smallint, c_int integer, c_big bigint, c_real real, c_double double precision,
  c_numeric numeric, c_money money, c_text text, c_varchar varchar(20), c_char char(5), c_citext citext,
  c_uuid uuid, c_bool boolean, c_date date, c_time time, c_timetz timetz, c_ts timestamp,
  c_tstz timestamptz, c_interval interval, c_json json, c_jsonb jsonb,
  c_int_arr integer[], c_text_arr text[], c_num_arr numeric[], c_float_arr float8[], c_bool_arr boolean[],
  c_date_arr date[], c_tstz_arr timestamptz[], c_jsonb_arr jsonb[], c_bytea_arr bytea[], c_uuid_arr uuid[],
  c_enum_arr public.mood[],
  c_bytea bytea, c_inet inet, c_cidr cidr, c_macaddr macaddr, c_enum public.mood, c_posint public.posint,
  c_email public.email, c_pair public.pair, c_int4range int4range, c_numrange numrange,
  c_daterange daterange, c_tstzrange tstzrange, c_tsvector tsvector,
  c_generated integer GENERATED ALWAYS AS (c_int % 7) STORED
);
"""
CASTS = {
    "c_small": "smallint", "c_int": "integer", "c_big": "bigint", "c_real": "real", "c_double": "double precision",
    "c_numeric": "numeric", "c_money": "money", "c_text": "text", "c_varchar": "varchar(20)", "c_char": "char(5)",
    "c_citext": "citext", "c_uuid": "uuid", "c_bool": "boolean", "c_date": "date", "c_time": "time",
    "c_timetz": "timetz", "c_ts": "timestamp", "c_tstz": "timestamptz", "c_interval": "interval", "c_json": "json",
    "c_jsonb": "jsonb", "c_int_arr": "integer[]", "c_text_arr": "text[]", "c_num_arr": "numeric[]",
    "c_float_arr": "float8[]", "c_bool_arr": "boolean[]", "c_date_arr": "date[]", "c_tstz_arr": "timestamptz[]",
    "c_jsonb_arr": "jsonb[]", "c_bytea_arr": "bytea[]", "c_uuid_arr": "uuid[]", "c_enum_arr": "public.mood[]",
    "c_bytea": "bytea", "c_inet": "inet", "c_cidr": "cidr", "c_macaddr": "macaddr", "c_enum": "public.mood",
    "c_posint": "public.posint", "c_email": "public.email", "c_pair": "public.pair", "c_int4range": "int4range",
    "c_numrange": "numrange", "c_daterange": "daterange", "c_tstzrange": "tstzrange", "c_tsvector": "tsvector",
}
# Stored as Postgres prints them: the check is that Postgres reads the stored text as the same value.
REPARSE = {"c_interval", "c_inet", "c_cidr", "c_pair", "c_int4range", "c_numrange", "c_daterange",
           "c_tstzrange", "c_tsvector", "c_timetz"}

# -- values: (SQL text literal, expected) ---------------------------------------------------------

text_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
texts = st.text(text_chars, max_size=12)


def numeric_text() -> st.SearchStrategy[str]:
    def build(neg: bool, whole: int, frac: str) -> str:
        s = str(whole) + ("." + frac if frac else "")
        return ("-" + s) if neg and any(c not in "0." for c in s) else s
    return st.one_of(
        st.builds(build, st.booleans(), st.integers(0, 10**120), st.text("0123456789", max_size=40)),
        st.just("NaN"))


def pg_time(t: time) -> str:
    s = f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return s + ("." + f"{t.microsecond:06d}".rstrip("0") if t.microsecond else "")


def pg_offset(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}" + (f":{m:02d}" if m else "")


def iso_us(d: datetime) -> str:
    return d.isoformat(" ", "microseconds")


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(text_chars, max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(text_chars, max_size=5), inner, max_size=3)), max_leaves=8)
json_with_nul = st.recursive(st.one_of(json_scalars, st.text(st.characters(exclude_categories=["Cs"]), max_size=6),
                                       st.sampled_from(["\x00", "a\x00b"])),
                             lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def dec(v: Any) -> Any:
    """JSON value with numbers as Decimal, so jsonb's numeric printing compares by value."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    if isinstance(v, list):
        return [dec(x) for x in v]
    return {k: dec(x) for k, x in v.items()}


def quote_elem(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pg_array(items: list[Any], fmt: Any = str, *, nested: bool = False) -> str:
    """An array literal with every element quoted; `nested` makes Python lists sub-arrays."""
    def one(v: Any) -> str:
        if v is None:
            return "NULL"
        if nested and isinstance(v, list):
            return pg_array(v, fmt, nested=True)
        return quote_elem(fmt(v))
    return "{" + ",".join(one(v) for v in items) + "}"


@st.composite
def int_arrays(draw: st.DrawFn) -> tuple[str, Any]:
    dims = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    elem = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))

    def fill(ds: list[int]) -> list[Any]:
        return [draw(elem) for _ in range(ds[0])] if len(ds) == 1 else [fill(ds[1:]) for _ in range(ds[0])]
    items = fill(dims)
    lit = pg_array(items, nested=True)
    lb = draw(st.one_of(st.none(), st.integers(-3, 3))) if len(dims) == 1 else None
    if lb is not None:
        lit = f"[{lb}:{lb + dims[0] - 1}]=" + lit
    return lit, items


dates = st.one_of(
    st.dates(date(1, 1, 1), date(9999, 12, 31)).map(lambda d: (d.isoformat(), d.isoformat())),
    st.sampled_from([("infinity", "infinity"), ("-infinity", "-infinity"), ("0044-03-15 BC", "0044-03-15 BC"),
                     ("12345-06-07", "12345-06-07")]))
offsets = st.integers(-15 * 60, 15 * 60)
tstz_values = st.builds(lambda d, m: d.replace(tzinfo=timezone(timedelta(minutes=m))),
                        st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 30)), offsets)
tstzs = st.one_of(
    tstz_values.map(lambda d: (d.isoformat(), d)),
    st.sampled_from([("infinity", "infinity"), ("-infinity", "-infinity"),
                     ("10000-01-01 00:00:00+00", "10000-01-01 00:00:00+00"),
                     ("0044-03-15 12:00:00.5+00 BC", "0044-03-15 12:00:00.5+00 BC")]))
range_pair = st.tuples(st.integers(-1000, 1000), st.integers(0, 50))

COLUMNS: dict[str, st.SearchStrategy[tuple[str, Any]]] = {
    "c_small": st.integers(-(2**15), 2**15 - 1).map(lambda n: (str(n), n)),
    "c_int": st.integers(-(2**31), 2**31 - 1).map(lambda n: (str(n), n)),
    "c_big": st.integers(-(2**63), 2**63 - 1).map(lambda n: (str(n), n)),
    "c_real": st.floats(width=32, allow_nan=False).map(lambda x: (repr(x).replace("inf", "Infinity"), x)),
    "c_double": st.floats(allow_nan=False).map(lambda x: (repr(x).replace("inf", "Infinity"), x)),
    "c_numeric": numeric_text().map(lambda s: (s, s)),
    "c_money": st.integers(-(10**12), 10**12).map(
        lambda c: (str(Decimal(c).scaleb(-2)), format(Decimal(c).scaleb(-2), "f"))),
    "c_text": texts.map(lambda s: (s, s)),
    "c_varchar": st.text(text_chars, max_size=20).map(lambda s: (s, s)),
    "c_char": st.text(text_chars.filter(lambda c: c != " "), max_size=5).map(lambda s: (s, s.ljust(5))),
    "c_citext": texts.map(lambda s: (s, s)),
    "c_uuid": st.uuids().map(lambda u: (str(u).upper(), str(u))),
    "c_bool": st.booleans().map(lambda b: ("true" if b else "false", int(b))),
    "c_date": dates,
    "c_time": st.times().map(lambda t: (t.isoformat(), pg_time(t))),
    "c_timetz": st.tuples(st.times(), offsets).map(lambda p: (pg_time(p[0]) + pg_offset(p[1]), None)),
    "c_ts": st.one_of(
        st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31)).map(lambda d: (d.isoformat(" "), iso_us(d))),
        st.sampled_from([("infinity", "infinity"), ("0100-01-01 00:00:00 BC", "0100-01-01 00:00:00 BC"),
                         ("20000-01-01 12:00:00.5", "20000-01-01 12:00:00.5")])),
    "c_tstz": tstzs,
    "c_interval": st.tuples(st.integers(-1000, 1000), st.integers(-1000, 1000), st.integers(-(10**12), 10**12)).map(
        lambda p: (f"{p[0]} mons {p[1]} days {p[2]} microseconds", None)),
    "c_json": st.one_of(json_with_nul, json_values).map(
        lambda v: (json.dumps(v), json.dumps(v))),
    "c_jsonb": st.one_of(json_values.map(lambda v: (json.dumps(v, ensure_ascii=False), ("value", v))),
                         st.integers(900, 2500).map(lambda d: ("[" * d + "]" * d, ("text", "[" * d + "]" * d)))),
    "c_int_arr": int_arrays(),
    "c_text_arr": st.lists(st.one_of(st.none(), texts, st.sampled_from(["NULL", "a,b", "{x}", ' "q" ', "\\"])),
                           max_size=4).map(lambda xs: (pg_array(xs), xs)),
    "c_num_arr": st.lists(st.one_of(st.none(), numeric_text()), max_size=3).map(lambda xs: (pg_array(xs), xs)),
    "c_float_arr": st.lists(st.one_of(st.none(), st.floats()), max_size=3).map(
        lambda xs: (pg_array(xs, lambda x: repr(x).replace("inf", "Infinity").replace("nan", "NaN")), xs)),
    "c_bool_arr": st.lists(st.one_of(st.none(), st.booleans()), max_size=3).map(
        lambda xs: (pg_array(xs, lambda b: "t" if b else "f"), xs)),
    "c_date_arr": st.lists(st.one_of(st.none(), dates), max_size=3).map(
        lambda xs: (pg_array([None if x is None else x[0] for x in xs]), [None if x is None else x[1] for x in xs])),
    "c_tstz_arr": st.lists(st.one_of(st.none(), tstz_values), max_size=3).map(
        lambda xs: (pg_array(xs, lambda d: d.isoformat()), xs)),
    "c_jsonb_arr": st.lists(st.one_of(st.none(), json_values), max_size=3).map(
        lambda xs: (pg_array(xs, json.dumps), xs)),
    "c_bytea_arr": st.lists(st.one_of(st.none(), st.binary(max_size=8)), max_size=3).map(
        lambda xs: (pg_array(xs, lambda b: "\\x" + b.hex()), xs)),
    "c_uuid_arr": st.lists(st.one_of(st.none(), st.uuids()), max_size=3).map(
        lambda xs: (pg_array(xs), [None if x is None else str(x) for x in xs])),
    "c_enum_arr": st.lists(st.one_of(st.none(), st.sampled_from(LABELS)), max_size=3).map(
        lambda xs: (pg_array(xs), xs)),
    "c_bytea": st.binary(max_size=40).map(lambda b: ("\\x" + b.hex(), b)),
    "c_inet": st.ip_addresses().map(lambda a: (str(a), None)),
    "c_cidr": st.tuples(st.ip_addresses(v=4), st.integers(0, 32)).map(
        lambda p: (str(ipaddress.ip_network(f"{p[0]}/{p[1]}", strict=False)), None)),
    "c_macaddr": st.binary(min_size=6, max_size=6).map(lambda b: (b.hex("-").upper(), b.hex(":"))),
    "c_enum": st.sampled_from(LABELS).map(lambda s: (s, s)),
    "c_posint": st.integers(1, 2**31 - 1).map(lambda n: (str(n), n)),
    "c_email": texts.map(lambda s: (s, s)),
    "c_pair": st.tuples(st.integers(-5, 5), texts).map(lambda p: (f"({p[0]},{quote_elem(p[1])})", None)),
    "c_int4range": range_pair.map(lambda p: (f"[{p[0]},{p[0] + p[1]})", None)),
    "c_numrange": range_pair.map(lambda p: (f"({p[0]}.5,{p[0] + p[1] + 1}.75]" if p[0] >= 0 else
                                            f"({p[0]}.75,{p[0] + p[1]}.5]", None)),
    "c_daterange": st.tuples(st.dates(date(2000, 1, 1), date(2030, 1, 1)), st.integers(0, 40)).map(
        lambda p: (f"[{p[0]},{p[0] + timedelta(days=p[1])}]", None)),
    "c_tstzrange": tstz_values.map(lambda d: (f"[{d.isoformat()},)", None)),
    "c_tsvector": st.lists(st.text("abcdefghij", min_size=1, max_size=5), max_size=4).map(
        lambda ws: (" ".join(ws), None)),
}
rows = st.lists(st.fixed_dictionaries({c: st.one_of(st.none(), s) for c, s in COLUMNS.items()}),
                min_size=1, max_size=4)


@pytest.fixture(scope="module")
def project(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    with throwaway_database(pg_admin_dsn, prefix="smtypes") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SETUP)
        root = tmp_path_factory.mktemp("types")
        (root / "migrations").mkdir()
        (root / "config.yaml").write_text(
            f"source:\n  uri: {dsn}\ntarget:\n  path: out.db\n  migrations: migrations\n  backups:\n"
            "    enabled: false\nauto_schema:\n  enabled: true\n"
            "types:\n  timestamp_format: '%Y-%m-%d %H:%M:%S.%f'\n  infinity: keep\n  nan: keep\n"
            "  out_of_range: keep\n")
        yield dsn, root


def _utc_text(d: datetime) -> str:
    return iso_us(d.astimezone(UTC).replace(tzinfo=None))


def _f32(x: float) -> bytes:
    return struct.pack("<f", x)


def expected_scalar(col: str, want: Any, got: Any) -> None:
    if col == "c_real":
        # SQLite keeps no negative zero: -0.0 reads back as 0.0 (the README says so)
        assert isinstance(got, float) and _f32(got) == _f32(want + 0.0)
    elif col == "c_double":
        assert isinstance(got, float) and got == want
    elif col == "c_tstz":
        if isinstance(want, str):
            assert got == want
        else:
            assert datetime.fromisoformat(got).replace(tzinfo=UTC) == want
    elif col == "c_jsonb":
        kind, v = want
        assert got == v if kind == "text" else json.loads(got, parse_float=Decimal, parse_int=Decimal) == dec(v)
    elif col in ("c_int_arr", "c_text_arr", "c_num_arr", "c_bool_arr", "c_date_arr", "c_uuid_arr", "c_enum_arr"):
        assert json.loads(got) == want
    elif col == "c_float_arr":
        special = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
        out = [special.get(x, x) if isinstance(x, str) else x for x in json.loads(got)]
        assert [repr(x) for x in out] == [repr(x) for x in want]
    elif col == "c_tstz_arr":
        assert json.loads(got) == [None if x is None else _utc_text(x) for x in want]
    elif col == "c_jsonb_arr":
        assert json.loads(got, parse_float=Decimal, parse_int=Decimal) == [dec(x) for x in want]
    elif col == "c_bytea_arr":
        assert json.loads(got) == [None if x is None else "\\x" + x.hex() for x in want]
    else:
        assert got == want and type(got) is type(want)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=rows)
def test_every_type_converts_by_its_rule(project: tuple[str, Path], batch: list[dict[str, Any]]) -> None:
    dsn, root = project
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("TRUNCATE public.everything RESTART IDENTITY")
        cols = list(COLUMNS)
        placeholders = ", ".join(f"%s::{CASTS[c]}" for c in cols)
        for row in batch:
            pg.execute(f"INSERT INTO public.everything ({', '.join(cols)}) VALUES ({placeholders})",
                       [None if row[c] is None else row[c][0] for c in cols])
        outcome = run(root / "config.yaml", runs_dir=str(root / "runs"))
        assert outcome.status == "succeeded", outcome.report["error"]
        (table,) = [t for t in outcome.report["tables"] if t["name"] == "everything"]
        assert table["source_rows"] == table["loaded"] == len(batch), table
        with closing(sqlite3.connect(root / "out.db")) as lite:
            lite.row_factory = sqlite3.Row
            got_rows = {r["id"]: r for r in lite.execute("SELECT * FROM everything")}
            assert "c_generated" not in lite.execute("SELECT * FROM everything").fetchone().keys()  # noqa: SIM118 - sqlite3.Row is not a mapping
            assert lite.execute("PRAGMA foreign_key_check").fetchall() == []
        serials: dict[int, int] = dict(pg.execute("SELECT id, c_serial FROM public.everything").fetchall())
        for i, row in enumerate(batch, start=1):
            got = got_rows[i]
            assert got["c_serial"] == serials[i]
            for c in cols:
                if row[c] is None:
                    assert got[c] is None, c
                    continue
                literal, want = row[c]
                if c in REPARSE:
                    same = pg.execute(f"SELECT (%s::{CASTS[c]})::text = (%s::{CASTS[c]})::text",
                                      [got[c], literal]).fetchone()
                    assert same == (True,), (c, got[c], literal)
                    continue
                try:
                    expected_scalar(c, want, got[c])
                except AssertionError as exc:
                    raise AssertionError(f"{c}: literal {literal!r} stored as {got[c]!r}, want {want!r}") from exc

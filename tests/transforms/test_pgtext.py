from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.pgtext import (
    PgArray,
    PgArrayItem,
    PgTextError,
    check_time,
    format_bytea_hex,
    format_pg_array,
    format_timestamp,
    interval_to_iso8601,
    parse_bool,
    parse_bytea,
    parse_date,
    parse_float,
    parse_integer,
    parse_money,
    parse_numeric,
    parse_offset,
    parse_pg_array,
    parse_timestamp,
    parse_timestamptz,
    parse_uuid,
    strip_typmod,
    to_utc,
    typmod_args,
)


@pytest.mark.parametrize(
    ("pg_type", "bare"),
    [
        ("numeric(10,2)", "numeric"),
        ("character varying(255)", "character varying"),
        ("timestamp(3) with time zone", "timestamp with time zone"),
        ("character varying(20)[]", "character varying[]"),
        ("text", "text"),
    ],
)
def test_strip_typmod(pg_type: str, bare: str) -> None:
    assert strip_typmod(pg_type) == bare


def test_typmod_args() -> None:
    assert typmod_args("numeric(10,2)") == (10, 2)
    assert typmod_args("numeric") == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.10", Decimal("0.10")), ("-12", Decimal(-12)), ("1e+20", Decimal("1e20")), (".5", Decimal("0.5"))],
)
def test_parse_numeric(text: str, expected: Decimal) -> None:
    got = parse_numeric(text)
    assert got == expected and str(got) == str(expected)


def test_parse_numeric_specials_and_garbage() -> None:
    assert parse_numeric("NaN").is_nan()
    assert parse_numeric("Infinity") == Decimal("Infinity")
    assert parse_numeric("-Infinity") == Decimal("-Infinity")
    for bad in ["1_000", " 1", "1,5", "", "abc", "1.2.3"]:
        with pytest.raises(PgTextError):
            parse_numeric(bad)


def test_parse_float_and_integer() -> None:
    assert parse_float("1.5") == 1.5
    assert parse_float("-Infinity") == float("-inf")
    assert parse_float("NaN") != parse_float("NaN")
    with pytest.raises(PgTextError):
        parse_float("1_0")
    assert parse_integer("-9223372036854775808") == -(2**63)
    for bad in ["9223372036854775808", "1.0", "", "1 "]:
        with pytest.raises(PgTextError):
            parse_integer(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,234.50", "1234.50"),
        ("-$1,234.50", "-1234.50"),
        ("($5.00)", "-5.00"),
        ("$0.07", "0.07"),
        ("1.234,50 €", "1234.50"),
        ("1 234,56 €", "1234.56"),
        ("$1,234,567", "1234567"),
        ("EUR 3,5", "3.5"),
    ],
)
def test_parse_money(text: str, expected: str) -> None:
    assert str(parse_money(text)) == expected


@pytest.mark.parametrize("text", ["", "$", "12abc34", "--1", "1.2.3,4,5"])
def test_parse_money_rejects(text: str) -> None:
    with pytest.raises(PgTextError):
        parse_money(text)


def test_parse_bool() -> None:
    assert parse_bool("t") is True and parse_bool("true") is True and parse_bool("TRUE") is True
    assert parse_bool("f") is False and parse_bool("false") is False
    with pytest.raises(PgTextError):
        parse_bool("yes")


def test_parse_uuid_normalises() -> None:
    canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert parse_uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11") == canonical
    assert parse_uuid("{a0eebc999c0b4ef8bb6d6bb9bd380a11}") == canonical
    for bad in ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", ""]:
        with pytest.raises(PgTextError, match="not a valid uuid"):
            parse_uuid(bad)


def test_parse_bytea_hex_and_escape() -> None:
    assert parse_bytea("\\x0a0b") == b"\n\x0b"
    assert parse_bytea("\\x") == b""
    assert parse_bytea("\\xDEADbeef") == b"\xde\xad\xbe\xef"
    assert parse_bytea("ab\\\\c\\000\\377") == b"ab\\c\x00\xff"
    for bad in ["\\x0", "\\xzz", "a\\9"]:
        with pytest.raises(PgTextError):
            parse_bytea(bad)


@given(st.binary(max_size=200))
def test_bytea_hex_round_trips(data: bytes) -> None:
    assert parse_bytea(format_bytea_hex(data)) == data


def test_parse_date() -> None:
    assert parse_date("2024-02-29") == date(2024, 2, 29)
    assert parse_date("infinity") == "infinity"
    assert parse_date("-infinity") == "-infinity"
    with pytest.raises(PgTextError, match="BC date cannot be represented"):
        parse_date("0044-03-15 BC")
    with pytest.raises(PgTextError, match="year beyond 9999"):
        parse_date("10000-01-01")
    for bad in ["2023-02-29", "2024-1-01", "2024-01-01 00:00:00"]:
        with pytest.raises(PgTextError, match="not a valid date"):
            parse_date(bad)


def test_parse_offset_forms() -> None:
    assert parse_offset("+02").utcoffset(None) == timedelta(hours=2)
    assert parse_offset("+05:30").utcoffset(None) == timedelta(hours=5, minutes=30)
    assert parse_offset("-03:30:15").utcoffset(None) == -timedelta(hours=3, minutes=30, seconds=15)
    assert parse_offset("Z").utcoffset(None) == timedelta(0)
    with pytest.raises(PgTextError):
        parse_offset("+2")


def test_parse_timestamptz_forms() -> None:
    v = parse_timestamptz("2024-01-02 03:04:05.123456+02")
    assert isinstance(v, datetime)
    assert to_utc(v) == datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    v = parse_timestamptz("2024-01-02T03:04:05+00:00")
    assert v == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    v = parse_timestamptz("2024-01-02 03:04:05.5-03:30:15")
    assert isinstance(v, datetime)
    assert v.microsecond == 500000
    assert to_utc(v) == datetime(2024, 1, 2, 6, 34, 20, 500000, tzinfo=UTC)
    assert parse_timestamptz("infinity") == "infinity"
    assert parse_timestamptz("-infinity") == "-infinity"


def test_parse_timestamptz_rejections() -> None:
    with pytest.raises(PgTextError, match="BC timestamp"):
        parse_timestamptz("0044-03-15 10:00:00+00:53:28 BC")
    with pytest.raises(PgTextError, match="year beyond 9999"):
        parse_timestamptz("10000-01-01 00:00:00+00")
    with pytest.raises(PgTextError, match="no UTC offset"):
        parse_timestamptz("2024-01-01 00:00:00")
    with pytest.raises(PgTextError, match="not a valid timestamp"):
        parse_timestamptz("2024-13-01 00:00:00+00")
    with pytest.raises(PgTextError, match="outside years"):
        v = parse_timestamptz("0001-01-01 00:00:00+02")
        assert isinstance(v, datetime)
        to_utc(v)


def test_parse_timestamp_without_zone() -> None:
    assert parse_timestamp("2024-01-02 03:04:05.1") == datetime(2024, 1, 2, 3, 4, 5, 100000)
    with pytest.raises(PgTextError, match="carries a UTC offset"):
        parse_timestamp("2024-01-02 03:04:05+00")


def test_format_timestamp_pads_years() -> None:
    assert format_timestamp(datetime(44, 3, 15, 1, 2, 3), "%Y-%m-%d %H:%M:%S") == "0044-03-15 01:02:03"
    assert format_timestamp(datetime(2024, 1, 2), "%Y%%Y") == "2024%Y"
    assert format_timestamp(datetime(2024, 1, 2, 0, 0, 0, 5), "%Y-%m-%dT%H:%M:%S.%fZ") == (
        "2024-01-02T00:00:00.000005Z"
    )


@pytest.mark.parametrize(
    "fmt", ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S.%f", "%Y/%m/%d %H.%M.%S.%f"]
)
@given(value=st.datetimes(timezones=st.none() | st.just(UTC)))
def test_timestamp_formatter_matches_strftime(fmt: str, value: datetime) -> None:
    expected = value.strftime(fmt.replace("%Y", f"{value.year:04d}"))
    assert format_timestamp(value, fmt) == expected


def test_format_timestamp_falls_back_to_strftime() -> None:
    assert format_timestamp(datetime(44, 3, 5, 1, 2, 3), "%d %b %Y {x} %%Y") == "05 Mar 0044 {x} %Y"
    assert format_timestamp(datetime(44, 3, 5), "{%Y}") == "{0044}"


def test_only_ascii_digits() -> None:
    arabic_indic = "\u0661\u0662"
    with pytest.raises(PgTextError):
        parse_integer(arabic_indic)
    with pytest.raises(PgTextError):
        parse_numeric(arabic_indic)
    with pytest.raises(PgTextError):
        parse_timestamptz("\u0662\u0660\u0662\u0664-01-01 00:00:00+00")
    with pytest.raises(PgTextError):
        parse_date("\u0662\u0660\u0662\u0664-01-01")


def test_timestamp_fast_path_stays_strict() -> None:
    for bad in ["2024-01-05 03:04:05.1234567+02", "2024-01-05 03:04:05,5+02", "2024-01-05 03:04+02"]:
        with pytest.raises(PgTextError):
            parse_timestamptz(bad)


def test_check_time() -> None:
    assert check_time("12:34:56.789", with_tz=False) == "12:34:56.789"
    assert check_time("24:00:00", with_tz=False) == "24:00:00"
    assert check_time("12:34:56+05:30", with_tz=True) == "12:34:56+05:30"
    for bad in ["25:00:00", "12:60:00", "24:00:01", "12:34"]:
        with pytest.raises(PgTextError):
            check_time(bad, with_tz=False)
    with pytest.raises(PgTextError):
        check_time("12:34:56", with_tz=True)


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("00:00:00", "PT0S"),
        ("3 days", "P3D"),
        ("1 year 2 mons -3 days +04:05:06.5", "P1Y2M-3DT4H5M6.5S"),
        ("-1 days +02:03:00", "P-1DT2H3M"),
        ("-00:00:01.5", "PT-1.5S"),
        ("1 mon 00:00:00", "P1M"),
        ("-2 years -00:30:00", "P-2YT-30M"),
    ],
)
def test_interval_to_iso8601(text: str, iso: str) -> None:
    assert interval_to_iso8601(text) == iso


def test_interval_rejects_garbage() -> None:
    for bad in ["", "3 fortnights", "01:00:00 01:00:00"]:
        with pytest.raises(PgTextError):
            interval_to_iso8601(bad)


@pytest.mark.parametrize(
    ("text", "items", "bounds"),
    [
        ("{}", [], ()),
        ("{1,2,3}", ["1", "2", "3"], ()),
        ("{{1,2},{3,4}}", [["1", "2"], ["3", "4"]], ()),
        ('{NULL,"a,b","c\\"d"}', [None, "a,b", 'c"d'], ()),
        ('{"NULL",null,""}', ["NULL", None, ""], ()),
        ("[0:1]={1,2}", ["1", "2"], (0,)),
        ("[1:2]={1,2}", ["1", "2"], ()),
        ("[1:2][-1:0]={{a,b},{c,d}}", [["a", "b"], ["c", "d"]], (1, -1)),
        ("{ a b , c }", ["a b", "c"], ()),
        ('{"back\\\\slash","{brace}"}', ["back\\slash", "{brace}"], ()),
        ("{a\\,b}", ["a,b"], ()),
        ("{\\NULL}", ["NULL"], ()),
    ],
)
def test_parse_pg_array(text: str, items: list[PgArrayItem], bounds: tuple[int, ...]) -> None:
    assert parse_pg_array(text) == PgArray(items, bounds)


def test_parse_pg_array_box_delimiter() -> None:
    assert parse_pg_array("{(1,1),(0,0);(2,2),(1,1)}", ";").items == ["(1,1),(0,0)", "(2,2),(1,1)"]


@pytest.mark.parametrize(
    "text", ["", "1,2", "{1,2", "{1,,2}", "{1,}", '{"a}', "{a}x", "[0:2]={1,2}", '{a"b}', "{a\\"]
)
def test_parse_pg_array_rejects(text: str) -> None:
    with pytest.raises(PgTextError):
        parse_pg_array(text)


_ELEMENT = st.one_of(st.none(), st.text(max_size=12))


@st.composite
def _rectangular(draw: st.DrawFn) -> list[PgArrayItem]:
    depth = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 3)) for _ in range(depth)]

    def build(dims: list[int]) -> list[PgArrayItem]:
        if len(dims) == 1:
            return [draw(_ELEMENT) for _ in range(dims[0])]
        return [build(dims[1:]) for _ in range(dims[0])]

    return build(shape)


@given(_rectangular())
def test_array_literal_round_trips(items: list[PgArrayItem]) -> None:
    assert parse_pg_array(format_pg_array(items)).items == items


@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.integers(min_value=-(15 * 3600 + 59 * 60 + 59), max_value=15 * 3600 + 59 * 60 + 59),
    st.sampled_from([" ", "T"]),
)
def test_timestamptz_any_offset_is_the_same_instant(local: datetime, offset_s: int, sep: str) -> None:
    tz = timezone(timedelta(seconds=offset_s))
    aware = local.replace(tzinfo=tz)
    sign = "-" if offset_s < 0 else "+"
    h, rem = divmod(abs(offset_s), 3600)
    m, s = divmod(rem, 60)
    off = f"{sign}{h:02d}" + (f":{m:02d}" if m or s else "") + (f":{s:02d}" if s else "")
    frac = f".{local.microsecond:06d}".rstrip("0") if local.microsecond else ""
    text = f"{local.year:04d}-{local:%m-%d}{sep}{local:%H:%M:%S}{frac}{off}"
    parsed = parse_timestamptz(text)
    assert isinstance(parsed, datetime)
    assert to_utc(parsed) == aware.astimezone(UTC)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_numeric_text_round_trips(d: Decimal) -> None:
    text = format(d, "f")
    got = parse_numeric(text)
    assert got == d and format(got, "f") == text


@pytest.mark.postgres
def test_parsers_agree_with_a_real_server(pg_dsn: str) -> None:
    """The literals above are what the docs say; this checks them against what a server prints."""
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET DateStyle = ISO; SET IntervalStyle = postgres; SET bytea_output = hex")
        conn.execute("SET TimeZone = 'Asia/Kolkata'")

        def text(expr: str) -> str:
            row = conn.execute(f"SELECT ({expr})::text").fetchone()
            assert row is not None
            return str(row[0])

        v = parse_timestamptz(text("timestamptz '2024-01-01 00:00:00+00'"))
        assert isinstance(v, datetime)
        assert to_utc(v) == datetime(2024, 1, 1, tzinfo=UTC)
        conn.execute("SET TimeZone = 'Europe/Amsterdam'")
        v = parse_timestamptz(text("timestamptz '1900-01-01 00:00:00+00'"))  # LMT: +00:19:32
        assert isinstance(v, datetime)
        assert to_utc(v) == datetime(1900, 1, 1, tzinfo=UTC)
        with pytest.raises(PgTextError, match="BC"):
            parse_timestamptz(text("timestamptz '0044-03-15 00:00:00+00 BC'"))
        with pytest.raises(PgTextError, match="beyond 9999"):
            parse_timestamptz(text("timestamptz '10000-01-01 00:00:00+00'"))
        with pytest.raises(PgTextError, match="BC"):
            parse_date(text("date '0044-03-15 BC'"))
        items: list[PgArrayItem] = [None, "a,b", 'c"d', "NULL", "", " x ", "back\\slash", "{}"]
        server = text("ARRAY[NULL, 'a,b', 'c\"d', 'NULL', '', ' x ', 'back\\slash', '{}']::text[]")
        assert server == format_pg_array(items)
        assert parse_pg_array(server).items == items
        assert parse_pg_array(text("'[0:1][1:2]={{1,2},{3,4}}'::int[]")) == PgArray(
            [["1", "2"], ["3", "4"]], (0, 1)
        )
        assert parse_bytea(text("'\\x00ff10'::bytea")) == b"\x00\xff\x10"
        assert str(parse_money(text("'-1234.5'::money"))) == "-1234.50"
        conn.execute("SET IntervalStyle = postgres")
        pg_interval = text("interval '1 year 2 months -3 days 4 hours 5 minutes 6.5 seconds'")
        conn.execute("SET IntervalStyle = iso_8601")
        iso = text("interval '1 year 2 months -3 days 4 hours 5 minutes 6.5 seconds'")
        assert interval_to_iso8601(pg_interval) == iso

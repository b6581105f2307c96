"""The vectorised timestamp path must be indistinguishable from the per-value rule it short-cuts.

Every test compares convert_column with the pure row loop (``vector_timestamps=False``) on the same
input: same array, same errors (same rows, same reasons, same order), same notes. The call-counting
tests make sure the comparison is not vacuous, i.e. that clean rows really skip the row loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.sources.base import Column
from pipeline.target import TargetColumn
from transforms.policy import TypePolicy
from transforms.types import Converted, _convert_column, _Rules

TZ = "timestamp with time zone"
NAIVE = "timestamp without time zone"
ISO_FORMATS = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S+00:00",
]
OTHER_FORMATS = ["%Y/%m/%d %H.%M.%S.%f", "%d %b %Y %H:%M:%S"]


def both(
    values: pa.Array | list[str | None],
    pg_type: str = TZ,
    policy: TypePolicy | None = None,
    *,
    renamed: bool = False,
) -> tuple[Converted, Converted]:
    """(vectorised, row loop) results for one column, after checking they are the same."""
    array = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    source = Column("created_at", pg_type)
    target = TargetColumn("created" if renamed else "created_at", "TEXT", "TEXT")
    policy = policy or TypePolicy()
    fast = _convert_column(array, source, target, policy, vector_timestamps=True)
    slow = _convert_column(array, source, target, policy, vector_timestamps=False)
    assert fast.array.type == slow.array.type == pa.string()
    assert fast.array.to_pylist() == slow.array.to_pylist()
    assert fast.array.equals(slow.array)
    assert list(fast.errors.items()) == list(slow.errors.items())
    assert dict(fast.notes) == dict(slow.notes)
    return fast, slow


@pytest.fixture
def row_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The values that reach the per-value timestamp rule."""
    calls: list[str] = []
    original = _Rules.timestamp_text

    def counting(self: _Rules, s: str, *, with_tz: bool) -> str:
        calls.append(s)
        return original(self, s, with_tz=with_tz)

    monkeypatch.setattr(_Rules, "timestamp_text", counting)
    yield calls


# --- generated columns ------------------------------------------------------------------------------

DIGITS = "0123456789"


@st.composite
def utc_texts(draw: st.DrawFn) -> str:
    """What Postgres (TimeZone=UTC) or PostgREST prints; the offset is cut for timestamp columns later."""
    v = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    fraction = draw(st.one_of(
        st.just(""),
        st.text(DIGITS, min_size=1, max_size=6).map(lambda d: "." + d),
        st.sampled_from([".0", ".000000", ".5", ".500000", ".000001", ".999999", ".10"]),
    ))
    sep = draw(st.sampled_from([" ", "T"]))
    offset = draw(st.sampled_from(["+00", "+00:00"]))
    return f"{v.year:04d}-{v:%m-%d}{sep}{v:%H:%M:%S}{fraction}{offset}"


def _two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# Each field of the printed shape, and what it may be corrupted into (valid values included).
CORRUPTIONS: dict[str, st.SearchStrategy[str]] = {
    "year": st.one_of(
        st.integers(0, 10050).map(lambda n: f"{n:04d}"), st.sampled_from(["0000", "10000", "999", "123456"])
    ),
    "month": _two(0, 13),
    "day": _two(0, 32),
    "hour": _two(0, 25),
    "minute": _two(0, 61),
    "second": _two(0, 61),
    "sep": st.sampled_from([" ", "T", "t", "  ", "_", ""]),
    "fraction": st.text(DIGITS, max_size=8).map(lambda d: "." + d),
    "offset": st.sampled_from([
        "", "+00", "+00:00", "-00", "-00:00", "Z", "+01", "-02", "+05:30", "-03:30:15", "+00:00:00", "+0000",
        "+24", "+14:00", "+00:0", "+00 ",
    ]),
    "era": st.just(" BC"),
    "lead": st.sampled_from([" ", "\n", "x"]),
    "trail": st.sampled_from([" ", "\n", "x", "\x00"]),
}


MONTH_ENDS = ["01-31", "02-28", "02-30", "02-31", "04-30", "04-31", "06-30", "06-31", "09-30", "09-31", "11-30",
              "11-31", "12-31"]


@st.composite
def near_misses(draw: st.DrawFn) -> str:
    """A UTC text with up to two fields corrupted, so that every boundary is met next to clean rows."""
    v = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    f = {"year": f"{v.year:04d}", "month": f"{v:%m}", "day": f"{v:%d}", "hour": f"{v:%H}", "minute": f"{v:%M}",
         "second": f"{v:%S}", "sep": " ", "fraction": "", "offset": "+00", "era": "", "lead": "", "trail": ""}
    # Month ends, real and not (February 29th of a random year tests the leap-year rule).
    corner = draw(st.sampled_from(["", "02-29", *MONTH_ENDS]))
    if corner:
        f["month"], f["day"] = corner.split("-")
    names = st.sampled_from(["year", "year", "day", "day", *sorted(CORRUPTIONS)])
    for name in draw(st.sets(names, max_size=2)):
        f[name] = draw(CORRUPTIONS[name])
    return (f"{f['lead']}{f['year']}-{f['month']}-{f['day']}{f['sep']}{f['hour']}:{f['minute']}:{f['second']}"
            f"{f['fraction']}{f['offset']}{f['era']}{f['trail']}")


specials = st.sampled_from([
    "infinity", "-infinity", "+infinity", "Infinity", "", "garbage", "2024-01-01", "12:00:00+00",
    "0044-03-15 10:00:00+00:53:28 BC", "10000-01-01 00:00:00+00", "9999-12-31 23:00:00-02",
    "0001-01-01 00:30:00+01", "\u0662\u0660\u0662\u0664-01-01 00:00:00+00", "2024-01-01 00:00:00.1234567+00",
])
values_st = st.one_of(utc_texts(), near_misses(), near_misses(), specials, st.text(max_size=32), st.none())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(values_st, max_size=40),
    pg_type=st.sampled_from([TZ, NAIVE, "timestamp(3) with time zone"]),
    fmt=st.sampled_from(ISO_FORMATS + OTHER_FORMATS),
    infinity=st.sampled_from(["reject", "null", "keep"]),
    out_of_range=st.sampled_from(["reject", "keep"]),
    keep_offsets=st.sampled_from([False, False, False, True]),
    offset=st.integers(0, 2),
    renamed=st.booleans(),
)
def test_kernels_equal_the_row_loop(
    values: list[str | None], pg_type: str, fmt: str, infinity: str, out_of_range: str, keep_offsets: bool,
    offset: int, renamed: bool,
) -> None:
    if pg_type == NAIVE and not keep_offsets:
        # Timestamp columns print no offset: strip the UTC ones so their clean rows are generated too.
        values = [v.removesuffix("+00:00").removesuffix("+00") if v else v for v in values]
    # A sliced array has a non-zero offset, which the byte-slicing views must respect.
    array = pa.array([None, "2024-01-01 00:00:00+00", *values], pa.string()).slice(offset)
    policy = TypePolicy(timestamp_format=fmt, infinity=infinity, out_of_range=out_of_range)  # type: ignore[arg-type]
    both(array, pg_type, policy, renamed=renamed)


# --- explicit cases ---------------------------------------------------------------------------------


def test_clean_rows_skip_the_row_loop_and_odd_rows_keep_it(row_calls: list[str]) -> None:
    clean = [f"2025-03-01 12:34:{i % 60:02d}{'.123456' if i % 2 else ''}+00" for i in range(1000)]
    odd = ["2025-03-01 13:34:56+01", "infinity", "0044-03-15 10:00:00+00 BC", "2023-02-29 00:00:00+00", "x"]
    values: list[str | None] = [*clean[:500], *odd, None, *clean[500:]]
    fast, _ = both(values, policy=TypePolicy(infinity="keep"))
    # The vectorised run sends only the odd rows to the rule; the reference run sends every row.
    assert row_calls[: len(odd)] == odd and len(row_calls) == len(odd) + len(clean) + len(odd)
    out = fast.array.to_pylist()
    assert out[:3] == ["2025-03-01 12:34:00", "2025-03-01 12:34:01", "2025-03-01 12:34:02"]
    assert out[500:506] == ["2025-03-01 12:34:56", "infinity", None, None, None, None]
    assert fast.errors == {
        502: "column created_at: BC timestamp cannot be represented",
        503: "column created_at: not a valid timestamp",
        504: "column created_at: not a valid timestamp",
    }
    assert fast.notes == {"microseconds_dropped": 500, "infinity": 1}


def test_a_clean_column_never_reaches_the_row_rule(row_calls: list[str]) -> None:
    values = pa.array([f"2025-03-01T12:34:56.{i:06d}+00:00" for i in range(100)], pa.string())
    r = _convert_column(values, Column("t", TZ), TargetColumn("t", "TEXT", "TEXT"),
                        TypePolicy(timestamp_format="%Y-%m-%dT%H:%M:%S.%fZ"), vector_timestamps=True)
    assert not row_calls
    assert r.array[7].as_py() == "2025-03-01T12:34:56.000007Z" and not r.notes and not r.errors


@pytest.mark.parametrize("fmt", OTHER_FORMATS)
def test_formats_that_are_not_iso_keep_the_row_loop(row_calls: list[str], fmt: str) -> None:
    both(["2025-03-01 12:34:56+00"], policy=TypePolicy(timestamp_format=fmt))
    assert len(row_calls) == 2


@pytest.mark.parametrize(
    ("text", "fmt", "expected"),
    [
        ("2025-03-01 12:34:56+00", "%Y-%m-%d %H:%M:%S", "2025-03-01 12:34:56"),
        ("2025-03-01T12:34:56+00:00", "%Y-%m-%d %H:%M:%S", "2025-03-01 12:34:56"),
        ("2025-03-01 12:34:56.5+00", "%Y-%m-%dT%H:%M:%S.%fZ", "2025-03-01T12:34:56.500000Z"),
        ("2025-03-01 12:34:56.000100+00", "%Y-%m-%d %H:%M:%S.%f", "2025-03-01 12:34:56.000100"),
        ("2025-03-01 12:34:56+00", "%Y-%m-%d %H:%M:%S.%f", "2025-03-01 12:34:56.000000"),
        ("0001-01-01 00:00:00+00", "%Y-%m-%d %H:%M:%S", "0001-01-01 00:00:00"),
        ("9999-12-31 23:59:59.999999+00", "%Y-%m-%dT%H:%M:%S.%f+00:00", "9999-12-31T23:59:59.999999+00:00"),
        ("2000-02-29 00:00:00+00", "%Y-%m-%d %H:%M:%S", "2000-02-29 00:00:00"),
        ("2024-02-29 00:00:00+00", "%Y-%m-%d %H:%M:%S", "2024-02-29 00:00:00"),
    ],
)
def test_utc_values(text: str, fmt: str, expected: str) -> None:
    fast, _ = both([text], policy=TypePolicy(timestamp_format=fmt))
    assert fast.array.to_pylist() == [expected] and not fast.errors


@pytest.mark.parametrize(
    "text",
    [
        "0000-01-01 00:00:00+00", "2023-02-29 00:00:00+00", "1900-02-29 00:00:00+00", "2023-04-31 00:00:00+00",
        "2023-02-30 00:00:00+00", "2023-13-01 00:00:00+00", "2023-00-10 00:00:00+00", "2023-01-00 00:00:00+00",
        "2023-01-01 24:00:00+00", "2023-01-01 23:60:00+00", "2023-01-01 23:59:60+00",
        "2023-01-01 00:00:00.1234567+00", "2023-01-01 00:00:00.+00", "2023-01-01 00:00:00+00\n",
        " 2023-01-01 00:00:00+00", "2023-01-01t00:00:00+00",
    ],
)
def test_impossible_values_are_rejected_as_before(text: str) -> None:
    fast, _ = both([text, "2023-01-01 00:00:00+00"])
    assert fast.array.to_pylist() == [None, "2023-01-01 00:00:00"]
    assert fast.errors == {0: "column created_at: not a valid timestamp"}


def test_timestamp_without_zone_takes_no_offset() -> None:
    fast, _ = both(["2024-01-01 01:00:00", "2024-01-01 01:00:00+00", "2024-01-01T01:00:00.25"], NAIVE,
                   TypePolicy(timestamp_format="%Y-%m-%d %H:%M:%S.%f"))
    assert fast.array.to_pylist() == ["2024-01-01 01:00:00.000000", None, "2024-01-01 01:00:00.250000"]
    assert "carries a UTC offset" in fast.errors[1]


def test_microseconds_dropped_counts_non_zero_fractions_only() -> None:
    fast, _ = both(["2024-01-01 01:00:00.000+00", "2024-01-01 01:00:00.010+00", "2024-01-01 01:00:00+00",
                    "2024-01-01 01:00:00.000001+00:00", "2024-01-01 02:00:00.5+01"])
    assert fast.notes == {"microseconds_dropped": 3}


def test_every_day_of_telling_years_matches_the_row_loop() -> None:
    years = [1, 4, 100, 400, 1582, 1900, 2000, 2023, 2024, 9996, 9999]
    values: list[str | None] = [
        f"{y:04d}-{m:02d}-{d:02d} 00:00:00+00" for y in years for m in range(14) for d in range(33)
    ]
    fast, _ = both(values)
    assert len(fast.errors) == len(values) - sum(
        (365 + (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0))) for y in years
    )


def test_february_29_of_every_year_matches_the_row_loop() -> None:
    fast, _ = both([f"{y:04d}-02-29 12:00:00+00" for y in range(10000)])
    assert len(fast.errors) == 10000 - 2424  # leap years in 1..9999; year 0 is not a valid year

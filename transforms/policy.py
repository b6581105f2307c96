"""The global type policies as plain data, so pure transforms need no config machinery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Choice = Literal["reject", "null", "keep"]


@dataclass(frozen=True)
class TypePolicy:
    # strftime pattern for timestamp/timestamptz after conversion to UTC; the sample app uses
    # SQLite's own datetime('now') shape.
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"
    # auto: by the target column's storage class (REAL -> float, TEXT -> exact text,
    # INTEGER -> minor units at minor_units_scale).
    numeric_mode: Literal["auto", "text", "real", "minor_units"] = "auto"
    minor_units_scale: int = 2
    # what to do with 'infinity' / '-infinity' dates and timestamps; keep stores the words as text.
    infinity: Choice = "reject"
    # NaN in numeric / float columns (SQLite would turn a REAL NaN into NULL silently).
    nan: Choice = "reject"
    # a Postgres type with no rule: carry its text form, or reject the row.
    unknown_type: Literal["text", "reject"] = "text"
    # BC dates/timestamps and years past 9999 have no 'YYYY-MM-DD' form SQLite's date functions
    # read: reject the row, or keep the text Postgres printed (e.g. '0044-03-15 BC').
    out_of_range: Literal["reject", "keep"] = "reject"

"""Parsers for PostgreSQL's text output forms, and the few formatters the conversions need.

Every source hands values over as the text Postgres prints (DateStyle=ISO, IntervalStyle=postgres,
bytea_output=hex), so these parsers are where the pipeline's understanding of that text lives.
Each one follows a rule from the Postgres documentation, cited in its docstring, and accepts only
what Postgres (or PostgREST, for the ISO ``T`` form) would print: anything else is an error, because a
value we do not understand must be rejected, not guessed at. Errors are ``PgTextError`` with a
reason safe to log: it never repeats the value, which might be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal, TypeAlias

Infinity = Literal["infinity", "-infinity"]
PgArrayItem: TypeAlias = "str | list[PgArrayItem] | None"


class PgTextError(ValueError):
    """A value is not in the text form Postgres prints for its type; the message is the reason."""


class PgOutOfRange(PgTextError):
    """A valid Postgres date/time (BC, or a year past 9999) that has no 'YYYY-MM-DD' form.

    Kept apart from malformed text because the out_of_range policy may keep such a value as the
    text Postgres printed, while a malformed value is always rejected.
    """


# --- type names -------------------------------------------------------------------------------

_TYPMOD = re.compile(r"\s*\([^)]*\)", re.ASCII)


def strip_typmod(pg_type: str) -> str:
    """Drop type modifiers so rules can key on the bare name.

    format_type() prints modifiers in parentheses, in the middle for the time types
    ('timestamp(3) with time zone') and before '[]' for arrays ('character varying(255)[]').
    """
    return _TYPMOD.sub("", pg_type).strip()


def typmod_args(pg_type: str) -> tuple[int, ...]:
    """The integer modifiers of a type, e.g. (10, 2) for 'numeric(10,2)'; () when there are none."""
    m = re.search(r"\(([^)]*)\)", pg_type)
    if not m:
        return ()
    try:
        return tuple(int(p) for p in m.group(1).split(","))
    except ValueError:
        return ()


# --- numbers ------------------------------------------------------------------------------------

_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_SPECIAL_NUMBERS: dict[str, Decimal] = {
    "nan": Decimal("NaN"),
    "infinity": Decimal("Infinity"),
    "+infinity": Decimal("Infinity"),
    "-infinity": Decimal("-Infinity"),
    "inf": Decimal("Infinity"),
    "+inf": Decimal("Infinity"),
    "-inf": Decimal("-Infinity"),
}


def parse_numeric(text: str) -> Decimal:
    """Parse numeric (or float) output: plain decimal digits, 'NaN', and since PG 14 '[-]Infinity'.

    Docs 8.1.2: numeric output is the digits with the column's scale; an exponent appears only on
    input, but PostgREST may hand float values back in exponent form, so it is accepted. Python's
    Decimal would also take underscores and surrounding blanks; Postgres prints neither, so the
    shape is checked first.
    """
    special = _SPECIAL_NUMBERS.get(text.lower())
    if special is not None:
        return special
    if not _DECIMAL.fullmatch(text):
        raise PgTextError("not a valid number")
    try:
        return Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid literals
        raise PgTextError("not a valid number") from exc


def parse_float(text: str) -> float:
    """Parse real / double precision output (docs 8.1.3: 'NaN', 'Infinity', '-Infinity' are special)."""
    special = _SPECIAL_NUMBERS.get(text.lower())
    if special is not None:
        return float(special)
    if not _DECIMAL.fullmatch(text):
        raise PgTextError("not a valid floating-point number")
    return float(text)


_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def parse_integer(text: str) -> int:
    """Parse smallint/integer/bigint output: an optional sign and decimal digits (docs 8.1.1)."""
    if not _INTEGER.fullmatch(text):
        raise PgTextError("not a valid integer")
    n = int(text)
    if not INT64_MIN <= n <= INT64_MAX:
        raise PgTextError("integer out of the 64-bit range")
    return n


def parse_money(text: str) -> Decimal:
    """Turn money output such as '$1,234.50', '-$1,234.50' or '1.234,50 €' into a Decimal.

    Docs 8.2: money output is locale-formatted (lc_monetary): a currency symbol or code, grouping
    separators, and a minus sign or parentheses for negatives. The digits must form one group
    (separators and blanks inside it); in it the decimal point is the later of '.' and ',' when
    both appear, else the only separator unless it repeats or three digits follow it (grouping).
    Groups hold two or three digits (en_IN groups '1,23,456.00').
    """
    s = text.strip()
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1]
    if s.count("-") > 1:
        raise PgTextError("not a valid money amount")
    if "-" in s:
        negative, s = not negative, s.replace("-", "")
    groups = _MONEY_DIGITS.findall(s)
    if len(groups) != 1:
        raise PgTextError("not a valid money amount")
    core = re.sub(r"\s", "", groups[0])
    last_dot, last_comma = core.rfind("."), core.rfind(",")
    point = ""
    if last_dot >= 0 and last_comma >= 0:
        point = "." if last_dot > last_comma else ","
    elif last_dot >= 0 or last_comma >= 0:
        sep = "." if last_dot >= 0 else ","
        if core.count(sep) == 1 and len(core) - core.rfind(sep) - 1 != 3:
            point = sep
    whole, frac = core.rsplit(point, 1) if point else (core, "")
    groups_of_whole = re.split(r"[.,]", whole)
    if (
        len(set(re.findall(r"[.,]", whole))) > 1
        or "." in frac
        or "," in frac
        or any(len(g) not in (2, 3) for g in groups_of_whole[1:])
    ):
        raise PgTextError("not a valid money amount")
    digits = "".join(groups_of_whole) + ("." + frac if point else "")
    if not _DECIMAL.fullmatch(digits):
        raise PgTextError("not a valid money amount")
    value = Decimal(digits)
    return -value if negative else value


_MONEY_DIGITS = re.compile(r"[0-9](?:[0-9.,\s]*[0-9])?")


# --- booleans and uuids -------------------------------------------------------------------------

_BOOLS = {"t": True, "true": True, "f": False, "false": False}


def parse_bool(text: str) -> bool:
    """Parse boolean output: Postgres prints 't' / 'f' (docs 8.6); PostgREST gives 'true' / 'false'."""
    try:
        return _BOOLS[text.lower()]
    except KeyError:
        raise PgTextError("not a valid boolean") from None


_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
CANONICAL_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def parse_uuid(text: str) -> str:
    """Return the lowercase, hyphenated 36-character form of a uuid.

    Docs 8.12: output is always the standard lowercase hyphenated form; input also allows upper
    case, braces and missing hyphens, which other tools may have written, so those are accepted.
    """
    s = text[1:-1] if text.startswith("{") and text.endswith("}") else text
    if not _UUID.fullmatch(s):
        raise PgTextError("not a valid uuid")
    h = s.replace("-", "").lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --- bytea --------------------------------------------------------------------------------------

_HEX_BODY = re.compile(r"(?:\s*[0-9a-fA-F]{2})*\s*", re.ASCII)


def parse_bytea(text: str) -> bytes:
    """Decode bytea output in the hex format ('\\x0a0b') or the legacy escape format.

    Docs 8.4.1: hex is '\\x' then two hex digits per byte (whitespace allowed between pairs on
    input). Docs 8.4.2: the escape format writes '\\\\' for a backslash, '\\ooo' (three octal
    digits) for non-printable bytes, and other bytes as themselves.
    """
    if text.startswith("\\x"):
        body = text[2:]
        if not _HEX_BODY.fullmatch(body):
            raise PgTextError("not a valid bytea hex string")
        return bytes.fromhex(body)
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
        elif text.startswith("\\\\", i):
            out.append(0x5C)
            i += 2
        elif re.fullmatch(r"[0-3][0-7]{2}", text[i + 1 : i + 4]):
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        else:
            raise PgTextError("not a valid bytea escape string")
    return bytes(out)


def format_bytea_hex(data: bytes) -> str:
    """The hex output form Postgres prints for bytea (docs 8.4.1)."""
    return "\\x" + data.hex()


# --- dates, times, timestamps -------------------------------------------------------------------

_DATE = re.compile(r"(\d{4,})-(\d{2})-(\d{2})( BC)?", re.ASCII)
_TS = re.compile(
    r"(\d{4,})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?"
    r"(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)?( BC)?",
    re.ASCII,
)
_TS_FAST = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}(?::[0-9]{2}){0,2})?",
    re.ASCII,
)
_OFFSET = re.compile(r"([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?", re.ASCII)
_TIME = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?", re.ASCII)
_TIMETZ = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?(?:[+-]\d{2}(?::\d{2}(?::\d{2})?)?)", re.ASCII)


def _special(text: str) -> Infinity | None:
    low = text.lower()
    if low in ("infinity", "+infinity"):
        return "infinity"
    if low == "-infinity":
        return "-infinity"
    return None


def _year(digits: str, bc: str | None, what: str) -> int:
    if bc:
        raise PgOutOfRange(f"BC {what} cannot be represented")
    if len(digits) > 4:
        raise PgOutOfRange(f"{what} year beyond 9999")
    y = int(digits)
    if y == 0:
        raise PgTextError(f"not a valid {what}")
    return y


def parse_date(text: str) -> date | Infinity:
    """Parse date output in DateStyle ISO: 'YYYY-MM-DD', with ' BC' appended for BC dates.

    Docs 8.5.1.1 / 8.5.2: years beyond 9999 print with more digits; 'infinity' and '-infinity'
    are special values. BC dates and years past 9999 have no place in a 'YYYY-MM-DD' TEXT column
    that SQLite's date functions understand, so both raise.
    """
    special = _special(text)
    if special:
        return special
    m = _DATE.fullmatch(text)
    if not m:
        raise PgTextError("not a valid date")
    y = _year(m.group(1), m.group(4), "date")
    try:
        return date(y, int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise PgTextError("not a valid date") from None


def parse_offset(text: str) -> timezone:
    """A UTC offset as Postgres prints it: '+HH', '+HH:MM' or '+HH:MM:SS' (docs 8.5.1.3); or 'Z'."""
    if text == "Z":
        return UTC
    m = _OFFSET.fullmatch(text)
    if not m:
        raise PgTextError("not a valid UTC offset")
    sign, hh, mm, ss = m.groups()
    delta = timedelta(hours=int(hh), minutes=int(mm or 0), seconds=int(ss or 0))
    if delta >= timedelta(hours=24):
        raise PgTextError("not a valid UTC offset")
    return timezone(-delta if sign == "-" else delta)


def _parse_ts(text: str, *, with_tz: bool) -> datetime | Infinity:
    if _TS_FAST.fullmatch(text):
        # The common shape: fromisoformat (C) does the calendar and offset arithmetic.
        try:
            v = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if (v.tzinfo is not None) == with_tz:
                return v
    special = _special(text)
    if special:
        return special
    m = _TS.fullmatch(text)
    if not m:
        raise PgTextError("not a valid timestamp")
    _year(m.group(1), m.group(9), "timestamp")
    off = m.group(8)
    if with_tz and off is None:
        raise PgTextError("timestamp with time zone has no UTC offset")
    if not with_tz and off is not None:
        raise PgTextError("timestamp without time zone carries a UTC offset")
    try:
        # The shape is checked above; fromisoformat (C) does the calendar and offset arithmetic.
        return datetime.fromisoformat(text)
    except ValueError:
        raise PgTextError("not a valid timestamp") from None


def parse_timestamp(text: str) -> datetime | Infinity:
    """Parse timestamp-without-time-zone output: 'YYYY-MM-DD HH:MM:SS[.ffffff][ BC]' (docs 8.5.1.3).

    Also accepts the ISO 'T' separator that PostgREST prints. Returns a naive datetime.
    """
    return _parse_ts(text, with_tz=False)


def parse_timestamptz(text: str) -> datetime | Infinity:
    """Parse timestamptz output into an aware datetime, keeping the printed offset.

    Docs 8.5.1.3 / 8.5.2: ISO output is the local time in the session's TimeZone followed by its
    offset: '+HH' when whole hours, '+HH:MM' or '+HH:MM:SS' (LMT offsets) otherwise, then ' BC'
    for BC years. A dump is printed in the dumping server's TimeZone, so any offset can appear;
    PostgREST prints 'YYYY-MM-DDTHH:MM:SS+00:00'.
    """
    return _parse_ts(text, with_tz=True)


def to_utc(value: datetime) -> datetime:
    """The same instant in UTC; raises when that instant falls outside years 1..9999."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PgOutOfRange("timestamp falls outside years 1..9999 in UTC") from None


def format_timestamp(value: datetime, fmt: str) -> str:
    """strftime, except that %Y is always four digits (glibc prints year 44 as '44', not '0044')."""
    return timestamp_formatter(fmt)(value)


_FAST_DIRECTIVES = {
    "Y": "{0.year:04d}", "m": "{0.month:02d}", "d": "{0.day:02d}", "H": "{0.hour:02d}",
    "M": "{0.minute:02d}", "S": "{0.second:02d}", "f": "{0.microsecond:06d}", "%": "%",
}


_ISO_FORMAT = re.compile(r"%Y-%m-%d([ T])%H:%M:%S(\.%f)?([^%]*)")


def iso_timestamp_format(fmt: str) -> tuple[str, bool, str] | None:
    """(separator, keeps microseconds, literal suffix) when fmt is ISO-shaped, else None.

    Shared by timestamp_formatter and the vectorised timestamp path in transforms.types, so that
    both agree on which patterns print as isoformat does.
    """
    m = _ISO_FORMAT.fullmatch(fmt)
    return (m.group(1), bool(m.group(2)), m.group(3)) if m else None


@lru_cache(maxsize=32)
def timestamp_formatter(fmt: str) -> Callable[[datetime], str]:
    """Compile a strftime pattern once; the common directives become a str.format template.

    strftime costs microseconds per call, which adds up over millions of timestamps: ISO-shaped
    patterns use isoformat (its year is always four digits; the offset it appends for an aware value
    is cut off), other common directives a str.format template, and patterns with anything else
    (%b, %z, ...) keep strftime with %Y padded to four digits.
    """
    iso = iso_timestamp_format(fmt)
    if iso:
        sep, micro, suffix = iso
        spec, width = ("microseconds", 26) if micro else ("seconds", 19)
        return lambda v: v.isoformat(sep, spec)[:width] + suffix
    pieces: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            directive = _FAST_DIRECTIVES.get(fmt[i + 1])
            if directive is None:
                return lambda v: v.strftime(
                    re.sub(r"%(%|Y)", lambda m: "%%" if m.group(1) == "%" else f"{v.year:04d}", fmt)
                )
            pieces.append(directive)
            i += 2
            continue
        pieces.append("{{" if ch == "{" else "}}" if ch == "}" else ch)
        i += 1
    return "".join(pieces).format


def check_time(text: str, *, with_tz: bool) -> str:
    """Validate time / timetz output: 'HH:MM:SS[.ffffff]' plus an offset for timetz (docs 8.5.1.2).

    Returned unchanged: a time of day carries no instant to convert, and Postgres allows
    '24:00:00', which no Python type holds.
    """
    m = (_TIMETZ if with_tz else _TIME).fullmatch(text)
    if not m:
        raise PgTextError(f"not a valid time{' with time zone' if with_tz else ''}")
    hh, mm, ss = (int(g) for g in m.groups())
    if hh > 24 or mm > 59 or ss > 60 or (hh == 24 and (mm or ss or "." in text[:9])):
        raise PgTextError("time of day out of range")
    return text


# --- intervals ----------------------------------------------------------------------------------

_INTERVAL_PART = re.compile(
    r"\s*(?:([+-]?\d+)\s+(years?|mons?|days?)|([+-])?(\d+):(\d{2}):(\d{2})(?:\.(\d{1,6}))?)",
    re.ASCII,
)


def interval_to_iso8601(text: str) -> str:
    """Rewrite an IntervalStyle=postgres interval as ISO 8601, the way IntervalStyle=iso_8601 would.

    Docs 8.5.5: postgres style prints '1 year 2 mons -3 days +04:05:06.5' with each field signed
    on its own; iso_8601 style writes the same fields as 'P1Y2M-3DT4H5M6.5S', with a sign on each
    non-zero field, and 'PT0S' for zero.
    """
    if text.strip() == "00:00:00":
        return "PT0S"
    years = months = days = 0
    hours = minutes = 0
    seconds = Decimal(0)
    pos, seen_time = 0, False
    stripped = text.strip()
    if not stripped:
        raise PgTextError("not a valid interval")
    while pos < len(stripped):
        m = _INTERVAL_PART.match(stripped, pos)
        if not m or m.end() == pos:
            raise PgTextError("not a valid interval")
        pos = m.end()
        if m.group(1) is not None:
            n, unit = int(m.group(1)), m.group(2)
            if unit.startswith("year"):
                years += n
            elif unit.startswith("mon"):
                months += n
            else:
                days += n
        else:
            if seen_time:
                raise PgTextError("not a valid interval")
            seen_time = True
            sign = -1 if m.group(3) == "-" else 1
            hours = sign * int(m.group(4))
            minutes = sign * int(m.group(5))
            seconds = sign * Decimal(f"{m.group(6)}.{m.group(7) or '0'}")
    out = "P"
    for n, suffix in ((years, "Y"), (months, "M"), (days, "D")):
        if n:
            out += f"{n}{suffix}"
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if seconds:
        time_part += f"{format(seconds.normalize(), 'f')}S"
    if time_part:
        out += "T" + time_part
    return out if out != "P" else "PT0S"


# --- arrays -------------------------------------------------------------------------------------

_BOUNDS = re.compile(r"((?:\[[+-]?\d+:[+-]?\d+\])+)\s*=\s*", re.ASCII)


@dataclass(frozen=True)
class PgArray:
    """A parsed array literal: nested lists of element texts (None for NULL) and the lower bounds.

    lower_bounds is () when the literal had no '[lo:hi]=' decoration, i.e. every dimension starts at
    1; a JSON array cannot keep any other lower bound.
    """

    items: list[PgArrayItem]
    lower_bounds: tuple[int, ...] = ()


def parse_pg_array(text: str, delimiter: str = ",") -> PgArray:
    """Parse an array literal as array_out prints it (docs 8.15.2 and 8.15.6).

    The value is '{...}' with elements split by the delimiter (',' for all but type box); nested
    braces for each extra dimension; an element is double-quoted when it is empty, the word NULL,
    or contains braces, the delimiter, quotes, backslashes or white space, and inside it '\\"' and
    '\\\\' escape (a backslash escapes any character, quoted or not). An unquoted NULL (any case) is
    a null element; white space around an unquoted element is ignored. Dimensions whose lower
    bound is not 1 are announced by a '[lo:hi]...=' prefix.
    """
    bounds: tuple[int, ...] = ()
    pos = 0
    s = text.strip()
    m = _BOUNDS.match(s)
    if m:
        pairs = re.findall(r"\[([+-]?[0-9]+):([+-]?[0-9]+)\]", m.group(1))
        bounds = tuple(int(lo) for lo, _ in pairs)
        pos = m.end()
        if all(b == 1 for b in bounds):
            bounds = ()
    items, pos = _parse_level(s, pos, delimiter)
    if s[pos:].strip():
        raise PgTextError("not a valid array literal: text after the closing brace")
    if m:
        pairs = re.findall(r"\[([+-]?[0-9]+):([+-]?[0-9]+)\]", m.group(1))
        dims = _dimensions(items, len(pairs))
        if dims != [int(hi) - int(lo) + 1 for lo, hi in pairs]:
            raise PgTextError("not a valid array literal: dimensions do not match the bounds")
    return PgArray(items, bounds)


def _dimensions(items: list[PgArrayItem], depth: int) -> list[int]:
    dims: list[int] = []
    level: PgArrayItem = items
    for _ in range(depth):
        if not isinstance(level, list):
            break
        dims.append(len(level))
        level = level[0] if level else None
    return dims


# array_in / array_out treat only these as white space (scanner_isspace); str.isspace() would also
# eat U+00A0 and other Unicode spaces, which Postgres prints unquoted as element text.
_PG_SPACE = frozenset(" \t\n\r\v\f")


def _parse_level(s: str, pos: int, delim: str) -> tuple[list[PgArrayItem], int]:
    n = len(s)
    while pos < n and s[pos] in _PG_SPACE:
        pos += 1
    if pos >= n or s[pos] != "{":
        raise PgTextError("not a valid array literal: expected '{'")
    pos += 1
    out: list[PgArrayItem] = []
    expect_item = True
    first = True
    while True:
        while pos < n and s[pos] in _PG_SPACE:
            pos += 1
        if pos >= n:
            raise PgTextError("not a valid array literal: unterminated")
        ch = s[pos]
        if ch == "}":
            if expect_item and not first:
                raise PgTextError("not a valid array literal: missing element")
            return out, pos + 1
        if not expect_item:
            if ch != delim:
                raise PgTextError("not a valid array literal: expected a delimiter")
            pos += 1
            expect_item = True
            continue
        first = False
        if ch == "{":
            sub, pos = _parse_level(s, pos, delim)
            out.append(sub)
        elif ch == '"':
            buf: list[str] = []
            pos += 1
            while True:
                if pos >= n:
                    raise PgTextError("not a valid array literal: unterminated quoted element")
                c = s[pos]
                if c == "\\":
                    if pos + 1 >= n:
                        raise PgTextError("not a valid array literal: dangling backslash")
                    buf.append(s[pos + 1])
                    pos += 2
                elif c == '"':
                    pos += 1
                    break
                else:
                    buf.append(c)
                    pos += 1
            out.append("".join(buf))
        else:
            buf = []
            trailing_ws = 0
            escaped_any = False
            while pos < n:
                c = s[pos]
                if c == "\\":
                    if pos + 1 >= n:
                        raise PgTextError("not a valid array literal: dangling backslash")
                    buf.append(s[pos + 1])
                    escaped_any = True
                    trailing_ws = 0
                    pos += 2
                    continue
                if c in (delim, "}"):
                    break
                if c in '{"':
                    raise PgTextError("not a valid array literal: unexpected character")
                buf.append(c)
                trailing_ws = trailing_ws + 1 if c in _PG_SPACE else 0
                pos += 1
            if not buf:
                raise PgTextError("not a valid array literal: missing element")
            word = "".join(buf[: len(buf) - trailing_ws] if trailing_ws else buf)
            out.append(None if word.upper() == "NULL" and not escaped_any else word)
        expect_item = False


def format_pg_array(items: list[PgArrayItem], delimiter: str = ",") -> str:
    """The inverse of parse_pg_array, quoting the way array_out does; used by tests and tools."""

    def elem(v: PgArrayItem) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, list):
            return format_pg_array(v, delimiter)
        if (
            v == ""
            or v.upper() == "NULL"
            or any(c in v for c in ('{', '}', '"', "\\", delimiter))
            or any(c in _PG_SPACE for c in v)
        ):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return v

    return "{" + delimiter.join(elem(v) for v in items) + "}"

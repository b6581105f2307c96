"""The SQL side of reading pg_dump output: a streaming lexer, COPY text decoding, literal values, DDL.

Everything here works on bytes read line by line so a multi-gigabyte dump never sits in memory: the
lexer carries its state (inside a string, a dollar quote, a block comment) from one line to the next,
and byte offsets stay exact so the data of a table can be found again with one seek. Every SQL
delimiter is ASCII, and every encoding PostgreSQL accepts as a client encoding keeps ASCII bytes out
of multibyte characters, so scanning bytes is safe before decoding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, NamedTuple

from pipeline.sources.base import Column, ForeignKey, TableInfo

IDENT, QIDENT, STRING, NUMBER, OP, META = range(6)

# PostgreSQL 15 keywords that are not UNRESERVED: quote_identifier() quotes these (pg_get_keywords()).
_KEYWORD_TEXT = """all analyse analyze and any array as asc asymmetric authorization between bigint binary bit boolean
    both case cast char character check coalesce collate collation column concurrently constraint
    create cross current_catalog current_date current_role current_schema current_time
    current_timestamp current_user dec decimal default deferrable desc distinct do else end except
    exists extract false fetch float for foreign freeze from full grant greatest group grouping having
    ilike in initially inner inout int integer intersect interval into is isnull join lateral leading
    least left like limit localtime localtimestamp national natural nchar none normalize not notnull
    null nullif numeric offset on only or order out outer overlaps overlay placing position precision
    primary real references returning right row select session_user setof similar smallint some
    substring symmetric table tablesample then time timestamp to trailing treat trim true union unique
    user using values varchar variadic verbose when where window with xmlattributes xmlconcat
    xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable"""
_KEYWORDS = frozenset(_KEYWORD_TEXT.split())

_PG_ENCODINGS = {
    "UTF8": "utf-8", "UNICODE": "utf-8", "SQL_ASCII": "utf-8", "LATIN1": "latin-1", "LATIN2": "iso8859-2",
    "LATIN9": "iso8859-15", "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252",
    "EUC_JP": "euc_jp", "EUC_KR": "euc_kr", "SJIS": "shift_jis", "GBK": "gbk", "BIG5": "big5",
    "KOI8R": "koi8-r", "ISO_8859_5": "iso8859-5",
}


class Truncated(Exception):
    """The input ended inside a statement, a literal or a COPY block."""


class DumpSyntaxError(Exception):
    """Something the dump reader cannot interpret; the message never carries a data value."""


def python_encoding(pg_name: str) -> str:
    enc = _PG_ENCODINGS.get(pg_name.upper().replace("-", "_"))
    if enc is None:
        raise DumpSyntaxError(f"the dump's client_encoding {pg_name!r} is not supported; re-dump with -E UTF8")
    return enc


def quote_ident(name: str) -> str:
    """PostgreSQL's quote_identifier(): the spelling format_type() uses for a type name part."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


class Tok(NamedTuple):
    kind: int
    text: str  # IDENT: ASCII-lowercased; QIDENT: the name; STRING: the value; NUMBER / OP / META: as written
    offset: int  # byte offset of the token's first byte in the file
    prefix: str = ""  # STRING: '' plain, 'e' escape, 'b' / 'x' bit string, '$' dollar quoted


_WS = re.compile(rb"[ \t\r\n\f\v]*")
_WORD = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*")
_NUM = re.compile(rb"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DOLLAR = re.compile(rb"\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")
_OPCHARS = re.compile(rb"[+\-*/<>=~!@#%^&|`?]+")
_E_SPECIAL = re.compile(rb"['\\]")
_BLOCK = re.compile(rb"/\*|\*/")
_SKIP = re.compile(rb"[;'\"$]|--|/\*|(?<![A-Za-z0-9_\x80-\xff])[eE]'")
_TERM = re.compile(rb"\n\\\.\r?\n")
_E_ESC = re.compile(
    rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.S
)
_COPY_ESC = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.S)
_SIMPLE_ESC = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_PUNCT = frozenset(b"(),;[].")
_ITEM = (
    rb"(?:'(?:[^']++|'')*+'|[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
    rb"|(?i:null|true|false|default)|[bB]'[01]*')"
)
_FAST_ROW = re.compile(rb"\(((?:[ \t]*" + _ITEM + rb"[ \t]*,)*[ \t]*" + _ITEM + rb"[ \t]*)\)")
_FAST_ITEM = re.compile(_ITEM)


class Lexer:
    """Tokens of a SQL script read line by line from a binary file, with exact byte offsets.

    Lines starting with a backslash at a statement start are psql meta-commands (pg_dump writes
    `\\restrict`, pg_dumpall `\\connect`) and come back whole as one META token.
    """

    def __init__(self, f: IO[bytes], offset: int = 0, encoding: str = "utf-8", std_strings: bool = True):
        self.f = f
        self.line = b""
        self.pos = 0
        self.line_off = offset
        self.next_off = offset
        self.encoding = encoding
        self.std_strings = std_strings
        self.stmt_start = True
        self.saw_header = False
        self.saw_trailer = False

    def seek(self, offset: int) -> None:
        self.f.seek(offset)
        self.line = b""
        self.pos = 0
        self.line_off = self.next_off = offset
        self.stmt_start = True

    def _more(self) -> bool:
        line = self.f.readline()
        if not line:
            return False
        self.line_off = self.next_off
        self.next_off += len(line)
        self.line = line
        self.pos = 0
        return True

    def _more_or_truncated(self) -> None:
        if not self._more():
            raise Truncated()

    def _dec(self, raw: bytes) -> str:
        return raw.decode(self.encoding)

    def next(self) -> Tok | None:
        """The next token, or None at the end of the input (never inside a token)."""
        while True:
            line = self.line
            m = _WS.match(line, self.pos)
            pos = m.end() if m else self.pos
            if pos >= len(line):
                if not self._more():
                    self.pos = pos
                    return None
                continue
            c = line[pos]
            off = self.line_off + pos
            if c == 0x2D and line.startswith(b"--", pos):
                rest = line[pos:].rstrip()
                if rest == b"-- PostgreSQL database dump":
                    self.saw_header = True
                elif rest == b"-- PostgreSQL database dump complete":
                    self.saw_trailer = True
                self.pos = len(line)
                continue
            if c == 0x2F and line.startswith(b"/*", pos):
                self.pos = pos + 2
                self._block_comment()
                continue
            if c == 0x5C and self.stmt_start:
                self.pos = len(line)
                return Tok(META, self._dec(line[pos:]).strip(), off)
            self.stmt_start = False
            if c == 0x27:
                self.pos = pos + 1
                return Tok(STRING, self._string(self.std_strings), off)
            if c == 0x22:
                self.pos = pos + 1
                return Tok(QIDENT, self._quoted(b'"'), off)
            if c == 0x24:
                m = _DOLLAR.match(line, pos)
                if m:
                    self.pos = m.end()
                    return Tok(STRING, self._dollar(m.group()), off, "$")
            m = _WORD.match(line, pos)
            if m:
                word, end = m.group(), m.end()
                if len(word) == 1 and end < len(line) and line[end] == 0x27 and word in b"eEbBxXnN":
                    self.pos = end + 1
                    p = word.lower()
                    if p == b"e":
                        return Tok(STRING, self._string(False), off, "e")
                    return Tok(STRING, self._string(True), off, "" if p == b"n" else p.decode())
                self.pos = end
                return Tok(IDENT, self._dec(word.lower()), off)
            m = _NUM.match(line, pos)
            if m:
                self.pos = m.end()
                return Tok(NUMBER, m.group().decode("ascii"), off)
            if line.startswith(b"::", pos):
                self.pos = pos + 2
                return Tok(OP, "::", off)
            if c in _PUNCT:
                self.pos = pos + 1
                if c == 0x3B:
                    self.stmt_start = True
                return Tok(OP, chr(c), off)
            m = _OPCHARS.match(line, pos)
            end = m.end() if m else pos + 1
            self.pos = end
            return Tok(OP, line[pos:end].decode(self.encoding, "replace"), off)

    def fast_row(self) -> list[bytes] | None:
        """A whole `(...)` VALUES row of plain literals on one line, as raw items; else None.

        pg_dump writes one row per line, so most rows match one regex and never reach the
        per-token path; a row with casts, E'' strings or a value spanning lines falls back to it.
        """
        if not self.std_strings:
            return None
        while True:
            m = _WS.match(self.line, self.pos)
            pos = m.end() if m else self.pos
            if pos < len(self.line):
                break
            if not self._more():
                return None
        self.pos = pos
        m = _FAST_ROW.match(self.line, pos)
        if not m:
            return None
        self.pos = m.end()
        self.stmt_start = False
        return _FAST_ITEM.findall(m.group(1))

    def statement_rest(self) -> list[Tok]:
        """Tokens up to the terminating semicolon (consumed, not returned)."""
        out: list[Tok] = []
        while True:
            t = self.next()
            if t is None:
                raise Truncated()
            if t.kind == OP and t.text == ";":
                return out
            out.append(t)

    def skip_statement(self) -> None:
        """Jump to just after the terminating semicolon without building tokens (INSERT data is big)."""
        while True:
            line = self.line
            m = _SKIP.search(line, self.pos)
            if not m:
                self._more_or_truncated()
                continue
            s, i = m.group(), m.start()
            if s == b";":
                self.pos = i + 1
                self.stmt_start = True
                return
            if s == b"'":
                self.pos = i + 1
                self._string(self.std_strings, keep=False)
            elif s == b'"':
                self.pos = i + 1
                self._quoted(b'"', keep=False)
            elif s == b"$":
                d = _DOLLAR.match(line, i)
                if d:
                    self.pos = d.end()
                    self._dollar(d.group(), keep=False)
                else:
                    self.pos = i + 1
            elif s == b"--":
                self.pos = len(line)
            elif s == b"/*":
                self.pos = i + 2
                self._block_comment()
            else:
                self.pos = i + 2
                self._string(False, keep=False)

    def _block_comment(self) -> None:
        depth = 1
        while True:
            m = _BLOCK.search(self.line, self.pos)
            if not m:
                self._more_or_truncated()
                continue
            depth += 1 if m.group() == b"/*" else -1
            self.pos = m.end()
            if depth == 0:
                return

    def _quoted(self, q: bytes, keep: bool = True) -> str:
        parts: list[bytes] = []
        while True:
            line, pos = self.line, self.pos
            i = line.find(q, pos)
            if i < 0:
                if keep:
                    parts.append(line[pos:])
                self._more_or_truncated()
                continue
            if i + 1 < len(line) and line[i + 1] == q[0]:
                if keep:
                    parts.append(line[pos : i + 1])
                self.pos = i + 2
                continue
            if keep:
                parts.append(line[pos:i])
            self.pos = i + 1
            return self._dec(b"".join(parts)) if keep else ""

    def _string(self, std: bool, keep: bool = True) -> str:
        if std:
            return self._quoted(b"'", keep)
        parts: list[bytes] = []
        while True:
            line, pos = self.line, self.pos
            m = _E_SPECIAL.search(line, pos)
            if not m:
                if keep:
                    parts.append(line[pos:])
                self._more_or_truncated()
                continue
            i = m.start()
            if line[i] == 0x5C:
                if i + 1 >= len(line):
                    if keep:
                        parts.append(line[pos:])
                    self._more_or_truncated()
                    continue
                if keep:
                    parts.append(line[pos : i + 2])
                self.pos = i + 2
                continue
            if i + 1 < len(line) and line[i + 1] == 0x27:
                if keep:
                    parts.append(line[pos : i + 1])
                self.pos = i + 2
                continue
            if keep:
                parts.append(line[pos:i])
            self.pos = i + 1
            return unescape_e(b"".join(parts), self.encoding) if keep else ""

    def _dollar(self, tag: bytes, keep: bool = True) -> str:
        parts: list[bytes] = []
        while True:
            line, pos = self.line, self.pos
            i = line.find(tag, pos)
            if i < 0:
                if keep:
                    parts.append(line[pos:])
                self._more_or_truncated()
                continue
            if keep:
                parts.append(line[pos:i])
            self.pos = i + len(tag)
            return self._dec(b"".join(parts)) if keep else ""

    def skip_copy_data(self) -> bool:
        """Seek past the COPY block that starts on the next line; False when the input ends first.

        Searches megabyte chunks for the `\\.` line instead of reading line by line: the index pass
        over a large dump is then bound by disk speed, not by the interpreter.
        """
        start = self.next_off
        self.f.seek(start)
        tail, base = b"\n", start - 1
        while True:
            chunk = self.f.read(1 << 20)
            buf = tail + chunk
            m = _TERM.search(buf)
            if m:
                self.seek(base + m.end())
                return True
            if not chunk:
                if buf.endswith((b"\n\\.", b"\n\\.\r")):
                    self.seek(base + len(buf))
                    return True
                self.seek(base + len(buf))
                return False
            tail = buf[-4:]
            base += len(buf) - len(tail)

    def copy_lines(self) -> Iterator[bytes]:
        """The raw data lines of the COPY block starting on the next line; Truncated at a cut-off end."""
        self.line, self.pos = b"", 0
        readline = self.f.readline
        while True:
            line = readline()
            if not line:
                raise Truncated()
            self.next_off += len(line)
            if line[:2] == b"\\." and line.rstrip(b"\r\n") == b"\\.":
                self.stmt_start = True
                return
            if line[-1:] != b"\n":
                raise Truncated()
            yield line


def _e_sub(encoding: str) -> Callable[[re.Match[bytes]], bytes]:
    def sub(m: re.Match[bytes]) -> bytes:
        if m.group(1):
            return bytes([int(m.group(1), 8) & 0xFF])
        if m.group(2):
            return bytes([int(m.group(2), 16)])
        if m.group(3) or m.group(4):
            return chr(int(m.group(3) or m.group(4), 16)).encode(encoding)
        c = m.group(5)
        return _SIMPLE_ESC.get(c, c)

    return sub


def unescape_e(raw: bytes, encoding: str) -> str:
    """The value of an E'...' literal body (backslash escapes per the PostgreSQL lexer)."""
    if b"\\" not in raw:
        return raw.decode(encoding)
    return _E_ESC.sub(_e_sub(encoding), raw).decode(encoding)


def _copy_sub(m: re.Match[bytes]) -> bytes:
    if m.group(1):
        return bytes([int(m.group(1), 8) & 0xFF])
    if m.group(2):
        return bytes([int(m.group(2), 16)])
    c = m.group(3)
    return _SIMPLE_ESC.get(c, c)


def decode_copy_line(line: bytes, encoding: str) -> list[str | None]:
    """One COPY text-format row: tab-separated fields, `\\N` is NULL, backslash escapes decoded."""
    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    if b"\\" not in line:
        return list(line.decode(encoding).split("\t"))
    out: list[str | None] = []
    for f in line.split(b"\t"):
        if f == b"\\N":
            out.append(None)
        elif b"\\" in f:
            out.append(_COPY_ESC.sub(_copy_sub, f).decode(encoding))
        else:
            out.append(f.decode(encoding))
    return out


def fast_value(raw: bytes, pg_type: str | None, encoding: str) -> str | _Default | None:
    """literal_value() for one item that Lexer.fast_row() matched."""
    first = raw[:1]
    if first == b"'":
        return raw[1:-1].replace(b"''", b"'").decode(encoding)
    if first in (b"b", b"B") and raw[1:2] == b"'":
        return raw[2:-1].decode("ascii")
    low = raw.lower()
    if low == b"null":
        return None
    if low in (b"true", b"false"):
        return low[:1].decode() if pg_type == "boolean" else low.decode()
    if low == b"default":
        return DEFAULT
    return (raw[1:] if first == b"+" else raw).decode("ascii")


class _Default:
    """The DEFAULT keyword in a VALUES list (pg_dump writes it for generated columns)."""


DEFAULT = _Default()


def literal_value(toks: list[Tok], pg_type: str | None) -> str | _Default | None:
    """The text form COPY would give for one VALUES expression that pg_dump (or a person) wrote.

    pg_dump writes each value as its type's output text, quoted unless it is a plain number, so the
    literal's content is the text form; casts (`'..'::jsonb`) and typed literals (`date '..'`) are
    taken as written, without the server's normalisation. Anything else is refused, not guessed.
    """
    depth, cut = 0, len(toks)
    for i, t in enumerate(toks):
        if t.kind == OP and t.text in ("(", "["):
            depth += 1
        elif t.kind == OP and t.text in (")", "]"):
            depth -= 1
        elif depth == 0 and t.kind == OP and t.text == "::":
            cut = i
            break
    toks = toks[:cut]
    while len(toks) >= 2 and toks[0].text == "(" and toks[-1].text == ")" and toks[0].kind == OP:
        toks = toks[1:-1]
    if len(toks) == 2 and toks[0].kind == IDENT and toks[1].kind == STRING:
        toks = toks[1:]
    if len(toks) == 1:
        t = toks[0]
        if t.kind == STRING:
            if t.prefix == "x":
                return "".join(f"{int(ch, 16):04b}" for ch in t.text)
            return t.text
        if t.kind == NUMBER:
            return t.text
        if t.kind == IDENT:
            if t.text == "null":
                return None
            if t.text in ("true", "false"):
                if pg_type == "boolean":
                    return t.text[0]
                return t.text
            if t.text == "default":
                return DEFAULT
    if len(toks) >= 2 and all(t.kind == OP and t.text in "+-" for t in toks[:-1]) and toks[-1].kind == NUMBER:
        sign = "-" if sum(t.text == "-" for t in toks[:-1]) % 2 else ""
        return sign + toks[-1].text
    raise DumpSyntaxError("a VALUES item is an expression, not a literal; only literals can be read")


# ---------------------------------------------------------------------------------------------- DDL


_ALIASES = {
    "int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "serial": "integer",
    "serial4": "integer", "bigserial": "bigint", "serial8": "bigint", "smallserial": "smallint",
    "serial2": "smallint", "bool": "boolean", "float8": "double precision", "float4": "real",
    "float": "double precision", "varchar": "character varying", "decimal": "numeric", "dec": "numeric",
    "varbit": "bit varying", "timestamptz": "timestamp with time zone", "timetz": "time with time zone",
}
_BUILTIN_TYPE_TEXT = (
    '"char"|bigint|bit|bit varying|boolean|box|bytea|character|character varying|cidr|circle|date|'
    "datemultirange|daterange|double precision|inet|int4multirange|int4range|int8multirange|int8range|"
    "integer|interval|json|jsonb|jsonpath|line|lseg|macaddr|macaddr8|money|name|numeric|nummultirange|"
    "numrange|oid|path|point|polygon|real|smallint|text|time with time zone|time without time zone|"
    "timestamp with time zone|timestamp without time zone|tsmultirange|tsquery|tsrange|tstzmultirange|"
    "tstzrange|tsvector|uuid|xml|aclitem|cid|xid|xid8|tid|int2vector|oidvector|refcursor|txid_snapshot|"
    "record|void|trigger|anyelement|anyarray|cstring|internal|bpchar|varchar"
)
_BUILTIN_TYPES = frozenset(_BUILTIN_TYPE_TEXT.split("|"))
_SERIALS = frozenset({"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"})
_TYPE_SHAPE = re.compile(
    r"^(?P<base>[^(\[]+?)(?:\((?P<mod>[^)]*)\))?(?P<tz> with(?:out)? time zone)?(?P<arr>\[\])?$"
)
_COL_STOP = frozenset(
    {"collate", "default", "not", "null", "generated", "constraint", "check", "primary", "unique",
     "references", "deferrable", "initially"}
)
_TABLE_CONSTRAINT = frozenset({"constraint", "check", "primary", "unique", "foreign", "exclude", "like"})


def render_type(toks: list[Tok]) -> str:
    """A type as format_type() prints it, from its tokens (also undoes --quote-all-identifiers)."""
    out: list[str] = []
    in_brackets = False
    for t in toks:
        if t.kind == OP and t.text in ("[", "]"):
            in_brackets = t.text == "["
            if in_brackets and not (out and out[-1] == "[]"):
                out.append("[]")
            continue
        if in_brackets:
            continue
        if t.kind == IDENT and t.text == "array" and out:
            if out[-1] != "[]":
                out.append("[]")
            continue
        piece = quote_ident(t.text) if t.kind == QIDENT else t.text
        if out and piece and _wordish(piece[0]) and (_wordish(out[-1][-1]) or out[-1][-1] == ")"):
            out.append(" ")
        out.append(piece)
    return _canonical_type("".join(out))


def _wordish(ch: str) -> bool:
    return ch.isalnum() or ch in '"_$'


def _canonical_type(text: str) -> str:
    """Spell hand-written aliases (int4, varchar, timestamptz, char) the way format_type() does."""
    m = _TYPE_SHAPE.match(text)
    if not m:
        return text
    base, mod, tz, arr = m.group("base"), m.group("mod"), m.group("tz") or "", m.group("arr") or ""
    modtxt = f"({mod})" if mod is not None else ""
    if base in ("timestamp", "time"):
        return f"{base}{modtxt}{tz or ' without time zone'}{arr}"
    if tz:
        return text
    if base in ("timestamptz", "timetz"):
        return f"{base[:-2]}{modtxt} with time zone{arr}"
    if base in ("char", "character"):
        return f"character{modtxt or '(1)'}{arr}"
    if base == "bit" and mod is None:
        return f"bit(1){arr}"
    if base in _ALIASES:
        return f"{_ALIASES[base]}{modtxt}{arr}"
    return text


@dataclass
class _ColDef:
    name: str
    pg_type: str
    notnull: bool = False
    generated: bool = False


@dataclass
class _FkDef:
    columns: tuple[str, ...]
    parent: tuple[str, str]
    parent_columns: tuple[str, ...]


@dataclass
class _TableDef:
    schema: str
    name: str
    columns: list[_ColDef] = field(default_factory=list)
    pk: tuple[str, ...] = ()
    pk_name: str | None = None
    fks: dict[str, _FkDef] = field(default_factory=dict)
    partition_of: tuple[str, str] | None = None


class _Cursor:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def word(self, k: int = 0) -> str | None:
        t = self.peek(k)
        return t.text if t is not None and t.kind == IDENT else None

    def is_op(self, text: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.kind == OP and t.text == text

    def accept(self, *words: str) -> bool:
        if all(self.word(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def ident(self) -> str:
        t = self.peek()
        if t is None or t.kind not in (IDENT, QIDENT):
            raise DumpSyntaxError("expected a name")
        self.i += 1
        return t.text

    def name(self) -> list[str]:
        parts = [self.ident()]
        while self.is_op("."):
            self.i += 1
            parts.append(self.ident())
        return parts

    def parens(self) -> list[list[Tok]]:
        """The comma-separated items of the parenthesised list at the cursor."""
        if not self.is_op("("):
            raise DumpSyntaxError("expected '('")
        self.i += 1
        items: list[list[Tok]] = [[]]
        depth = 0
        while True:
            t = self.peek()
            if t is None:
                raise DumpSyntaxError("unbalanced parentheses")
            self.i += 1
            if t.kind == OP and t.text in ("(", "["):
                depth += 1
            elif t.kind == OP and t.text in (")", "]"):
                if depth == 0 and t.text == ")":
                    return [it for it in items if it] if items != [[]] else []
                depth -= 1
            elif t.kind == OP and t.text == "," and depth == 0:
                items.append([])
                continue
            items[-1].append(t)

    def name_list(self) -> tuple[str, ...]:
        return tuple(_Cursor(item).ident() for item in self.parens())


class Catalog:
    """The tables, enums and domains a schema dump declares, built one DDL statement at a time."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], _TableDef] = {}
        self.enums: dict[str, list[str]] = {}
        self.domains: dict[str, str] = {}
        self.search_path = "public"

    def qualify(self, parts: list[str]) -> tuple[str, str]:
        if len(parts) == 1:
            return (self.search_path, parts[0])
        return (parts[-2], parts[-1])

    def type_key(self, parts: list[str]) -> str:
        schema, name = self.qualify(parts)
        return f"{quote_ident(schema)}.{quote_ident(name)}"

    def feed(self, toks: list[Tok]) -> None:
        """Apply one statement (without its semicolon); statements we do not model are ignored."""
        c = _Cursor(toks)
        if c.accept("set"):
            self._set(c)
        elif c.accept("create"):
            c.accept("or", "replace")
            for w in ("global", "local", "temporary", "temp", "unlogged"):
                c.accept(w)
            if c.accept("table"):
                self._create_table(c)
            elif c.accept("type"):
                self._create_type(c)
            elif c.accept("domain"):
                self._create_domain(c)
        elif c.accept("alter", "table"):
            self._alter_table(c)
        elif c.accept("alter", "type"):
            self._alter_type(c)
        elif c.accept("drop", "table"):
            c.accept("if", "exists")
            while c.peek() is not None:
                self.tables.pop(self.qualify(c.name()), None)
                if not c.is_op(","):
                    break
                c.i += 1

    def _set(self, c: _Cursor) -> None:
        if not c.accept("session"):
            c.accept("local")
        if c.accept("search_path"):
            if c.is_op("=") or c.word() == "to":
                c.i += 1
            t = c.peek()
            if t is not None and t.kind in (IDENT, QIDENT, STRING) and t.text:
                self.search_path = t.text

    def _create_table(self, c: _Cursor) -> None:
        c.accept("if", "not", "exists")
        key = self.qualify(c.name())
        tdef = _TableDef(key[0], key[1])
        if c.accept("partition", "of"):
            tdef.partition_of = self.qualify(c.name())
        elif c.accept("of"):
            return
        if c.is_op("("):
            for item in c.parens():
                self._table_element(tdef, item)
        self.tables[key] = tdef

    def _table_element(self, tdef: _TableDef, item: list[Tok]) -> None:
        first = item[0]
        if first.kind == IDENT and first.text in _TABLE_CONSTRAINT:
            self._table_constraint(tdef, _Cursor(item))
            return
        if first.kind == IDENT and first.text == "with" and tdef.partition_of:
            return
        tdef.columns.append(self._column(tdef, item))

    def _column(self, tdef: _TableDef, item: list[Tok]) -> _ColDef:
        name = item[0].text
        depth, j = 0, 1
        while j < len(item):
            t = item[j]
            if t.kind == OP and t.text in ("(", "["):
                depth += 1
            elif t.kind == OP and t.text in (")", "]"):
                depth -= 1
            elif depth == 0 and t.kind == IDENT and t.text in _COL_STOP:
                break
            j += 1
        type_toks, rest = item[1:j], item[j:]
        col = _ColDef(name, self._resolve_type(type_toks))
        if len(type_toks) == 1 and type_toks[0].kind == IDENT and type_toks[0].text in _SERIALS:
            col.notnull = True
        depth = 0
        k = 0
        while k < len(rest):
            t = rest[k]
            if t.kind == OP and t.text in ("(", "["):
                depth += 1
            elif t.kind == OP and t.text in (")", "]"):
                depth -= 1
            elif depth == 0 and t.kind == IDENT:
                nxt = rest[k + 1].text if k + 1 < len(rest) and rest[k + 1].kind == IDENT else None
                if t.text == "not" and nxt == "null":
                    col.notnull = True
                elif t.text == "primary" and nxt == "key":
                    col.notnull = True
                    tdef.pk = (name,)
                elif t.text == "generated":
                    tail = rest[k + 1 :]
                    words = [x.text for x in tail[:3] if x.kind in (IDENT, OP)]
                    if words[:2] == ["always", "as"] and len(words) > 2 and words[2] == "(":
                        col.generated = True
                elif t.text == "references":
                    cur = _Cursor(rest[k + 1 :])
                    parent = self.qualify(cur.name())
                    pcols = cur.name_list() if cur.is_op("(") else ()
                    cname = f"{tdef.name}_{name}_fkey"
                    tdef.fks[cname] = _FkDef((name,), parent, pcols)
            k += 1
        return col

    def _resolve_type(self, toks: list[Tok]) -> str:
        """format_type() qualifies every non-pg_catalog type; hand-written DDL often does not."""
        text = render_type(toks)
        base = text[:-2] if text.endswith("[]") else text
        if "." in base or not toks or toks[0].kind not in (IDENT, QIDENT):
            return text
        for schema in (self.search_path, "public"):
            key = f"{quote_ident(schema)}.{base}"
            if key in self.enums or key in self.domains:
                return key + text[len(base) :]
        bare = re.sub(r"\([^)]*\)", "", base)
        if bare in _BUILTIN_TYPES or bare.startswith(("interval ", "pg_", "reg")):
            return text
        return f"{quote_ident(self.search_path)}.{text}"

    def _table_constraint(self, tdef: _TableDef, c: _Cursor) -> None:
        cname: str | None = None
        if c.accept("constraint"):
            cname = c.ident()
        if c.accept("primary", "key"):
            tdef.pk = c.name_list()
            tdef.pk_name = cname
            for col in tdef.columns:
                if col.name in tdef.pk:
                    col.notnull = True
        elif c.accept("foreign", "key"):
            cols = c.name_list()
            if not c.accept("references"):
                return
            parent = self.qualify(c.name())
            pcols = c.name_list() if c.is_op("(") else ()
            tdef.fks[cname or f"{tdef.name}_{'_'.join(cols)}_fkey"] = _FkDef(cols, parent, pcols)

    def _alter_table(self, c: _Cursor) -> None:
        c.accept("if", "exists")
        c.accept("only")
        tdef = self.tables.get(self.qualify(c.name()))
        if c.is_op("*"):
            c.i += 1
        if tdef is None:
            return
        actions: list[list[Tok]] = [[]]
        depth = 0
        for t in c.toks[c.i :]:
            if t.kind == OP and t.text in ("(", "["):
                depth += 1
            elif t.kind == OP and t.text in (")", "]"):
                depth -= 1
            elif depth == 0 and t.kind == OP and t.text == ",":
                actions.append([])
                continue
            actions[-1].append(t)
        for action in actions:
            a = _Cursor(action)
            if a.accept("add"):
                if a.word() in ("constraint", "primary", "foreign", "unique", "check", "exclude"):
                    self._table_constraint(tdef, a)
                else:
                    a.accept("column")
                    a.accept("if", "not", "exists")
                    col = self._column(tdef, action[a.i :])
                    if all(x.name != col.name for x in tdef.columns):
                        tdef.columns.append(col)
            elif a.accept("attach", "partition"):
                child = self.tables.get(self.qualify(a.name()))
                if child is not None:
                    child.partition_of = (tdef.schema, tdef.name)
            elif a.accept("detach", "partition"):
                child = self.tables.get(self.qualify(a.name()))
                if child is not None:
                    child.partition_of = None
            elif a.accept("drop", "constraint"):
                a.accept("if", "exists")
                cname = a.ident()
                tdef.fks.pop(cname, None)
                if cname == tdef.pk_name:
                    tdef.pk, tdef.pk_name = (), None
            elif a.accept("drop"):
                a.accept("column")
                a.accept("if", "exists")
                gone = a.ident()
                tdef.columns = [x for x in tdef.columns if x.name != gone]
            elif a.accept("alter"):
                a.accept("column")
                colname = a.ident()
                for col in tdef.columns:
                    if col.name == colname:
                        if a.accept("set", "not", "null"):
                            col.notnull = True
                        elif a.accept("drop", "not", "null"):
                            col.notnull = False
                        elif a.accept("drop", "expression"):
                            col.generated = False
            elif a.accept("rename") and a.word() not in ("to", "constraint"):
                a.accept("column")
                old = a.ident()
                if a.accept("to"):
                    new = a.ident()
                    for col in tdef.columns:
                        if col.name == old:
                            col.name = new

    def _create_type(self, c: _Cursor) -> None:
        key = self.type_key(c.name())
        if c.accept("as", "enum"):
            self.enums[key] = [item[0].text for item in c.parens() if item and item[0].kind == STRING]

    def _alter_type(self, c: _Cursor) -> None:
        key = self.type_key(c.name())
        labels = self.enums.get(key)
        if labels is None:
            return
        if c.accept("add", "value"):
            c.accept("if", "not", "exists")
            label = c.peek()
            if label is None or label.kind != STRING:
                return
            c.i += 1
            if label.text in labels:
                return
            where = c.word()
            anchor = c.peek(1)
            if where in ("before", "after") and anchor is not None and anchor.text in labels:
                idx = labels.index(anchor.text) + (1 if where == "after" else 0)
                labels.insert(idx, label.text)
            else:
                labels.append(label.text)
        elif c.accept("rename", "value"):
            old, new = c.peek(), c.peek(2)
            if old is not None and new is not None and old.text in labels:
                labels[labels.index(old.text)] = new.text

    def _create_domain(self, c: _Cursor) -> None:
        key = self.type_key(c.name())
        c.accept("as")
        depth, j = 0, c.i
        stops = {"collate", "default", "constraint", "not", "null", "check"}
        while j < len(c.toks):
            t = c.toks[j]
            if t.kind == OP and t.text in ("(", "["):
                depth += 1
            elif t.kind == OP and t.text in (")", "]"):
                depth -= 1
            elif depth == 0 and t.kind == IDENT and t.text in stops:
                break
            j += 1
        self.domains[key] = self._resolve_type(c.toks[c.i : j])

    def listed(self, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
        """Tables in `schemas`, partitions folded into their root (as the live source lists them)."""
        out = []
        for key in sorted(self.tables):
            if key[0] not in schemas:
                continue
            root = self._root(key)
            if root != key and root[0] in schemas:
                continue
            out.append(key)
        return out

    def _root(self, key: tuple[str, str]) -> tuple[str, str]:
        seen = 0
        while seen < 64:
            parent = self.tables[key].partition_of
            if parent is None or parent not in self.tables:
                return key
            key, seen = parent, seen + 1
        return key

    def leaves(self, key: tuple[str, str]) -> list[tuple[str, str]]:
        """The tables that hold a partitioned table's rows (itself when it is not partitioned)."""
        children = sorted(k for k, t in self.tables.items() if t.partition_of == key and k != key)
        if not children:
            return [key]
        return sorted({leaf for child in children for leaf in self.leaves(child)})

    def _resolve(self, pg_type: str) -> tuple[tuple[str, ...] | None, str | None]:
        """Enum labels (also through arrays and domains) and a domain's innermost base type."""
        base: str | None = None
        t, seen = pg_type, 0
        while t in self.domains and seen < 16:
            base = t = self.domains[t]
            seen += 1
        if t in self.enums:
            return tuple(self.enums[t]), base
        if t.endswith("[]"):
            elem = t[:-2]
            while elem in self.domains and seen < 32:
                elem, seen = self.domains[elem], seen + 1
            if elem in self.enums:
                return tuple(self.enums[elem]), base
        return None, base

    def table_info(self, key: tuple[str, str]) -> TableInfo:
        tdef = self.tables[key]
        coldefs = tdef.columns
        if not coldefs and tdef.partition_of in self.tables:
            assert tdef.partition_of is not None
            coldefs = self.tables[tdef.partition_of].columns
        columns = []
        for cd in coldefs:
            enum_values, base_type = self._resolve(cd.pg_type)
            columns.append(
                Column(
                    name=cd.name,
                    pg_type=cd.pg_type,
                    nullable=not cd.notnull,
                    generated=cd.generated,
                    enum_values=enum_values,
                    base_type=base_type,
                )
            )
        fks = []
        for cname in sorted(tdef.fks):
            fk = tdef.fks[cname]
            pcols = fk.parent_columns
            if not pcols and fk.parent in self.tables:
                pcols = self.tables[fk.parent].pk
            fks.append(ForeignKey(fk.columns, f"{fk.parent[0]}.{fk.parent[1]}", pcols))
        return TableInfo(
            schema=tdef.schema,
            name=tdef.name,
            columns=tuple(columns),
            primary_key=tdef.pk,
            row_estimate=None,
            foreign_keys=tuple(fks),
        )

"""An in-process PostgREST + GoTrue-admin protocol double over a real Postgres database.

No PostgREST binary exists here, so the REST source is tested against this server. It implements
only the behaviour the source relies on, the way PostgREST and GoTrue document it: the OpenAPI root,
select/order/filters by query string, `limit`/`offset` and `Range` headers, `Content-Range`,
`Prefer: count=...`, 416 PGRST103 past the end, a silent max-rows cap, and the admin users endpoint
with `X-Total-Count` and `Link` paging. Row JSON comes from Postgres itself (`row_to_json`), so numbers
keep their exact digits, timestamps are ISO and jsonb nests, as they do behind a real PostgREST.
Faults (429 with Retry-After, connections dropped mid-body) are injected on demand. It listens on
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import psycopg
from psycopg import sql

TEST_JWT_SECRET = "test-jwt-secret-for-the-postgrest-double-0123456789"
TEST_SECRET_KEY = "sb_secret_doubletestkey0123456789abcdef"
TEST_PUBLISHABLE_KEY = "sb_publishable_doubletestkey0123456789"
EXPOSED_SCHEMAS = ("public",)
_MAX_BODY_QUERY_ROWS = 100_000  # a bound on any one response, whatever max_rows says


def mint_key(role: str, secret: str = TEST_JWT_SECRET, *, ttl: int = 3600) -> str:
    """A Supabase-style API key: an HS256 JWT whose role claim picks the database role."""
    now = int(time.time())
    return jwt.encode({"role": role, "iss": "supabase", "iat": now, "exp": now + ttl}, secret, algorithm="HS256")


@dataclass
class DoubleStats:
    requests: int = 0
    throttled: int = 0
    dropped: int = 0
    table_requests: int = 0
    user_requests: int = 0
    max_limit_seen: int = 0
    offset_without_order: int = 0
    paths: list[str] = field(default_factory=list)


@dataclass
class DoubleConfig:
    jwt_secret: str = TEST_JWT_SECRET
    secret_keys: tuple[str, ...] = (TEST_SECRET_KEY,)
    publishable_keys: tuple[str, ...] = (TEST_PUBLISHABLE_KEY,)
    max_rows: int = 1000
    rate_limit: int | None = None  # requests allowed per rate_window seconds; beyond: 429
    rate_window: float = 1.0
    drop_every: int | None = None  # drop the connection mid-body on every n-th data request
    gotrue_max_per_page: int = 1000


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _pgrst(status: int, code: str, message: str, details: str | None = None) -> _Reply:
    return _Reply(status, {"code": code, "details": details, "hint": None, "message": message})


class PostgrestDouble:
    """Start with `with PostgrestDouble(dsn) as d:`; `d.url` is the project URL for the source."""

    def __init__(self, dsn: str, config: DoubleConfig | None = None) -> None:
        self.dsn = dsn
        self.config = config or DoubleConfig()
        self.stats = DoubleStats()
        self._lock = threading.Lock()
        self._window_start = time.monotonic()
        self._window_count = 0
        self._data_requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> PostgrestDouble:
        double = self

        class Handler(_Handler):
            owner = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> PostgrestDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # faults --------------------------------------------------------------------------------------
    def _throttle(self) -> None:
        limit = self.config.rate_limit
        if limit is None:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.config.rate_window:
                self._window_start, self._window_count = now, 0
            self._window_count += 1
            if self._window_count > limit:
                self.stats.throttled += 1
                wait = max(1, math.ceil(self.config.rate_window - (now - self._window_start)))
                raise _Reply(429, {"message": "Too Many Requests"}, {"Retry-After": str(wait)})

    def _should_drop(self) -> bool:
        every = self.config.drop_every
        with self._lock:
            self._data_requests += 1
            if every and self._data_requests % every == 0:
                self.stats.dropped += 1
                return True
        return False

    # auth ----------------------------------------------------------------------------------------
    def role_of(self, apikey: str | None, authorization: str | None) -> str:
        if not apikey:
            raise _Reply(401, {"message": "No API key found in request",
                               "hint": "No `apikey` request header or url param was found."})
        token = apikey
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        for candidate in (apikey, token):
            if candidate.startswith("sb_secret_"):
                if candidate not in self.config.secret_keys:
                    raise _Reply(401, {"message": "Invalid API key", "hint": "Double check the secret key."})
            elif candidate.startswith("sb_publishable_") and candidate not in self.config.publishable_keys:
                raise _Reply(401, {"message": "Invalid API key"})
        if token.startswith("sb_secret_"):
            return "service_role"
        if token.startswith("sb_publishable_"):
            return "anon"
        try:
            claims = jwt.decode(token, self.config.jwt_secret, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise _pgrst(401, "PGRST303", "JWT expired") from None
        except jwt.PyJWTError:
            raise _pgrst(401, "PGRST301", "JWSError JWSInvalidSignature") from None
        role = claims.get("role")
        if not isinstance(role, str) or role not in ("anon", "authenticated", "service_role"):
            raise _pgrst(401, "PGRST301", "JWT role claim is not a database role")
        return role

    # PostgREST -----------------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute("SET TimeZone = 'UTC'; SET search_path = ''; SET DateStyle = 'ISO, YMD'; "
                     "SET IntervalStyle = 'postgres'; SET extra_float_digits = 1")
        return conn

    def openapi(self, role: str) -> dict[str, Any]:
        with self._connect() as conn:
            rels = conn.execute(
                "SELECT c.oid, c.relname, c.relkind FROM pg_catalog.pg_class c"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = ANY(%s) AND c.relkind IN ('r','p','v','m','f')"
                " AND pg_catalog.has_table_privilege(%s, c.oid, 'SELECT') ORDER BY c.relname",
                (list(EXPOSED_SCHEMAS), role)).fetchall()
            definitions: dict[str, Any] = {}
            paths: dict[str, Any] = {"/": {"get": {"summary": "OpenAPI description (this document)"}}}
            for oid, name, kind in rels:
                definitions[name] = self._definition(conn, oid)
                ops: dict[str, Any] = {"get": {"tags": [name], "responses": {"200": {"description": "OK"}}}}
                if kind in ("r", "p"):
                    for verb in ("post", "patch", "delete"):
                        ops[verb] = {"tags": [name], "responses": {"204": {"description": "No Content"}}}
                paths[f"/{name}"] = ops
            paths["/rpc/has_role"] = {"post": {"tags": ["(rpc) has_role"]}}
        return {"swagger": "2.0", "info": {"title": "standard public schema", "version": "12.2.3 (double)"},
                "host": "127.0.0.1", "basePath": "/", "schemes": ["http"], "consumes": ["application/json"],
                "produces": ["application/json"], "paths": paths, "definitions": definitions}

    @staticmethod
    def _definition(conn: psycopg.Connection[tuple[Any, ...]], oid: int) -> dict[str, Any]:
        # data_type the way PostgREST's schema cache spells it: catalog types without modifiers.
        rows = conn.execute(
            """
            SELECT a.attname,
              CASE WHEN t.typtype = 'd' THEN
                     CASE WHEN bt.typnamespace = 'pg_catalog'::regnamespace THEN format_type(bt.oid, NULL)
                          ELSE format_type(a.atttypid, a.atttypmod) END
                   ELSE CASE WHEN t.typnamespace = 'pg_catalog'::regnamespace THEN format_type(a.atttypid, NULL)
                          ELSE format_type(a.atttypid, a.atttypmod) END END,
              a.attnotnull, pg_get_expr(d.adbin, d.adrelid), t.typcategory,
              COALESCE(et.typcategory, ''), t.typname,
              CASE WHEN a.atttypmod > 4 AND t.typname IN ('varchar', 'bpchar') THEN a.atttypmod - 4 END,
              (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e
                 WHERE e.enumtypid = COALESCE(NULLIF(t.typelem, 0), NULLIF(t.typbasetype, 0), t.oid)),
              EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary
                        AND a.attnum = ANY(i.indkey))
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
            LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """, (oid,)).fetchall()
        props: dict[str, Any] = {}
        required: list[str] = []
        for name, fmt, notnull, default, cat, elem_cat, typname, maxlen, labels, is_pk in rows:
            p: dict[str, Any] = {"format": fmt}
            kind = _swagger_type(cat, typname)
            if kind:
                p["type"] = kind
            if cat == "A":
                p["items"] = {"type": _swagger_type(elem_cat, "") or "string"}
            if labels and cat != "A":
                p["enum"] = list(labels)
            if maxlen:
                p["maxLength"] = maxlen
            if default is not None:
                p["default"] = default
            if is_pk:
                p["description"] = "Note:\nThis is a Primary Key.<pk/>"
            if notnull and default is None:
                required.append(name)
            props[name] = p
        out: dict[str, Any] = {"properties": props, "type": "object"}
        if required:
            out["required"] = required
        return out

    def select(self, role: str, profile: str, table: str, query: list[tuple[str, str]],
               headers: dict[str, str]) -> _Reply:
        if profile not in EXPOSED_SCHEMAS:
            raise _pgrst(406, "PGRST106", "The schema must be one of the following: " + ", ".join(EXPOSED_SCHEMAS))
        with self._connect() as conn:
            row = conn.execute(
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r','p','v','m','f')",
                (profile, table)).fetchone()
            if row is None:
                raise _pgrst(404, "PGRST205", f"Could not find the table '{profile}.{table}' in the schema cache")
            priv = conn.execute("SELECT pg_catalog.has_table_privilege(%s, %s, 'SELECT')", (role, row[0])).fetchone()
            if not priv or not priv[0]:
                raise _pgrst(401 if role == "anon" else 403, "42501", f"permission denied for table {table}")
            columns = [r[0] for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
                " ORDER BY attnum", (row[0],)).fetchall()]
            return self._run_select(conn, profile, table, columns, query, headers)

    def _run_select(self, conn: psycopg.Connection[tuple[Any, ...]], schema: str, table: str,
                    columns: list[str], query: list[tuple[str, str]], headers: dict[str, str]) -> _Reply:
        select: list[str] = columns
        order: list[sql.Composable] = []
        conds: list[sql.Composable] = []
        limit: int | None = None
        offset = 0
        for key, value in query:
            if key == "select":
                if value.strip() != "*":
                    select = [c.strip() for c in value.split(",") if c.strip()]
                    for c in select:
                        _check_column(c, columns)
            elif key == "order":
                order = [_order_term(t, columns) for t in value.split(",") if t]
            elif key == "limit":
                limit = _nonneg(value, "limit")
            elif key == "offset":
                offset = _nonneg(value, "offset")
            elif key in ("or", "and"):
                conds.append(_logic(key, value, columns))
            else:
                _check_column(key, columns)
                conds.append(_filter(key, value))
        rng = headers.get("range")
        if rng:
            m = re.fullmatch(r"\s*(\d+)-(\d*)\s*", rng)
            if not m:
                raise _pgrst(416, "PGRST103", "Requested range not satisfiable")
            start = int(m.group(1))
            offset = start
            if m.group(2):
                span = int(m.group(2)) - start + 1
                limit = span if limit is None else min(limit, span)
        if offset and not order:
            self.stats.offset_without_order += 1
        cap = min(self.config.max_rows, _MAX_BODY_QUERY_ROWS)
        asked = limit if limit is not None else cap
        self.stats.max_limit_seen = max(self.stats.max_limit_seen, asked)
        effective = min(asked, cap)
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
        rel = sql.Identifier(schema, table)
        order_sql = sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order) if order else sql.SQL("")
        inner = sql.SQL("SELECT {} FROM {}{}{} LIMIT {} OFFSET {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in select), rel, where, order_sql,
            sql.Literal(effective), sql.Literal(offset))
        body_row = conn.execute(sql.SQL(
            "SELECT count(*), COALESCE(json_agg(row_to_json(_t)), '[]')::text FROM ({}) _t").format(inner)).fetchone()
        assert body_row is not None
        n, body = int(body_row[0]), str(body_row[1])
        prefer = headers.get("prefer", "")
        count_mode = next((m.group(1) for m in [re.search(r"count=(exact|planned|estimated)", prefer)] if m), None)
        total: int | None = None
        if count_mode or (n == 0 and offset > 0):
            exact_row = conn.execute(sql.SQL("SELECT count(*) FROM {}{}").format(rel, where)).fetchone()
            exact = int(exact_row[0]) if exact_row else 0
            total = exact
            if count_mode in ("planned", "estimated"):
                est_row = conn.execute("SELECT reltuples::bigint FROM pg_class c JOIN pg_namespace n"
                                       " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                                       (schema, table)).fetchone()
                planned = int(est_row[0]) if est_row and est_row[0] >= 0 else exact
                total = planned if count_mode == "planned" or exact > self.config.max_rows else exact
            if n == 0 and offset > exact:
                raise _Reply(416, {"code": "PGRST103", "details": f"An offset of {offset} was requested, but there"
                                   f" are only {exact} rows.", "hint": None,
                                   "message": "Requested range not satisfiable"},
                             {"Content-Range": f"*/{exact}"})
        shown_total = str(total) if count_mode and total is not None else "*"
        content_range = f"{offset}-{offset + n - 1}/{shown_total}" if n else f"*/{shown_total}"
        status = 206 if count_mode and total is not None and n and total > offset + n else 200
        return _Reply(status, body, {"Content-Range": content_range})

    # GoTrue --------------------------------------------------------------------------------------
    def list_users(self, role: str, query: dict[str, str]) -> _Reply:
        if role != "service_role":
            raise _Reply(403, {"code": 403, "error_code": "not_admin", "msg": "User not allowed"})
        page = max(1, _nonneg(query.get("page", "1") or "1", "page"))
        asked = _nonneg(query.get("per_page", "50") or "50", "per_page")
        per_page = min(self.config.gotrue_max_per_page, max(1, asked))
        with self._connect() as conn:
            total_row = conn.execute("SELECT count(*) FROM auth.users").fetchone()
            total = int(total_row[0]) if total_row else 0
            row = conn.execute(
                """
                SELECT COALESCE(json_agg(u ORDER BY u.created_at DESC, u.id), '[]')::text FROM (
                  SELECT id, aud, role, email, phone, email_confirmed_at, phone_confirmed_at, confirmed_at,
                         confirmation_sent_at, recovery_sent_at, email_change_sent_at, invited_at,
                         last_sign_in_at, raw_app_meta_data AS app_metadata,
                         COALESCE(raw_user_meta_data, '{}'::jsonb) AS user_metadata,
                         '[]'::json AS identities, created_at, updated_at, is_anonymous, is_sso_user,
                         banned_until, deleted_at
                  FROM auth.users ORDER BY created_at DESC, id LIMIT %s OFFSET %s) u
                """, (per_page, (page - 1) * per_page)).fetchone()
        body = '{"users":' + (row[0] if row else "[]") + ',"aud":"authenticated"}'
        last = max(1, math.ceil(total / per_page))
        links = []
        if page < last:
            links.append(f'</admin/users?page={page + 1}&per_page={per_page}>; rel="next"')
        links.append(f'</admin/users?page={last}&per_page={per_page}>; rel="last"')
        return _Reply(200, body, {"X-Total-Count": str(total), "Link": ", ".join(links)})


def _swagger_type(category: str, typname: str) -> str | None:
    if typname in ("json", "jsonb"):
        return None
    return {"N": "number", "B": "boolean", "A": "array"}.get(category, "string") if category else None


def _nonneg(value: str, what: str) -> int:
    if not value.isdigit():
        raise _pgrst(400, "PGRST100", f'"failed to parse {what} parameter ({value})"')
    return int(value)


def _check_column(name: str, columns: list[str]) -> None:
    if name not in columns:
        raise _pgrst(400, "42703", f"column {name} does not exist")


def _order_term(term: str, columns: list[str]) -> sql.Composable:
    parts = term.split(".")
    _check_column(parts[0], columns)
    out: sql.Composable = sql.Identifier(parts[0])
    mods = {"asc": " ASC", "desc": " DESC", "nullsfirst": " NULLS FIRST", "nullslast": " NULLS LAST"}
    for p in parts[1:]:
        if p not in mods:
            raise _pgrst(400, "PGRST100", f'"failed to parse order ({term})"')
        out = sql.Composed([out, sql.SQL(mods[p])])
    return out


_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _filter(column: str, expr: str) -> sql.Composable:
    op, _, value = expr.partition(".")
    ident = sql.Identifier(column)
    if op in _OPS:
        return sql.SQL("{} {} {}").format(ident, sql.SQL(_OPS[op]), sql.Literal(_unquote(value)))
    if op == "is" and value.lower() in ("null", "true", "false"):
        return sql.SQL("{} IS {}").format(ident, sql.SQL(value.upper()))
    if op == "in" and value.startswith("(") and value.endswith(")"):
        items = [_unquote(v) for v in _split_top(value[1:-1])]
        if not items:
            return sql.SQL("false")
        return sql.SQL("{} IN ({})").format(ident, sql.SQL(", ").join(sql.Literal(v) for v in items))
    raise _pgrst(400, "PGRST100", f'"failed to parse filter ({op}.{value})"')


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses and double quotes."""
    out: list[str] = []
    depth, quoted, buf, i = 0, False, [], 0
    while i < len(text):
        c = text[i]
        if quoted and c == "\\" and i + 1 < len(text):
            buf += [c, text[i + 1]]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
        if c == "," and depth == 0 and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    if buf:
        out.append("".join(buf))
    return out


def _logic(kind: str, value: str, columns: list[str]) -> sql.Composable:
    if not (value.startswith("(") and value.endswith(")")):
        raise _pgrst(400, "PGRST100", f'"failed to parse logic tree ({value})"')
    terms: list[sql.Composable] = []
    for item in _split_top(value[1:-1]):
        m = re.match(r"^(and|or)(\(.*\))$", item, re.S)
        if m:
            terms.append(_logic(m.group(1), m.group(2), columns))
            continue
        col, _, expr = item.partition(".")
        _check_column(col, columns)
        terms.append(_filter(col, expr))
    return sql.SQL("(") + sql.SQL(f" {kind.upper()} ").join(terms) + sql.SQL(")")


class _Handler(BaseHTTPRequestHandler):
    owner: PostgrestDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    def _handle(self, *, head: bool) -> None:
        d = self.owner
        parts = urlsplit(self.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with d._lock:
            d.stats.requests += 1
            d.stats.paths.append(parts.path)
        drop = False
        try:
            d._throttle()
            role = d.role_of(headers.get("apikey"), headers.get("authorization"))
            path = parts.path.rstrip("/")
            if path == "/rest/v1":
                reply = _Reply(200, d.openapi(role), {"Content-Type": "application/openapi+json; charset=utf-8"})
            elif path.startswith("/rest/v1/") and "/" not in path[len("/rest/v1/"):]:
                with d._lock:
                    d.stats.table_requests += 1
                drop = d._should_drop()
                reply = d.select(role, headers.get("accept-profile", "public"), path[len("/rest/v1/"):], query, headers)
            elif path == "/auth/v1/admin/users":
                with d._lock:
                    d.stats.user_requests += 1
                drop = d._should_drop()
                reply = d.list_users(role, dict(query))
            else:
                reply = _Reply(404, {"message": "no route"})
        except _Reply as r:
            reply = r
        except psycopg.Error as exc:
            reply = _pgrst(400, getattr(exc, "sqlstate", None) or "XX000", str(exc).splitlines()[0])
        body = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        data = body.encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.headers.pop("Content-Type", "application/json; charset=utf-8"))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head:
            return
        if drop and reply.status < 300 and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data)

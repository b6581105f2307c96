"""The Supabase REST source: PostgREST tables and GoTrue admin users, for users with only a URL and a key.

Some users cannot get a database password but do have the project URL and the service_role key.
Over REST there is no snapshot and no catalog, so this source leans on what PostgREST guarantees:
the OpenAPI root describes every exposed table (column formats, enum labels, primary keys), rows
come back ordered by whatever we ask, and the server silently caps each response (1000 rows on
Supabase). Every table is therefore read in primary-key keyset pages (`pk=gt.<last>`, ordered),
never bare offset paging, and a short page is not taken for the end: only an empty page is. Totals
are cross-checked against `Prefer: count=exact` (`planned` above a size) because REST reads are not
one snapshot and a silent cap or a concurrent write must not pass as success.

Values are turned into PostgreSQL's text output form so checkpoints look like the live source's:
JSON numbers are parsed as Decimal (never float) and printed with their digits, booleans become
't'/'f', jsonb is printed the way jsonb_out prints it, arrays become array literals, bytea and
timestamps pass as PostgREST prints them (ISO with 'T', which the transform accepts).

supabase-py builds the table queries and owns the session they go through (`create_client` with our
httpx client); its `execute()` is not used because it parses numbers through float and hides the
count headers. The OpenAPI root and the GoTrue admin users list are fetched with httpx directly on
the same client: supabase-py exposes neither the root nor the `X-Total-Count`/`Link` paging headers
(`auth.admin.list_users` returns the users alone, with metadata numbers parsed as floats).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pyarrow as pa
from postgrest.types import CountMethod
from supabase import ClientOptions, create_client
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from pipeline.errors import ConfigError, SourceError, TransientSourceError
from pipeline.logs import get_logger
from pipeline.redact import redact_text
from pipeline.sources.base import Column, ForeignKey, SourceBatch, TableInfo
from transforms.pgtext import PgArrayItem, format_pg_array, strip_typmod

log = get_logger(stage="source")

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_PK_NOTE = "<pk/>"
_FK_NOTE = re.compile(r"<fk table='([^']+)' column='([^']+)'/>")
_FLOAT_TYPES = ("real", "double precision", "float4", "float8")
_JSON_TYPES = ("json", "jsonb")
_UNORDERABLE = ("json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle")
_MAX_PAGES = 10_000_000  # a hard bound on any paging loop
_MINTED_KEY_TTL = 24 * 3600
_BODY_EXCERPT = 300

AUTH_USERS_COLUMNS: tuple[Column, ...] = (
    Column("id", "uuid", nullable=False),
    Column("aud", "character varying(255)"),
    Column("role", "character varying(255)"),
    Column("email", "character varying(255)"),
    Column("encrypted_password", "character varying(255)"),
    Column("email_confirmed_at", "timestamp with time zone"),
    Column("invited_at", "timestamp with time zone"),
    Column("confirmation_sent_at", "timestamp with time zone"),
    Column("recovery_sent_at", "timestamp with time zone"),
    Column("email_change_sent_at", "timestamp with time zone"),
    Column("last_sign_in_at", "timestamp with time zone"),
    Column("raw_app_meta_data", "jsonb"),
    Column("raw_user_meta_data", "jsonb"),
    Column("created_at", "timestamp with time zone"),
    Column("updated_at", "timestamp with time zone"),
    Column("phone", "text"),
    Column("phone_confirmed_at", "timestamp with time zone"),
    Column("confirmed_at", "timestamp with time zone", generated=True),
    Column("banned_until", "timestamp with time zone"),
    Column("is_sso_user", "boolean", nullable=False),
    Column("deleted_at", "timestamp with time zone"),
    Column("is_anonymous", "boolean", nullable=False),
)
# auth.users column <- admin API field; encrypted_password is never available over REST.
_USER_FIELDS = {"raw_app_meta_data": "app_metadata", "raw_user_meta_data": "user_metadata", "encrypted_password": ""}
PASSWORD_NOTE = ("password hashes are not available over the Supabase REST API: auth.users.encrypted_password "
                 "is NULL for every user, so every migrated user will need a password reset")


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def describe_key(key: str) -> str:
    """Say which kind of key this is without repeating it, so a 401 tells the user what to fix."""
    if key.startswith("sb_secret_"):
        return "the key given is a secret API key (sb_secret_...)"
    if key.startswith("sb_publishable_"):
        return "the key given is the publishable key (sb_publishable_...); use a secret key or the service_role key"
    try:
        claims = jwt.decode(key, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "the key given is not a Supabase API key (neither a JWT nor an sb_secret_ key)"
    role = claims.get("role")
    expired = isinstance(claims.get("exp"), int | float) and claims["exp"] < time.time()
    suffix = " and it has expired" if expired else ""
    if role == "anon":
        return "this is the anon key; use the service_role key" + suffix
    if role == "service_role":
        return ("the key given is a service_role key" + suffix
                + " (is it from this project, or has the JWT secret been rotated?)")
    if role == "authenticated":
        return "the key given is a user's access token, not the service_role key" + suffix
    return f"the key given is a JWT with role {role!r}, not the service_role key" + suffix


def mint_service_key(jwt_secret: str, *, ttl: int = _MINTED_KEY_TTL) -> str:
    """A service_role key signed with the project's JWT secret, for users who have the secret only."""
    now = int(time.time())
    return jwt.encode({"role": "service_role", "iss": "supabase", "iat": now, "exp": now + ttl},
                      jwt_secret, algorithm="HS256")


class RestSource:
    """A Supabase project read through PostgREST and the GoTrue admin API."""

    kind = "rest"

    def __init__(
        self,
        url: str,
        *,
        service_key: str | None = None,
        jwt_secret: str | None = None,
        schemas: tuple[str, ...] = ("public", "auth"),
        count_mode: str = "exact",
        planned_above: int = 5_000_000,
        max_retries: int = 8,
        page_size: int = 1000,
        users_per_page: int = 1000,
        timeout: float = 60.0,
        max_retry_wait: float = 60.0,
        retry_base: float = 0.5,
    ) -> None:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        if parts.scheme not in ("https", "http") or not host:
            raise ConfigError(f"REST source URL must be https://<ref>.supabase.co, got {parts.scheme}://{host}")
        if parts.scheme == "http" and host not in _LOCAL_HOSTS:
            raise ConfigError(f"REST source URL http://{host} refused: plain http is accepted only for "
                              "127.0.0.1/localhost; use https://")
        if count_mode not in ("exact", "planned", "estimated"):
            raise ConfigError(f"REST count_mode must be exact, planned or estimated, not {count_mode!r}")
        if page_size < 1 or users_per_page < 1 or max_retries < 0:
            raise ConfigError("REST page sizes must be positive and max_retries not negative")
        self.base_url = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        self.project_ref = host.split(".")[0] if host.endswith(".supabase.co") else None
        self.schemas = schemas
        self.count_mode = count_mode
        self.planned_above = planned_above
        self.max_retries = max_retries
        self.page_size = page_size
        self.users_per_page = users_per_page
        self.max_retry_wait = max_retry_wait
        self.retry_base = retry_base
        self.retries = 0
        self.count_checks: dict[str, dict[str, Any]] = {}
        self.skipped_relations: list[str] = []
        self.notes: list[str] = [PASSWORD_NOTE] if "auth" in schemas else []
        key = self._resolve_key(service_key, jwt_secret)
        self._key_description = describe_key(key)
        self._headers = {"apikey": key, "Authorization": f"Bearer {key}"}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                                  headers={"User-Agent": "supamigrate-rest-source"})
        self._client = create_client(self.base_url, key, options=ClientOptions(
            httpx_client=self._http, auto_refresh_token=False, persist_session=False))
        self._openapi: dict[str, dict[str, Any]] = {}
        self._tables: list[TableInfo] | None = None
        self._identity: dict[str, str] | None = None
        self._users_total: int | None = None

    @staticmethod
    def _resolve_key(service_key: str | None, jwt_secret: str | None) -> str:
        if service_key:
            key = service_key.strip()
            if key.startswith("sb_publishable_"):
                raise ConfigError("source.service_key is the publishable key (sb_publishable_...), which cannot "
                                  "read every table or list users; use a secret key (sb_secret_...) or the "
                                  "service_role key")
            return key
        if jwt_secret:
            return mint_service_key(jwt_secret.strip())
        raise ConfigError("the REST source needs source.service_key (the service_role or an sb_secret_ key) or "
                          "source.jwt_secret (to mint a service_role key); set them from environment variables")

    # http ----------------------------------------------------------------------------------------
    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_retry_wait)
        return float(wait_random_exponential(multiplier=self.retry_base, max=min(30.0, self.max_retry_wait))(rs))

    def _send(self, what: str, make: Callable[[], httpx.Response]) -> httpx.Response:
        """One request with bounded, logged retries for throttling, server errors and dropped connections."""

        def before_sleep(rs: RetryCallState) -> None:
            self.retries += 1
            exc = rs.outcome.exception() if rs.outcome else None
            log.warning("REST request failed; retrying", what=what, attempt=rs.attempt_number,
                        cause=str(exc), wait=round(rs.upcoming_sleep, 2))

        retrying = Retrying(stop=stop_after_attempt(self.max_retries + 1), wait=self._wait,
                            retry=retry_if_exception_type(_Retryable), before_sleep=before_sleep, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    try:
                        resp = make()
                    except httpx.TimeoutException:
                        raise _Retryable("timed out") from None
                    except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                        raise _Retryable(f"connection lost ({type(exc).__name__})") from None
                    if resp.status_code == 429 or resp.status_code >= 500:
                        raise _Retryable(f"HTTP {resp.status_code}", _retry_after(resp))
                    return self._checked(what, resp)
        except _Retryable as exc:
            raise TransientSourceError(
                f"{what} on {self.base_url}: still failing after {self.max_retries + 1} attempts ({exc})") from None
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def _checked(self, what: str, resp: httpx.Response) -> httpx.Response:
        if resp.status_code in (401, 403):
            raise SourceError(f"{what} on {self.base_url}: the server refused the key (HTTP {resp.status_code}): "
                              f"{self._key_description}. Server said: {_server_message(resp)}")
        if resp.status_code >= 400 and resp.status_code != 416:
            raise SourceError(f"{what} on {self.base_url}: HTTP {resp.status_code}: {_server_message(resp)}")
        return resp

    def _get(self, what: str, path: str, *, params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        url = self.base_url + path
        merged = {**self._headers, **(headers or {})}
        return self._send(what, lambda: self._http.get(url, params=params, headers=merged))

    # protocol ------------------------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        if self._identity is None:
            spec = self._spec("public") if "public" in self.schemas else {}
            self._identity = {
                "kind": self.kind,
                "url": self.base_url,
                "project_ref": self.project_ref or "",
                "api_version": str((spec.get("info") or {}).get("version", "")),
                "users_via": "gotrue-admin-api",
            }
        return dict(self._identity)

    def tables(self) -> list[TableInfo]:
        if self._tables is None:
            out: list[TableInfo] = []
            for schema in self.schemas:
                if schema == "auth":
                    out.append(self._auth_users_info())
                else:
                    out.extend(self._schema_tables(schema))
            self._tables = sorted(out, key=lambda t: (t.schema, t.name))
        return list(self._tables)

    def read(
        self, table: TableInfo, *, batch_rows: int, resume_token: dict[str, Any] | None = None
    ) -> Iterator[SourceBatch]:
        if batch_rows < 1:
            raise ValueError("batch_rows must be positive")
        if table.qualified == "auth.users":
            return self._read_users(table, batch_rows, resume_token or {})
        if table.primary_key:
            return self._read_keyset(table, batch_rows, resume_token or {})
        return self._read_ordered_offset(table, batch_rows, resume_token or {})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # description ---------------------------------------------------------------------------------
    def _spec(self, schema: str) -> dict[str, Any]:
        if schema not in self._openapi:
            resp = self._get(f"reading the OpenAPI description of schema {schema}", "/rest/v1/",
                             headers={"Accept": "application/openapi+json", "Accept-Profile": schema})
            if resp.status_code == 416:
                raise SourceError(f"unexpected 416 from the OpenAPI root of {self.base_url}")
            spec = _loads(resp.content)
            if not isinstance(spec, dict):
                raise SourceError(f"the OpenAPI root of {self.base_url} is not a JSON object")
            self._openapi[schema] = spec
        return self._openapi[schema]

    def _schema_tables(self, schema: str) -> list[TableInfo]:
        try:
            spec = self._spec(schema)
        except SourceError as exc:
            if "PGRST106" in str(exc):  # the schema is not exposed over REST
                log.warning("schema not exposed over REST; skipped", schema=schema)
                self.notes.append(f"schema {schema} is not exposed over the REST API and was not read")
                return []
            raise
        paths: dict[str, Any] = spec.get("paths") or {}
        out: list[TableInfo] = []
        for name, definition in sorted((spec.get("definitions") or {}).items()):
            ops = paths.get(f"/{name}") or {}
            if not any(verb in ops for verb in ("post", "patch", "delete")):
                # Read-only relations are views (or tables the key cannot write): the live source
                # lists base tables only, so these are reported, never read.
                self.skipped_relations.append(f"{schema}.{name}")
                continue
            out.append(_table_info(schema, name, definition))
        return out

    def _auth_users_info(self) -> TableInfo:
        resp = self._get("listing auth users (admin API)", "/auth/v1/admin/users",
                         params={"page": "1", "per_page": "1"})
        total = resp.headers.get("x-total-count")
        self._users_total = int(total) if total and total.isdigit() else None
        return TableInfo("auth", "users", AUTH_USERS_COLUMNS, ("id",), row_estimate=self._users_total)

    # counting ------------------------------------------------------------------------------------
    def _count(self, table: TableInfo, mode: str) -> int | None:
        resp = self._send(f"counting {table.qualified}", lambda: self._query(table, limit=0, count=mode).request.send(
            httpx.Headers()))
        return _content_range_total(resp.headers.get("content-range"))

    def _expected(self, table: TableInfo) -> tuple[int | None, str]:
        if self.count_mode == "exact" and self.planned_above is not None:
            planned = self._count(table, "planned")
            if planned is not None and planned > self.planned_above:
                return planned, "planned"
        return self._count(table, self.count_mode), self.count_mode

    def _check_total(self, table: TableInfo, read: int, expected: int | None, mode: str) -> None:
        check: dict[str, Any] = {"mode": mode, "expected": expected, "read": read}
        self.count_checks[table.qualified] = check
        if expected is None or read == expected:
            return
        if mode != "exact":
            log.warning("row count differs from the server's estimate", table=table.qualified, read=read,
                        estimate=expected, mode=mode)
            return
        if table.qualified == "auth.users":
            self._auth_users_info()
            now = self._users_total
        else:
            now = self._count(table, "exact")
        check["recount"] = now
        raise SourceError(
            f"{table.qualified}: read {read} rows over REST but the server counted {expected} at the start"
            f" and {now} now; REST reads are not one snapshot, so the table changed during the read or rows"
            " were lost. Pause writes to the project and run again (or use a database connection).")

    # reading -------------------------------------------------------------------------------------
    def _query(self, table: TableInfo, *, limit: int, count: str | None = None, after: list[str] | None = None,
               offset: int = 0, order: tuple[str, ...] | None = None) -> Any:
        q: Any = self._client.schema(table.schema).table(table.name).select(
            "*", count=CountMethod(count) if count else None)
        for k in order if order is not None else table.primary_key:
            q = q.order(k)
        if after is not None:
            keys = table.primary_key
            q = q.gt(keys[0], after[0]) if len(keys) == 1 else q.or_(_keyset_or(keys, after))
        if offset:
            q = q.offset(offset)
        return q.limit(limit)

    def _rows(self, table: TableInfo, resp: httpx.Response) -> list[dict[str, Any]]:
        if resp.status_code == 416:
            return []
        rows = _loads(resp.content)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise SourceError(f"{table.qualified}: the server did not answer with a JSON array of rows")
        return rows

    def _read_keyset(self, table: TableInfo, batch_rows: int, token: dict[str, Any]) -> Iterator[SourceBatch]:
        after: list[str] | None = None
        if token.get("after") is not None:
            after = [str(v) for v in token["after"]]
            if len(after) != len(table.primary_key):
                raise SourceError(f"{table.qualified}: resume token does not match the primary key")
        if "expected" in token:
            expected, mode, seen = token["expected"], str(token.get("count_mode")), int(token.get("rows", 0))
        else:
            (expected, mode), seen = self._expected(table), 0
        columns = table.extract_columns
        buf: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            want = min(self.page_size, batch_rows - len(buf))
            cursor = after

            def request(cursor: list[str] | None = cursor, want: int = want) -> httpx.Response:
                return self._query(table, limit=want, after=cursor).request.send(httpx.Headers())  # type: ignore[no-any-return]

            rows = self._rows(table, self._send(f"reading {table.qualified}", request))
            if rows:
                last = rows[-1]
                missing = [k for k in table.primary_key if last.get(k) is None]
                if missing:
                    raise SourceError(f"{table.qualified}: rows come back without primary key {missing[0]}")
                after = [_to_text(last[k], table.column(k)) or "" for k in table.primary_key]
                buf.extend(rows)
            if buf and (not rows or len(buf) >= batch_rows):
                seen += len(buf)
                yield SourceBatch(_to_batch(table, columns, buf),
                                  {"after": list(after or []), "rows": seen, "expected": expected, "count_mode": mode})
                buf = []
            if not rows:  # only an empty page ends a table: a short one may be the server's cap
                self._check_total(table, seen, expected, mode)
                return
        raise SourceError(f"{table.qualified}: gave up after {_MAX_PAGES} pages")

    def _read_ordered_offset(self, table: TableInfo, batch_rows: int, token: dict[str, Any]) -> Iterator[SourceBatch]:
        """A table without a key has nothing to page on but position: order by every orderable column
        so the order is total up to identical rows (which are interchangeable), then page by offset."""
        order = tuple(c.name for c in table.columns
                      if strip_typmod(c.pg_type).lower() not in _UNORDERABLE)
        if not order:
            raise SourceError(f"{table.qualified}: no primary key and no orderable column; cannot page it over REST")
        log.warning("table has no primary key; reading it in ordered offset pages", table=table.qualified)
        offset = int(token.get("offset", 0))
        if "expected" in token:
            expected, mode = token["expected"], str(token.get("count_mode"))
        else:
            expected, mode = self._expected(table)
        columns = table.extract_columns
        buf: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            want = min(self.page_size, batch_rows - len(buf))
            at = offset + len(buf)

            def request(at: int = at, want: int = want) -> httpx.Response:
                return self._query(table, limit=want, offset=at, order=order).request.send(httpx.Headers())  # type: ignore[no-any-return]

            rows = self._rows(table, self._send(f"reading {table.qualified}", request))
            buf.extend(rows)
            if buf and (not rows or len(buf) >= batch_rows):
                offset += len(buf)
                yield SourceBatch(_to_batch(table, columns, buf),
                                  {"offset": offset, "rows": offset, "expected": expected, "count_mode": mode})
                buf = []
            if not rows:
                self._check_total(table, offset, expected, mode)
                return
        raise SourceError(f"{table.qualified}: gave up after {_MAX_PAGES} pages")

    def _read_users(self, table: TableInfo, batch_rows: int, token: dict[str, Any]) -> Iterator[SourceBatch]:
        """GoTrue pages by number, newest first, with no key to page on. Users are therefore collected
        (de-duplicated, in case a sign-up shifts the pages) and handed over in id order, as the live
        source does, so "first row wins" rules give the same result and the resume token is the last
        id. auth.users is small next to app tables; this is the one table held whole in memory."""
        after = str(token["after"][0]) if token.get("after") else None
        columns = table.extract_columns
        users: dict[str, dict[str, Any]] = {}
        expected: int | None = None
        page, per_page = 1, self.users_per_page
        for _ in range(_MAX_PAGES):
            resp = self._get("listing auth users (admin API)", "/auth/v1/admin/users",
                             params={"page": str(page), "per_page": str(per_page)})
            body = _loads(resp.content)
            batch = body.get("users") if isinstance(body, dict) else body
            if not isinstance(batch, list) or not all(isinstance(u, dict) for u in batch):
                raise SourceError("the admin users endpoint did not answer with a list of users")
            total = resp.headers.get("x-total-count")
            if expected is None and total and total.isdigit():
                expected = int(total)
            for u in batch:
                users.setdefault(str(u.get("id")), u)
            links = _links(resp.headers.get("link", ""))
            if not batch or (links and "next" not in links and page >= links.get("last", page)):
                break
            page += 1
        else:
            raise SourceError(f"auth.users: gave up after {_MAX_PAGES} pages")
        self._check_total(table, len(users), expected, "exact")
        ids = sorted((i for i in users if after is None or _uuid_order(i) > _uuid_order(after)), key=_uuid_order)
        for start in range(0, len(ids), batch_rows):
            chunk = ids[start:start + batch_rows]
            rows = [{c.name: (users[i].get(_USER_FIELDS.get(c.name, c.name)) if _USER_FIELDS.get(c.name, c.name)
                              else None) for c in columns} for i in chunk]
            yield SourceBatch(_to_batch(table, columns, rows), {"after": [chunk[-1]]})


# helpers -----------------------------------------------------------------------------------------
def _loads(content: bytes) -> Any:
    try:
        return json.loads(content, parse_float=Decimal)
    except ValueError:
        raise SourceError("the server's answer is not valid JSON") from None


def _uuid_order(value: str) -> str:
    """Postgres orders uuids by their bytes, which for the canonical form is lowercase text order."""
    return value.lower()


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _server_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return redact_text(resp.text[:_BODY_EXCERPT]) or "(no message)"
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("code", "error_code", "message", "msg", "details", "hint") if body.get(k)]
        return redact_text("; ".join(parts)[:_BODY_EXCERPT]) or "(no message)"
    return "(no message)"


def _content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _links(header: str) -> dict[str, int]:
    """rel -> page number from a GoTrue Link header."""
    out: dict[str, int] = {}
    for m in re.finditer(r"<([^>]*)>\s*;\s*rel=\"?(\w+)\"?", header):
        page = re.search(r"[?&]page=(\d+)", m.group(1))
        if page:
            out[m.group(2)] = int(page.group(1))
    return out


def _quote_filter_value(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.:+-]*", value) and value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _keyset_or(keys: tuple[str, ...], after: list[str]) -> str:
    """(a, b) > (x, y) as a PostgREST logic tree: a.gt.x OR (a.eq.x AND b.gt.y) ..."""
    terms: list[str] = []
    for i, k in enumerate(keys):
        eqs = [f"{keys[j]}.eq.{_quote_filter_value(after[j])}" for j in range(i)]
        gt = f"{k}.gt.{_quote_filter_value(after[i])}"
        terms.append(f"and({','.join([*eqs, gt])})" if eqs else gt)
    return ",".join(terms)


def _table_info(schema: str, name: str, definition: dict[str, Any]) -> TableInfo:
    props: dict[str, Any] = definition.get("properties") or {}
    required = set(definition.get("required") or ())
    columns: list[Column] = []
    pk: list[str] = []
    fks: list[ForeignKey] = []
    for col, prop in props.items():
        pg_type, enum_values = _pg_type(schema, prop)
        columns.append(Column(col, pg_type, nullable=col not in required, enum_values=enum_values))
        desc = str(prop.get("description") or "")
        if _PK_NOTE in desc:
            pk.append(col)
        m = _FK_NOTE.search(desc)
        if m:
            fks.append(ForeignKey((col,), f"{schema}.{m.group(1)}", (m.group(2),)))
    return TableInfo(schema, name, tuple(columns), tuple(pk), None, tuple(fks))


def _pg_type(schema: str, prop: dict[str, Any]) -> tuple[str, tuple[str, ...] | None]:
    """PostgREST's format is format_type() without modifiers for catalog types; put back what it tells
    us (maxLength) and schema-qualify enums, as the live source's format_type() spelling does."""
    fmt = str(prop.get("format") or "text")
    enum = prop.get("enum")
    enum_values = tuple(str(v) for v in enum) if isinstance(enum, list) else None
    if enum_values is None and prop.get("type") == "array":
        item_enum = (prop.get("items") or {}).get("enum")
        enum_values = tuple(str(v) for v in item_enum) if isinstance(item_enum, list) else None
    max_len = prop.get("maxLength")
    if isinstance(max_len, int) and fmt in ("character varying", "character", "bit", "bit varying"):
        fmt = f"{fmt}({max_len})"
    if enum_values is not None and "." not in fmt and not fmt.startswith('"'):
        fmt = f"{schema}.{fmt}"
    return fmt, enum_values


def _jsonb_text(v: Any) -> str:
    """jsonb_out's spelling: ', ' and ': ' separators, keys in stored order, numbers as digits."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_jsonb_text(x) for x in v) + "]"
    if isinstance(v, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}: {_jsonb_text(x)}" for k, x in v.items())
        return "{" + ", ".join(items) + "}"
    raise SourceError(f"unexpected JSON value of type {type(v).__name__}")


def _scalar_text(v: Any, bare: str) -> str:
    if v is True:
        return "t"
    if v is False:
        return "f"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        if bare in _FLOAT_TYPES:
            return repr(float(v))  # a float column's value is a float; its shortest form is exact
        return format(v, "f")
    if isinstance(v, str):
        return v
    return _jsonb_text(v)


def _array_items(v: list[Any], elem_bare: str) -> list[PgArrayItem]:
    out: list[PgArrayItem] = []
    for x in v:
        if x is None:
            out.append(None)
        elif isinstance(x, list) and elem_bare not in _JSON_TYPES:
            out.append(_array_items(x, elem_bare))
        else:
            out.append(_scalar_text(x, elem_bare))
    return out


def _to_text(v: Any, col: Column) -> str | None:
    """A JSON value as PostgreSQL's text output for the column's type."""
    if v is None:
        return None
    bare = strip_typmod(col.pg_type).lower()
    if bare in _JSON_TYPES:
        return _jsonb_text(v)
    if isinstance(v, list):
        return format_pg_array(_array_items(v, bare.removesuffix("[]").strip()))
    return _scalar_text(v, bare)


def _to_batch(table: TableInfo, columns: tuple[Column, ...], rows: list[dict[str, Any]]) -> pa.RecordBatch:
    schema = table.arrow_schema()
    if not columns:
        return pa.RecordBatch.from_struct_array(pa.array([{}] * len(rows), type=pa.struct([])))
    arrays = [pa.array([_to_text(r.get(c.name), c) for r in rows], type=pa.string()) for c in columns]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)

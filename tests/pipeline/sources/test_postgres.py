"""The live source against a real PostgreSQL holding the Supabase-shaped Xrozen fixture."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from pipeline.errors import ConfigError, SourceError, TransientSourceError
from pipeline.sources import open_source
from pipeline.sources.base import SourceBatch, TableInfo
from pipeline.sources.postgres import PostgresSource
from tests.support import xrozen
from tests.support.xrozen import XrozenFixture, load_xrozen_fixture

pytestmark = pytest.mark.postgres


@pytest.fixture
def fx(pg_dsn: str) -> XrozenFixture:
    return load_xrozen_fixture(pg_dsn, messages=200)


@pytest.fixture
def source(fx: XrozenFixture) -> Iterator[PostgresSource]:
    src = PostgresSource(fx.dsn)
    yield src
    src.close()


def _tables(src: PostgresSource) -> dict[str, TableInfo]:
    return {t.qualified: t for t in src.tables()}


def _server_text(dsn: str, table: TableInfo, order: str) -> list[tuple[str | None, ...]]:
    """Rows as the server's output functions render them, read through the plain query protocol."""
    cols = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.extract_columns)
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        cols, sql.Identifier(table.schema, table.name), sql.SQL(order)
    )
    with psycopg.connect(dsn) as conn:
        for name, value in [("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"), ("extra_float_digits", "3"),
                            ("IntervalStyle", "postgres"), ("bytea_output", "hex")]:
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        cur = conn.execute(query)
        res = cur.pgresult
        assert res is not None
        out = []
        for r in range(res.ntuples):
            row = []
            for c in range(res.nfields):
                v = res.get_value(r, c)
                row.append(None if v is None else bytes(v).decode())
            out.append(tuple(row))
        return out


def _read_whole(dsn: str, name: str, *, batch_rows: int) -> tuple[TableInfo, list[SourceBatch]]:
    src = PostgresSource(dsn)
    try:
        table = _tables(src)[name]
        return table, list(src.read(table, batch_rows=batch_rows))
    finally:
        src.close()


def _rows(batches: list[SourceBatch]) -> list[tuple[str | None, ...]]:
    out: list[tuple[str | None, ...]] = []
    for b in batches:
        cols = [b.data.column(i).to_pylist() for i in range(b.data.num_columns)]
        out.extend(zip(*cols, strict=True))
    return out


# introspection -------------------------------------------------------------------------------------

def test_auth_users_has_the_35_supabase_columns_and_confirmed_at_is_never_extracted(
    source: PostgresSource,
) -> None:
    users = _tables(source)["auth.users"]
    assert len(users.columns) == 35
    assert users.primary_key == ("id",)
    confirmed = users.column("confirmed_at")
    assert confirmed.generated and confirmed.pg_type == "timestamp with time zone"
    assert [c.name for c in users.extract_columns] == [c.name for c in users.columns if c.name != "confirmed_at"]
    assert users.arrow_schema().names == [c.name for c in users.extract_columns]
    assert users.column("email").pg_type == "character varying(255)"
    assert users.column("email").nullable
    assert not users.column("is_sso_user").nullable and not users.column("is_anonymous").nullable
    assert users.column("email_change_confirm_status").pg_type == "smallint"
    identities = _tables(source)["auth.identities"]
    assert identities.column("email").generated
    assert "email" not in [c.name for c in identities.extract_columns]


def test_only_tables_of_the_requested_schemas_are_listed(source: PostgresSource, fx: XrozenFixture) -> None:
    names = set(_tables(source))
    expected = {t for t in fx.row_counts if t.split(".")[0] in ("public", "auth")}
    assert names == expected
    assert "public.project_overview" not in names  # a view
    assert "storage.buckets" not in names
    other = PostgresSource(fx.dsn, schemas=("storage",))
    try:
        assert [t.qualified for t in other.tables()] == ["storage.buckets"]
    finally:
        other.close()


def test_enums_are_read_from_pg_enum_in_sort_order_with_qualified_types(source: PostgresSource) -> None:
    t = _tables(source)
    role = t["public.user_roles"].column("role")
    assert role.pg_type == "public.app_role"
    assert role.enum_values == ("editor", "client", "agency", "admin")
    status = t["public.video_versions"].column("approval_status")
    assert status.pg_type == "public.approval_status"
    assert status.enum_values == ("pending", "approved", "rejected", "corrections_needed")
    assert t["public.profiles"].column("subscription_tier").enum_values == ("basic", "pro", "premium")
    assert t["public.projects"].column("status").enum_values is None
    assert t["public.payments"].column("amount").pg_type == "numeric(10,2)"
    assert t["public.projects"].column("deadline").pg_type == "date"
    assert t["public.database_config"].column("config").pg_type == "jsonb"


def test_primary_and_foreign_keys_reflect_the_dropped_constraints(source: PostgresSource) -> None:
    t = _tables(source)
    fks = {(fk.columns, fk.parent, fk.parent_columns) for fk in t["public.projects"].foreign_keys}
    assert fks == {
        (("editor_id",), "public.editors", ("id",)),
        (("client_id",), "public.clients", ("id",)),
        (("creator_id",), "auth.users", ("id",)),
        (("parent_project_id",), "public.projects", ("id",)),
    }
    for child in ("public.project_clients", "public.video_versions", "public.payments", "public.messages"):
        assert "public.projects" not in {fk.parent for fk in t[child].foreign_keys}, child
    assert [(fk.columns, fk.parent) for fk in t["public.project_clients"].foreign_keys] == [
        (("client_id",), "public.profiles")
    ]
    assert [fk.parent for fk in t["auth.identities"].foreign_keys] == ["auth.users"]
    assert t["public.profiles"].foreign_keys == ()
    assert t["public.audit_log"].primary_key == ()
    assert t["public.messages"].row_estimate == 200


def test_domains_arrays_of_enums_and_composite_keys(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE SCHEMA app;
            CREATE TYPE app.mood AS ENUM ('sad', 'ok');
            ALTER TYPE app.mood ADD VALUE 'happy' BEFORE 'ok';
            CREATE DOMAIN app.email AS character varying(80) CHECK (VALUE LIKE '%@%');
            CREATE DOMAIN app.moody AS app.mood;
            CREATE TABLE public.t (
              region text, n integer, mail app.email, moods app.mood[], m app.moody, tags text[],
              PRIMARY KEY (n, region));
        """)
    src = PostgresSource(pg_dsn)
    try:
        t = _tables(src)["public.t"]
    finally:
        src.close()
    assert t.primary_key == ("n", "region")
    assert t.column("mail").pg_type == "app.email"
    assert t.column("mail").base_type == "character varying(80)"
    assert t.column("moods").pg_type == "app.mood[]"
    assert t.column("moods").enum_values == ("sad", "happy", "ok")
    assert t.column("m").base_type == "app.mood"
    assert t.column("m").enum_values == ("sad", "happy", "ok")
    assert t.column("tags").pg_type == "text[]" and t.column("tags").enum_values is None
    assert not t.column("n").nullable and t.column("mail").nullable


# reading -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name", ["public.messages", "auth.users", "public.payments", "public.profiles", "public.invoices"]
)
def test_small_batches_return_every_row_once_in_key_order_as_server_text(
    source: PostgresSource, fx: XrozenFixture, name: str
) -> None:
    table = _tables(source)[name]
    batches = list(source.read(table, batch_rows=7))
    assert all(b.data.num_rows <= 7 for b in batches)
    assert all(b.data.schema == table.arrow_schema() for b in batches)
    assert all(isinstance(b.data, pa.RecordBatch) for b in batches)
    got = _rows(batches)
    assert len(got) == fx.row_counts[name]
    assert got == _server_text(fx.dsn, table, "id")
    ids = [r[[c.name for c in table.extract_columns].index("id")] for r in got]
    assert len(set(ids)) == len(ids)
    assert batches[-1].resume_token == {"after": [ids[-1]]}


def test_quirky_values_arrive_as_postgres_text(source: PostgresSource) -> None:
    t = _tables(source)

    def by_id(name: str) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for b in source.read(t[name], batch_rows=50):
            for r in b.data.to_pylist():
                rows[r["id"]] = r
        return rows

    payments = by_id("public.payments")
    assert {k: v["amount"] for k, v in payments.items()} == xrozen.PAYMENT_AMOUNTS
    messages = by_id("public.messages")
    assert messages[xrozen.SPECIAL_MESSAGE_ID]["content"] == xrozen.SPECIAL_TEXT
    assert messages[xrozen.SPECIAL_MESSAGE_ID]["is_read"] == "f"
    projects = by_id("public.projects")
    assert projects[xrozen.P_DOC]["deadline"] == "2024-02-29"
    assert projects[xrozen.P_COMMERCIAL]["deadline"] is None
    assert projects[xrozen.P_MUSIC]["description"] == xrozen.SPECIAL_DESCRIPTION
    users = by_id("auth.users")
    assert users[xrozen.ALICE]["last_sign_in_at"] == "2024-05-01 12:34:56.123456+00"
    assert users[xrozen.NORA]["encrypted_password"] is None
    assert users[xrozen.OLGA]["encrypted_password"] == ""
    assert "confirmed_at" not in users[xrozen.ALICE]


def test_resume_token_continues_without_duplicate_or_gap(source: PostgresSource, fx: XrozenFixture) -> None:
    table = _tables(source)["public.messages"]
    full = _rows(list(source.read(table, batch_rows=13)))
    it = source.read(table, batch_rows=13)
    first = [next(it) for _ in range(3)]
    del it
    token = first[-1].resume_token
    again = PostgresSource(fx.dsn)  # a restarted process: new connection, same token
    try:
        rest = list(again.read(table, batch_rows=13, resume_token=token))
    finally:
        again.close()
    assert _rows(first) + _rows(rest) == full
    assert len(full) == 200


def test_exact_multiple_of_batch_size_yields_no_empty_batch(source: PostgresSource) -> None:
    table = _tables(source)["public.video_versions"]  # 6 rows
    batches = list(source.read(table, batch_rows=3))
    assert [b.data.num_rows for b in batches] == [3, 3]
    assert list(source.read(table, batch_rows=3, resume_token=batches[-1].resume_token)) == []


def test_keyset_comparison_uses_the_key_types_not_text(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE public.k (n integer, region text COLLATE "C", at timestamptz, v text,
                                   PRIMARY KEY (n, region, at));
            INSERT INTO public.k
            SELECT g % 12, chr(65 + g % 3), timestamptz '2024-01-01 00:00:00.5+00' + g * interval '1 hour',
                   'v' || g
            FROM generate_series(1, 90) AS g;
        """)
    src = PostgresSource(pg_dsn)
    try:
        table = _tables(src)["public.k"]
        batches = list(src.read(table, batch_rows=4))
        got = _rows(batches)
        assert got == _server_text(pg_dsn, table, "n, region, at")
        assert len(got) == 90
        mid = batches[5].resume_token
        assert mid["after"] == list(got[23][:3])
        assert _rows(list(src.read(table, batch_rows=4, resume_token=mid))) == got[24:]
    finally:
        src.close()


def test_edge_values_survive_as_text(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE public.edge (id integer PRIMARY KEY, num numeric, ts timestamptz, d date,
                                      b bytea, flag boolean, c char(4), ip inet, iv interval, f float8,
                                      arr text[], j json);
            INSERT INTO public.edge VALUES
              (1, 0.10, 'infinity', '4713-01-01 BC', '\\x0001ff', true, 'ab', '10.0.0.1', '1 year 2 mons -3 days',
               0.1, '{a,"b c",NULL}', '{"b": 1,  "a": [1.50]}'),
              (2, -1234.500, '-infinity', '294276-12-31', '', false, NULL, '::1', '-00:00:01.5', 'NaN',
               '{}', 'null'),
              (3, 'NaN', '294276-12-31 23:59:59.999999+00', '10000-01-01', NULL, NULL, '', '192.168.0.0/16',
               NULL, '-Infinity', NULL, NULL),
              (4, 123456789012345678901234567890.123456789, '0001-01-01 00:00:00+00 BC', '2000-02-29',
               '\\x5c4e', true, 'abcd', NULL, '0', 1e300, ARRAY['\\N', E'x\\ty'], '"\\u00e9"');
        """)
    table, batches = _read_whole(pg_dsn, "public.edge", batch_rows=3)
    assert _rows(batches) == _server_text(pg_dsn, table, "id")
    rows = [r for b in batches for r in b.data.to_pylist()]
    assert [r["num"] for r in rows] == ["0.10", "-1234.500", "NaN", "123456789012345678901234567890.123456789"]
    assert [r["ts"] for r in rows] == ["infinity", "-infinity", "294276-12-31 23:59:59.999999+00",
                                       "0001-01-01 00:00:00+00 BC"]
    assert [r["d"] for r in rows] == ["4713-01-01 BC", "294276-12-31", "10000-01-01", "2000-02-29"]
    assert [r["b"] for r in rows] == ["\\x0001ff", "\\x", None, "\\x5c4e"]
    assert [r["flag"] for r in rows] == ["t", "f", None, "t"]
    assert [r["c"] for r in rows] == ["ab  ", None, "    ", "abcd"]
    assert [r["ip"] for r in rows] == ["10.0.0.1", "::1", "192.168.0.0/16", None]
    assert [r["iv"] for r in rows] == ["1 year 2 mons -3 days", "-00:00:01.5", None, "00:00:00"]
    assert [r["f"] for r in rows] == ["0.1", "NaN", "-Infinity", "1e+300"]
    assert [r["arr"] for r in rows] == ['{a,"b c",NULL}', "{}", None, '{"\\\\N","x\ty"}']
    assert [r["j"] for r in rows] == ['{"b": 1,  "a": [1.50]}', "null", None, '"\\u00e9"']


def test_text_that_csv_must_quote_comes_back_exactly_and_empty_differs_from_null(pg_dsn: str) -> None:
    """The extract reads COPY's CSV form: quoting, NULL against '', and line breaks must round-trip."""
    values = ["", None, "a,b", '"q"', 'say "hi", then', "line1\nline2", "cr\r\nlf", "\\.", "\\N", "NULL",
              " lead", "trail ", "tab\there", "back\\slash", "café ünï 🎬 日本", '""', ",", "\n"]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.quoting (id integer PRIMARY KEY, t text, u text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO public.quoting VALUES (%s, %s, %s)",
                            [(i, v, None if v is None else f"{v}|{i}") for i, v in enumerate(values)])
    table, batches = _read_whole(pg_dsn, "public.quoting", batch_rows=5)
    rows = _rows(batches)
    assert [r[1] for r in rows] == values
    assert [r[2] for r in rows] == [None if v is None else f"{v}|{i}" for i, v in enumerate(values)]
    assert rows == _server_text(pg_dsn, table, "id")
    assert [b.resume_token["after"] for b in batches] == [["4"], ["9"], ["14"], ["17"]]


def test_table_without_primary_key_pages_by_ctid(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE public.nokey (n integer, pad text);
            INSERT INTO public.nokey SELECT g, repeat('x', 200) FROM generate_series(1, 3000) AS g;
            INSERT INTO public.nokey VALUES (7, repeat('x', 200)), (7, repeat('x', 200));
            DELETE FROM public.nokey WHERE n BETWEEN 400 AND 1400 OR n % 10 = 3;
            UPDATE public.nokey SET pad = 'moved' WHERE n % 97 = 0;
            ANALYZE public.nokey;
            CREATE TABLE public.empty_nokey (n integer);
        """)
        expected = sorted(conn.execute("SELECT n::text, pad FROM public.nokey").fetchall())
    src = PostgresSource(pg_dsn)
    try:
        tables = _tables(src)
        table = tables["public.nokey"]
        assert table.primary_key == ()
        batches = list(src.read(table, batch_rows=100))
        assert [b.data.num_rows for b in batches[:-1]] == [100] * (len(batches) - 1)
        assert all(set(b.resume_token) == {"after_ctid"} for b in batches)
        assert sorted(_rows(batches)) == expected
        token = batches[4].resume_token
        rest = list(src.read(table, batch_rows=100, resume_token=token))
        assert _rows(batches[:5]) + _rows(rest) == _rows(batches)
        assert list(src.read(tables["public.empty_nokey"], batch_rows=10)) == []
    finally:
        src.close()


def test_fixture_audit_log_with_duplicate_rows_reads_completely(source: PostgresSource) -> None:
    table = _tables(source)["public.audit_log"]
    rows = _rows(list(source.read(table, batch_rows=3)))
    assert len(rows) == 4
    assert rows[0][1:] == rows[1][1:]  # identical apart from the identity column
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]


def test_partitioned_tables_are_read_through_the_parent(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE public.ev (id integer, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
            CREATE TABLE public.ev_2023 PARTITION OF public.ev FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
            CREATE TABLE public.ev_2024 PARTITION OF public.ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            INSERT INTO public.ev SELECT g, date '2023-06-01' + (g * 3) FROM generate_series(1, 150) AS g;
            CREATE TABLE public.lg (msg text, at date) PARTITION BY RANGE (at);
            CREATE TABLE public.lg_a PARTITION OF public.lg FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
            CREATE TABLE public.lg_b PARTITION OF public.lg FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE public.lg_empty PARTITION OF public.lg FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            INSERT INTO public.lg SELECT 'm' || g, date '2023-06-01' + (g * 3) FROM generate_series(1, 150) AS g;
        """)
    src = PostgresSource(pg_dsn)
    try:
        tables = _tables(src)
        assert set(tables) == {"public.ev", "public.lg"}
        ev = list(src.read(tables["public.ev"], batch_rows=40))
        assert [r[0] for r in _rows(ev)] == [str(g) for g in range(1, 151)]
        lg = list(src.read(tables["public.lg"], batch_rows=40))
        got = _rows(lg)
        assert sorted(got) == sorted(_server_text(pg_dsn, tables["public.lg"], "msg"))
        assert len(got) == 150
        mid = lg[1].resume_token
        assert mid["partition"] in ("public.lg_a", "public.lg_b")
        rest = list(src.read(tables["public.lg"], batch_rows=40, resume_token=mid))
        assert _rows(lg[:2]) + _rows(rest) == got
    finally:
        src.close()


def test_reads_see_one_snapshot(source: PostgresSource, fx: XrozenFixture) -> None:
    table = _tables(source)["public.messages"]
    it = source.read(table, batch_rows=50)
    first = next(it)
    with psycopg.connect(fx.dsn, autocommit=True) as other:
        other.execute(
            "INSERT INTO public.messages (id, sender_id, content) VALUES ('ffffffff-ffff-4fff-8fff-ffffffffffff', %s,"
            " 'late')", (xrozen.ALICE,))
        other.execute("UPDATE public.messages SET content = 'edited' WHERE id = %s", (xrozen.SPECIAL_MESSAGE_ID,))
        other.execute("DELETE FROM public.messages WHERE id = %s", (sorted(xrozen.ORPHAN_MESSAGE_IDS)[0],))
        assert other.execute("SELECT count(*) FROM public.messages").fetchone() == (200,)
    rows = _rows([first, *it])
    assert len(rows) == 200
    contents = {r[0]: r[4] for r in rows}
    assert "ffffffff-ffff-4fff-8fff-ffffffffffff" not in contents
    assert contents[xrozen.SPECIAL_MESSAGE_ID] == xrozen.SPECIAL_TEXT
    assert sorted(xrozen.ORPHAN_MESSAGE_IDS)[0] in contents


def test_identity_names_the_server_and_snapshot_but_no_secret(source: PostgresSource, fx: XrozenFixture) -> None:
    ident = source.identity()
    assert set(ident) == {"kind", "system_identifier", "database", "server_version", "snapshot_xmin"}
    assert ident["kind"] == "postgres"
    assert ident["database"] == psycopg.conninfo.conninfo_to_dict(fx.dsn)["dbname"]
    assert ident["system_identifier"]
    assert int(ident["snapshot_xmin"]) > 0
    assert ident["server_version"].split(".")[0].isdigit()
    assert source.snapshot_id
    assert source.identity() == ident  # stable for the life of the snapshot


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("form", ["uri", "keywords"])
def test_unreachable_server_raises_source_error_without_the_password(form: str) -> None:
    port = _closed_port()
    dsn = (f"postgresql://postgres:s3cr3t-pw@127.0.0.1:{port}/postgres" if form == "uri"
           else f"host=127.0.0.1 port={port} user=postgres password=s3cr3t-pw dbname=postgres")
    src = open_source(dsn, connect_timeout=2)
    with pytest.raises(SourceError) as info:
        src.identity()
    assert info.value.exit_code == 3
    text = str(info.value)
    assert "s3cr3t-pw" not in text
    assert "127.0.0.1" in text
    assert info.value.__cause__ is None  # the driver's exception (and its DSN) is not chained
    assert "s3cr3t-pw" not in repr(info.value.args)


def test_wrong_password_error_does_not_echo_it(pg_admin_dsn: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    info["password"] = "s3cr3t-pw"
    info["user"] = "no_such_role_xyz"
    src = PostgresSource(psycopg.conninfo.make_conninfo(**info))  # type: ignore[arg-type]
    with pytest.raises(SourceError) as err:
        src.tables()
    assert "s3cr3t-pw" not in str(err.value)


def test_open_source_dispatches_by_uri(tmp_path: Path) -> None:
    assert isinstance(open_source("postgresql://u:pw@127.0.0.1:1/db"), PostgresSource)
    pg = open_source("postgres://u@127.0.0.1:1/db", schemas=["public"], schema_path=None)
    assert isinstance(pg, PostgresSource) and pg.schemas == ("public",)
    assert isinstance(open_source("host=127.0.0.1 port=1 dbname=x"), PostgresSource)
    dump = tmp_path / "backup.sql"
    dump.write_text("-- an empty plain dump\n")
    for uri in (str(dump), f"dump:{dump}"):
        src = open_source(uri, schemas=("public",))
        assert src.kind == "dump"
        src.close()
    with pytest.raises(ConfigError, match="REST source needs"):  # a key is required, before any request
        open_source("https://abc.supabase.co")
    with pytest.raises(ConfigError) as err:
        open_source("mysql://root:hunter2@db/x")
    assert "hunter2" not in str(err.value) and "mysql://" in str(err.value)


def test_a_dropped_connection_is_transient_and_the_token_resumes_on_a_new_snapshot(
    source: PostgresSource, fx: XrozenFixture
) -> None:
    table = _tables(source)["public.messages"]
    it = source.read(table, batch_rows=40)
    first = next(it)
    dbname = psycopg.conninfo.conninfo_to_dict(fx.dsn)["dbname"]
    with psycopg.connect(fx.dsn, autocommit=True) as other:
        killed = other.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'supamigrate'", (dbname,)).fetchone()
    assert killed == (1,)
    with pytest.raises(TransientSourceError) as err:
        next(it)
    assert err.value.exit_code == 3
    rest = list(source.read(table, batch_rows=40, resume_token=first.resume_token))
    assert _rows([first, *rest]) == _server_text(fx.dsn, table, "id")


def test_no_tables_in_the_requested_schemas(fx: XrozenFixture) -> None:
    src = PostgresSource(fx.dsn, schemas=("nothing_here",))
    try:
        assert src.tables() == []
    finally:
        src.close()


def test_row_level_security_fails_loudly_instead_of_hiding_rows(fx: XrozenFixture) -> None:
    role = f"smtest_rls_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(fx.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOBYPASSRLS").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA auth TO {0}; GRANT SELECT ON ALL TABLES IN SCHEMA public,"
                             " auth TO {0}").format(sql.Identifier(role)))
    try:
        info = psycopg.conninfo.conninfo_to_dict(fx.dsn)
        info["user"] = role
        src = PostgresSource(psycopg.conninfo.make_conninfo(**info))  # type: ignore[arg-type]
        try:
            tables = _tables(src)
            assert len(_rows(list(src.read(tables["public.payments"], batch_rows=100)))) == 5
            with pytest.raises(SourceError, match="BYPASSRLS") as err:
                list(src.read(tables["public.profiles"], batch_rows=100))
            assert not isinstance(err.value, TransientSourceError)
        finally:
            src.close()
    finally:
        with psycopg.connect(fx.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))

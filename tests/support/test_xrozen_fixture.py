"""The fixture's constants are what later tests assert against, so check them against the database."""

from __future__ import annotations

from typing import Any

import bcrypt
import psycopg
import pytest

from tests.support import xrozen
from tests.support.xrozen import XrozenFixture, load_xrozen_fixture

pytestmark = pytest.mark.postgres


@pytest.fixture
def fx(pg_dsn: str) -> XrozenFixture:
    return load_xrozen_fixture(pg_dsn, messages=120, bulk_users=45)


def _ids(conn: psycopg.Connection[Any], query: str) -> set[str]:
    return {str(r[0]) for r in conn.execute(query).fetchall()}


def test_row_counts_match_the_database(fx: XrozenFixture) -> None:
    with psycopg.connect(fx.dsn) as conn:
        for table, expected in fx.row_counts.items():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (expected,), table
        assert _ids(conn, "SELECT id FROM auth.users") == fx.auth_user_ids
        assert _ids(conn, "SELECT id FROM public.profiles") == fx.profile_ids
        assert fx.row_counts["auth.users"] > 50  # more than the baseline's unpaged listing returned


def test_auth_users_has_35_columns_and_app_role_gained_admin_later(fx: XrozenFixture) -> None:
    with psycopg.connect(fx.dsn) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'auth.users'::regclass AND attnum > 0"
            " AND NOT attisdropped").fetchone() == (35,)
        assert conn.execute(
            "SELECT attgenerated FROM pg_attribute WHERE attrelid = 'auth.users'::regclass"
            " AND attname = 'confirmed_at'").fetchone() == ("s",)
        labels = conn.execute(
            "SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum"
            " WHERE enumtypid = 'public.app_role'::regtype").fetchone()
        assert labels == (["editor", "client", "agency", "admin"],)
        assert _ids(conn, "SELECT id FROM public.user_roles WHERE role = 'admin'") == xrozen.ADMIN_ROLE_IDS
        assert _ids(conn, "SELECT user_id FROM public.user_roles WHERE role = 'admin'") == xrozen.ADMIN_USER_IDS
        for role in ("anon", "authenticated", "service_role"):
            assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() == (1,)


def test_known_logins_verify_against_the_stored_hashes(fx: XrozenFixture) -> None:
    with psycopg.connect(fx.dsn) as conn:
        for k in xrozen.KNOWN_LOGINS:
            if k.table == "auth.users":
                row = conn.execute("SELECT email, encrypted_password FROM auth.users WHERE id = %s",
                                   (k.user_id,)).fetchone()
            else:
                row = conn.execute("SELECT email, password_hash FROM public.profiles WHERE id = %s",
                                   (k.user_id,)).fetchone()
            assert row is not None, k.user_id
            email, stored = row
            assert email == k.email
            assert stored.startswith(k.prefix), (k.user_id, stored[:7])
            assert bcrypt.checkpw(k.password.encode(), stored.encode()), k.user_id
            if k.prefix != "$2b$12$":  # a third of a second each; the cheap ones prove the point
                assert not bcrypt.checkpw(b"wrong", stored.encode())
            if k.origin == "pgcrypto":
                same = conn.execute("SELECT extensions.crypt(%s, %s) = %s", (k.password, stored, stored))
                assert same.fetchone() == (True,)


def test_password_quirk_sets(fx: XrozenFixture) -> None:
    with psycopg.connect(fx.dsn) as conn:
        assert _ids(conn, "SELECT id FROM auth.users WHERE encrypted_password IS NULL") == \
            xrozen.NULL_PASSWORD_USER_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE encrypted_password = ''") == \
            xrozen.EMPTY_PASSWORD_USER_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE encrypted_password LIKE '$argon2%'") == xrozen.ARGON2_IDS
        assert _ids(conn, "SELECT user_id FROM auth.identities WHERE provider IN ('google', 'github')") == \
            xrozen.OAUTH_USER_IDS
        assert _ids(conn, "SELECT id FROM public.profiles p WHERE NOT EXISTS"
                          " (SELECT 1 FROM auth.users u WHERE u.id = p.id)") == xrozen.PROFILE_ONLY_IDS
        assert _ids(conn, "SELECT id FROM public.profiles WHERE password_hash LIKE '$2b$12$%'") == \
            xrozen.PROFILE_ONLY_WITH_HASH_IDS | {xrozen.BOTH_HASHES_ID}
        assert _ids(conn, "SELECT id FROM auth.users u WHERE NOT EXISTS"
                          " (SELECT 1 FROM public.profiles p WHERE p.id = u.id)") == xrozen.AUTH_WITHOUT_PROFILE_IDS
        newer = conn.execute("SELECT p.updated_at > u.updated_at FROM public.profiles p JOIN auth.users u"
                             " USING (id) WHERE id = %s", (xrozen.BOTH_HASHES_ID,)).fetchone()
        assert newer == (True,)
        current = [k for k in xrozen.KNOWN_LOGINS if k.user_id == xrozen.BOTH_HASHES_ID and k.current]
        assert [k.table for k in current] == ["public.profiles"]


def test_account_state_quirk_sets(fx: XrozenFixture) -> None:
    with psycopg.connect(fx.dsn) as conn:
        assert _ids(conn, "SELECT id FROM auth.users WHERE deleted_at IS NOT NULL") == xrozen.SOFT_DELETED_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE email IS NULL") == xrozen.NULL_EMAIL_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE email IS NULL AND phone IS NOT NULL") == \
            xrozen.PHONE_ONLY_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE is_anonymous") == xrozen.ANONYMOUS_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE is_sso_user") == xrozen.SSO_USER_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE banned_until > now()") == xrozen.BANNED_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE invited_at IS NOT NULL") == xrozen.INVITED_IDS
        assert _ids(conn, "SELECT u.id FROM auth.users u JOIN auth.users v ON lower(u.email) = lower(v.email)"
                          " AND u.id <> v.id") == xrozen.CASE_DUPLICATE_EMAIL_IDS
        assert _ids(conn, "SELECT id FROM auth.users WHERE confirmed_at IS NOT NULL AND email IS NULL") == \
            xrozen.PHONE_ONLY_IDS
        meta = conn.execute("SELECT raw_user_meta_data->>'full_name', raw_user_meta_data->>'user_category'"
                            " FROM auth.users WHERE id = %s", (xrozen.ALICE,)).fetchone()
        assert meta == ("Alice Editor", "editor")
        assert _ids(conn, "SELECT id FROM auth.users WHERE raw_user_meta_data->>'full_name' IS NULL") == \
            xrozen.NO_META_FULL_NAME_IDS

def test_orphans_and_self_reference(fx: XrozenFixture) -> None:
    orphan = "SELECT id FROM public.{} c WHERE c.project_id IS NOT NULL AND NOT EXISTS" \
             " (SELECT 1 FROM public.projects p WHERE p.id = c.project_id)"
    with psycopg.connect(fx.dsn) as conn:
        assert _ids(conn, orphan.format("project_clients")) == xrozen.ORPHAN_PROJECT_CLIENT_IDS
        assert _ids(conn, orphan.format("video_versions")) == xrozen.ORPHAN_VIDEO_VERSION_IDS
        assert _ids(conn, orphan.format("payments")) == xrozen.ORPHAN_PAYMENT_IDS
        assert _ids(conn, orphan.format("messages")) == xrozen.ORPHAN_MESSAGE_IDS
        assert _ids(conn, "SELECT project_id FROM public.messages WHERE project_id IS NOT NULL UNION"
                          " SELECT project_id FROM public.project_clients UNION"
                          " SELECT project_id FROM public.video_versions UNION"
                          " SELECT project_id FROM public.payments WHERE project_id IS NOT NULL"
                          " EXCEPT SELECT id FROM public.projects") == xrozen.MISSING_PROJECT_IDS
        assert conn.execute("SELECT parent_project_id::text, is_subproject FROM public.projects WHERE id = %s",
                            (xrozen.SUBPROJECT_ID,)).fetchone() == (xrozen.PARENT_PROJECT_ID, True)
        assert _ids(conn, "SELECT p.id FROM public.projects p JOIN auth.users u ON u.id = p.creator_id"
                          " WHERE u.deleted_at IS NOT NULL") == xrozen.PROJECTS_BY_SOFT_DELETED_IDS


def test_values_with_cents_dates_text_and_json(fx: XrozenFixture) -> None:
    with psycopg.connect(fx.dsn) as conn:
        amounts: dict[str, str] = dict(conn.execute("SELECT id::text, amount::text FROM public.payments").fetchall())
        assert amounts == xrozen.PAYMENT_AMOUNTS
        assert conn.execute("SELECT content FROM public.messages WHERE id = %s",
                            (xrozen.SPECIAL_MESSAGE_ID,)).fetchone() == (xrozen.SPECIAL_TEXT,)
        assert conn.execute("SELECT count(*) FILTER (WHERE deadline IS NULL), count(*) FILTER"
                            " (WHERE assigned_date IS NULL) FROM public.projects").fetchone() == (3, 3)
        assert conn.execute("SELECT total::text FROM public.invoices ORDER BY id").fetchall() == \
            [("1234.50",), ("0.10",), ("10.00",)]
        assert conn.execute("SELECT config->'pool'->>'ratio' FROM public.database_config"
                            " WHERE provider = 'supabase'").fetchone() == ("0.1",)
        assert conn.execute("SELECT count(*) FROM public.api_keys WHERE key LIKE 'sk\\_live\\_%'").fetchone() == (1,)


def test_loads_are_deterministic_and_messages_scale(pg_admin_dsn: str) -> None:
    from tests.support.postgres import throwaway_database

    def one(conn: psycopg.Connection[Any], query: str) -> Any:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]

    loads: list[tuple[Any, ...]] = []
    for _ in range(2):
        with throwaway_database(pg_admin_dsn) as dsn:
            load_xrozen_fixture(dsn, messages=60000, bulk_users=5)
            with psycopg.connect(dsn) as conn:
                loads.append((
                    one(conn, "SELECT md5(string_agg(m::text, '|' ORDER BY id)) FROM public.messages m"),
                    one(conn, "SELECT md5(string_agg(u::text, '|' ORDER BY id)) FROM auth.users u"),
                    one(conn, "SELECT count(*) FROM public.messages"),
                ))
    assert loads[0] == loads[1]
    assert loads[0][2] == 60000

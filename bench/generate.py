"""An xrozen-shaped Supabase source in Postgres at any size, generated server-side in seconds.

Every row is made by `INSERT ... SELECT generate_series` so generation costs Postgres time, not
Python time, and the same size always yields the same data (ids are md5 of a table letter and a row
number, texts are picked by arithmetic on the row number), which keeps benchmark runs comparable.
The schema is the test fixture's (tests/fixtures/xrozen_supabase.sql) plus one bench-only `tags
text[]` column on projects, which the bench config drops, so arrays are extracted but not loaded.
A small share of rows carries the quirks the real data has (users without a hash, an 'admin' role,
soft-deleted users, profile-only users, orphan project ids), so the transform's reject paths run too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_SCHEMA = ROOT / "tests" / "fixtures" / "xrozen_supabase.sql"

# Rows per table at 1M total; everything scales linearly with --rows.
PER_MILLION: dict[str, int] = {
    "auth.users": 40_000,
    "public.profiles": 40_000,          # + 1% profile-only users on top
    "public.user_roles": 40_000,
    "public.editors": 5_000,
    "public.clients": 5_000,
    "public.projects": 60_000,
    "public.project_clients": 15_000,
    "public.video_versions": 20_000,
    "public.payments": 15_000,
    "public.messages": 760_000,
}

# Multilingual words for message and description text (100-300 characters, many scripts).
WORDS = (
    "cut", "render", "colour", "grade", "timeline", "export", "proxy", "footage", "deadline", "client",
    "montage", "Schnitt", "Farbkorrektur", "Übergang", "fertig", "révision", "séquence", "étalonnage",
    "montaje", "edición", "corrección", "versión", "rápido", "монтаж", "цветокоррекция", "готово",
    "версия", "клиент", "編集", "カラー", "納品", "修正", "映像", "剪辑", "调色", "交付", "版本", "客户",
    "편집", "색보정", "마감", "μοντάζ", "χρώμα", "παράδοση", "مونتاج", "تصحيح", "نسخة", "עריכה", "צבע",
    "संपादन", "रंग", "समय", "ตัดต่อ", "สี", "🎬", "✂️", "🎞️", "✅", "🔥", "ok", "v2", "final", "approved",
    "please", "check", "the", "new", "cut", "at", "00:01:23", "and", "let", "me", "know", "thanks",
)
FRAGMENTS = 4096


@dataclass(frozen=True)
class Sizes:
    users: int
    profiles: int
    profile_only: int
    user_roles: int
    editors: int
    clients: int
    projects: int
    project_clients: int
    video_versions: int
    payments: int
    messages: int

    @classmethod
    def for_rows(cls, rows: int) -> Sizes:
        s = rows / 1_000_000

        def n(key: str, minimum: int = 10) -> int:
            return max(minimum, round(PER_MILLION[key] * s))

        users = n("auth.users", 100)
        projects = n("public.projects", 100)
        return cls(
            users=users, profiles=users, profile_only=max(1, users // 100), user_roles=users,
            editors=n("public.editors"), clients=n("public.clients"), projects=projects,
            project_clients=min(n("public.project_clients"), projects),
            video_versions=n("public.video_versions"), payments=n("public.payments"),
            messages=n("public.messages", 1000),
        )

    @property
    def total(self) -> int:
        return (self.users + self.profiles + self.profile_only + self.user_roles + self.editors + self.clients
                + 20 + self.projects + self.project_clients + self.video_versions + self.payments
                + self.messages + 3)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _uid(letter: str, expr: str) -> str:
    """A deterministic uuid for row `expr` of the table named by `letter`."""
    return f"md5('{letter}' || ({expr})::text)::uuid"


def _text(expr: str, a: int, b: int) -> str:
    """Two fragments picked by arithmetic on `expr`, plus a row marker: unique-ish, 100-300 chars."""
    return (f"(SELECT f1.t || ' ' || f2.t FROM bench_fragments f1, bench_fragments f2 "
            f"WHERE f1.n = (({expr}) * {a}) % {FRAGMENTS} AND f2.n = (({expr}) * {b} + 7) % {FRAGMENTS})"
            f" || ' #' || ({expr})::text")


def _bcrypt(expr: str) -> str:
    """A bcrypt-shaped hash: $2a$10$ plus 53 characters of [./A-Za-z0-9]."""
    return (f"'$2a$10$' || substr(translate(encode(extensions.digest(({expr})::text, 'sha512'), 'base64'),"
            f" '+', '.'), 1, 53)")


def statements(z: Sizes) -> list[str]:
    """The data statements for sizes z, in an order that respects the source's foreign keys."""
    words = "ARRAY[" + ", ".join("'" + w.replace("'", "''") + "'" for w in WORDS) + "]"
    nw = len(WORDS)
    t0 = "timestamptz '2023-01-01 00:00:00+00'"
    u_all = z.users + z.profile_only
    return [
        "SELECT setseed(0.42)",
        # 4096 fragments of 50-150 characters, deterministic.
        f"""CREATE TEMP TABLE bench_fragments AS
            SELECT n, substr(array_to_string(ARRAY(
                SELECT ({words})[1 + ((n * 31 + k * 17 + (n * k) % 13) % {nw})] FROM generate_series(1, 40) k
              ), ' '), 1, 50 + (n * 37) % 101) AS t
            FROM generate_series(0, {FRAGMENTS - 1}) n""",
        "CREATE INDEX ON bench_fragments (n)",
        "ANALYZE bench_fragments",
        # auth.users: 1% without a hash (rejected), 0.5% soft-deleted (filtered), 0.2% SSO.
        f"""INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
              raw_app_meta_data, raw_user_meta_data, is_super_admin, created_at, updated_at, last_sign_in_at,
              is_sso_user, deleted_at, is_anonymous, confirmation_token, recovery_token, email_change_token_new,
              email_change)
            SELECT '00000000-0000-0000-0000-000000000000', {_uid('u', 'i')}, 'authenticated', 'authenticated',
              'user' || i || '@bench.example',
              CASE WHEN i % 100 = 7 THEN '' ELSE {_bcrypt('i')} END,
              {t0} + i * interval '61 seconds',
              '{{"provider": "email", "providers": ["email"]}}'::jsonb,
              jsonb_build_object('full_name', 'Bench User ' || i || ' ' || ({words})[1 + i % {nw}],
                                 'user_category', (ARRAY['editor', 'client', 'agency'])[1 + i % 3],
                                 'email_verified', true, 'sub', {_uid('u', 'i')}::text),
              false, {t0} + i * interval '60 seconds' + (i % 997) * interval '1 microsecond',
              {t0} + i * interval '90 seconds', CASE WHEN i % 3 = 0 THEN NULL ELSE {t0} + i * interval '2 minutes' END,
              i % 500 = 11, CASE WHEN i % 200 = 13 THEN {t0} + interval '400 days' END, false, '', '', '', ''
            FROM generate_series(1, {z.users}) i""",
        # profiles: one per auth user plus 1% profile-only users with the app's own bcrypt hash.
        f"""INSERT INTO public.profiles (id, email, full_name, avatar_url, user_category, subscription_tier,
              subscription_active, trial_end_date, subscription_start_date, password_hash, created_at, updated_at)
            SELECT {_uid('u', 'i')}, 'user' || i || '@bench.example', 'Bench User ' || i,
              CASE WHEN i % 4 = 0 THEN 'https://cdn.bench.example/a/' || i || '.png' END,
              (ARRAY['editor', 'client', 'agency'])[1 + i % 3]::public.user_category,
              (ARRAY['basic', 'pro', 'premium'])[1 + i % 3]::public.subscription_tier,
              i % 5 <> 0, CASE WHEN i % 2 = 0 THEN {t0} + i * interval '1 hour' END,
              {t0} + i * interval '30 minutes',
              CASE WHEN i > {z.users} THEN '$2b$12$' || substr(translate(encode(extensions.digest(i::text, 'sha512'),
                'base64'), '+', '.'), 1, 53) END,
              {t0} + i * interval '60 seconds', {t0} + i * interval '75 seconds'
            FROM generate_series(1, {u_all}) i""",
        # user_roles: one per user; 0.5% 'admin' (rejected by the config's enum_map).
        f"""INSERT INTO public.user_roles (id, user_id, role, created_at)
            SELECT {_uid('r', 'i')}, {_uid('u', 'i')},
              CASE WHEN i % 200 = 3 THEN 'admin' ELSE (ARRAY['editor', 'client', 'agency'])[1 + i % 3] END
                ::public.app_role,
              {t0} + i * interval '60 seconds'
            FROM generate_series(1, {z.users}) i""",
        f"""INSERT INTO public.editors (id, user_id, full_name, email, specialty, employment_type, hourly_rate,
              monthly_salary, created_at, updated_at)
            SELECT {_uid('e', 'i')}, CASE WHEN i % 10 <> 0 THEN {_uid('u', f'1 + (i * 13) % {z.users}')} END,
              'Editor ' || i, 'editor' || i || '@bench.example',
              (ARRAY['colour', 'motion', 'documentary', 'music video', NULL])[1 + i % 5],
              (ARRAY['fulltime', 'freelance'])[1 + i % 2]::public.employment_type,
              round((20 + (i % 8000) / 100.0)::numeric, 2), CASE WHEN i % 2 = 0 THEN 3000 + (i % 500) END,
              {t0} + i * interval '5 minutes', CASE WHEN i % 7 <> 0 THEN {t0} + i * interval '6 minutes' END
            FROM generate_series(1, {z.editors}) i""",
        f"""INSERT INTO public.clients (id, user_id, full_name, email, company, employment_type, project_rate,
              monthly_rate, created_at, updated_at)
            SELECT {_uid('c', 'i')}, CASE WHEN i % 10 <> 0 THEN {_uid('u', f'1 + (i * 17) % {z.users}')} END,
              'Client ' || i, 'client' || i || '@bench.example', 'Studio ' || (i % 997),
              (ARRAY['fulltime', 'freelance'])[1 + i % 2]::public.employment_type,
              round((500 + (i % 100000) / 100.0)::numeric, 2), NULL,
              {t0} + i * interval '5 minutes', {t0} + i * interval '7 minutes'
            FROM generate_series(1, {z.clients}) i""",
        f"""INSERT INTO public.project_types (id, name, created_at)
            SELECT {_uid('t', 'i')}, 'type ' || i, {t0} FROM generate_series(1, 20) i""",
        "ALTER TABLE public.projects ADD COLUMN tags text[]",
        # projects: 10% subprojects of an earlier project; dates, numeric fee, text[] tags.
        f"""INSERT INTO public.projects (id, name, description, project_type, editor_id, client_id, creator_id,
              raw_footage_link, assigned_date, deadline, fee, status, parent_project_id, is_subproject,
              invoice_id, created_at, updated_at, tags)
            SELECT {_uid('p', 'i')}, 'Project ' || i, {_text('i', 3, 5)}, 'type ' || (1 + i % 20),
              {_uid('e', f'1 + i % {z.editors}')}, {_uid('c', f'1 + i % {z.clients}')},
              {_uid('u', f'1 + (i * 7) % {z.users}')},
              'https://drive.bench.example/f/' || i, date '2023-01-01' + (i % 700),
              CASE WHEN i % 3 <> 0 THEN date '2023-02-01' + (i % 900) END,
              round((100 + (i::bigint * 7919 % 1000000) / 100.0)::numeric, 2),
              (ARRAY['draft', 'in_review', 'approved', 'completed'])[1 + i % 4],
              CASE WHEN i % 10 = 0 AND i > 10 THEN {_uid('p', 'i - 1 - i % 9')} END, i % 10 = 0 AND i > 10,
              CASE WHEN i % 50 = 0 THEN {_uid('i', 'i')} END,
              {t0} + i * interval '10 minutes', {t0} + i * interval '11 minutes',
              ARRAY[({words})[1 + i % {nw}], ({words})[1 + (i * 3) % {nw}], 'tag "' || (i % 10) || '"']
            FROM generate_series(1, {z.projects}) i""",
        # Child tables: 0.5% orphan project ids (the app's lost foreign keys).
        f"""INSERT INTO public.project_clients (id, project_id, client_id, created_at)
            SELECT {_uid('pc', 'i')},
              CASE WHEN i % 200 = 5 THEN {_uid('x', 'i')} ELSE {_uid('p', 'i')} END,
              {_uid('u', f'1 + (i * 11) % {z.users}')}, {t0} + i * interval '9 minutes'
            FROM generate_series(1, {z.project_clients}) i""",
        f"""INSERT INTO public.video_versions (id, project_id, version_number, preview_url, final_url, is_approved,
              correction_notes, uploaded_by, approval_status, final_link_requested, created_at, updated_at)
            SELECT {_uid('v', 'i')},
              CASE WHEN i % 200 = 5 THEN {_uid('x', 'i')} ELSE {_uid('p', f'1 + i % {z.projects}')} END,
              1 + i % 5, 'https://preview.bench.example/' || i, CASE WHEN i % 3 = 0 THEN 'https://final/' || i END,
              i % 3 = 0, CASE WHEN i % 4 = 1 THEN {_text('i', 11, 13)} END,
              {_uid('u', f'1 + (i * 19) % {z.users}')},
              (ARRAY['pending', 'approved', 'rejected', 'corrections_needed'])[1 + i % 4]::public.approval_status,
              i % 2 = 0, {t0} + i * interval '8 minutes', {t0} + i * interval '9 minutes'
            FROM generate_series(1, {z.video_versions}) i""",
        f"""INSERT INTO public.payments (id, project_id, payer_id, recipient_id, amount, payment_type, status,
              invoice_url, due_date, paid_date, created_at, updated_at)
            SELECT {_uid('pay', 'i')},
              CASE WHEN i % 200 = 5 THEN {_uid('x', 'i')} ELSE {_uid('p', f'1 + i % {z.projects}')} END,
              {_uid('u', f'1 + (i * 23) % {z.users}')}, {_uid('u', f'1 + (i * 29) % {z.users}')},
              round((50 + (i::bigint * 104729 % 5000000) / 100.0)::numeric, 2),
              (ARRAY['freelance', 'fulltime'])[1 + i % 2]::public.payment_type,
              (ARRAY['pending', 'paid', 'overdue'])[1 + i % 3]::public.payment_status,
              'https://invoices.bench.example/' || i, date '2023-03-01' + (i % 600),
              CASE WHEN i % 3 = 1 THEN {t0} + i * interval '13 minutes' END,
              {t0} + i * interval '12 minutes', {t0} + i * interval '14 minutes'
            FROM generate_series(1, {z.payments}) i""",
        f"""INSERT INTO public.messages (id, project_id, sender_id, recipient_id, content, is_read, created_at)
            SELECT {_uid('m', 'i')},
              CASE WHEN i % 200 = 5 THEN {_uid('x', 'i')} ELSE {_uid('p', f'1 + (i * 7) % {z.projects}')} END,
              {_uid('u', f'1 + (i * 31) % {z.users}')},
              CASE WHEN i % 20 <> 0 THEN {_uid('u', f'1 + (i * 37) % {z.users}')} END,
              {_text('i', 7, 9)}, i % 3 <> 0,
              {t0} + i * interval '17 seconds' + (i % 999983) * interval '1 microsecond'
            FROM generate_series(1, {z.messages}) i""",
        f"""INSERT INTO public.database_config (id, provider, config, is_active)
            VALUES ({_uid('d', '1')}, 'supabase', '{{"url": "https://x.supabase.co", "pool": 10}}', true),
                   ({_uid('d', '2')}, 'sqlite', '{{"path": "/data/xrozen.db"}}', false),
                   ({_uid('d', '3')}, NULL, '{{}}', false)""",
        "ANALYZE",
    ]


def create_database(admin_dsn: str, name: str) -> str:
    """(Re)create database `name` on the server of admin_dsn; return its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlsplit(admin_dsn)._replace(path="/" + name).geturl()


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def generate(dsn: str, rows: int) -> dict[str, Any]:
    """Fill the (empty) database at dsn with about `rows` xrozen-shaped rows; return the sizes."""
    z = Sizes.for_rows(rows)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FIXTURE_SCHEMA.read_text())
        with conn.transaction():
            for stmt in statements(z):
                conn.execute(stmt)
    return {"sizes": z.as_dict(), "total": z.total}


def table_counts(dsn: str) -> dict[str, int]:
    """Exact row counts of the tables the bench migrates."""
    out: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for qualified in (*PER_MILLION, "public.project_types", "public.database_config"):
            schema, name = qualified.split(".")
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
            out[qualified] = int(row[0]) if row else 0
    return out

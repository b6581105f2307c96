#!/usr/bin/env python3
"""Regenerate `examples/xrozen-demo.sql`, the demo dump `config.yaml` migrates by default.

The demo must be a real `pg_dump` of a real database, not a hand-written imitation: the dump source
is only worth showing if it reads what PostgreSQL actually writes. So this script builds a throwaway
database on a running server, fills it, dumps it the way `supabase db dump` would (plain SQL,
schemas public, auth and storage, every identifier quoted), and drops the database again.

The data is the test suite's quirky Xrozen fixture (every quirk of XROZEN.md, with the same fixed ids
the tests name) plus a few thousand rows of realistic text: people, studios, projects, versions,
payments and conversations. Everything comes from one seeded random generator and fixed bcrypt salts,
so re-running gives the same rows in the same order; only pg_dump's own version header can differ
between machines.

Usage: python examples/generate_demo.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--out PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.postgres import with_database  # noqa: E402
from tests.support.xrozen import FIXED_MESSAGE_COUNT, INSTANCE_ID, load_xrozen_fixture  # noqa: E402

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUT = ROOT / "examples" / "xrozen-demo.sql"
SEED = 20240301
# Every generated (non-fixture) person who signs in with a password uses this one; documented in
# examples/README.md. Their hashes still differ: each has its own fixed salt, like real GoTrue rows.
DEMO_PASSWORD = "xrozen-demo"
# pg_dump >= 15.14 writes a random `\restrict` key into plain dumps; a fixed one keeps the file stable.
RESTRICT_KEY = "xrozenDemoRestrictKey"
DUMP_SCHEMAS = ("public", "auth", "storage")

N_PEOPLE = 120
N_OAUTH = 4  # Google sign-ins among the generated people: no password hash, so rejected with a reason
N_EXTERNAL_EDITORS = 8
N_WALKIN_CLIENTS = 6
N_PROJECTS = 320
N_MESSAGES = 2400
N_NOTIFICATIONS = 150
MISSING_PROJECTS = 4  # ids of projects lost in the app's `DROP TABLE projects CASCADE`

# The first people of the cast are pinned so the README can name them.
SHOWCASE: tuple[tuple[str, str, str], ...] = (
    ("Amara Okafor", "amara.okafor@northlight-films.example", "editor"),
    ("José Núñez", "jose.nunez@cafe-lumiere.example", "client"),
    ("Zoë Ångström", "zoe.angstrom@brightharbor.example", "agency"),
)

FIRST_NAMES = (
    "Amara", "Zoë", "José", "Łukasz", "Søren", "Ngozi", "Hiroshi", "Priya", "Mateo", "Ana", "Björn",
    "Chloé", "Dmitri", "Elif", "Fatima", "Giulia", "Hamza", "Inês", "Jae-won", "Kalani", "Lars", "Mei",
    "Nikolai", "Olumide", "Pilar", "Quentin", "Rania", "Saoirse", "Tomás", "Uma", "Valentina", "Wei",
    "Ximena", "Yusuf", "Zainab", "Émile", "Ayşe", "Kofi", "Marta", "Noor", "Aroha", "Bianca", "Ciarán",
    "Dagny", "Esperanza", "Farid", "Greta", "Hana", "Ilse", "Javier",
)
LAST_NAMES = (
    "Okafor", "Lindqvist", "Núñez", "Wójcik", "Tanaka", "Sharma", "García", "Müller", "Dubois", "Rossi",
    "Kowalski", "Yılmaz", "Haddad", "O'Connor", "Nguyễn", "Kim", "Mensah", "Silva", "Papadopoulos",
    "Ivanova", "Fischer", "Moreau", "Costa", "Bianchi", "Novak", "Eriksen", "Castillo", "Adeyemi",
    "Park", "Schmidt", "Horváth", "Jansen", "de la Cruz", "van Dijk", "Ó Briain", "Petrović",
    "Al-Sayed", "Ångström", "Søndergaard", "Çelik",
)
# Names in scripts an e-mail address cannot carry: (display name, ASCII mailbox).
OTHER_SCRIPTS = (
    ("王芳", "wang.fang"), ("佐藤 美咲", "misaki.sato"), ("Γιώργος Παπαδάκης", "giorgos.papadakis"),
    ("Анна Смирнова", "anna.smirnova"), ("김민준", "minjun.kim"), ("नेहा वर्मा", "neha.verma"),
)
MAIL_DOMAINS = (
    "mail.example", "inbox.example", "northlight-films.example", "studio-kohai.example", "reelhouse.example",
    "posteo.example", "fastmail.example",
)
COMPANY_A = (
    "Nordlys", "Bright Harbor", "Café Lumière", "Studio Kōhai", "Blue Fern", "Maple & Finch", "Solstice",
    "Atlas", "Kestrel", "Oaktide", "Piña", "Vela", "Hanami", "Fjord", "Cobalt", "Mistral", "Ember", "Tessera",
)
COMPANY_B = (
    "Coffee", "Realty", "Records", "Outdoor Co.", "Bakery", "Fitness", "Architects", "Wines", "Apparel",
    "Foundation", "Dental", "Hotels", "Bikes", "Ceramics", "Skincare", "Theatre", "Robotics",
)
SPECIALTIES = (
    "Weddings", "Color grading", "Motion graphics", "Documentary", "Music videos", "Sound design",
    "Short-form social", "Corporate", "Drone footage", "VFX compositing", None,
)
EXTRA_PROJECT_TYPES = (
    "Corporate", "Event Highlights", "Real Estate Tour", "YouTube Series", "Short Film", "Social Media Ad",
    "Podcast Video",
)
ALL_PROJECT_TYPES = ("Wedding", "Commercial", "Music Video", "Documentary", "Vidéo d’entreprise",
                     *EXTRA_PROJECT_TYPES)
SEASONS = ("Spring", "Summer", "Autumn", "Winter")
CITIES = ("Lisbon", "Oslo", "Kyoto", "Lagos", "Montréal", "São Paulo", "Kraków", "Reykjavík", "Istanbul",
          "Melbourne", "Cape Town", "Zürich")
TOPICS = ("the first harvest", "building in public", "a year on the road", "night markets", "slow coffee",
          "the last ferry", "small-batch ceramics", "mountain rescue", "late-night radio", "the new studio")
PROJECT_TITLES = (
    "{season} Wedding — {a} & {b}",
    "{company} brand launch teaser",
    "{company} product demo v{n}",
    "Behind the scenes at {company}",
    "Episode {n}: {topic}",
    "{city} real-estate tour — {street}",
    "{company} — 15s social cut",
    "{city} marathon highlights {year}",
    "Short film: “{topic_title}”",
    "{company} annual gala recap",
)
STREETS = ("Rua das Flores 12", "Storgata 5", "Karasuma-dōri 88", "Allen Avenue 3", "Rue Saint-Denis 410",
           "Avenida Paulista 1578", "ul. Floriańska 21", "Laugavegur 44")
DESCRIPTIONS = (
    "Client wants a warm, filmic look. Keep the speeches short.",
    "Deliver 16:9 master plus 9:16 and 1:1 cutdowns.",
    "Raw footage is on the shared drive; audio synced in the second folder.",
    "Music licensed from the client's library — check the cue sheet before export.",
    "Two-camera shoot, 4K 25p. Logo animation supplied by their agency.",
    "Rough cut first, then a colour pass. Subtitles in English and Português.",
    "Budget is tight: one round of corrections included, extra rounds billed hourly.",
    "Use the grade from last year's film as a reference (LUT attached).",
    None,
)
MESSAGES = (
    "Hi {name}, the first cut is up — let me know what you think!",
    "Could we trim the intro? It feels a bit long before the logo.",
    "Love it 😍 just one note on the colour in the second scene.",
    "Uploaded v{v} with the new music. The fade at 01:32 is smoother now.",
    "Can you send the raw footage link again? The old one expired.",
    "Payment sent 👍 thanks for the quick turnaround.",
    "Quick question: do we have the rights to the drone shots?",
    "The client asked for subtitles — English and Español, please.",
    "Merci ! C'est parfait, on valide cette version.",
    "Obrigado! Só falta ajustar o volume da narração.",
    "Danke, sieht super aus. Können wir das Logo etwas größer machen?",
    "ありがとうございます！ 修正版を確認しました。",
    "Looks great 👍🏽 — ship it! 🚀",
    "Deadline moved to {deadline}, is that still OK for you?",
    "Here are my notes:\n1. Shorten the toast\n2. Warmer grade on the sunset\n3. Add the credits",
    "Audio levels are a bit hot at the end — can you bring them down ~3 dB?",
    "Sorry for the delay, was on set all week 🎬",
    "Final export is rendering now, ETA 20 minutes.",
    "Can we hop on a call tomorrow at 10:00 to go through the corrections?",
    "The invoice is attached. Net 14 as usual.",
    "Approved ✅ please send the final link when it's ready.",
    "Hmm, the 9:16 version crops out the bride — can we reframe?",
    "Tab-separated shot list:\tA-roll\tB-roll\tDrone",
    "Thanks {name}! 🙏",
)
CORRECTIONS = (
    "Warmer grade in the ceremony; the vows are hard to hear.",
    "Replace the track at 00:45, the client doesn't like it.",
    "Logo is too small on mobile. Please check the 9:16 export.",
    "Cut the blooper at 02:10 — keep it for the outtakes reel!",
    "Subtitles out of sync after 03:00.",
    None,
)
NOTIFICATION_TITLES = ("New message", "Version uploaded", "Payment received", "Deadline tomorrow",
                       "Corrections requested", "Version approved ✅")


def demo_uuid(kind: str, n: int) -> str:
    """Stable ids in their own namespace, so no generated row can collide with a fixture id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://xrozen.example/demo/{kind}/{n}"))


def mailbox(name: str) -> str:
    """An ASCII mailbox from a display name: e-mail addresses here stay plain ASCII."""
    table = str.maketrans({"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "ı": "i", "đ": "d"})
    plain = unicodedata.normalize("NFKD", name.translate(table)).encode("ascii", "ignore").decode()
    parts = ["".join(ch for ch in word if ch.isalnum()) for word in plain.lower().replace("-", " ").split()]
    return ".".join(p for p in parts if p)


def salt22(label: str) -> str:
    """A fixed, valid bcrypt salt: 21 free characters and a last one carrying 2 bits ('e' is valid)."""
    alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    digest = hashlib.sha256(label.encode()).digest()
    return "".join(alphabet[b % 64] for b in digest[:21]) + "e"


def gotrue_hash(password: str, label: str) -> str:
    """What Supabase Auth (Go's bcrypt) stores: `$2a$10$`, here with a salt fixed by `label`."""
    return bcrypt.hashpw(password.encode(), f"$2a$10${salt22(label)}".encode()).decode()


@dataclass
class Person:
    n: int
    id: str
    full_name: str
    email: str
    category: str
    oauth: bool
    created: datetime


def ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(sep=" ")


def money(rng: random.Random, low: float, high: float) -> str:
    return f"{rng.uniform(low, high):.2f}"


def people(rng: random.Random) -> list[Person]:
    start = datetime(2023, 6, 1, 8, 0, tzinfo=UTC)
    used: set[str] = set()
    out: list[Person] = []
    exotic = list(OTHER_SCRIPTS)
    for n in range(1, N_PEOPLE + 1):
        if n <= len(SHOWCASE):
            name, email, category = SHOWCASE[n - 1]
        else:
            if n % 17 == 0 and exotic:
                name, box = exotic.pop(0)
            else:
                name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                box = mailbox(name)
            while box in used:
                box = f"{box}{rng.randint(2, 99)}"
            email = f"{box}@{rng.choice(MAIL_DOMAINS)}"
            category = rng.choices(("editor", "client", "agency"), weights=(45, 40, 15))[0]
        used.add(email.split("@")[0])
        oauth = len(SHOWCASE) < n and n % (N_PEOPLE // N_OAUTH) == 7
        created = start + timedelta(minutes=rng.randint(0, 365 * 24 * 60), seconds=rng.randint(0, 59))
        out.append(Person(n, demo_uuid("user", n), name, email, category, oauth, created))
    return out


def hashes(cast: Sequence[Person]) -> dict[str, str]:
    """bcrypt at Supabase's cost is slow, so hash on every core (bcrypt releases the GIL)."""
    todo = [p for p in cast if not p.oauth]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        done = pool.map(lambda p: gotrue_hash(DEMO_PASSWORD, p.id), todo)
        return {p.id: h for p, h in zip(todo, done, strict=True)}


def insert(cur: psycopg.Cursor[Any], table: str, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    schema, name = table.split(".")
    cols = list(rows[0])
    stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(schema, name),
        sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        sql.SQL(", ").join(sql.Placeholder() for _ in cols),
    )
    cur.executemany(stmt, [tuple(r[c] for c in cols) for r in rows])


def auth_rows(cast: Sequence[Person], pw: dict[str, str], rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for p in cast:
        provider = "google" if p.oauth else "email"
        meta: dict[str, Any] = {"full_name": p.full_name, "user_category": p.category}
        if p.oauth:
            meta |= {"email_verified": True, "iss": "https://accounts.google.com",
                     "avatar_url": f"https://lh3.example/a/{p.n}.png"}
        signed_in = p.created + timedelta(days=rng.randint(1, 200), seconds=rng.randint(0, 86399),
                                          microseconds=rng.randint(0, 999999))
        rows.append({
            "instance_id": INSTANCE_ID, "id": p.id, "aud": "authenticated", "role": "authenticated",
            "email": p.email, "encrypted_password": "" if p.oauth else pw[p.id],
            "email_confirmed_at": ts(p.created + timedelta(minutes=3)), "confirmation_token": "",
            "confirmation_sent_at": ts(p.created), "recovery_token": "", "email_change_token_new": "",
            "email_change": "", "last_sign_in_at": ts(signed_in),
            "raw_app_meta_data": Jsonb({"provider": provider, "providers": [provider]}),
            "raw_user_meta_data": Jsonb(meta), "created_at": ts(p.created),
            "updated_at": ts(signed_in), "is_sso_user": False, "is_anonymous": False,
        })
    return rows


def identity_rows(cast: Sequence[Person]) -> list[dict[str, Any]]:
    rows = []
    for p in cast:
        provider_id = str(100000000000000000000 + p.n * 7919) if p.oauth else p.id
        rows.append({
            "provider_id": provider_id, "user_id": p.id, "provider": "google" if p.oauth else "email",
            "identity_data": Jsonb({"sub": provider_id, "email": p.email, "email_verified": True}),
            "last_sign_in_at": ts(p.created), "created_at": ts(p.created), "updated_at": ts(p.created),
            "id": demo_uuid("identity", p.n),
        })
    return rows


def profile_rows(cast: Sequence[Person], rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for p in cast:
        tier = rng.choices(("basic", "pro", "premium"), weights=(60, 30, 10))[0]
        trial = p.created + timedelta(days=14)
        rows.append({
            "id": p.id, "email": p.email, "full_name": p.full_name,
            "avatar_url": f"https://cdn.xrozen.example/avatars/{p.id}.jpg" if rng.random() < 0.6 else None,
            "user_category": p.category, "subscription_tier": tier,
            "subscription_active": rng.random() < 0.85, "trial_end_date": ts(trial),
            "subscription_start_date": ts(trial + timedelta(hours=1)) if tier != "basic" else None,
            "password_hash": None, "created_at": ts(p.created), "updated_at": ts(p.created + timedelta(days=2)),
        })
    return rows


@dataclass
class Cast:
    people: list[Person]
    editors: list[dict[str, Any]]
    clients: list[dict[str, Any]]


def editor_client_rows(cast: Sequence[Person], rng: random.Random) -> Cast:
    editors: list[dict[str, Any]] = []
    clients: list[dict[str, Any]] = []
    for p in cast:
        if p.category == "editor":
            fulltime = rng.random() < 0.3
            editors.append({
                "id": demo_uuid("editor", len(editors) + 1), "user_id": p.id, "full_name": p.full_name,
                "email": p.email, "specialty": rng.choice(SPECIALTIES),
                "employment_type": "fulltime" if fulltime else "freelance",
                "hourly_rate": None if fulltime else money(rng, 25, 140),
                "monthly_salary": money(rng, 2800, 7500) if fulltime else None,
                "created_at": ts(p.created), "updated_at": ts(p.created + timedelta(days=1)) if rng.random() < 0.8
                else None,
            })
        elif p.category == "client":
            company = f"{rng.choice(COMPANY_A)} {rng.choice(COMPANY_B)}"
            clients.append({
                "id": demo_uuid("client", len(clients) + 1), "user_id": p.id, "full_name": p.full_name,
                "email": p.email, "company": company if rng.random() < 0.85 else None,
                "employment_type": rng.choice(("freelance", "fulltime")),
                "project_rate": money(rng, 300, 9000) if rng.random() < 0.6 else None,
                "monthly_rate": money(rng, 500, 4000) if rng.random() < 0.3 else None,
                "created_at": ts(p.created), "updated_at": ts(p.created + timedelta(days=3)),
            })
    base = datetime(2023, 9, 1, 9, 0, tzinfo=UTC)
    for i in range(N_EXTERNAL_EDITORS):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        editors.append({
            "id": demo_uuid("editor", len(editors) + 1), "user_id": None, "full_name": name,
            "email": f"{mailbox(name)}@freelance.example", "specialty": rng.choice(SPECIALTIES),
            "employment_type": "freelance", "hourly_rate": money(rng, 30, 90), "monthly_salary": None,
            "created_at": ts(base + timedelta(days=11 * i)), "updated_at": None,
        })
    for i in range(N_WALKIN_CLIENTS):
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        clients.append({
            "id": demo_uuid("client", len(clients) + 1), "user_id": None, "full_name": name,
            "email": f"{mailbox(name)}@{rng.choice(MAIL_DOMAINS)}",
            "company": f"{rng.choice(COMPANY_A)} {rng.choice(COMPANY_B)}", "employment_type": "freelance",
            "project_rate": money(rng, 200, 2500), "monthly_rate": None,
            "created_at": ts(base + timedelta(days=13 * i)), "updated_at": ts(base + timedelta(days=13 * i, hours=2)),
        })
    return Cast(list(cast), editors, clients)


def project_title(rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    return rng.choice(PROJECT_TITLES).format(
        season=rng.choice(SEASONS), a=rng.choice(FIRST_NAMES), b=rng.choice(FIRST_NAMES),
        company=f"{rng.choice(COMPANY_A)} {rng.choice(COMPANY_B)}", n=rng.randint(1, 24), topic=topic,
        topic_title=topic[0].upper() + topic[1:], city=rng.choice(CITIES), street=rng.choice(STREETS),
        year=rng.choice((2023, 2024)))


def project_rows(c: Cast, rng: random.Random) -> list[dict[str, Any]]:
    creators = [p for p in c.people if not p.oauth and p.category in ("editor", "agency")]
    rows: list[dict[str, Any]] = []
    for n in range(1, N_PROJECTS + 1):
        creator = rng.choice(creators)
        created = creator.created + timedelta(days=rng.randint(1, 120), minutes=rng.randint(0, 1439))
        assigned = created.date() + timedelta(days=rng.randint(0, 5))
        parent = rng.choice(rows) if rows and rng.random() < 0.1 else None
        status = rng.choices(("draft", "in_review", "approved", "completed"), weights=(20, 30, 20, 30))[0]
        rows.append({
            "id": demo_uuid("project", n), "name": project_title(rng), "description": rng.choice(DESCRIPTIONS),
            "project_type": rng.choice(ALL_PROJECT_TYPES) if rng.random() < 0.9 else None,
            "editor_id": rng.choice(c.editors)["id"] if rng.random() < 0.85 else None,
            "client_id": rng.choice(c.clients)["id"] if rng.random() < 0.8 else None,
            "creator_id": parent["creator_id"] if parent else creator.id,
            "raw_footage_link": f"https://drive.example/f/{demo_uuid('footage', n)[:13]}?usp=sharing"
            if rng.random() < 0.7 else None,
            "assigned_date": assigned.isoformat() if rng.random() < 0.9 else None,
            "deadline": (assigned + timedelta(days=rng.randint(3, 60))).isoformat() if rng.random() < 0.85 else None,
            "fee": money(rng, 150, 12000) if rng.random() < 0.9 else None, "status": status,
            "parent_project_id": parent["id"] if parent else None, "is_subproject": parent is not None,
            "invoice_id": demo_uuid("invoice", n) if status == "completed" and rng.random() < 0.5 else None,
            "created_at": ts(created), "updated_at": ts(created + timedelta(days=rng.randint(0, 30))),
        })
    return rows


def child_rows(c: Cast, projects: Sequence[dict[str, Any]], rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    """Versions, payments, client links and conversations; a few point at projects that no longer exist."""
    by_id = {p.id: p for p in c.people}
    clients = [p for p in c.people if p.category == "client"]
    editor_users = [e["user_id"] for e in c.editors if e["user_id"]]
    missing = [demo_uuid("deleted-project", n) for n in range(1, MISSING_PROJECTS + 1)]
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "public.project_clients", "public.video_versions", "public.payments", "public.messages",
        "public.notifications")}

    def some_project(i: int) -> tuple[str, datetime]:
        if i % 97 == 13:
            return rng.choice(missing), datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
        p = rng.choice(projects)
        return p["id"], datetime.fromisoformat(p["created_at"])

    seen_pairs: set[tuple[str, str]] = set()
    for i in range(len(projects) + 40):
        pid, at = some_project(i)
        client = rng.choice(clients)
        if (pid, client.id) in seen_pairs:
            continue
        seen_pairs.add((pid, client.id))
        out["public.project_clients"].append({
            "id": demo_uuid("project-client", len(out["public.project_clients"]) + 1), "project_id": pid,
            "client_id": client.id, "created_at": ts(at + timedelta(hours=1))})

    for i, proj in enumerate(projects):
        pid, at = (proj["id"], datetime.fromisoformat(proj["created_at"])) if i % 97 != 13 else some_project(i)
        versions = rng.randint(0, 4)
        for v in range(1, versions + 1):
            last = v == versions
            approved = last and proj["status"] in ("approved", "completed")
            out["public.video_versions"].append({
                "id": demo_uuid("version", len(out["public.video_versions"]) + 1), "project_id": pid,
                "version_number": v, "preview_url": f"https://v.xrozen.example/preview/{pid[:8]}-v{v}",
                "final_url": f"https://v.xrozen.example/final/{pid[:8]}-v{v}.mp4" if approved else None,
                "is_approved": approved,
                "correction_notes": None if approved else rng.choice(CORRECTIONS),
                "uploaded_by": rng.choice(editor_users) if rng.random() < 0.9 else None,
                "approval_status": "approved" if approved else rng.choice(
                    ("pending", "rejected", "corrections_needed")),
                "final_link_requested": approved and rng.random() < 0.5,
                "created_at": ts(at + timedelta(days=3 * v)), "updated_at": ts(at + timedelta(days=3 * v, hours=5)),
            })

    for i in range(N_PROJECTS):
        pid, at = some_project(i)
        status = rng.choices(("pending", "paid", "overdue", None), weights=(30, 55, 12, 3))[0]
        due = at.date() + timedelta(days=rng.choice((14, 30, 45)))
        out["public.payments"].append({
            "id": demo_uuid("payment", i + 1), "project_id": pid,
            "payer_id": rng.choice(clients).id, "recipient_id": rng.choice(editor_users),
            "amount": money(rng, 50, 9500), "payment_type": rng.choice(("freelance", "fulltime", None)),
            "status": status, "invoice_url": f"https://pay.xrozen.example/inv/{i + 1:05d}" if rng.random() < 0.7
            else None, "due_date": due.isoformat(),
            "paid_date": ts(datetime.combine(due, datetime.min.time(), UTC) - timedelta(
                days=rng.randint(0, 10), seconds=rng.randint(0, 86399))) if status == "paid" else None,
            "created_at": ts(at + timedelta(days=2)), "updated_at": ts(at + timedelta(days=5)),
        })

    start = datetime(2024, 1, 2, 8, 0, tzinfo=UTC)
    talkers = [p for p in c.people if p.n % 29 != 5]  # a few people never write
    for i in range(N_MESSAGES):
        sender = rng.choice(talkers)
        other = rng.choice(talkers)
        msg_project = None if i % 41 == 0 else some_project(i)[0]
        text = rng.choice(MESSAGES).format(
            name=other.full_name.split()[0], v=rng.randint(2, 6),
            deadline=(date(2024, 3, 1) + timedelta(days=rng.randint(0, 120))).isoformat())
        out["public.messages"].append({
            "id": demo_uuid("message", i + 1), "project_id": msg_project, "sender_id": sender.id,
            "recipient_id": None if i % 53 == 0 else other.id, "content": text, "is_read": rng.random() < 0.7,
            "created_at": ts(start + timedelta(seconds=i * 5400 + rng.randint(0, 3000),
                                               microseconds=rng.randint(0, 999999))),
        })

    for i in range(N_NOTIFICATIONS):
        who = rng.choice(c.people)
        out["public.notifications"].append({
            "id": demo_uuid("notification", i + 1), "user_id": who.id, "title": rng.choice(NOTIFICATION_TITLES),
            "body": f"{by_id[rng.choice(c.people).id].full_name} updated a project" if rng.random() < 0.8 else None,
            "is_read": rng.random() < 0.5, "created_at": ts(start + timedelta(hours=7 * i)),
        })
    return out


def fill(dsn: str) -> None:
    rng = random.Random(SEED)
    cast = people(rng)
    pw = hashes(cast)
    c = editor_client_rows(cast, rng)
    projects = project_rows(c, rng)
    children = child_rows(c, projects, rng)
    roles = [{"id": demo_uuid("role", p.n), "user_id": p.id, "role": p.category,
              "created_at": ts(p.created)} for p in cast]
    # The app added an admin role later; a few staff got it and the target has no place for it.
    roles += [{"id": demo_uuid("role", 1000 + p.n), "user_id": p.id, "role": "admin",
               "created_at": ts(p.created + timedelta(days=30))} for p in cast if p.n in (1, 42)]
    types = [{"id": demo_uuid("project-type", i + 1), "name": name,
              "created_at": ts(datetime(2023, 6, 1, tzinfo=UTC) + timedelta(days=i))}
             for i, name in enumerate(EXTRA_PROJECT_TYPES)]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        insert(cur, "auth.users", auth_rows(cast, pw, rng))
        insert(cur, "auth.identities", identity_rows(cast))
        insert(cur, "public.profiles", profile_rows(cast, rng))
        insert(cur, "public.user_roles", roles)
        insert(cur, "public.editors", c.editors)
        insert(cur, "public.clients", c.clients)
        insert(cur, "public.project_types", types)
        insert(cur, "public.projects", projects)  # parents always precede their subprojects
        for table, rows in children.items():
            insert(cur, table, rows)
        conn.commit()


@contextmanager
def scratch_database(admin_dsn: str) -> Iterator[str]:
    """A UTF-8, C-collation database of our own, dropped afterwards whatever happens."""
    name = f"xrozen_demo_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
                     .format(sql.Identifier(name)))
    try:
        yield with_database(admin_dsn, name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pg_dump_command(dsn: str, out: Path) -> list[str]:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise SystemExit("pg_dump is not on PATH: install the PostgreSQL client tools to regenerate the demo")
    help_text = subprocess.run([pg_dump, "--help"], capture_output=True, text=True, check=True).stdout
    cmd = [pg_dump, "--format=plain", "--quote-all-identifiers", "--encoding=UTF8", f"--file={out}"]
    cmd += [f"--schema={s}" for s in DUMP_SCHEMAS]
    if "--restrict-key" in help_text:
        cmd.append(f"--restrict-key={RESTRICT_KEY}")
    return [*cmd, dsn]


def generate(admin_dsn: str = DEFAULT_DSN, out: Path = DEFAULT_OUT) -> Path:
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with scratch_database(admin_dsn) as dsn:
        load_xrozen_fixture(dsn, messages=FIXED_MESSAGE_COUNT, bulk_users=0)
        fill(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
        # Timestamps print in the dumping session's zone: pin it so the file is the same everywhere.
        env = {**os.environ, "PGTZ": "UTC", "PGDATESTYLE": "ISO, MDY"}
        subprocess.run(pg_dump_command(dsn, tmp), check=True, env=env)
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN of a PostgreSQL server (a scratch database "
                    "is created and dropped on it)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the plain dump")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = generate(args.dsn, args.out)
    print(f"wrote {path} ({path.stat().st_size:,} bytes) in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

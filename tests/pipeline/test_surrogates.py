"""Issue 8: integer surrogate keys for uuid primary keys (auto_schema.surrogate_keys).

A Supabase-style schema (uuid keys everywhere, a nullable self reference, a nullable and a required
reference, an orphan, a parent filtered out) goes through a real run with surrogate keys on. The
SQLite tables must be rowid tables with INTEGER keys and references, every reference must join to
the same parent row it did in Postgres (checked through the kept uuid columns), the keys must be the
rows' positions in primary-key order, and a run killed mid-transform and resumed must give the very
same integers.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from pipeline.autoschema import plan_ddl
from pipeline.config import load_config
from pipeline.plan import build_plan
from pipeline.runner import RunOutcome, run
from pipeline.runs import Manifest, RunDir
from pipeline.sources.base import Column, ForeignKey, TableInfo
from pipeline.surrogates import KeyMap
from pipeline.target import TargetSchema, load_target_schema
from pipeline.transform import TransformContext, extract_batches, load_table_info
from tests.support.postgres import throwaway_database

SUPAMIGRATE = Path(sys.executable).parent / "supamigrate"

SCHEMA = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
CREATE TABLE public.profiles (
  id uuid PRIMARY KEY,
  handle text NOT NULL UNIQUE,
  referred_by uuid REFERENCES public.profiles(id),
  user_id uuid REFERENCES auth.users(id)
);
CREATE TABLE public.posts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  author_id uuid NOT NULL REFERENCES public.profiles(id),
  editor_id uuid REFERENCES public.profiles(id),
  title text NOT NULL,
  UNIQUE (author_id, title)
);
CREATE TABLE public.comments (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  post_id uuid NOT NULL REFERENCES public.posts(id),
  author_id uuid REFERENCES public.profiles(id),
  parent_id uuid REFERENCES public.comments(id),
  body text
);
INSERT INTO public.profiles (id, handle) SELECT gen_random_uuid(), 'user' || g FROM generate_series(1, 30) g;
-- a referral tree (user n was referred by user n/2); uuid order is random, so many point at a later batch
UPDATE public.profiles p SET referred_by = q.id FROM public.profiles q
  WHERE q.handle = 'user' || (substr(p.handle, 5)::int / 2);
UPDATE public.profiles SET handle = 'banned' WHERE handle = 'user7';
INSERT INTO public.posts (author_id, editor_id, title)
  SELECT (SELECT id FROM public.profiles ORDER BY handle OFFSET g % 30 LIMIT 1),
         CASE WHEN g % 3 = 0 THEN NULL ELSE (SELECT id FROM public.profiles ORDER BY handle OFFSET (g * 5) % 30 LIMIT 1)
         END, 'post ' || g
  FROM generate_series(1, 60) g;
INSERT INTO public.comments (post_id, author_id, body)
  SELECT (SELECT id FROM public.posts ORDER BY title OFFSET g % 60 LIMIT 1),
         CASE WHEN g % 4 = 0 THEN NULL ELSE (SELECT id FROM public.profiles ORDER BY handle OFFSET g % 30 LIMIT 1)
         END, 'comment ' || g
  FROM generate_series(1, 150) g;
UPDATE public.comments c SET parent_id = (SELECT id FROM public.comments d WHERE d.body = 'comment ' || (1 + g % 150))
  FROM (SELECT id, substr(body, 9)::int AS g FROM public.comments) x WHERE x.id = c.id AND x.g % 3 <> 0;
-- orphans Postgres would refuse: a comment on a post that does not exist, an editor that does not exist
SET session_replication_role = replica;
INSERT INTO public.comments (post_id, body) VALUES (gen_random_uuid(), 'orphan comment');
UPDATE public.posts SET editor_id = gen_random_uuid() WHERE title = 'post 1';
SET session_replication_role = DEFAULT;
"""

CONFIG = """source:
  uri: {dsn}
target:
  path: app.db
  migrations: migrations
run:
  batch_rows: 10
auto_schema:
  enabled: true
  surrogate_keys: true
tables:
  profiles:
    filter: [{{column: handle, op: ne, value: banned}}]
    orphans: reject
  posts:
    orphans: {{editor_id: set_null, author_id: reject}}
  comments:
    orphans: reject
"""

TABLES = ("profiles", "posts", "comments")


@pytest.fixture(scope="module")
def source(pg_admin_dsn: str) -> Iterator[str]:
    with throwaway_database(pg_admin_dsn, prefix="smsurr") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)
        yield dsn


def _project(root: Path, dsn: str) -> Path:
    (root / "migrations").mkdir(parents=True)
    cfg = root / "config.yaml"
    cfg.write_text(CONFIG.format(dsn=dsn))
    return cfg


@pytest.fixture(scope="module")
def migrated(source: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunOutcome, Path]:
    root = tmp_path_factory.mktemp("surrogates")
    outcome = run(_project(root, source), runs_dir=str(root / "runs"))
    assert outcome.status == "succeeded", outcome.report["error"]
    return outcome, root


def _dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(db)) as conn:
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY id').fetchall() for t in TABLES}


def test_keys_and_references_are_integer_rowids(migrated: tuple[RunOutcome, Path]) -> None:
    outcome, root = migrated
    db = root / "app.db"
    with closing(sqlite3.connect(db)) as conn:
        for t in TABLES:
            info = {r[1]: r for r in conn.execute(f'PRAGMA table_info("{t}")')}
            assert info["id"][2] == "INTEGER" and info["id"][5] == 1, t
            assert info["id_uuid"][2] == "TEXT" and info["id_uuid"][3] == 1, t
            # INTEGER PRIMARY KEY is the rowid itself: no separate index holds the key
            assert [r for r in conn.execute(f'PRAGMA index_list("{t}")') if r[3] == "pk"] == [], t
            assert conn.execute(f'SELECT count(*) FROM "{t}" WHERE rowid <> id').fetchone() == (0,)
        refs = {("posts", "author_id"), ("posts", "editor_id"), ("comments", "post_id"),
                ("comments", "author_id"), ("comments", "parent_id"), ("profiles", "referred_by")}
        for t, col in refs:
            decl = {r[1]: r[2] for r in conn.execute(f'PRAGMA table_info("{t}")')}
            assert decl[col] == "INTEGER", (t, col)
            kinds = {r[0] for r in conn.execute(f'SELECT DISTINCT typeof("{col}") FROM "{t}"')}
            assert kinds <= {"integer", "null"} and "integer" in kinds, (t, col)
        fks = {(t, r[3], r[2], r[4]) for t in TABLES for r in conn.execute(f'PRAGMA foreign_key_list("{t}")')}
        assert {("comments", "post_id", "posts", "id"), ("comments", "parent_id", "comments", "id"),
                ("posts", "editor_id", "profiles", "id"), ("profiles", "referred_by", "profiles", "id")} <= fks
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # the uuid still finds the row
        some = conn.execute("SELECT id, id_uuid FROM profiles ORDER BY id DESC LIMIT 1").fetchone()
        assert conn.execute("SELECT id FROM profiles WHERE id_uuid = ?", (some[1],)).fetchone() == (some[0],)
    text = (root / "migrations" / "001_auto_profiles.sql").read_text()
    assert '"id" INTEGER NOT NULL,  -- uuid (integer surrogate key' in text
    assert '"id_uuid" TEXT NOT NULL UNIQUE' in text
    assert "auth.users is not migrated" in text  # references to unmigrated tables stay uuids, left out
    assert all(c["ok"] for c in outcome.report["checks"]), [c for c in outcome.report["checks"] if not c["ok"]]
    names = {(c["name"], c["table"]) for c in outcome.report["checks"]}
    for t in TABLES:
        assert {("count_equation", t), ("content_checksum", t), ("row_count", t)} <= names


def _expected(dsn: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What should arrive, decided from Postgres alone: the filtered profile and everything hanging off it
    is rejected, the dangling editor is set NULL, the orphan comment is rejected."""
    with psycopg.connect(dsn) as pg:
        prof = {str(i): (str(r) if r else None, h) for i, r, h in pg.execute(
            "SELECT id, referred_by, handle FROM public.profiles")}
        posts = {str(i): (str(a), str(e) if e else None) for i, a, e in pg.execute(
            "SELECT id, author_id, editor_id FROM public.posts")}
        comments = {str(i): (str(p), str(a) if a else None, str(c) if c else None) for i, p, a, c in pg.execute(
            "SELECT id, post_id, author_id, parent_id FROM public.comments")}

    def ok_profile(u: str) -> bool:
        ref, handle = prof[u]
        return handle != "banned" and (ref is None or ok_profile(ref))

    def ok_comment(u: str) -> bool:
        post, author, parent = comments[u]
        return (post in want_posts and (author is None or author in want_prof)
                and (parent is None or ok_comment(parent)))

    want_prof = {u: (r,) for u, (r, _h) in prof.items() if ok_profile(u)}
    want_posts = {u: (a, e if e in want_prof else None) for u, (a, e) in posts.items() if a in want_prof}
    want_comments = {u: c for u, c in comments.items() if ok_comment(u)}
    return want_prof, want_posts, want_comments


def test_references_join_the_same_rows_as_in_postgres(source: str, migrated: tuple[RunOutcome, Path]) -> None:
    outcome, root = migrated
    want_prof, want_posts, want_comments = _expected(source)
    with closing(sqlite3.connect(root / "app.db")) as conn:
        profiles = {u: (r,) for u, r in conn.execute(
            "SELECT p.id_uuid, q.id_uuid FROM profiles p LEFT JOIN profiles q ON q.id = p.referred_by")}
        posts = {u: (a, e) for u, a, e in conn.execute(
            "SELECT p.id_uuid, a.id_uuid, e.id_uuid FROM posts p JOIN profiles a ON a.id = p.author_id "
            "LEFT JOIN profiles e ON e.id = p.editor_id")}
        comments = {u: (p, a, c) for u, p, a, c in conn.execute(
            "SELECT c.id_uuid, p.id_uuid, a.id_uuid, d.id_uuid FROM comments c JOIN posts p ON p.id = c.post_id "
            "LEFT JOIN profiles a ON a.id = c.author_id LEFT JOIN comments d ON d.id = c.parent_id")}
        keys = dict(conn.execute("SELECT id_uuid, id FROM profiles"))
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in TABLES}
    assert counts == {"profiles": len(profiles), "posts": len(posts), "comments": len(comments)}
    assert profiles == want_prof and posts == want_posts and comments == want_comments
    assert 0 < len(want_prof) < 30 and 0 < len(want_posts) < 60 and 0 < len(want_comments) < 151
    # a key is the row's position in primary-key order, so rejected rows leave gaps
    with psycopg.connect(source) as pg:
        rank = {str(i): n for i, n in pg.execute("SELECT id, row_number() OVER (ORDER BY id) FROM public.profiles")}
    assert keys == {u: rank[u] for u in keys}
    table = {t["name"]: t for t in outcome.report["tables"]}
    for t, n in (("profiles", 30), ("posts", 60), ("comments", 151)):
        assert table[t]["source_rows"] == n == table[t]["loaded"] + table[t]["rejected"] + table[t]["filtered"]
    assert table["comments"]["reject_reasons"].get("orphan:post_id") == 1
    assert table["posts"]["reject_reasons"].get("parent_rejected:author_id")
    # users 14, 15, 28, 29, 30 hang off the filtered user 7 (self references are reported as orphans)
    assert table["profiles"]["reject_reasons"] == {"orphan:referred_by": 5}
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    nulled = sum(b["notes"].get("editor_id:orphan_set_null", 0)
                 for b in manifest["transform"]["posts"]["batches"].values())
    assert nulled >= 1  # the dangling editor (and editors rejected above), kept as NULL


@pytest.mark.parametrize("kill_at", [5, 14])
def test_a_killed_transform_resumes_to_the_same_integers(
    source: str, migrated: tuple[RunOutcome, Path], tmp_path: Path, kill_at: int
) -> None:
    """SIGKILL after a committed batch of posts (5) or of comments (14: self reference, three references)."""
    _outcome, root = migrated
    cfg = _project(tmp_path, source)
    # profiles: 3 batches, posts: 6, comments: 16
    env = dict(os.environ, SUPAMIGRATE_KILL_AT=f"transform.batch:{kill_at}")
    p = subprocess.run([str(SUPAMIGRATE), "-q", "run", "--config", str(cfg)], cwd=tmp_path, env=env,
                       capture_output=True, timeout=180)
    assert p.returncode == -9, p.stderr.decode()[-2000:]
    assert not (tmp_path / "app.db").exists()
    r = subprocess.run([str(SUPAMIGRATE), "-q", "resume", "--config", str(cfg)], cwd=tmp_path,
                       capture_output=True, timeout=180)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()[-3000:]
    runs = [d for d in (tmp_path / "runs").iterdir() if d.is_dir()]
    assert len(runs) == 1  # resumed, not started over
    assert _dump(tmp_path / "app.db") == _dump(root / "app.db")


def _info(name: str, cols: list[Column], pk: tuple[str, ...], fks: tuple[ForeignKey, ...] = ()) -> TableInfo:
    return TableInfo("public", name, tuple(cols), pk, foreign_keys=fks)


def test_generation_edges(tmp_path: Path) -> None:
    """Composite references to an integer key are left out; a later child of an integer key follows it."""
    parent = _info("teams", [Column("id", "uuid", False), Column("region", "text", False)], ("id",))
    child = _info("members", [Column("id", "bigint", False), Column("team", "uuid"), Column("region", "text")],
                  ("id",), (ForeignKey(("team",), "public.teams", ("id",)),
                            ForeignKey(("team", "region"), "public.teams", ("id", "region"))))
    clash = _info("tags", [Column("id", "uuid", False), Column("id_uuid", "text")], ("id",))
    parent = TableInfo("public", "teams", parent.columns, ("id",), unique=(("id", "region"),))
    ddl = {d.name: d for d in plan_ddl([parent, child, clash], TargetSchema(), surrogate_keys=True)}
    assert '"team" INTEGER,' in ddl["members"].up
    assert "integer surrogate key, which only a single uuid column can refer to" in ddl["members"].up
    assert '"id" TEXT NOT NULL' in ddl["tags"].up and "stays a uuid" in ddl["tags"].up
    mig = tmp_path / "m"
    mig.mkdir()
    (mig / "001_auto_teams.sql").write_text(ddl["teams"].up + ddl["teams"].down)
    schema = load_target_schema(mig)
    later = _info("badges", [Column("id", "bigint", False), Column("team", "uuid")], ("id",),
                  (ForeignKey(("team",), "public.teams", ("id",)),))
    # surrogate_keys off now, but teams already has an integer key: the new reference must be INTEGER
    out = plan_ddl([later], schema, existing_sources={"public.teams": "teams"})
    assert '"team" INTEGER,' in out[0].up and 'REFERENCES "teams" ("id")' in out[0].up


def test_committed_batches_read_back_as_uuids(source: str, migrated: tuple[RunOutcome, Path]) -> None:
    """What a resume rebuilds its unique checks from: every committed batch, integers turned back to uuids."""
    outcome, root = migrated
    rd = RunDir(outcome.run_dir)
    manifest = Manifest.load(rd.manifest_path)
    config = load_config(root / "config.yaml")
    infos = [load_table_info(rd, f"public.{t}") for t in TABLES]
    plan = build_plan(config, infos, load_target_schema(root / "migrations"))
    ctx = TransformContext(rd, manifest)
    _want_prof, want_posts, want_comments = _expected(source)
    for name, want in (("posts", want_posts), ("comments", want_comments)):
        tp = plan.table(name)
        assert tp.surrogate is not None and tp.surrogate.uuid_column == "id_uuid"
        keymap = KeyMap(tp, extract_batches(rd, manifest, f"public.{name}", "part-"), ctx)
        rows: dict[str, tuple[Any, ...]] = {}
        for f in ctx.committed_files(name):
            t = keymap.uuid_space(f)
            assert "id_uuid" not in t.column_names and t.schema.field("id").type == pa.string()
            refs = ["author_id", "editor_id"] if name == "posts" else ["post_id", "author_id", "parent_id"]
            for r in t.to_pylist():
                rows[r["id"]] = tuple(r[c] for c in refs)
        assert rows == want

"""Issue 2 end to end: the quirky xrozen Supabase database through `run` into the app's SQLite schema.

Every assertion reads the real source (PostgreSQL) and the real target (SQLite) of one shared run
(see conftest.py), so a wrong conversion, a lost row or a leaked secret shows up as a mismatch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import bcrypt
import jsonschema
import psycopg
import pytest
import yaml

from pipeline.report import report_schema
from pipeline.runner import run
from tests.pipeline.conftest import CONFIG, MIGRATIONS, SOURCE_TOKENS, LiveRun
from tests.support.xrozen import (
    ADMIN_ROLE_IDS,
    ARGON2_IDS,
    CASE_DUPLICATE_EMAIL_IDS,
    KIM_UPPER,
    KNOWN_LOGINS,
    NULL_PASSWORD_USER_IDS,
    OAUTH_USER_IDS,
    ORPHAN_MESSAGE_IDS,
    ORPHAN_PAYMENT_IDS,
    ORPHAN_PROJECT_CLIENT_IDS,
    ORPHAN_VIDEO_VERSION_IDS,
    PHONE_ONLY_IDS,
    PROFILE_ONLY_NO_HASH_IDS,
    PROFILE_ONLY_WITH_HASH_IDS,
    SOFT_DELETED_IDS,
    XrozenFixture,
)

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
CENT = Decimal("0.01")
# Folders and files of a run that may hold row data; everything else must be free of secrets.
DATA_PARTS = ("extract", "transform", "rejects", "staging")


def _sqlite(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _source_rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def _migrated(live: LiveRun) -> dict[str, str]:
    """Target table -> its single source table, for the plain (non-users) tables."""
    return {t["name"]: t["source_table"] for t in live.outcome.report["tables"] if "+" not in t["source_table"]}


def _source_columns_of_type(live: LiveRun, types: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(target table, source table, column) for every migrated source column of one of these types."""
    out = []
    with closing(_sqlite(live.target)) as db:
        for tname, src in sorted(_migrated(live).items()):
            schema, name = src.split(".")
            target_cols = {r[1] for r in db.execute(f'PRAGMA table_info("{tname}")')}
            for (col,) in _source_rows(
                live.dsn,
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND "
                "table_name = %s AND data_type = ANY(%s) ORDER BY ordinal_position",
                schema, name, list(types),
            ):
                if col in target_cols:
                    out.append((tname, src, col))
    return out


def _rejects(run_dir: Path) -> Iterator[dict[str, Any]]:
    for p in sorted((run_dir / "rejects").glob("*/*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def _rejects_by_key(live: LiveRun, table: str) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in _rejects(live.run_dir) if r["table"] == table}


def _ids(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[0] for r in db.execute(f'SELECT id FROM "{table}"')}


# -- counts -----------------------------------------------------------------------------------------


def test_count_equation_holds_per_table_and_matches_source_and_target(live_run: LiveRun) -> None:
    report = json.loads((live_run.run_dir / "report.json").read_text())
    fx: XrozenFixture = live_run.fixture
    tables = {t["name"]: t for t in report["tables"]}
    assert set(tables) == {"users", "profiles", "user_roles", "editors", "clients", "project_types", "projects",
                           "project_clients", "video_versions", "messages", "payments", "database_config"}
    with closing(_sqlite(live_run.target)) as db:
        for name, t in tables.items():
            assert t["source_rows"] == t["loaded"] + t["rejected"] + t["filtered"], name
            assert db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] == t["loaded"], name
            if "+" not in t["source_table"]:
                assert t["source_rows"] == fx.row_counts[t["source_table"]], name
    # users: every auth user plus the profiles that have no auth user
    assert tables["users"]["source_rows"] == fx.row_counts["auth.users"] + 4
    assert all(c["ok"] for c in report["checks"]), [c for c in report["checks"] if not c["ok"]]


# -- logins -----------------------------------------------------------------------------------------


def test_known_passwords_verify_against_migrated_hashes(live_run: LiveRun) -> None:
    with closing(_sqlite(live_run.target)) as db:
        hashes = dict(db.execute("SELECT id, password_hash FROM users"))
    not_migrated = SOFT_DELETED_IDS | (CASE_DUPLICATE_EMAIL_IDS - {KIM_UPPER})
    checked = 0
    for k in KNOWN_LOGINS:
        if not k.current:
            continue
        if k.user_id in not_migrated:
            assert k.user_id not in hashes, k.email
            continue
        stored = hashes[k.user_id].encode()
        assert bcrypt.checkpw(k.password.encode(), stored), f"{k.email} ({k.origin} {k.prefix})"
        assert not bcrypt.checkpw((k.password + "x").encode(), stored), k.email
        assert stored.startswith(k.prefix.encode()), "hash must be copied verbatim, never re-hashed"
        checked += 1
    assert checked == 10
    stale = [k for k in KNOWN_LOGINS if not k.current]
    for k in stale:  # frank's older auth.users hash lost to his newer profiles.password_hash
        assert not bcrypt.checkpw(k.password.encode(), hashes[k.user_id].encode())


# -- types ------------------------------------------------------------------------------------------


def test_date_columns_stay_dates_and_equal_the_source(live_run: LiveRun) -> None:
    cols = _source_columns_of_type(live_run, ("date",))
    assert {(t, c) for t, _, c in cols} >= {("projects", "assigned_date"), ("projects", "deadline"),
                                            ("payments", "due_date")}
    with closing(_sqlite(live_run.target)) as db:
        for tname, src, col in cols:
            got = dict(db.execute(f'SELECT id, "{col}" FROM "{tname}"'))
            want = {str(i): v for i, v in _source_rows(live_run.dsn, f'SELECT id, "{col}"::text FROM {src}')}
            assert got, tname
            for key, value in got.items():
                assert value == want[key], (tname, col, key)
                assert value is None or DATE_RE.match(value), (tname, col, key, value)
            assert any(v is not None for v in got.values()), (tname, col)


def test_timestamp_columns_use_the_app_format_in_utc(live_run: LiveRun) -> None:
    cols = _source_columns_of_type(live_run, ("timestamp with time zone",))
    assert ("payments", "paid_date") in {(t, c) for t, _, c in cols}
    with closing(_sqlite(live_run.target)) as db:
        for tname, src, col in cols:
            want = {str(i): v for i, v in _source_rows(
                live_run.dsn, f"SELECT id, to_char(\"{col}\" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
                              f"FROM {src}")}
            for key, value in db.execute(f'SELECT id, "{col}" FROM "{tname}"'):
                assert value is None or TIMESTAMP_RE.match(value), (tname, col, key, value)
                if value is not None and want[key] is not None:
                    assert value == want[key], (tname, col, key)


def test_money_equals_the_source_numeric(live_run: LiveRun) -> None:
    cols = _source_columns_of_type(live_run, ("numeric",))
    assert {(t, c) for t, _, c in cols} >= {("projects", "fee"), ("payments", "amount"),
                                            ("editors", "hourly_rate"), ("clients", "project_rate")}
    compared = 0
    with closing(_sqlite(live_run.target)) as db:
        for tname, src, col in cols:
            want = dict(_source_rows(live_run.dsn, f'SELECT id::text, "{col}" FROM {src}'))
            for key, value in db.execute(f'SELECT id, "{col}" FROM "{tname}"'):
                if want[key] is None:
                    assert value is None, (tname, col, key)
                    continue
                assert isinstance(value, float), (tname, col, key, value)
                assert Decimal(str(value)).quantize(CENT) == want[key], (tname, col, key, value)
                compared += 1
    assert compared >= 10


def test_typeof_of_every_value_matches_the_declared_storage_class(live_run: LiveRun) -> None:
    storage = {"TEXT": "text", "INTEGER": "integer", "REAL": "real", "BLOB": "blob"}
    with closing(_sqlite(live_run.target)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND name NOT LIKE 'sqlite_%'")]
        assert "users" in tables and "payments" in tables
        for t in tables:
            for _cid, col, decl, *_ in db.execute(f'PRAGMA table_info("{t}")'):
                assert decl.upper() in storage, f"{t}.{col} is declared {decl!r}"
                bad = db.execute(f'SELECT typeof("{col}"), count(*) FROM "{t}" WHERE "{col}" IS NOT NULL '
                                 f'AND typeof("{col}") != ? GROUP BY 1', (storage[decl.upper()],)).fetchall()
                assert not bad, f"{t}.{col} ({decl}) holds {bad}"


def test_uuids_booleans_and_json_follow_the_type_rules(live_run: LiveRun) -> None:
    with closing(_sqlite(live_run.target)) as db:
        ids = [r[0] for r in db.execute("SELECT id FROM users UNION ALL SELECT id FROM messages")]
        assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
        assert {r[0] for r in db.execute("SELECT is_read FROM messages")} == {0, 1}
        for (cfg,) in db.execute("SELECT config FROM database_config"):
            assert isinstance(json.loads(cfg), dict)


def test_foreign_key_and_integrity_checks_pass_on_the_target(live_run: LiveRun) -> None:
    with closing(_sqlite(live_run.target)) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert [r[0] for r in db.execute("SELECT version FROM _migrations")] == [1]
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()[0] == 1
        users = db.execute("SELECT count(*) FROM users").fetchone()[0]
    backup = Path(live_run.outcome.report["target"]["backup_after"])
    assert backup.parent == live_run.root / "backups" and backup.name.startswith("xrozen-backup-")
    with closing(_sqlite(backup)) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == users


# -- rejects ----------------------------------------------------------------------------------------


def test_every_reject_names_table_key_column_code_and_reason(live_run: LiveRun) -> None:
    rejects = list(_rejects(live_run.run_dir))
    report_total = sum(t["rejected"] for t in live_run.outcome.report["tables"])
    assert len(rejects) == report_total > 0
    for r in rejects:
        for field in ("table", "key", "code", "reason"):
            assert isinstance(r.get(field), str) and r[field], (field, r.get("key"))
        assert "column" in r
        if r["code"] in ("orphan", "parent_rejected", "enum_rejected", "missing_required", "invalid_value"):
            assert r["column"], r["key"]
        assert r["table"] in r["reason"] or r["column"] is None or r["column"] in r["reason"] \
            or r["code"].startswith("user_"), r


def test_admin_roles_and_orphan_project_ids_are_rejected_with_reasons(live_run: LiveRun) -> None:
    roles = _rejects_by_key(live_run, "user_roles")
    for rid in ADMIN_ROLE_IDS:
        r = roles[rid]
        assert (r["code"], r["column"]) == ("enum_rejected", "role")
        assert "'admin'" in r["reason"]
    for table, ids in (("project_clients", ORPHAN_PROJECT_CLIENT_IDS), ("video_versions", ORPHAN_VIDEO_VERSION_IDS),
                       ("payments", ORPHAN_PAYMENT_IDS), ("messages", ORPHAN_MESSAGE_IDS)):
        got = _rejects_by_key(live_run, table)
        for rid in ids:
            assert (got[rid]["code"], got[rid]["column"]) == ("orphan", "project_id"), (table, rid)
            assert "has no row in projects" in got[rid]["reason"]
    with closing(_sqlite(live_run.target)) as db:
        assert not _ids(db, "user_roles") & ADMIN_ROLE_IDS
        assert not _ids(db, "payments") & ORPHAN_PAYMENT_IDS


def test_user_quirks_end_in_rejects_or_filters_with_the_right_reasons(live_run: LiveRun) -> None:
    users = _rejects_by_key(live_run, "users")
    for uid in OAUTH_USER_IDS:
        assert users[uid]["column"] == "password_hash" and "empty hash" in users[uid]["reason"]
    for uid in NULL_PASSWORD_USER_IDS:
        assert users[uid]["column"] == "password_hash" and "NULL hash" in users[uid]["reason"]
    for uid in PROFILE_ONLY_NO_HASH_IDS:
        assert users[uid]["source_table"] == "public.profiles" and users[uid]["column"] == "password_hash"
    for uid in ARGON2_IDS:
        assert "argon2" in users[uid]["reason"]
    for uid in PHONE_ONLY_IDS:
        assert users[uid]["column"] == "email" and "no email" in users[uid]["reason"]
    (dup,) = CASE_DUPLICATE_EMAIL_IDS - {KIM_UPPER}
    assert (users[dup]["code"], users[dup]["column"]) == ("duplicate", "email")
    assert KIM_UPPER in users[dup]["reason"]
    for uid in SOFT_DELETED_IDS:
        assert uid not in users, "a soft-deleted user is filtered, not rejected"
    users_row = next(t for t in live_run.outcome.report["tables"] if t["name"] == "users")
    assert any("soft-deleted" in reason for reason in users_row["filter_reasons"])
    with closing(_sqlite(live_run.target)) as db:
        ids = _ids(db, "users")
        assert ids >= PROFILE_ONLY_WITH_HASH_IDS
        assert not ids & (SOFT_DELETED_IDS | OAUTH_USER_IDS | NULL_PASSWORD_USER_IDS | PHONE_ONLY_IDS)
        emails = [r[0] for r in db.execute("SELECT email FROM users")]
        assert len(emails) == len({e.lower() for e in emails})
    profiles = _rejects_by_key(live_run, "profiles")
    for uid in SOFT_DELETED_IDS | OAUTH_USER_IDS:
        assert profiles[uid]["code"] == "parent_rejected" and "not migrated" in profiles[uid]["reason"]


# -- report -----------------------------------------------------------------------------------------


def test_report_lists_unmigrated_source_tables(live_run: LiveRun) -> None:
    report = json.loads((live_run.run_dir / "report.json").read_text())
    unmigrated = {u["name"]: u for u in report["unmigrated_tables"]}
    assert {"public.audit_log", "public.notifications", "public.invoices", "public.api_keys",
            "auth.identities"} <= set(unmigrated)
    assert unmigrated["public.audit_log"]["reason"] == "ignored by config (ignore_tables)"
    assert "ignore_tables" in unmigrated["public.api_keys"]["reason"]
    md = (live_run.run_dir / "report.md").read_text()
    assert "public.audit_log" in md


def test_report_json_has_the_design_minimal_fields(live_run: LiveRun) -> None:
    report = json.loads((live_run.run_dir / "report.json").read_text())
    jsonschema.validate(report, report_schema())
    assert report["run_id"] == live_run.outcome.run_id == live_run.run_dir.name
    assert report["status"] == "succeeded"
    assert live_run.password not in json.dumps(report["source"])
    assert "***" in json.dumps(report["source"])
    assert report["target"]
    assert str(live_run.target) in json.dumps(report["target"])
    for t in report["tables"]:
        assert {"name", "source_table", "source_rows", "loaded", "rejected", "filtered", "seconds"} <= set(t)
        assert isinstance(t["seconds"], int | float) and t["seconds"] >= 0


# -- secrets ----------------------------------------------------------------------------------------


def _source_secrets(live: LiveRun) -> list[str]:
    hashes = _source_rows(live.dsn, "SELECT encrypted_password FROM auth.users WHERE encrypted_password <> '' "
                                    "UNION SELECT password_hash FROM public.profiles WHERE password_hash <> ''")
    keys = _source_rows(live.dsn, "SELECT key FROM public.api_keys")
    found = [str(h) for (h,) in hashes] + [str(k) for (k,) in keys] + [tok for _, _, tok in SOURCE_TOKENS]
    assert len(hashes) >= 12 and len(keys) == 3
    return found


def test_no_secret_in_any_log_report_or_manifest(live_run: LiveRun) -> None:
    secrets = [live_run.password, *_source_secrets(live_run)]
    scanned = []
    for p in sorted(live_run.run_dir.rglob("*")):
        rel = p.relative_to(live_run.run_dir)
        if not p.is_file() or (rel.parts[0] in DATA_PARTS and p.suffix != ".json") or p.suffix == ".db":
            continue
        text = p.read_text(encoding="utf-8")
        for s in secrets:
            assert s not in text, f"{rel} holds a secret ({s[:6]}...)"
        scanned.append(str(rel))
    assert {"log.jsonl", "manifest.json", "report.json", "report.md", "report.html"} <= set(scanned)
    assert "extract/auth.users/schema.json" in scanned
    log = (live_run.run_dir / "log.jsonl").read_text()
    assert '"run finished"' in log and '"status": "succeeded"' in log
    # the secrets are really in the data the run read, so the scan could have found them
    rejects = "".join(p.read_text() for p in (live_run.run_dir / "rejects").glob("*/*.jsonl"))
    assert any(s in rejects for s in secrets[1:])


def test_run_folder_is_private(live_run: LiveRun) -> None:
    assert stat.S_IMODE(live_run.run_dir.stat().st_mode) == 0o700
    for p in live_run.run_dir.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.is_dir():
            assert mode == 0o700, p
        elif p.parts[-2] != "staging":
            assert mode & 0o077 == 0, f"{p} is readable by others ({oct(mode)})"


# -- failed checks ----------------------------------------------------------------------------------

TOUCH_TRIGGER = """-- migrate:up
CREATE TRIGGER projects_touch_updated_at AFTER INSERT ON projects
BEGIN
  UPDATE projects SET updated_at = datetime('now') WHERE id = NEW.id;
END;

-- migrate:down
DROP TRIGGER IF EXISTS projects_touch_updated_at;
"""
RELINK_TRIGGER = """-- migrate:up
CREATE TRIGGER payments_default_recipient AFTER INSERT ON payments WHEN NEW.recipient_id IS NULL
BEGIN
  UPDATE payments SET recipient_id = 'house-account' WHERE id = NEW.id;
END;

-- migrate:down
DROP TRIGGER IF EXISTS payments_default_recipient;
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("migration", "check", "table"),
    [(TOUCH_TRIGGER, "content_checksum", "projects"), (RELINK_TRIGGER, "foreign_key_check", "payments")],
    ids=["trigger-rewrites-timestamps", "trigger-breaks-a-foreign-key"],
)
def test_a_failed_check_leaves_the_existing_target_byte_for_byte_unchanged(
    live_run: LiveRun, tmp_path: Path, migration: str, check: str, table: str
) -> None:
    """A target schema whose later migration adds an AFTER INSERT trigger the transform cannot know of.

    Triggers fire during the load, so the loaded rows differ from the transformed batches: one trigger
    stamps projects.updated_at with datetime('now') (the content checksum must catch the rewritten
    timestamps), the other points payments without a recipient at a profile that does not exist
    (PRAGMA foreign_key_check must catch it). Either way the run fails after the load and the target
    from the earlier successful run must stay exactly as it was.
    """
    target = tmp_path / "app.db"
    first = run(CONFIG, source=live_run.dsn, runs_dir=str(tmp_path / "runs"), target=str(target))
    assert first.exit_code == 0 and target.is_file()
    before_sha, before_mtime = _sha256(target), target.stat().st_mtime_ns
    backups_before = sorted(p.name for p in (tmp_path / "backups").iterdir())

    migrations = tmp_path / "target_schema"
    shutil.copytree(MIGRATIONS, migrations)
    (migrations / "002_app_trigger.sql").write_text(migration)
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["target"]["migrations"] = str(migrations)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    second = run(cfg_path, source=live_run.dsn, runs_dir=str(tmp_path / "runs"), target=str(target))
    assert (second.exit_code, second.status, second.target) == (1, "failed", None)
    error = second.report["error"]
    assert check in error and table in error, error
    failed = [c for c in second.report["checks"] if not c["ok"]]
    assert any(c["name"] == check and c["table"] in (table, None) for c in failed), failed
    assert json.loads((second.run_dir / "report.json").read_text())["status"] == "failed"
    assert _sha256(target) == before_sha
    assert target.stat().st_mtime_ns == before_mtime
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == backups_before
    assert not (tmp_path / "app.db-wal").exists() or os.path.getsize(tmp_path / "app.db-wal") == 0


def test_a_second_run_backs_up_the_old_target_then_swaps(live_run: LiveRun, tmp_path: Path) -> None:
    target = tmp_path / "app.db"
    first = run(CONFIG, source=live_run.dsn, runs_dir=str(tmp_path / "runs"), target=str(target))
    old_sha = _sha256(target)
    second = run(CONFIG, source=live_run.dsn, runs_dir=str(tmp_path / "runs"), target=str(target))
    assert (first.exit_code, second.exit_code) == (0, 0) and first.run_id != second.run_id
    before = Path(second.report["target"]["backup_before"])
    with closing(_sqlite(before)) as db:
        assert db.execute("SELECT run_id FROM _supamigrate_runs").fetchall() == [(first.run_id,)]
    with closing(_sqlite(target)) as db:
        assert db.execute("SELECT run_id FROM _supamigrate_runs").fetchall() == [(second.run_id,)]
    assert _sha256(target) != old_sha
    assert len(list((tmp_path / "backups").glob("xrozen-backup-*.db"))) == 3

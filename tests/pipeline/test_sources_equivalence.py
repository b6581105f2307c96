"""Issue 3: a live database, its plain dump and its custom dump migrate to the same target content.

The three sources share nothing but the data: the live source reads through psycopg, the plain dump is
parsed from pg_dump's SQL text, the custom dump goes through pg_restore. Any difference in how they
hand values to the transform (escaping, NULLs, time zones, numeric text, arrays, jsonb) shows up as a
different content checksum of some target table. The database and the dumping session use different,
non-UTC time zones (one with a 45-minute offset) so timestamps arrive in three different spellings
and must all land in the target as the same UTC text.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline.checks import checksum_sqlite, count_rows
from pipeline.runner import RunOutcome, run
from pipeline.target import load_target_schema
from tests.support.postgres import ENV_REQUIRE
from tests.support.xrozen import load_xrozen_fixture

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config.yaml"
DATABASE_TZ = "Asia/Kathmandu"  # +05:45: the live session and the custom dump print in this zone
DUMP_TZ = "America/St_Johns"  # -03:30 / -02:30: the plain dump's session zone (PGTZ)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get(ENV_REQUIRE):
            pytest.fail(f"{name} is required here ({ENV_REQUIRE} is set) but is not on PATH")
        pytest.skip(f"{name} is not on PATH")
    return path


def _migrate(source: str, root: Path, name: str) -> tuple[RunOutcome, Path]:
    outcome = run(CONFIG, source=source, runs_dir=str(root / f"runs-{name}"), target=str(root / f"{name}.db"))
    assert outcome.exit_code == 0, f"{name}: {outcome.report.get('error')}"
    assert outcome.target is not None
    return outcome, outcome.target


def _content(db: Path, tables: list[str]) -> dict[str, tuple[int, int, str]]:
    """Per target table: COUNT(*), the checksum's row count and its digest over every column."""
    out: dict[str, tuple[int, int, str]] = {}
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        for table in tables:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            digest = checksum_sqlite(conn, table, cols)
            out[table] = (count_rows(conn, table), digest.rows, digest.digest)
    return out


def _accounting(outcome: RunOutcome) -> dict[str, tuple[Any, ...]]:
    return {t["name"]: (t["source_rows"], t["loaded"], t["rejected"], t["filtered"], t["reject_reasons"],
                        t["filter_reasons"]) for t in outcome.report["tables"]}


@pytest.mark.postgres
def test_live_plain_and_custom_dump_give_identical_targets(pg_admin_dsn: str, pg_dsn: str, tmp_path: Path) -> None:
    pg_dump = _tool("pg_dump")
    _tool("pg_restore")
    fixture = load_xrozen_fixture(pg_dsn, messages=300, bulk_users=40)
    dbname = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone = {}").format(
            sql.Identifier(str(dbname)), sql.Literal(DATABASE_TZ)))

    plain, custom = tmp_path / "xrozen.sql", tmp_path / "xrozen.dump"
    subprocess.run([pg_dump, "--format=plain", f"--file={plain}", pg_dsn], check=True,
                   env={**os.environ, "PGTZ": DUMP_TZ})
    env = {k: v for k, v in os.environ.items() if k != "PGTZ"}
    subprocess.run([pg_dump, "--format=custom", f"--file={custom}", pg_dsn], check=True, env=env)
    text = plain.read_text(encoding="utf-8")
    # The premise: the plain dump spells timestamps in a non-UTC zone, not as +00.
    assert "-03:30\t" in text or "-02:30\t" in text
    assert "+00\t" not in text

    live, live_db = _migrate(pg_dsn, tmp_path, "live")
    from_plain, plain_db = _migrate(str(plain), tmp_path, "plain")
    from_custom, custom_db = _migrate(f"dump:{custom}", tmp_path, "custom")
    assert [o.report["source"]["kind"] for o in (live, from_plain, from_custom)] == ["postgres", "dump", "dump"]

    tables = sorted(load_target_schema(ROOT / "target_schema").tables)
    results = {name: _content(db, tables) for name, db in
               (("live", live_db), ("plain", plain_db), ("custom", custom_db))}
    for table in tables:
        seen = {name: r[table] for name, r in results.items()}
        assert seen["plain"] == seen["live"], f"{table}: plain dump differs from live: {seen}"
        assert seen["custom"] == seen["live"], f"{table}: custom dump differs from live: {seen}"
        assert seen["live"][0] == seen["live"][1]
    # Not vacuous: the tables with quirky values hold rows, and every source row was accounted for the same way.
    live_rows = results["live"]
    for table in ("users", "profiles", "projects", "messages", "payments", "video_versions", "database_config"):
        assert live_rows[table][0] > 0, table
    assert live_rows["messages"][0] > 100
    assert _accounting(from_plain) == _accounting(live)
    assert _accounting(from_custom) == _accounting(live)
    extracted = {t["name"]: t["source_rows"] for t in live.report["tables"]}
    assert extracted["messages"] == fixture.row_counts["public.messages"]

    # And every timestamp is the same UTC wall time the fixture wrote, whichever zone it was dumped in.
    with closing(sqlite3.connect(f"file:{plain_db}?mode=ro", uri=True)) as conn:
        paid = conn.execute("SELECT paid_date FROM payments WHERE id = '99999999-0000-4000-8000-000000000001'")
        assert paid.fetchone() == ("2024-03-31 23:59:59",)

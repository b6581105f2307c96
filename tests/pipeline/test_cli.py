"""The `supamigrate` command line as DESIGN.md fixes it: names, options, output and exit codes.

Most tests drive click in-process (CliRunner); the exit-code and no-secret tests of an unreachable
source go through the installed console script, the way scripts and CI call it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import main
from tests.pipeline.conftest import CONFIG, MIGRATIONS, LiveRun

SUPAMIGRATE = Path(sys.executable).parent / "supamigrate"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def cli_run(live_run: LiveRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """`supamigrate run` against the shared xrozen source into a folder of its own."""
    root = tmp_path_factory.mktemp("cli")
    res = invoke("run", "--config", str(CONFIG), "--source", live_run.secret_dsn,
                 "--runs-dir", str(root / "runs"), "--target", str(root / "app.db"))
    return res, root


def _run_id(root: Path) -> str:
    (run_dir,) = [p for p in (root / "runs").iterdir() if p.is_dir()]
    return run_dir.name


def test_run_exits_0_and_prints_the_per_table_summary(cli_run: tuple[Result, Path], live_run: LiveRun) -> None:
    res, root = cli_run
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["table", "name"]
    for col in ("source rows", "loaded", "rejected", "filtered"):
        assert col in lines[0]
    users = next(ln for ln in lines if ln.startswith("users "))
    assert users.split()[1:5] == ["auth.users+public.profiles", "63", "50", "11"]
    assert any(ln.startswith("Total") for ln in lines)
    assert f"run folder: {root / 'runs' / _run_id(root)}" in res.stdout
    assert f"target: {root / 'app.db'}" in res.stdout
    assert live_run.password not in res.output


def test_status_reports_the_run(cli_run: tuple[Result, Path]) -> None:
    _, root = cli_run
    res = invoke("status", "--runs-dir", str(root / "runs"))
    assert res.exit_code == 0, res.output
    (st,) = json.loads(res.stdout)
    assert st["run_id"] == _run_id(root) and st["status"] == "succeeded"
    assert st["extract"]["auth.users"]["done"] is True
    one = invoke("status", _run_id(root), "--runs-dir", str(root / "runs"))
    assert json.loads(one.stdout)[0]["run_id"] == _run_id(root)


@pytest.mark.parametrize("fmt", ["md", "json", "html"])
def test_report_prints_each_format(cli_run: tuple[Result, Path], fmt: str, live_run: LiveRun) -> None:
    _, root = cli_run
    res = invoke("report", _run_id(root), "--format", fmt, "--runs-dir", str(root / "runs"))
    assert res.exit_code == 0, res.output
    assert live_run.password not in res.stdout
    if fmt == "json":
        assert json.loads(res.stdout)["run_id"] == _run_id(root)
    elif fmt == "md":
        assert res.stdout.startswith("# supamigrate run") and "public.audit_log" in res.stdout
    else:
        assert "<html" in res.stdout.lower() and "public.audit_log" in res.stdout


def test_report_of_an_unknown_run_exits_2(tmp_path: Path) -> None:
    res = invoke("report", "no-such-run", "--runs-dir", str(tmp_path))
    assert res.exit_code == 2 and "no-such-run" in res.stderr


def test_schema_status_up_down(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    mig = str(MIGRATIONS)
    res = invoke("schema", "status", "--db", db, "--migrations", mig)
    assert res.exit_code == 0 and "pending" in res.stdout
    res = invoke("schema", "up", "--db", db, "--migrations", mig)
    assert res.exit_code == 0 and "applied: 001" in res.stdout
    assert "applied" in invoke("schema", "status", "--db", db, "--migrations", mig).stdout
    assert "nothing" in invoke("schema", "up", "--db", db, "--migrations", mig).stdout
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'users'").fetchone()[0] == 1
    res = invoke("schema", "down", "--db", db, "--migrations", mig)
    assert res.exit_code == 0 and "rolled back: 001" in res.stdout
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'users'").fetchone()[0] == 0


def test_schema_refuses_an_edited_applied_migration(tmp_path: Path) -> None:
    mig = tmp_path / "mig"
    shutil.copytree(MIGRATIONS, mig)
    db = str(tmp_path / "s.db")
    assert invoke("schema", "up", "--db", db, "--migrations", str(mig)).exit_code == 0
    f = next(mig.glob("001_*.sql"))
    f.write_text(f.read_text().replace("CREATE TABLE users (", "CREATE TABLE users ( -- edited\n", 1))
    res = invoke("schema", "up", "--db", db, "--migrations", str(mig))
    assert res.exit_code != 0 and "001" in res.stderr


def test_backup_create_list_verify_restore(cli_run: tuple[Result, Path], tmp_path: Path) -> None:
    _, root = cli_run
    db = tmp_path / "app.db"
    shutil.copy(root / "app.db", db)
    bdir = tmp_path / "bk"
    res = invoke("backup", "create", "--db", str(db), "--dir", str(bdir), "--prefix", "xrozen")
    assert res.exit_code == 0, res.output
    backup = Path(res.stdout.strip())
    assert backup.parent == bdir and backup.name.startswith("xrozen-backup-") and backup.suffix == ".db"
    listed = invoke("backup", "list", "--dir", str(bdir), "--prefix", "xrozen")
    assert str(backup) in listed.stdout
    verified = invoke("backup", "verify", str(backup))
    assert verified.exit_code == 0
    info = json.loads(verified.stdout)
    assert info["ok"] is True and info["tables"]["users"] == 50
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("DELETE FROM messages")
        conn.commit()
    res = invoke("backup", "restore", str(backup), "--db", str(db))
    assert res.exit_code == 0, res.output
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == info["tables"]["messages"] > 0
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database" * 100)
    assert invoke("backup", "verify", str(bad)).exit_code == 1


def test_config_check_accepts_the_shipped_config() -> None:
    res = invoke("config", "check", "--config", str(CONFIG))
    assert res.exit_code == 0 and "ok" in res.stdout


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("source: {uri: x.sql}\ntables:\n  profiles:\n    dorp: [a]\n", ["tables.profiles.dorp", "unknown key"]),
        ("source: {uri: x.sql}\nrun: {batch_rows: lots}\n", ["run.batch_rows", "integer"]),
        ("source: {uri: x.sql}\ntypes: {numeric_mode: float}\n", ["types.numeric_mode"]),
        ("source: {uri: 'postgresql://u:${SM_TEST_UNSET_PW}@h/db'}\n", ["source.uri", "SM_TEST_UNSET_PW"]),
    ],
    ids=["unknown-key", "wrong-type", "bad-choice", "missing-env"],
)
def test_config_check_names_the_bad_key(tmp_path: Path, text: str, named: list[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    res = invoke("config", "check", "--config", str(cfg), env={"SM_TEST_UNSET_PW": None})  # type: ignore[dict-item]
    assert res.exit_code == 2, res.output
    for part in named:
        assert part in res.stderr, res.stderr


def test_run_with_a_bad_config_exits_2_before_touching_anything(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source: {uri: x.sql}\ntables:\n  profiles:\n    dorp: 1\n")
    res = invoke("run", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert res.exit_code == 2 and "tables.profiles.dorp" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_unreachable_source_exits_3_without_the_password(tmp_path: Path) -> None:
    password = "Unr3achable-PW-42"
    res = subprocess.run(
        [str(SUPAMIGRATE), "run", "--config", str(CONFIG),
         "--source", f"postgresql://postgres:{password}@127.0.0.1:1/nodb",
         "--runs-dir", str(tmp_path / "runs"), "--target", str(tmp_path / "app.db")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert res.returncode == 3, res.stdout + res.stderr
    assert "127.0.0.1" in res.stderr
    assert password not in res.stdout + res.stderr
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert password not in p.read_text(errors="replace"), p

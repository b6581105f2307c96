"""Crash anywhere, resume, same result: real processes, real SIGKILL, a 50,000-row source.

The kill points are named places in the real code path (pipeline/faults.py); the kill itself is a
SIGKILL the process sends itself there, so the run folder is left exactly as a power cut would.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from pipeline.checks import checksum_sqlite
from pipeline.runner import run
from tests.support.postgres import throwaway_database
from tests.support.xrozen import load_xrozen_fixture

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "supamigrate"
MESSAGES = 50_000

pytestmark = pytest.mark.slow


@dataclass
class Source:
    dsn: str
    config: Path
    reference: dict[str, tuple[int, str]]
    tmp: Path


def write_config(path: Path, **changes: Any) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["target"]["migrations"] = str(ROOT / "target_schema")
    data["run"]["batch_rows"] = 5000
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(data))
    return path


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "-q", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def run_args(src: Source, runs: Path, target: Path, *, config: Path | None = None) -> list[str]:
    return ["--config", str(config or src.config), "--source", src.dsn, "--runs-dir", str(runs),
            "--target", str(target)]


def content(db: Path) -> dict[str, tuple[int, str]]:
    """Per app table: row count and typed content checksum over every column."""
    conn = sqlite3.connect(db)
    try:
        out = {}
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE '_supamigrate_%' AND name != '_migrations' ORDER BY name")]
        for t in names:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')]
            c = checksum_sqlite(conn, t, cols)
            out[t] = (c.rows, c.digest)
        return out
    finally:
        conn.close()


def ledger(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return [(t, b) for t, b in conn.execute("SELECT table_name, batch_id FROM _supamigrate_ledger")]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def source(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    tmp = tmp_path_factory.mktemp("killresume")
    with throwaway_database(pg_admin_dsn, prefix="smkill") as dsn:
        load_xrozen_fixture(dsn, messages=MESSAGES)
        config = write_config(tmp / "config.yaml")
        src = Source(dsn, config, {}, tmp)
        res = cli("run", *run_args(src, tmp / "ref-runs", tmp / "ref.db"))
        assert res.returncode == 0, res.stdout + res.stderr
        src.reference = content(tmp / "ref.db")
        assert src.reference["messages"][0] > 25_000
        yield src


def only_run(runs: Path) -> Path:
    (folder,) = [p for p in runs.iterdir() if p.is_dir()]
    return folder


KILL_POINTS = [
    ("extract", "extract.batch:3"),
    ("extract", "extract.after_file:9"),
    ("transform", "transform.batch:2"),
    ("transform", "transform.batch:14"),
    ("load", "load.batch:2"),
    ("load", "load.before_commit:11"),
    ("swap", "swap.before:1"),
    ("swap", "swap.after_backup:1"),
    ("swap", "swap.after_rename:1"),
]


@pytest.mark.parametrize(("stage", "point"), KILL_POINTS, ids=[p for _, p in KILL_POINTS])
def test_sigkill_then_resume_gives_the_uninterrupted_target(
    source: Source, tmp_path: Path, stage: str, point: str
) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    killed = cli("run", *run_args(source, runs, target), env={"SUPAMIGRATE_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL, (stage, killed.stdout, killed.stderr)
    folder = only_run(runs)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert (folder / "lock").exists(), "a SIGKILLed run leaves its lock behind"
    if stage in ("extract", "transform", "load"):
        assert not target.exists(), "nothing reaches the target before the swap"

    resumed = cli("resume", *run_args(source, runs, target))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert only_run(runs) == folder, "resume continued the same run folder"
    after = json.loads((folder / "manifest.json").read_text())
    assert after["status"] == "succeeded" and after["resumed"] == 1
    assert content(target) == source.reference
    entries = ledger(target)
    assert len(entries) == len(set(entries)), "a batch is in the ledger twice"
    batches = sum(len(t["batches"]) for t in after["transform"].values())
    assert len(entries) == batches
    report = json.loads((folder / "report.json").read_text())
    assert all(t["equation_ok"] for t in report["tables"])
    assert not (folder / "lock").exists()


def test_extract_work_done_before_the_kill_is_kept(source: Source, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    killed = cli("run", *run_args(source, runs, target), env={"SUPAMIGRATE_KILL_AT": "extract.batch:6"})
    assert killed.returncode == -signal.SIGKILL
    folder = only_run(runs)
    before = {p: p.stat().st_mtime_ns for p in (folder / "extract").rglob("*.parquet")}
    assert len(before) == 6
    assert cli("resume", *run_args(source, runs, target)).returncode == 0
    for p, mtime in before.items():
        assert p.stat().st_mtime_ns == mtime, f"{p.name} was rewritten although it was committed"


def test_changed_config_refuses_resume_naming_the_key_and_fresh_starts_over(source: Source, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    config = write_config(tmp_path / "config.yaml")
    killed = cli("run", *run_args(source, runs, target, config=config),
                 env={"SUPAMIGRATE_KILL_AT": "transform.batch:3"})
    assert killed.returncode == -signal.SIGKILL
    write_config(config, **{"run.sample_keys": 7})
    refused = cli("resume", *run_args(source, runs, target, config=config))
    assert refused.returncode == 2
    assert "run.sample_keys" in refused.stderr and "--fresh" in refused.stderr
    assert not target.exists()
    fresh = cli("resume", "--fresh", *run_args(source, runs, target, config=config))
    assert fresh.returncode == 0, fresh.stderr
    assert content(target) == source.reference
    assert len([p for p in runs.iterdir() if p.is_dir()]) == 2


def test_changed_target_schema_refuses_resume(source: Source, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    migrations = tmp_path / "target_schema"
    migrations.mkdir()
    sql = (ROOT / "target_schema" / "001_initial_schema.sql").read_text()
    (migrations / "001_initial_schema.sql").write_text(sql)
    config = write_config(tmp_path / "config.yaml", **{"target.migrations": str(migrations)})
    killed = cli("run", *run_args(source, runs, target, config=config), env={"SUPAMIGRATE_KILL_AT": "load.batch:2"})
    assert killed.returncode == -signal.SIGKILL
    (migrations / "001_initial_schema.sql").write_text(sql.replace("-- migrate:down", "-- edited\n-- migrate:down"))
    refused = cli("resume", *run_args(source, runs, target, config=config))
    assert refused.returncode == 2
    assert "target schema" in refused.stderr


def test_corrupted_checkpoint_is_detected_and_redone(source: Source, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    killed = cli("run", *run_args(source, runs, target), env={"SUPAMIGRATE_KILL_AT": "transform.batch:4"})
    assert killed.returncode == -signal.SIGKILL
    folder = only_run(runs)
    victim = folder / "extract" / "public.messages" / "part-00002.parquet"
    data = bytearray(victim.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 64] = b"garbage written over a committed checkpoint".ljust(64, b"!")
    victim.write_bytes(bytes(data))
    resumed = cli("resume", *run_args(source, runs, target))
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((folder / "report.json").read_text())
    assert "extract/public.messages/part-00002.parquet" in report["redone_checkpoints"]
    assert content(target) == source.reference


def test_terminated_backend_mid_table_is_retried_and_counts_verified(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_terminate_backend while the extract of messages is paused after its 2nd batch."""
    monkeypatch.setenv("SUPAMIGRATE_PAUSE_AT", "extract.batch:4:3")
    dbname = psycopg.conninfo.conninfo_to_dict(source.dsn)["dbname"]
    killed: list[int] = []

    def terminate() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            with psycopg.connect(source.dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'supamigrate' "
                    "AND state = 'idle in transaction'", (dbname,)).fetchall()
                if rows:
                    time.sleep(0.5)
                    for (pid,) in rows:
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        killed.append(pid)
            time.sleep(0.2)

    t = threading.Thread(target=terminate)
    t.start()
    outcome = run(source.config, source=source.dsn, runs_dir=str(tmp_path / "runs"), target=str(tmp_path / "app.db"))
    t.join()
    assert killed, "no extract backend was found to terminate"
    assert outcome.status == "succeeded", outcome.report["error"]
    assert outcome.report["retries"], "the dropped connection was not retried"
    assert outcome.report["snapshot_restarted"] is True
    counts = [c for c in outcome.report["checks"] if c["name"] == "source_count"]
    assert counts and all(c["ok"] for c in counts)
    assert content(tmp_path / "app.db") == source.reference
    log = (outcome.run_dir / "log.jsonl").read_text().splitlines()
    retries = [json.loads(line) for line in log if "retrying" in line]
    assert retries and retries[0]["cause"], retries


def test_a_second_process_on_the_same_target_is_refused(source: Source, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    first = subprocess.Popen([str(CLI), "-q", "run", *run_args(source, runs, target)], cwd=ROOT,
                             env={**os.environ, "SUPAMIGRATE_PAUSE_AT": "extract.batch:1:6"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        second = cli("run", *run_args(source, tmp_path / "runs2", target))
        assert second.returncode == 3, second.stdout + second.stderr
        assert "locked" in second.stderr
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err


def test_ctrl_c_stops_at_a_batch_boundary_with_exit_130_and_resume_finishes(source: Source, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    proc = subprocess.Popen([str(CLI), "-q", "run", *run_args(source, runs, target)], cwd=ROOT,
                            env={**os.environ, "SUPAMIGRATE_PAUSE_AT": "transform.batch:2:4"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runs.is_dir() and any(runs.iterdir()):
            folder = only_run(runs)
            m = json.loads((folder / "manifest.json").read_text())
            if sum(len(t["batches"]) for t in m["transform"].values()) >= 2:
                break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert folder is not None
    assert f"supamigrate resume {folder.name}" in out + err
    assert json.loads((folder / "manifest.json").read_text())["status"] == "interrupted"
    assert not target.exists()
    resumed = cli("resume", folder.name, *run_args(source, runs, target))
    assert resumed.returncode == 0, resumed.stderr
    assert content(target) == source.reference

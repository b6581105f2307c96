"""Run the real `supamigrate` CLI as a child process, crash it on purpose, and compare what it left.

The kill tests need three things the library API cannot give: a process that really dies
(SUPAMIGRATE_KILL_AT makes it SIGKILL itself at a named point, pipeline/faults.py), a second process
that resumes from the files alone, and ways to tell afterwards whether the resume reused the first
process's work or quietly redid it (file identities, ledger timestamps, the log of each process).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.checks import checksum_sqlite

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "supamigrate"
KILL_ENV = "SUPAMIGRATE_KILL_AT"
PAUSE_ENV = "SUPAMIGRATE_PAUSE_AT"


def write_config(path: Path, changes: dict[str, Any] | None = None, *, batch_rows: int = 5000) -> Path:
    """The shipped config.yaml with absolute migrations, small batches (many of them) and changes.

    `changes` maps dotted keys to values: write_config(p, {"run.sample_keys": 7}).
    """
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["target"]["migrations"] = str(ROOT / "target_schema")
    data.setdefault("run", {})["batch_rows"] = batch_rows
    for dotted, value in (changes or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    """The caller's environment minus any fault variable, plus `extra`: a resume must never inherit
    the kill that was meant for the run before it."""
    env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, PAUSE_ENV)}
    return {**env, **(extra or {})}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`supamigrate -q ARGS` to completion (or to its death); returncode -9 is a SIGKILL."""
    return subprocess.run([str(CLI), "-q", *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(env), cwd=ROOT, check=False)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`supamigrate -q ARGS` in the background, for tests that signal it or race it."""
    return subprocess.Popen([str(CLI), "-q", *args], cwd=ROOT, env=_env(env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_args(config: Path, dsn: str, runs: Path, target: Path) -> list[str]:
    return ["--config", str(config), "--source", dsn, "--runs-dir", str(runs), "--target", str(target)]


def only_run(runs: Path) -> Path:
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def manifest(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return data


def wait_for(condition: Callable[[], bool], timeout: float = 120, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def committed_batches(folder: Path, stage: str) -> int:
    """Batches the manifest records as committed for `stage` (extract or transform), all tables."""
    m = manifest(folder)
    return sum(len(t["batches"]) for t in m[stage].values())


def app_tables(conn: sqlite3.Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name NOT LIKE '\\_supamigrate\\_%' ESCAPE '\\' AND name != '_migrations' ORDER BY name")]


def content(db: Path) -> dict[str, tuple[int, str]]:
    """Per app table: row count and the typed content checksum over every column."""
    conn = sqlite3.connect(db)
    try:
        out: dict[str, tuple[int, str]] = {}
        for t in app_tables(conn):
            cols = [str(r[1]) for r in conn.execute(f'PRAGMA table_info("{t}")')]
            c = checksum_sqlite(conn, t, cols)
            out[t] = (c.rows, c.digest)
        return out
    finally:
        conn.close()


def ledger(db: Path) -> list[tuple[str, str, int, str]]:
    """Every `_supamigrate_ledger` row: table, batch id, rows, loaded_at."""
    conn = sqlite3.connect(db)
    try:
        return [(str(t), str(b), int(n), str(at)) for t, b, n, at in conn.execute(
            "SELECT table_name, batch_id, rows, loaded_at FROM _supamigrate_ledger ORDER BY 1, 2")]
    finally:
        conn.close()


@dataclass(frozen=True)
class FileMark:
    """A file's identity: a rewrite (tmp + rename) gives a new inode even with the same bytes."""

    inode: int
    mtime_ns: int


def file_marks(folder: Path, sub: str) -> dict[str, FileMark]:
    """Every committed Parquet file under run folder `sub` (extract, transform) with its identity."""
    base = folder / sub
    if not base.is_dir():
        return {}
    return {str(p.relative_to(folder)): FileMark(p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(base.rglob("*.parquet"))}


def log_segments(folder: Path) -> list[list[dict[str, Any]]]:
    """log.jsonl split per process (each begins with its `run started` event)."""
    segments: list[list[dict[str, Any]]] = []
    for line in (folder / "log.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "run started" or not segments:
            segments.append([])
        segments[-1].append(event)
    return segments


def events(segment: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in segment if e.get("event") == name]

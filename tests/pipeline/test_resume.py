"""Crash anywhere, resume, same result: the real CLI, a real SIGKILL, a source of more than 50,000 rows.

Each kill test lets `supamigrate run` SIGKILL itself at a named point inside one stage
(pipeline/faults.py), resumes with `supamigrate resume` in a new process, and holds the result to an
uninterrupted run of the same config: the same content checksum and count for every app table, every
load batch in the ledger exactly once, and the work the killed process committed reused, not redone.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline.runner import run
from tests.support.killrun import (
    KILL_ENV,
    PAUSE_ENV,
    ROOT,
    cli,
    committed_batches,
    content,
    events,
    file_marks,
    ledger,
    log_segments,
    manifest,
    only_run,
    run_args,
    start_cli,
    wait_for,
    write_config,
)
from tests.support.postgres import throwaway_database
from tests.support.xrozen import load_xrozen_fixture

MESSAGES = 50_000
TIMINGS: dict[str, float] = {}

pytestmark = pytest.mark.slow


@dataclass
class World:
    """The source database, its config and what the uninterrupted run produced from it."""

    dsn: str
    tmp: Path
    config: Path
    reference: dict[str, tuple[int, str]]
    ledger: list[tuple[str, str, int]]
    extract_batches: int
    transform_batches: int

    def args(self, runs: Path, target: Path, config: Path | None = None) -> list[str]:
        return run_args(config or self.config, self.dsn, runs, target)


@pytest.fixture(scope="module")
def world(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("resume")
    with throwaway_database(pg_admin_dsn, prefix="smresume") as dsn:
        fx = load_xrozen_fixture(dsn, messages=MESSAGES)
        assert sum(fx.row_counts.values()) >= 50_000
        config = write_config(tmp / "config.yaml", batch_rows=5000)
        t0 = time.perf_counter()
        ref = cli("run", *run_args(config, dsn, tmp / "ref-runs", tmp / "ref.db"))
        TIMINGS["full run (CLI, 50k fixture)"] = time.perf_counter() - t0
        assert ref.returncode == 0, ref.stdout + ref.stderr
        folder = only_run(tmp / "ref-runs")
        w = World(dsn, tmp, config, content(tmp / "ref.db"), [e[:3] for e in ledger(tmp / "ref.db")],
                  committed_batches(folder, "extract"), committed_batches(folder, "transform"))
        assert w.reference["messages"][0] > 25_000 and w.transform_batches > 20
        yield w
    print("\nresume timings: " + ", ".join(f"{k}: {v:.2f}s" for k, v in TIMINGS.items()))


def resolve(point: str, w: World) -> str:
    """`name:N` as is; `name:-K` counts back from the last batch; `name:P%` is that share of them."""
    name, _, nth = point.partition(":")
    total = w.extract_batches if name.startswith("extract") else w.transform_batches
    if nth.endswith("%"):
        return f"{name}:{round(total * int(nth[:-1]) / 100)}"
    n = int(nth)
    return f"{name}:{total + n if n < 0 else n}"


@dataclass
class Before:
    """What the killed process had committed, to check that the resume kept it."""

    folder: Path
    extract_files: dict[str, Any]
    transform_files: dict[str, Any]
    extract_batches: int
    staged: list[tuple[str, str, int, str]]


def kill(w: World, runs: Path, target: Path, point: str) -> Before:
    killed = cli("run", *w.args(runs, target), env={KILL_ENV: point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
    folder = only_run(runs)
    m = manifest(folder)
    assert m["status"] == "running"
    assert (folder / "lock").exists(), "a SIGKILLed run leaves its (stale) lock behind"
    committed = {e["file"] for t in m["extract"].values() for e in t["batches"]}
    staging = folder / "staging" / target.name
    return Before(
        folder,
        {f: mark for f, mark in file_marks(folder, "extract").items() if f in committed},
        {e["file"]: file_marks(folder, "transform")[e["file"]]
         for t in m["transform"].values() for e in t["batches"].values()},
        sum(len(t["batches"]) for t in m["extract"].values()),
        ledger(staging) if staging.exists() else [],
    )


def resume_and_compare(w: World, runs: Path, target: Path, before: Before) -> dict[str, Any]:
    resumed = cli("resume", *w.args(runs, target))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    folder = before.folder
    assert only_run(runs) == folder, "the resume continued the killed run's folder"
    after = manifest(folder)
    assert after["status"] == "succeeded" and after["resumed"] == 1
    assert content(target) == w.reference
    final = ledger(target)
    keys = [(t, b) for t, b, _, _ in final]
    assert len(keys) == len(set(keys)), "a batch is in the ledger twice"
    assert [e[:3] for e in final] == w.ledger, "the ledger differs from the uninterrupted run's"
    # the killed process's work was reused: files kept (same inode), loaded batches not loaded again
    now = file_marks(folder, "extract")
    assert {f: now.get(f) for f in before.extract_files} == before.extract_files
    now = file_marks(folder, "transform")
    assert {f: now.get(f) for f in before.transform_files} == before.transform_files
    assert set(before.staged) <= set(final), "a batch loaded before the kill was loaded again"
    segments = log_segments(folder)
    assert len(segments) == 2
    reread = len(events(segments[1], "extract batch committed"))
    assert reread == w.extract_batches - before.extract_batches
    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    assert all(t["equation_ok"] for t in report["tables"])
    assert all(c["ok"] for c in report["checks"]), [c for c in report["checks"] if not c["ok"]]
    assert not (folder / "lock").exists()
    assert not target.with_name(target.name + ".supamigrate-lock").exists()
    return report


@pytest.mark.parametrize("point", ["extract.batch:1", "extract.after_file:9", "extract.batch:-2"])
def test_kill_in_extract_then_resume(world: World, tmp_path: Path, point: str) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    before = kill(world, runs, target, resolve(point, world))
    assert not target.exists()
    assert 0 < before.extract_batches < world.extract_batches
    report = resume_and_compare(world, runs, target, before)
    # the rest of the extract came from a newer snapshot: said so, and every count verified after the fact
    assert report["snapshot_restarted"] is True
    assert any(f["kind"] == "snapshot_restarted" and f["severity"] == "warning" for f in report["findings"])
    counts = [c for c in report["checks"] if c["name"] == "source_count"]
    assert len(counts) == len(manifest(before.folder)["extract"]) and all(c["ok"] for c in counts)


@pytest.mark.parametrize("point", ["transform.batch:1", "transform.batch:14", "transform.batch:-1"])
def test_kill_in_transform_then_resume(world: World, tmp_path: Path, point: str) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    before = kill(world, runs, target, resolve(point, world))
    assert not target.exists()
    assert before.extract_batches == world.extract_batches
    assert 0 < len(before.transform_files) < world.transform_batches
    report = resume_and_compare(world, runs, target, before)
    assert "snapshot_restarted" not in report, "the extract was one snapshot; nothing was read again"


@pytest.mark.parametrize("point", ["load.batch:2", "load.before_commit:11", "load.batch:90%"])
def test_kill_in_load_then_resume(world: World, tmp_path: Path, point: str) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    nth = resolve(point, world)
    before = kill(world, runs, target, nth)
    assert not target.exists()
    done = int(nth.split(":")[1])
    # load.before_commit dies inside the batch's transaction: that batch is not in the ledger
    assert len(before.staged) == (done if point.startswith("load.batch") else done - 1)
    t0 = time.perf_counter()
    resume_and_compare(world, runs, target, before)
    if point.endswith("%"):
        TIMINGS[f"resume after a kill at {nth} of {world.transform_batches} load batches"] = time.perf_counter() - t0


def make_old_target(path: Path) -> bytes:
    """A live target from before this run, so the swap has something to back up and replace."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE the_old_app (x TEXT)")
    conn.execute("INSERT INTO the_old_app VALUES ('yesterday')")
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.mark.parametrize("point", ["swap.before:1", "swap.after_backup:1", "swap.after_rename:1"])
def test_kill_in_swap_then_resume(world: World, tmp_path: Path, point: str) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    old = make_old_target(target)
    before = kill(world, runs, target, point)
    if point != "swap.after_rename:1":
        assert target.read_bytes() == old, "the live target was touched before the rename"
    assert len(before.transform_files) == world.transform_batches
    resume_and_compare(world, runs, target, before)
    kept = [b for b in (target.parent / "backups").glob("xrozen-backup-*.db") if _tables(b) == ["the_old_app"]]
    assert kept, "no backup holds the target the swap replaced"


def _tables(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        conn.close()


def test_changed_config_is_refused_naming_the_key_and_fresh_starts_over(world: World, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    config = write_config(tmp_path / "config.yaml")
    args = world.args(runs, target, config)
    assert cli("run", *args, env={KILL_ENV: "transform.batch:3"}).returncode == -signal.SIGKILL
    killed = only_run(runs)
    write_config(config, {"tables.messages.orphans": {"project_id": "reject", "sender_id": "reject",
                                                         "recipient_id": "reject"}})
    refused = cli("resume", *args)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "tables.messages.orphans.recipient_id" in refused.stderr and "--fresh" in refused.stderr
    assert not target.exists() and manifest(killed)["status"] == "running"
    fresh = cli("resume", "--fresh", *args)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    (new,) = [p for p in runs.iterdir() if p.is_dir() and p != killed]
    assert manifest(new)["fingerprint"]["config"]["tables"]["messages"]["orphans"]["recipient_id"] == "reject"
    assert manifest(killed)["status"] == "running", "--fresh left the old run folder as it was"
    assert content(target)["messages"][0] < world.reference["messages"][0], "the new rule was not applied"


def test_changed_target_schema_is_refused(world: World, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    migrations = tmp_path / "target_schema"
    shutil.copytree(ROOT / "target_schema", migrations)
    config = write_config(tmp_path / "config.yaml", {"target.migrations": str(migrations)})
    args = world.args(runs, target, config)
    assert cli("run", *args, env={KILL_ENV: "load.batch:2"}).returncode == -signal.SIGKILL
    first = sorted(migrations.glob("*.sql"))[0]
    first.write_text(first.read_text().replace("-- migrate:down", "-- reviewed\n-- migrate:down", 1))
    refused = cli("resume", *args)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "target schema" in refused.stderr
    assert not target.exists()


def test_corrupted_checkpoint_is_detected_and_redone(world: World, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    before = kill(world, runs, target, resolve("transform.batch:4", world))
    victim = before.folder / "extract" / "public.messages" / "part-00002.parquet"
    data = bytearray(victim.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 64] = b"garbage written over a committed checkpoint".ljust(64, b"!")
    victim.write_bytes(bytes(data))
    resumed = cli("resume", *world.args(runs, target))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    report = json.loads((before.folder / "report.json").read_text())
    assert report["redone_checkpoints"] == ["extract/public.messages/part-00002.parquet"]
    assert report["snapshot_restarted"] is True
    assert content(target) == world.reference
    keys = [(t, b) for t, b, _, _ in ledger(target)]
    assert len(keys) == len(set(keys))
    log = log_segments(before.folder)[1]
    assert any(e["event"] == "checkpoint failed verification; redoing from it"
               and e["file"].endswith("part-00002.parquet") for e in log)
    # only the damaged file and those after it were read again; part-00001 was kept
    assert {e["table"] for e in events(log, "extract batch committed")} == {"public.messages"}
    m1 = "extract/public.messages/part-00001.parquet"
    assert file_marks(before.folder, "extract")[m1] == before.extract_files[m1]


def test_terminated_backend_mid_table_is_retried_and_counts_verified(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_terminate_backend on the extract's session while it is paused after a committed batch of
    public.messages (found by application_name); the extract reconnects and continues."""
    batch = next(i for i, line in enumerate(manifest_order(world), start=1) if line == "public.messages") + 1
    monkeypatch.setenv(PAUSE_ENV, f"extract.batch:{batch}:3")
    dbname = psycopg.conninfo.conninfo_to_dict(world.dsn)["dbname"]
    terminated: list[int] = []

    def terminate() -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            while time.monotonic() < deadline and not terminated:
                rows = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'supamigrate' "
                    "AND state = 'idle in transaction' AND pid <> pg_backend_pid()", (dbname,)).fetchall()
                runs = tmp_path / "runs"
                paused = runs.is_dir() and any((p / "manifest.json").exists() for p in runs.iterdir()) and \
                    len(manifest(only_run(runs))["extract"].get("public.messages", {}).get("batches", [])) >= 2
                if rows and paused:
                    for (pid,) in rows:
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        terminated.append(pid)
                time.sleep(0.05)

    t = threading.Thread(target=terminate)
    t.start()
    outcome = run(world.config, source=world.dsn, runs_dir=str(tmp_path / "runs"), target=str(tmp_path / "app.db"))
    t.join()
    assert terminated, "no extract backend was found to terminate"
    assert outcome.status == "succeeded", outcome.report["error"]
    assert outcome.report["retries"] == {"public.messages": 1}
    assert outcome.report["snapshot_restarted"] is True
    assert any(f["kind"] == "snapshot_restarted" for f in outcome.report["findings"])
    counts = [c for c in outcome.report["checks"] if c["name"] == "source_count"]
    assert counts and all(c["ok"] for c in counts)
    assert content(tmp_path / "app.db") == world.reference
    (segment,) = log_segments(outcome.run_dir)
    (retry,) = events(segment, "transient source error; retrying")
    assert retry["table"] == "public.messages" and "terminat" in retry["cause"], retry
    # the retry continued after the last committed key: each messages batch was committed once
    committed = [e["batch"] for e in events(segment, "extract batch committed") if e["table"] == "public.messages"]
    assert committed == list(range(1, len(committed) + 1))


def manifest_order(w: World) -> list[str]:
    """The source table of each extract batch of the uninterrupted run, in commit order."""
    folder = only_run(w.tmp / "ref-runs")
    return [e["table"] for e in events(log_segments(folder)[0], "extract batch committed")]


def test_ctrl_c_stops_at_a_batch_boundary_with_exit_130_and_resume_finishes(world: World, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    proc = start_cli("run", *world.args(runs, target), env={PAUSE_ENV: "transform.batch:3:5"})
    assert wait_for(lambda: runs.is_dir() and any((p / "manifest.json").exists() for p in runs.iterdir()) and
                    committed_batches(only_run(runs), "transform") >= 3, timeout=120)
    proc.send_signal(signal.SIGINT)  # while paused after batch 3: the stop comes at the next check
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    folder = only_run(runs)
    assert f"supamigrate resume {folder.name}" in err
    m = manifest(folder)
    assert m["status"] == "interrupted"
    assert committed_batches(folder, "transform") == 3, "it went on past the batch boundary"
    assert not target.exists() and not (folder / "lock").exists()
    resumed = cli("resume", folder.name, *world.args(runs, target))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert content(target) == world.reference


def test_a_lost_session_is_transient_and_a_first_connection_failure_is_not(world: World, pg_admin_dsn: str) -> None:
    """What decides retry or stop: once a session existed, losing it and failing to open another
    (a restarting server) is retried; a source that never answered is reported at once."""
    from pipeline.errors import SourceError, TransientSourceError
    from pipeline.sources.postgres import PostgresSource

    dbname = psycopg.conninfo.conninfo_to_dict(world.dsn)["dbname"]
    src = PostgresSource(world.dsn)
    try:
        messages = next(t for t in src.tables() if t.qualified == "public.messages")
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            try:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                              "AND application_name = 'supamigrate'", (dbname,))
                with pytest.raises(TransientSourceError):
                    next(src.read(messages, batch_rows=10))
                src.reconnect()  # fails quietly: the next read raises into the bounded retry
                with pytest.raises(TransientSourceError, match="cannot connect"):
                    next(src.read(messages, batch_rows=10))
                fresh = PostgresSource(world.dsn)
                with pytest.raises(SourceError) as first:
                    fresh.identity()
                assert not isinstance(first.value, TransientSourceError)
            finally:
                admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        src.reconnect()
        batch = next(src.read(messages, batch_rows=10, resume_token=None))
        assert batch.data.num_rows == 10 and src.reconnects == 2
    finally:
        src.close()

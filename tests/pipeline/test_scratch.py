"""The per-table scratch file: private, fresh on every attempt at a table, gone when the table is."""

from __future__ import annotations

import stat
from pathlib import Path

from pipeline.runs import RunDir
from pipeline.scratch import CACHE_KIB, Scratch


def test_created_on_first_use_0600_in_the_run_folder_and_deleted_on_close(tmp_path: Path) -> None:
    run = RunDir.in_runs(tmp_path / "runs", "r").create()
    with Scratch(run, "public.weird name") as scratch:
        assert not scratch.path.exists()  # a table that never spills never makes one
        scratch.db.execute("CREATE TABLE t (v)")
        scratch.write("INSERT INTO t VALUES (?)", [(1,), (2,)])
        assert scratch.path.parent == run.root / "scratch" and scratch.path.name == "public.weird_name.sqlite3"
        assert stat.S_IMODE(scratch.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(scratch.path.parent.stat().st_mode) == 0o700
        assert scratch.db.execute("SELECT count(*) FROM t").fetchone() == (2,)
        assert scratch.db.execute("PRAGMA cache_size").fetchone() == (-CACHE_KIB,)
        assert scratch.new_table("seen") != scratch.new_table("seen")
    assert not scratch.path.exists() and not scratch.opened


def test_a_file_left_by_a_killed_attempt_is_never_reused(tmp_path: Path) -> None:
    run = RunDir.in_runs(tmp_path / "runs", "r").create()
    first = Scratch(run, "users")
    first.db.execute("CREATE TABLE seen_1 (v)")
    first.db.close()  # as a kill -9 leaves it: the file stays behind
    assert first.path.exists()
    with Scratch(run, "users") as again:
        names = again.db.execute("SELECT name FROM sqlite_master").fetchall()
        assert names == [] and stat.S_IMODE(again.path.stat().st_mode) == 0o600
    assert not again.path.exists()
    # a table that does not need the file also removes a stale one when it is done
    stale = Scratch(run, "users").path
    stale.write_bytes(b"junk")
    Scratch(run, "users").close()
    assert not stale.exists()

"""One writer per run folder and per target, across real processes; a dead holder's lock is no lock.

The kill tests prove a resume gives the right result; these prove two processes never work on the
same run folder or target at once (the second exits 3 and touches nothing), and that a lock left by a
SIGKILLed process does not need a human to remove it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.runs import target_lock_path
from tests.support.killrun import (
    KILL_ENV,
    PAUSE_ENV,
    ROOT,
    cli,
    committed_batches,
    content,
    ledger,
    manifest,
    only_run,
    run_args,
    start_cli,
    wait_for,
    write_config,
)
from tests.support.postgres import throwaway_database
from tests.support.xrozen import load_xrozen_fixture

pytestmark = pytest.mark.slow


@dataclass
class Small:
    dsn: str
    config: Path


@pytest.fixture(scope="module")
def small(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Small]:
    """The quirky fixture at its default size, in batches of 100 rows so every stage has several."""
    tmp = tmp_path_factory.mktemp("locking")
    with throwaway_database(pg_admin_dsn, prefix="smlock") as dsn:
        load_xrozen_fixture(dsn, messages=1000)
        yield Small(dsn, write_config(tmp / "config.yaml", batch_rows=100))


def test_a_second_process_on_the_same_run_folder_or_target_exits_3_and_touches_nothing(
    small: Small, tmp_path: Path
) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    first = start_cli("run", *run_args(small.config, small.dsn, runs, target), env={PAUSE_ENV: "extract.batch:2:6"})
    try:
        # paused after its 2nd committed extract batch: nothing of its own changes the manifest now
        assert wait_for(lambda: target_lock_path(target).exists() and runs.is_dir()
                        and any((p / "manifest.json").exists() for p in runs.iterdir())
                        and committed_batches(only_run(runs), "extract") >= 2, timeout=60)
        folder = only_run(runs)
        before = (folder / "manifest.json").read_bytes()
        # the same target from another runs folder
        other = cli("run", *run_args(small.config, small.dsn, tmp_path / "runs2", target))
        assert other.returncode == 3, other.stdout + other.stderr
        assert f"target {target} is locked by process {first.pid}" in other.stderr
        # the same run folder: `resume` picks the unfinished run the first process is running
        same = cli("resume", *run_args(small.config, small.dsn, runs, target))
        assert same.returncode == 3, same.stdout + same.stderr
        assert f"run folder {folder} is locked by process {first.pid}" in same.stderr
        assert (folder / "manifest.json").read_bytes() == before, "the refused process wrote the manifest"
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    m = manifest(folder)
    assert m["status"] == "succeeded" and "resumed" not in m
    assert not target_lock_path(target).exists() and not (folder / "lock").exists()
    assert content(target)["messages"][0] > 0


def test_locks_left_by_a_sigkilled_run_are_cleared_by_the_next_run(small: Small, tmp_path: Path) -> None:
    runs, target = tmp_path / "runs", tmp_path / "app.db"
    args = run_args(small.config, small.dsn, runs, target)
    killed = cli("run", *args, env={KILL_ENV: "load.batch:3"})
    assert killed.returncode == -signal.SIGKILL
    folder = only_run(runs)
    stale = [folder / "lock", target_lock_path(target)]
    holders = {json.loads(p.read_text())["pid"] for p in stale}
    assert len(holders) == 1
    (dead,) = holders
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    # plain `run` finds the unfinished run of the same fingerprint and continues it
    again = cli("run", *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert only_run(runs) == folder and manifest(folder)["resumed"] == 1
    assert not any(p.exists() for p in stale)
    keys = [(t, b) for t, b, _, _ in ledger(target)]
    assert len(keys) == len(set(keys))


HOLDER = """
import sys, time
from pathlib import Path
from pipeline.errors import TargetError
from pipeline.runs import file_lock
lock, start, hold = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
while not start.exists():
    time.sleep(0.005)
try:
    with file_lock(lock, "run folder"):
        print("taken", flush=True)
        time.sleep(hold)
except TargetError as exc:
    print("refused", exc, flush=True)
"""


def holder(lock: Path, start: Path, hold: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(start), str(hold)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_many_processes_finding_one_stale_lock_let_exactly_one_take_it(tmp_path: Path) -> None:
    lock, start = tmp_path / "lock", tmp_path / "go"
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "since": "before"}))
    procs = [holder(lock, start, 3.0) for _ in range(6)]
    time.sleep(1.0)  # every child imported and waiting
    start.touch()
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert sum(o.startswith("taken") for o in outs) == 1, outs
    assert sum(o.startswith("refused") for o in outs) == 5, outs


def test_a_lock_whose_holder_was_sigkilled_is_free_at_once(tmp_path: Path) -> None:
    lock, start = tmp_path / "lock", tmp_path / "go"
    start.touch()
    proc = holder(lock, start, 60.0)
    assert proc.stdout is not None and proc.stdout.readline().startswith("taken")
    blocked = holder(lock, start, 0.0)
    out, _ = blocked.communicate(timeout=30)
    assert out.startswith("refused") and f"locked by process {proc.pid}" in out
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.exists(), "SIGKILL leaves the file behind"
    after = holder(lock, start, 0.0)
    out, err = after.communicate(timeout=30)
    assert out.startswith("taken"), out + err
    assert not lock.exists()

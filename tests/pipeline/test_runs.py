"""Run folder primitives: atomic commits leave no temporary file, the lock refuses a live holder."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.errors import TargetError
from pipeline.runs import (
    Manifest,
    RunDir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    file_lock,
    file_sha256,
)


def test_atomic_writes_leave_no_tmp_and_private_files(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"one")
    atomic_write_bytes(tmp_path / "a.bin", b"two")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    digest = atomic_write_parquet(tmp_path / "c.parquet", pa.table({"v": ["1", None]}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.json", "c.parquet"]
    assert (tmp_path / "a.bin").read_bytes() == b"two"
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": 1}
    assert digest == file_sha256(tmp_path / "c.parquet")
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_a_failed_write_keeps_the_old_file_and_no_tmp(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "m.json", {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "m.json", "not bytes")  # type: ignore[arg-type]
    assert json.loads((tmp_path / "m.json").read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_run_dir_folders_are_private(tmp_path: Path) -> None:
    rd = RunDir.in_runs(tmp_path / "runs", "r1").create()
    rd.extract_dir("public.profiles")
    rd.rejects_dir("profiles")
    for p in [rd.root, *rd.root.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p


def test_manifest_round_trips(tmp_path: Path) -> None:
    m = Manifest.create(tmp_path / "manifest.json", "r1", {"config_sha256": "abc"})
    m.commit_extract_batch("public.x", {"file": "extract/public.x/part-00001.parquet", "rows": 3, "sha256": "s"})
    m.finish_extract("public.x")
    again = Manifest.load(tmp_path / "manifest.json")
    assert again.extract_state("public.x") == {"done": True, "rows": 3, "batches": [m.data["extract"]["public.x"]
                                                                                    ["batches"][0]]}
    with pytest.raises(TargetError, match="not a run folder"):
        Manifest.load(tmp_path / "none.json")


def test_file_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with file_lock(lock, "run folder"):
        holder = json.loads(lock.read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(TargetError, match=f"locked by process {os.getpid()}"), file_lock(lock, "run folder"):
            pass
    assert not lock.exists()


def test_file_lock_refuses_a_live_holder(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    child = subprocess.Popen(["sleep", "30"])
    try:
        lock.write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(), "since": "now"}))
        with pytest.raises(TargetError) as exc, file_lock(lock, "target /x/app.db"):
            pass
        assert exc.value.exit_code == 3
        assert f"target /x/app.db is locked by process {child.pid}" in str(exc.value)
        assert lock.exists()
    finally:
        child.kill()
        child.wait()


def test_file_lock_clears_a_stale_lock(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    lock.write_text(json.dumps({"pid": pid_max + 1, "host": socket.gethostname(), "since": "long ago"}))
    with file_lock(lock, "run folder"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_file_lock_of_another_host_is_not_cleared(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid", "since": "now"}))
    with pytest.raises(TargetError, match=r"elsewhere\.invalid"), file_lock(lock, "run folder"):
        pass

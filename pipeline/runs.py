"""The run folder: its layout, atomic file commits, the manifest and the run lock.

Every stage hands over durable files; a file exists whole or not at all (tmp + fsync + rename), so a
kill -9 at any instant leaves either the old state or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import TargetError

MANIFEST_VERSION = 1


def utcnow_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any, *, compact: bool = False) -> None:
    """Indented for people by default; compact for the manifest, rewritten at every committed batch,
    where indenting (which turns off json's C encoder) cost 29 ms per save at 10M rows, ~4x compact."""
    if compact:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    else:
        text = json.dumps(data, indent=2, sort_keys=True, default=str)
    atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_parquet(path: Path, table: pa.Table) -> str:
    """Write a Parquet file atomically; return the sha256 of the committed bytes."""
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.chmod(tmp, 0o600)
    digest = file_sha256(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_private_dir(path: Path) -> Path:
    """mkdir's mode applies to the last folder only, so ancestors it creates (extract/) are chmodded too."""
    missing = [p for p in path.parents if not p.exists()]
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in (path, *missing):
        os.chmod(p, 0o700)
    return path


@dataclass
class RunDir:
    """Paths inside one run folder; creating it makes every data-holding folder 0700."""

    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def log_path(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    def extract_dir(self, source_table: str) -> Path:
        return make_private_dir(self.root / "extract" / source_table)

    def transform_dir(self, target_table: str) -> Path:
        return make_private_dir(self.root / "transform" / target_table)

    def rejects_dir(self, target_table: str) -> Path:
        return make_private_dir(self.root / "rejects" / target_table)

    @property
    def staging_dir(self) -> Path:
        return make_private_dir(self.root / "staging")

    def create(self) -> RunDir:
        make_private_dir(self.root.parent)
        make_private_dir(self.root)
        return self

    @classmethod
    def in_runs(cls, runs_dir: Path, run_id: str) -> RunDir:
        return cls(runs_dir / run_id)


class Manifest:
    """manifest.json: fingerprint, per-table stage state and every committed batch.

    Rewritten atomically after each batch commit; it is the extract and transform stages'
    record of what is durable (the load stage's record is the ledger inside the staging file).
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, path: Path, run_id: str, fingerprint: dict[str, Any]) -> Manifest:
        m = cls(
            path,
            {
                "manifest_version": MANIFEST_VERSION,
                "run_id": run_id,
                "created_at": utcnow_iso(),
                "fingerprint": fingerprint,
                "status": "running",
                "stages": {},
                "extract": {},
                "transform": {},
            },
        )
        m.save()
        return m

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls(path, json.loads(path.read_text()))
        except FileNotFoundError:
            raise TargetError(f"no manifest at {path}: not a run folder") from None
        except json.JSONDecodeError:
            raise TargetError(f"manifest {path} is unreadable") from None

    def save(self) -> None:
        atomic_write_json(self.path, self.data, compact=True)

    # extract bookkeeping -------------------------------------------------------------
    def extract_state(self, source_table: str) -> dict[str, Any]:
        ex: dict[str, dict[str, Any]] = self.data["extract"]
        return ex.setdefault(source_table, {"done": False, "batches": [], "rows": 0})

    def commit_extract_batch(self, source_table: str, entry: dict[str, Any]) -> None:
        st = self.extract_state(source_table)
        st["batches"].append(entry)
        st["rows"] += entry["rows"]
        self.save()

    def finish_extract(self, source_table: str) -> None:
        self.extract_state(source_table)["done"] = True
        self.save()

    # transform bookkeeping -----------------------------------------------------------
    def transform_state(self, target_table: str) -> dict[str, Any]:
        tr: dict[str, dict[str, Any]] = self.data["transform"]
        return tr.setdefault(target_table, {"done": False, "batches": {}})

    def commit_transform_batch(self, target_table: str, batch_id: str, entry: dict[str, Any]) -> None:
        self.transform_state(target_table)["batches"][batch_id] = entry
        self.save()

    def finish_transform(self, target_table: str) -> None:
        self.transform_state(target_table)["done"] = True
        self.save()

    def set_stage(self, stage: str, **info: Any) -> None:
        self.data["stages"].setdefault(stage, {}).update(info)
        self.save()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.save()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """An exclusive lock file that names its holder (pid, host, since); a stale one is cleared.

    The kernel lock (flock) on the file is what excludes: it dies with its process however that
    process dies, so two takers can never both get it, not even two that find the same stale lock at
    once (deleting a stale file by its name, as a pid check alone must, can delete a lock a third
    process has just taken). The pid and host in the file name the holder in the refusal, and still
    refuse a holder that is alive or on another host (a process that does not flock, a network folder).
    The name is removed before the kernel lock is dropped, so a taker checks it locked the file that
    still bears the name.
    """
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": utcnow_iso()}
    fd = _take_lock(path, what, me)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _take_lock(path: Path, what: str, me: dict[str, Any]) -> int:
    for _attempt in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise TargetError(_locked(what, holder, path)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # its holder released it (unlinked the name) between our open and our flock
            os.close(fd)
            continue
        holder = _lock_holder(fd)
        pid = int(holder.get("pid") or 0)
        foreign = holder and (holder.get("host") != me["host"] or (pid and pid != me["pid"] and _pid_alive(pid)))
        if foreign:
            os.close(fd)
            raise TargetError(_locked(what, holder, path))
        # empty (a taker died before writing), or a dead process's: stale, and now ours
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        return fd
    raise TargetError(f"could not take the lock {path}: it is released and retaken too fast")  # pragma: no cover


def _lock_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _locked(what: str, holder: dict[str, Any], path: Path) -> str:
    return (f"{what} is locked by process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}; "
            f"wait for it to finish (or remove {path} if that process is gone)")


def target_lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".supamigrate-lock")


def find_runs(runs_dir: Path) -> list[Path]:
    if not runs_dir.is_dir():
        return []
    return sorted((p for p in runs_dir.iterdir() if (p / "manifest.json").is_file()), key=lambda p: p.name)

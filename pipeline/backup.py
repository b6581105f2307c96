"""Backups of SQLite targets, and the atomic swap that publishes a finished staging file.

Backups use SQLite's online backup API, so a target the app has open (in WAL mode, with part of its
content still in the -wal file) is copied as one consistent snapshot, which a plain file copy would not
give. Names follow the app's own pattern (`xrozen-backup-2025-10-06T13-46-53-123Z.db`) so the app's
restore tooling and ours see the same set of files.

Every file that replaces another is written under a temporary name in the destination folder, fsynced,
then renamed. The one SQLite-specific trap is the sidecar files: a -wal (or hot -journal) left beside a
database file is replayed into whatever file next carries that name, so before a file is replaced its
old sidecars are checkpointed away and removed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError, IntegrityError, TargetError

SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")
_STAMP_RE = r"(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)"
_STAMP_FORMAT = "%Y-%m-%dT%H-%M-%S"


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    taken_at: datetime
    size: int


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    integrity: str
    tables: dict[str, int] = field(default_factory=dict)
    migrations: tuple[int, ...] = ()


def backup_name(prefix: str, when: datetime) -> str:
    """The app's name: its `new Date().toISOString()` with ':' and '.' replaced by '-'."""
    when = _as_utc(when)
    return f"{prefix}-backup-{when.strftime(_STAMP_FORMAT)}-{when.microsecond // 1000:03d}Z.db"


def _as_utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _name_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}-backup-{_STAMP_RE}\.db$")


def _parse_stamp(stamp: str) -> datetime:
    base, ms = stamp[:-5], stamp[-4:-1]
    return datetime.strptime(base, _STAMP_FORMAT).replace(tzinfo=UTC) + timedelta(milliseconds=int(ms))


def _sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + s) for s in SIDECAR_SUFFIXES]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


@contextmanager
def _open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection that leaves no new files behind.

    Opening a WAL-mode file read-only makes SQLite create -wal/-shm beside it, which a read-only
    connection cannot remove on close; we remove the ones we caused once they are empty.
    """
    existed = {p for p in _sidecars(path) if p.exists()}
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()
        wal, shm, _journal = _sidecars(path)
        if wal not in existed and wal.exists() and wal.stat().st_size == 0:
            _unlink(wal)
            if shm not in existed:
                _unlink(shm)


def _copy_with_backup_api(src: sqlite3.Connection, dst_path: Path) -> None:
    """Copy a consistent snapshot into a new single-file (rollback-journal) database and fsync it.

    The copy inherits the source's WAL flag in its header; switching it to DELETE makes the file
    self-contained, and the app switches it back to WAL when it opens it.
    """
    _unlink(dst_path)
    dst = sqlite3.connect(dst_path, isolation_level=None)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        dst.close()
    os.chmod(dst_path, 0o600)
    _fsync_file(dst_path)


def list_backups(backup_dir: Path, prefix: str) -> list[BackupInfo]:
    """Backups of `prefix` in `backup_dir`, newest first, ordered by the time in the name (mtimes
    change when files are copied around; the name does not). Other files are not ours and ignored."""
    if not backup_dir.is_dir():
        return []
    pattern = _name_pattern(prefix)
    found: list[BackupInfo] = []
    for path in backup_dir.iterdir():
        m = pattern.match(path.name)
        if m is None or not path.is_file():
            continue
        found.append(BackupInfo(path=path, taken_at=_parse_stamp(m.group(1)), size=path.stat().st_size))
    found.sort(key=lambda b: (b.taken_at, b.path.name), reverse=True)
    return found


def rotate_backups(backup_dir: Path, prefix: str, keep: int, *, protect: Path | None = None) -> list[Path]:
    """Delete all but the newest `keep` backups of `prefix` (never `protect`, never a file whose name
    does not match the pattern). Returns the deleted paths."""
    if keep < 1:
        raise ConfigError(f"backup keep must be at least 1, got {keep}")
    deleted: list[Path] = []
    for info in list_backups(backup_dir, prefix)[keep:]:
        if protect is not None and info.path == protect:
            continue
        _unlink(info.path)
        for side in _sidecars(info.path):
            _unlink(side)
        deleted.append(info.path)
    return deleted


def verify_backup(path: Path, *, quick: bool = False) -> VerifyResult:
    """Open read-only and run `PRAGMA integrity_check` (`quick_check` when quick), then count rows per
    table and read the app's `_migrations` versions, so a restore can show what it is about to bring
    back."""
    if not path.is_file():
        return VerifyResult(False, f"{path} does not exist")
    try:
        with _open_readonly(path) as conn:
            rows = conn.execute("PRAGMA quick_check" if quick else "PRAGMA integrity_check").fetchall()
            message = "; ".join(str(r[0]) for r in rows)
            if message != "ok":
                return VerifyResult(False, message)
            tables: dict[str, int] = {}
            names = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                "AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name"
            ).fetchall()
            for (name,) in names:
                tables[str(name)] = int(conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0])
            versions: tuple[int, ...] = ()
            if "_migrations" in tables:
                versions = tuple(sorted(int(v) for (v,) in conn.execute("SELECT version FROM _migrations")))
    except sqlite3.Error as exc:
        return VerifyResult(False, f"{path.name}: {exc}")
    return VerifyResult(True, message, tables, versions)


def create_backup(
    db: Path,
    *,
    backup_dir: Path | None = None,
    prefix: str | None = None,
    keep: int = 10,
    now: datetime | None = None,
    verify: Literal["full", "quick"] = "full",
) -> Path:
    """Snapshot `db` into `<backup_dir>/<prefix>-backup-<time>.db`, verified before it is kept, then
    rotate to the newest `keep`. The folder is created private (backups carry password hashes).

    verify="full" runs `integrity_check` on the copy. verify="quick" runs `quick_check` instead
    (every page, b-tree, record and NOT NULL/CHECK, but not whether each index holds exactly its
    table's rows): for a `db` that passed a full `integrity_check` just before, as a swapped-in
    staging file has (the runner's checks; only a provenance row and ANALYZE's statistics are
    written after them, by SQLite itself). The backup API copies pages byte for byte, so the
    index contents it would cross-check are the ones already checked, and what a copy could damage
    (truncated or torn pages, a broken b-tree) is what `quick_check` reads.
    """
    if verify not in ("full", "quick"):
        raise ValueError(f"verify must be 'full' or 'quick', not {verify!r}")
    if keep < 1:
        raise ConfigError(f"backup keep must be at least 1, got {keep}")
    if not db.is_file():
        raise TargetError(f"cannot back up {db}: no such file")
    backup_dir = backup_dir if backup_dir is not None else db.parent / "backups"
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    prefix = prefix if prefix is not None else db.stem
    when = _as_utc(now if now is not None else datetime.now(UTC))
    final = backup_dir / backup_name(prefix, when)
    while final.exists() or final.with_name(final.name + ".tmp").exists():
        when += timedelta(milliseconds=1)
        final = backup_dir / backup_name(prefix, when)
    tmp = final.with_name(final.name + ".tmp")
    try:
        try:
            src = sqlite3.connect(db, isolation_level=None)
            try:
                src.execute("PRAGMA busy_timeout = 5000")
                _copy_with_backup_api(src, tmp)
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise TargetError(f"cannot back up {db}: {exc}") from exc
        result = verify_backup(tmp, quick=verify == "quick")
        if not result.ok:
            raise IntegrityError(f"the backup of {db} failed its integrity check: {result.integrity}")
        os.replace(tmp, final)
        _fsync_dir(backup_dir)
    except BaseException:
        _unlink(tmp)
        for side in _sidecars(tmp):
            _unlink(side)
        raise
    rotate_backups(backup_dir, prefix, keep, protect=final)
    return final


def _quiesce(path: Path, *, must_be_readable: bool) -> None:
    """Leave `path` as one self-contained file with no -wal/-shm/-journal beside it.

    Opening it replays a hot journal or WAL into the main file; switching the journal mode to DELETE
    checkpoints everything and, because SQLite allows it only with no other connection open, doubles
    as the check that nobody (the app) is using the file. An unreadable file (not SQLite) can only be
    replaced, so its sidecars are simply removed unless the caller needs it readable.
    """
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            mode = str(conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]).lower()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if _is_busy(exc):
            raise TargetError(f"{path} is in use by another process; stop the app before replacing it ({exc})") from exc
        if must_be_readable:
            raise TargetError(f"{path} is not a readable SQLite database: {exc}") from exc
        for side in _sidecars(path):
            _unlink(side)
        return
    if mode != "delete":
        raise TargetError(f"{path} is in use by another process; stop the app before replacing it")
    wal = _sidecars(path)[0]
    if wal.exists() and wal.stat().st_size > 0:
        raise TargetError(f"{wal} still holds data after a checkpoint; another process has {path} open")
    for side in _sidecars(path):
        _unlink(side)


def _copy_then_replace(src: Path, target: Path) -> None:
    """Publish `src` at `target` when a rename cannot (another filesystem): copy to a temporary name
    in the target's folder, fsync, rename there, fsync the folder."""
    tmp = target.parent / f".{target.name}.swap-{os.getpid()}.tmp"
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            shutil.copyfileobj(fin, fout, 1024 * 1024)
            fout.flush()
            os.fsync(fout.fileno())
        os.chmod(tmp, src.stat().st_mode & 0o777)
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _publish(src: Path, target: Path) -> None:
    for side in _sidecars(target):
        _unlink(side)
    try:
        os.replace(src, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise TargetError(f"cannot move {src} to {target}: {exc}") from exc
        _copy_then_replace(src, target)
        _unlink(src)
    _fsync_dir(target.parent)


def atomic_swap(staging: Path, target: Path) -> None:
    """Publish the finished staging file as the target in one rename.

    The staging file is checkpointed to a single file first; the old target's WAL is checkpointed
    and its sidecars removed, because SQLite would replay a stale -wal into the new file that takes
    its name. Across filesystems the file is copied beside the target first so the last step is
    still a rename.
    """
    if not staging.is_file():
        raise TargetError(f"staging database {staging} does not exist")
    if target.exists() and staging.resolve() == target.resolve():
        raise TargetError(f"staging database and target are the same file: {target}")
    _quiesce(staging, must_be_readable=True)
    _fsync_file(staging)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        _quiesce(target, must_be_readable=False)
    _publish(staging, target)


def _raw_copy_aside(target: Path, backup_dir: Path, prefix: str) -> Path:
    """Keep an unreadable target byte for byte (with its sidecars) before a restore replaces it."""
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = backup_name(prefix, datetime.now(UTC)).removeprefix(f"{prefix}-backup-")
    dest = backup_dir / f"{prefix}-unreadable-{stamp}"
    for src, dst in [(target, dest), *zip(_sidecars(target), _sidecars(dest), strict=True)]:
        if src.exists():
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600)
            _fsync_file(dst)
    _fsync_dir(backup_dir)
    return dest


def restore_backup(backup: Path, target: Path) -> Path:
    """Replace `target` with the content of `backup`, after verifying the backup and backing up the
    current target (a raw copy if it is unreadable, which is often why one restores). Returns the
    target path. The app must not have the target open; that is detected and refused."""
    result = verify_backup(backup)
    if not result.ok:
        raise IntegrityError(f"backup {backup} failed verification: {result.integrity}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.restore-{os.getpid()}.tmp"
    try:
        with _open_readonly(backup) as src:
            _copy_with_backup_api(src, tmp)
        if target.exists():
            try:
                create_backup(target)
            except (TargetError, IntegrityError):
                _raw_copy_aside(target, target.parent / "backups", target.stem)
            _quiesce(target, must_be_readable=False)
        _publish(tmp, target)
    except BaseException:
        _unlink(tmp)
        for side in _sidecars(tmp):
            _unlink(side)
        raise
    return target

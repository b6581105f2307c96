from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.backup import (
    _copy_then_replace,
    atomic_swap,
    backup_name,
    create_backup,
    list_backups,
    restore_backup,
    verify_backup,
)
from pipeline.errors import IntegrityError, TargetError
from pipeline.migrations import migrate_up

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "target_schema"
APP_NAME = re.compile(r"^xrozen-backup-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z\.db$")
T0 = datetime(2025, 10, 6, 13, 46, 53, 123456, tzinfo=UTC)


def _make_db(path: Path, rows: list[str], *, wal: bool = False) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS items (v TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO items VALUES (?)", [(r,) for r in rows])
    conn.execute("COMMIT")
    conn.close()


def _items(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [str(r[0]) for r in conn.execute("SELECT v FROM items ORDER BY rowid")]
    finally:
        conn.close()


def _sidecars(path: Path) -> list[Path]:
    return [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")) if p.exists()]


def test_backup_name_is_the_apps_iso_pattern() -> None:
    assert backup_name("xrozen", T0) == "xrozen-backup-2025-10-06T13-46-53-123Z.db"
    js_iso = T0.strftime("%Y-%m-%dT%H:%M:%S.") + f"{T0.microsecond // 1000:03d}Z"
    assert backup_name("xrozen", T0) == "xrozen-backup-" + js_iso.replace(":", "-").replace(".", "-") + ".db"
    local = T0.astimezone(timezone(timedelta(hours=2)))
    assert backup_name("xrozen", local) == backup_name("xrozen", T0)


def test_create_backup_defaults_and_content(tmp_path: Path) -> None:
    target = tmp_path / "xrozen.db"
    migrate_up(target, SCHEMA_DIR)
    _make_db(target, ["a", "b"])
    path = create_backup(target)
    assert path.parent == tmp_path / "backups"
    assert APP_NAME.match(path.name), path.name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert _items(path) == ["a", "b"]
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    result = verify_backup(path)
    assert result.ok and result.integrity == "ok"
    assert result.tables["items"] == 2 and result.tables["users"] == 0
    assert result.migrations == (1,)


def test_backup_of_a_live_wal_database_includes_uncheckpointed_pages(tmp_path: Path) -> None:
    target = tmp_path / "live.db"
    live = sqlite3.connect(target, isolation_level=None)
    live.execute("PRAGMA journal_mode = WAL")
    live.execute("PRAGMA wal_autocheckpoint = 0")
    live.execute("CREATE TABLE items (v TEXT)")
    live.execute("BEGIN")
    live.executemany("INSERT INTO items VALUES (?)", [(str(i),) for i in range(500)])
    live.execute("COMMIT")
    assert Path(f"{target}-wal").stat().st_size > 0
    path = create_backup(target, backup_dir=tmp_path / "b", prefix="xrozen", now=T0)
    live.close()
    assert path.name == "xrozen-backup-2025-10-06T13-46-53-123Z.db"
    assert len(_items(path)) == 500
    assert path.read_bytes()[18:20] == b"\x01\x01"
    assert _sidecars(path) == []


def test_same_millisecond_backups_get_distinct_names(tmp_path: Path) -> None:
    target = tmp_path / "xrozen.db"
    _make_db(target, ["a"])
    first = create_backup(target, now=T0)
    second = create_backup(target, now=T0)
    assert first != second and APP_NAME.match(second.name)
    assert [b.path for b in list_backups(tmp_path / "backups", "xrozen")] == [second, first]


def test_rotation_keeps_the_newest_by_name_and_ignores_foreign_files(tmp_path: Path) -> None:
    target = tmp_path / "xrozen.db"
    _make_db(target, ["a"])
    bdir = tmp_path / "backups"
    bdir.mkdir()
    foreign = [
        bdir / "notes.txt",
        bdir / "xrozen-backup-latest.db",
        bdir / "other-backup-2020-01-01T00-00-00-000Z.db",
        bdir / "xrozen-backup-2020-01-01T00-00-00-000Z.db.tmp",
    ]
    for f in foreign:
        f.write_text("not ours")
    times = [T0 + timedelta(minutes=m) for m in (5, 1, 11, 3, 0, 8, 2, 10, 7, 4, 9, 6)]
    made: dict[datetime, Path] = {}
    for i, when in enumerate(times):
        made[when] = create_backup(target, keep=10, now=when)
        os.utime(made[when], (1_000_000 - i * 1000, 1_000_000 - i * 1000))
    kept = list_backups(bdir, "xrozen")
    expected = sorted(times, reverse=True)[:10]
    assert [b.taken_at for b in kept] == [w.replace(microsecond=123000) for w in expected]
    assert {b.path for b in kept} == {made[w] for w in expected}
    assert all(f.exists() for f in foreign)
    create_backup(target, keep=3, now=T0 + timedelta(hours=1))
    assert len(list_backups(bdir, "xrozen")) == 3
    assert all(f.exists() for f in foreign)


def test_verify_detects_a_corrupted_copy(tmp_path: Path) -> None:
    target = tmp_path / "xrozen.db"
    _make_db(target, [f"row-{i:05d}-" + "x" * 200 for i in range(2000)])
    good = create_backup(target)
    assert verify_backup(good).ok
    bad = tmp_path / "corrupt.db"
    shutil.copyfile(good, bad)
    data = bytearray(bad.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for offset in range(page * 2, len(data) - page, page * 7):
        data[offset : offset + 64] = os.urandom(64)
    bad.write_bytes(bytes(data))
    result = verify_backup(bad)
    assert not result.ok and result.integrity != "ok"
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    assert not verify_backup(garbage).ok
    assert not verify_backup(tmp_path / "absent.db").ok
    assert not (tmp_path / "absent.db").exists()


def test_restore_round_trips_content_and_keeps_the_replaced_target(tmp_path: Path) -> None:
    target = tmp_path / "xrozen.db"
    _make_db(target, ["original"], wal=True)
    saved = create_backup(target, now=T0)
    _make_db(target, ["changed later"])
    assert _items(target) == ["original", "changed later"]
    assert restore_backup(saved, target) == target
    assert _items(target) == ["original"]
    assert _sidecars(target) == []
    backups = list_backups(tmp_path / "backups", "xrozen")
    assert len(backups) == 2 and backups[-1].path == saved
    assert _items(backups[0].path) == ["original", "changed later"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_restore_refuses_a_corrupted_backup_and_leaves_the_target(tmp_path: Path) -> None:
    target = tmp_path / "xrozen.db"
    _make_db(target, ["keep me"])
    before = target.read_bytes()
    bad = tmp_path / "xrozen-backup-2025-10-06T13-46-53-123Z.db"
    bad.write_bytes(b"SQLite format 3\x00" + os.urandom(4080))
    with pytest.raises(IntegrityError, match="failed verification"):
        restore_backup(bad, target)
    assert target.read_bytes() == before


def test_restore_over_an_unreadable_target_keeps_a_raw_copy(tmp_path: Path) -> None:
    target = tmp_path / "xrozen.db"
    src = tmp_path / "good.db"
    _make_db(src, ["good"])
    saved = create_backup(src, backup_dir=tmp_path / "elsewhere", prefix="xrozen", now=T0)
    junk = os.urandom(4096)
    target.write_bytes(junk)
    restore_backup(saved, target)
    assert _items(target) == ["good"]
    (raw,) = list((tmp_path / "backups").glob("xrozen-unreadable-*"))
    assert raw.read_bytes() == junk


def test_atomic_swap_publishes_staging_and_leaves_no_sidecars(tmp_path: Path) -> None:
    staging = tmp_path / "run" / "staging" / "xrozen.db"
    staging.parent.mkdir(parents=True)
    target = tmp_path / "xrozen.db"
    _make_db(staging, ["new"], wal=True)
    _make_db(target, ["old"], wal=True)
    holder = sqlite3.connect(staging)
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("INSERT INTO items VALUES ('new 2')")
    holder.commit()
    with pytest.raises(TargetError, match="in use"):
        atomic_swap(staging, target)
    assert _items(target) == ["old"]
    holder.close()
    atomic_swap(staging, target)
    assert not staging.exists() and _sidecars(staging) == []
    assert _sidecars(target) == []
    assert _items(target) == ["new", "new 2"]
    conn = sqlite3.connect(target)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_atomic_swap_refuses_a_target_the_app_has_open(tmp_path: Path) -> None:
    staging = tmp_path / "staging.db"
    target = tmp_path / "xrozen.db"
    _make_db(staging, ["new"])
    _make_db(target, ["old"], wal=True)
    app = sqlite3.connect(target)
    app.execute("PRAGMA journal_mode = WAL")
    app.execute("SELECT * FROM items").fetchall()
    with pytest.raises(TargetError, match="in use by another process"):
        atomic_swap(staging, target)
    app.close()
    assert _items(target) == ["old"] and staging.exists()


def _stale_wal_of(tmp_path: Path) -> bytes:
    """The -wal of a different database, with committed frames that were never checkpointed."""
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE leaked (x TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO leaked VALUES (?)", [(str(i),) for i in range(100)])
    conn.execute("COMMIT")
    data = Path(f"{other}-wal").read_bytes()
    conn.close()
    assert len(data) > 0
    return data


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_stale_wal_beside_the_target_does_not_leak_into_the_new_file(tmp_path: Path, target_exists: bool) -> None:
    stale = _stale_wal_of(tmp_path)
    staging = tmp_path / "staging.db"
    target = tmp_path / "xrozen.db"
    _make_db(staging, ["fresh"])
    if target_exists:
        _make_db(target, ["old"], wal=True)
    Path(f"{target}-wal").write_bytes(stale)
    atomic_swap(staging, target)
    assert _sidecars(target) == []
    conn = sqlite3.connect(target)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert names == {"items"}
    assert _items(target) == ["fresh"]


def test_copy_then_replace_is_the_cross_device_path(tmp_path: Path) -> None:
    src = tmp_path / "a" / "staging.db"
    src.parent.mkdir()
    _make_db(src, ["moved"])
    os.chmod(src, 0o600)
    target_dir = tmp_path / "b"
    target_dir.mkdir()
    target = target_dir / "xrozen.db"
    target.write_bytes(b"old")
    _copy_then_replace(src, target)
    assert _items(target) == ["moved"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target_dir.iterdir()) == ["xrozen.db"]

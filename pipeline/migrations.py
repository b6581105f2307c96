"""The target_schema/ migration runner.

The app keeps its own version table, `_migrations(version, name, applied_at)`, and reads it; we keep it
exactly as the app defines it so the app sees a database it recognises, and put what only we need
(the checksum of each applied file) beside it in `_supamigrate_migrations`. The checksum is what lets
us refuse a database whose schema was built from a file that has since been edited: running a changed
migration history against it would silently diverge from what the transform believes the target is.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError, TargetError

APP_VERSION_TABLE = "_migrations"
CHECKSUM_TABLE = "_supamigrate_migrations"
APP_VERSION_COLUMNS = ("version", "name", "applied_at")

_FILE_RE = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.sql$")
_MARKER_RE = re.compile(r"^[ \t]*--[ \t]*migrate:(?P<kind>up|down)\b[^\n]*$", re.IGNORECASE | re.MULTILINE)
_TXN_RE = re.compile(r"^(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)

MigrationState = Literal["applied", "pending", "changed", "missing"]


class MigrationError(ConfigError):
    """The migration files or the database's migration history cannot be reconciled; nothing changed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    up_sql: str
    down_sql: str | None
    checksum: str


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    state: MigrationState
    applied_at: str | None = None


@dataclass(frozen=True)
class _Applied:
    version: int
    name: str
    applied_at: str
    checksum: str | None


def _strip_comments_and_space(sql: str) -> str:
    """What is left of a fragment once comments and whitespace are gone; empty means no SQL."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif ch in "'\"`[":
            close = "]" if ch == "[" else ch
            j = sql.find(close, i + 1)
            j = n if j < 0 else j + 1
            out.append(sql[i:j])
            i = j
        else:
            if not ch.isspace():
                out.append(ch)
            i += 1
    return "".join(out)


def split_statements(sql: str) -> list[str]:
    """Split a section into single statements, using SQLite's own notion of a complete statement.

    `sqlite3.complete_statement` understands string literals, comments and `CREATE TRIGGER ... END;`,
    so a `;` inside any of those does not end a statement.
    """
    statements: list[str] = []
    start = 0
    pos = sql.find(";")
    while pos >= 0:
        candidate = sql[start : pos + 1]
        if sqlite3.complete_statement(candidate):
            if _strip_comments_and_space(candidate) not in ("", ";"):
                statements.append(candidate.strip())
            start = pos + 1
        pos = sql.find(";", pos + 1)
    rest = sql[start:]
    if _strip_comments_and_space(rest):
        if sqlite3.complete_statement(rest + ";"):
            statements.append(rest.strip())
        else:
            raise MigrationError(f"incomplete SQL statement at the end of a section: {rest.strip()[:80]!r}")
    return statements


def _leading_keyword_text(statement: str) -> str:
    lines = [ln for ln in statement.splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).lstrip()


def _parse_sections(path: Path, text: str) -> tuple[str, str | None]:
    markers = list(_MARKER_RE.finditer(text))
    kinds = [m.group("kind").lower() for m in markers]
    if kinds.count("up") != 1:
        raise MigrationError(
            f"migration file {path.name} must have exactly one '-- migrate:up' line (found {kinds.count('up')})"
        )
    if kinds.count("down") > 1:
        raise MigrationError(f"migration file {path.name} has more than one '-- migrate:down' line")
    if kinds[0] != "up":
        raise MigrationError(f"migration file {path.name}: '-- migrate:down' comes before '-- migrate:up'")
    up_marker = markers[0]
    if _strip_comments_and_space(text[: up_marker.start()]):
        raise MigrationError(f"migration file {path.name} has SQL before its '-- migrate:up' line")
    if len(markers) == 2:
        up_sql = text[up_marker.end() : markers[1].start()]
        down_sql: str | None = text[markers[1].end() :]
    else:
        up_sql = text[up_marker.end() :]
        down_sql = None
    if not _strip_comments_and_space(up_sql):
        raise MigrationError(f"migration file {path.name} has an empty up section")
    for section in (up_sql, down_sql):
        if section is None:
            continue
        for stmt in split_statements(section):
            if _TXN_RE.match(_leading_keyword_text(stmt)):
                raise MigrationError(
                    f"migration file {path.name} controls transactions itself ({stmt.split()[0]}); "
                    "the runner wraps each migration in its own transaction"
                )
    return up_sql.strip() + "\n", (down_sql.strip() + "\n" if down_sql is not None else None)


def discover(migrations_dir: Path) -> list[Migration]:
    """Every `NNN_name.sql` file, ordered by version; a `.sql` file with another name is an error
    because silently skipping it would leave the target without part of its schema."""
    if not migrations_dir.is_dir():
        raise MigrationError(f"migrations directory {migrations_dir} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(migrations_dir.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".sql":
            continue
        m = _FILE_RE.match(path.name)
        if m is None:
            raise MigrationError(
                f"{path.name} in {migrations_dir} is not named NNN_name.sql; rename it or move it away"
            )
        version = int(m.group("version"))
        if version in found:
            raise MigrationError(
                f"migration version {version} is used by both {found[version].path.name} and {path.name}"
            )
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"migration file {path.name} is not UTF-8: {exc}") from exc
        up_sql, down_sql = _parse_sections(path, text)
        found[version] = Migration(
            version=version,
            name=m.group("name"),
            path=path,
            up_sql=up_sql,
            down_sql=down_sql,
            checksum=hashlib.sha256(raw).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


def schema_checksum(migrations_dir: Path) -> str:
    """One digest over every migration (version, file name, file checksum) for the run fingerprint."""
    h = hashlib.sha256()
    for mig in discover(migrations_dir):
        h.update(f"{mig.version}\0{mig.path.name}\0{mig.checksum}\n".encode())
    return h.hexdigest()


@contextmanager
def _connection(db: sqlite3.Connection | Path, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """Yield a connection in autocommit mode so that BEGIN/COMMIT are ours alone.

    Python's legacy transaction handling would otherwise open transactions behind our back (and
    `executescript` would commit them), breaking the one-transaction-per-migration guarantee.
    """
    if isinstance(db, sqlite3.Connection):
        if db.in_transaction:
            raise MigrationError("the connection has an open transaction; commit or roll it back first")
        saved = db.isolation_level
        db.isolation_level = None
        try:
            yield db
        finally:
            db.isolation_level = saved
        return
    path = Path(db)
    # Read-only status still opens read-write: a mode=ro connection to a WAL file leaves -wal/-shm
    # files beside the live target that it cannot remove; a plain connection that writes nothing does.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        if not readonly:
            conn.execute("PRAGMA foreign_keys = ON")
        yield conn
    except sqlite3.DatabaseError as exc:
        raise TargetError(f"{path} cannot be used as a SQLite database: {exc}") from exc
    finally:
        conn.close()


def _table_columns(conn: sqlite3.Connection, table: str) -> tuple[str, ...] | None:
    rows = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    return tuple(str(r[1]) for r in rows) if rows else None


def _check_app_table(conn: sqlite3.Connection) -> bool:
    cols = _table_columns(conn, APP_VERSION_TABLE)
    if cols is None:
        return False
    if cols != APP_VERSION_COLUMNS:
        raise MigrationError(
            f"{APP_VERSION_TABLE} has columns {', '.join(cols)}; expected {', '.join(APP_VERSION_COLUMNS)}"
        )
    return True


def _read_applied(conn: sqlite3.Connection) -> dict[int, _Applied]:
    if not _check_app_table(conn):
        return {}
    checksums: dict[int, str] = {}
    if _table_columns(conn, CHECKSUM_TABLE) is not None:
        rows = conn.execute(f"SELECT version, checksum FROM {CHECKSUM_TABLE}")
        checksums = {int(v): str(c) for v, c in rows}
    return {
        int(v): _Applied(int(v), str(n), str(a), checksums.get(int(v)))
        for v, n, a in conn.execute(f"SELECT version, name, applied_at FROM {APP_VERSION_TABLE}")
    }


def _ensure_version_tables(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {APP_VERSION_TABLE} ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CHECKSUM_TABLE} (version INTEGER PRIMARY KEY, checksum TEXT NOT NULL)"
        )
        _check_app_table(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _compute_status(migrations: list[Migration], applied: dict[int, _Applied]) -> list[MigrationStatus]:
    by_version = {m.version: m for m in migrations}
    out: list[MigrationStatus] = []
    for version in sorted(set(by_version) | set(applied)):
        mig = by_version.get(version)
        rec = applied.get(version)
        if mig is None:
            assert rec is not None
            out.append(MigrationStatus(version, rec.name, "missing", rec.applied_at))
        elif rec is None:
            out.append(MigrationStatus(version, mig.name, "pending"))
        elif rec.checksum is not None and rec.checksum != mig.checksum:
            out.append(MigrationStatus(version, mig.name, "changed", rec.applied_at))
        else:
            out.append(MigrationStatus(version, mig.name, "applied", rec.applied_at))
    return out


def status(db: sqlite3.Connection | Path, migrations_dir: Path) -> list[MigrationStatus]:
    """Per version: applied, pending, changed (file edited since applied) or missing (file gone).

    Reads only: a path that does not exist yet is reported as all pending and is not created.
    """
    migrations = discover(migrations_dir)
    if not isinstance(db, sqlite3.Connection) and not Path(db).exists():
        return _compute_status(migrations, {})
    with _connection(db, readonly=True) as conn:
        applied = _read_applied(conn)
    return _compute_status(migrations, applied)


def _changed_error(mig: Migration, rec: _Applied) -> MigrationError:
    return MigrationError(
        f"migration {mig.version:03d} ({mig.path.name}) was edited after being applied: the database "
        f"recorded checksum {rec.checksum}, the file now has {mig.checksum}. Restore the file, or add a "
        "new migration instead of editing an applied one"
    )


def _run_in_transaction(conn: sqlite3.Connection, statements: list[str], mig: Migration) -> None:
    for stmt in statements:
        try:
            conn.execute(stmt)
        except sqlite3.Error as exc:
            raise MigrationError(
                f"migration {mig.version:03d} ({mig.path.name}) failed and was rolled back: {exc}; "
                f"statement: {stmt[:200]}"
            ) from exc


def migrate_up(db: sqlite3.Connection | Path, migrations_dir: Path, *, to_version: int | None = None) -> list[int]:
    """Apply pending migrations in version order, each with its version rows in one IMMEDIATE
    transaction, so a crash leaves every migration either fully applied and recorded or not at all.
    Returns the versions applied."""
    migrations = discover(migrations_dir)
    done: list[int] = []
    with _connection(db) as conn:
        _ensure_version_tables(conn)
        applied = _read_applied(conn)
        by_version = {m.version: m for m in migrations}
        for version, rec in applied.items():
            mig = by_version.get(version)
            if mig is not None and rec.checksum is not None and rec.checksum != mig.checksum:
                raise _changed_error(mig, rec)
        pending = [
            m for m in migrations if m.version not in applied and (to_version is None or m.version <= to_version)
        ]
        if pending and applied:
            newest = max(applied)
            if pending[0].version < newest:
                raise MigrationError(
                    f"migration {pending[0].version:03d} ({pending[0].path.name}) is pending but the newer "
                    f"version {newest:03d} is already applied; renumber it after {newest:03d}"
                )
        for mig in pending:
            statements = split_statements(mig.up_sql)
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(f"SELECT 1 FROM {APP_VERSION_TABLE} WHERE version = ?", (mig.version,)).fetchone():
                    conn.execute("ROLLBACK")
                    continue
                _run_in_transaction(conn, statements, mig)
                conn.execute(
                    f"INSERT INTO {APP_VERSION_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                    (mig.version, mig.name, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
                )
                conn.execute(
                    f"INSERT OR REPLACE INTO {CHECKSUM_TABLE} (version, checksum) VALUES (?, ?)",
                    (mig.version, mig.checksum),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            done.append(mig.version)
    return done


def migrate_down(
    db: sqlite3.Connection | Path,
    migrations_dir: Path,
    *,
    steps: int = 1,
    to_version: int | None = None,
) -> list[int]:
    """Revert the newest applied migrations: `steps` of them, or every one above `to_version` when it
    is given (then `steps` is ignored; `to_version=0` reverts all). Every migration to revert is
    checked (file present, unchanged, has a down section) before any is touched. Returns the versions
    reverted, newest first."""
    if to_version is None and steps < 1:
        raise MigrationError(f"steps must be at least 1, got {steps}")
    migrations = discover(migrations_dir)
    by_version = {m.version: m for m in migrations}
    done: list[int] = []
    with _connection(db) as conn:
        applied = _read_applied(conn)
        newest_first = sorted(applied, reverse=True)
        targets = [v for v in newest_first if v > to_version] if to_version is not None else newest_first[:steps]
        plan: list[Migration] = []
        for version in targets:
            rec = applied[version]
            mig = by_version.get(version)
            if mig is None:
                raise MigrationError(
                    f"migration {version:03d} ({rec.name}) is applied but its file is missing from "
                    f"{migrations_dir}; cannot revert it"
                )
            if rec.checksum is not None and rec.checksum != mig.checksum:
                raise _changed_error(mig, rec)
            if mig.down_sql is None:
                raise MigrationError(
                    f"migration {version:03d} ({mig.path.name}) has no '-- migrate:down' section; it cannot be reverted"
                )
            plan.append(mig)
        for mig in plan:
            assert mig.down_sql is not None
            statements = split_statements(mig.down_sql)
            conn.execute("BEGIN IMMEDIATE")
            try:
                _run_in_transaction(conn, statements, mig)
                conn.execute(f"DELETE FROM {APP_VERSION_TABLE} WHERE version = ?", (mig.version,))
                if _table_columns(conn, CHECKSUM_TABLE) is not None:
                    conn.execute(f"DELETE FROM {CHECKSUM_TABLE} WHERE version = ?", (mig.version,))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            done.append(mig.version)
    return done

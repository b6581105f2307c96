"""A run folder whose extract stage holds made-up auth.users and profiles rows, without a database.

The users builder and the unique checks read only committed extract files and the manifest, so the
tests of their scratch-file paths write those directly: any number of users, in key order or
shuffled, with the quirks the builder must decide (e-mails equal but for case, profile-only users,
missing and profile-side hashes, soft deletes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.config import Config, parse_config
from pipeline.plan import TablePlan, build_plan
from pipeline.runs import Manifest, RunDir, atomic_write_parquet
from pipeline.sources.base import Column, TableInfo
from pipeline.target import load_target_schema

ROOT = Path(__file__).resolve().parents[2]
AUTH_COLUMNS = ("id", "email", "encrypted_password", "deleted_at", "is_anonymous", "is_sso_user", "banned_until",
                "phone", "raw_user_meta_data", "created_at", "updated_at")
PROFILE_COLUMNS = ("id", "email", "full_name", "user_category", "password_hash", "created_at", "updated_at")
AUTH = TableInfo("auth", "users", tuple(Column(c, "uuid" if c == "id" else "text") for c in AUTH_COLUMNS), ("id",))
PROFILES = TableInfo("public", "profiles",
                     tuple(Column(c, "uuid" if c == "id" else "text") for c in PROFILE_COLUMNS), ("id",))


def user_uuid(n: int) -> str:
    return f"{n * 2654435761 % 2**32:08x}-0000-4000-8000-{n:012d}"


def _hash(n: int, prefix: str = "$2a$10$") -> str:
    return prefix + f"{n:022d}" + "x" * 31


def make_users(n: int, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """n auth users and their profiles, plus profile-only users (every 13th), quirks at fixed rates."""
    rng = random.Random(seed)
    auth: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    for k in range(n):
        uid = user_uuid(k)
        email = f"user{k}@example.test"
        if k % 11 == 5:  # the same address as an earlier user but for case: one of them is a duplicate
            email = f"User{rng.randrange(max(k, 1))}@Example.TEST"
        ts = f"2024-01-{1 + k % 28:02d} 10:00:00+00"
        if k % 13 == 3:  # profile-only: the app's own signup, no auth.users row
            profiles.append({"id": uid, "email": email.upper() if k % 2 else email, "full_name": f"P {k}",
                             "user_category": "client", "password_hash": _hash(k, "$2b$12$") if k % 3 else None,
                             "created_at": ts, "updated_at": ts})
            continue
        auth.append({"id": uid, "email": email if k % 17 else None, "phone": None if k % 17 else "+100",
                     "encrypted_password": None if k % 9 == 4 else _hash(k),
                     "deleted_at": ts if k % 29 == 1 else None, "is_anonymous": "false", "is_sso_user": "false",
                     "banned_until": None, "raw_user_meta_data": f'{{"full_name": "A {k}"}}' if k % 2 else None,
                     "created_at": ts, "updated_at": ts})
        if k % 4:
            profiles.append({"id": uid, "email": email, "full_name": f"Prof {k}", "user_category": "editor",
                             "password_hash": _hash(k + 1, "$2b$12$") if k % 9 == 4 else None,
                             "created_at": ts, "updated_at": "2025-01-01 00:00:00+00" if k % 8 == 1 else ts})
    return auth, profiles


@dataclass
class UsersRun:
    run: RunDir
    manifest: Manifest
    config: Config
    plan: TablePlan
    all_plans: list[TablePlan]


def _write_extract(run: RunDir, manifest: Manifest, table: TableInfo, rows: list[dict[str, Any]],
                   batch_rows: int) -> None:
    names = [c.name for c in table.columns]
    schema = pa.schema([(c, pa.string()) for c in names])
    for i in range(0, max(len(rows), 1), batch_rows):
        part = rows[i:i + batch_rows]
        path = run.extract_dir(table.qualified) / f"part-{i // batch_rows + 1:05d}.parquet"
        t = pa.table({c: [r.get(c) for r in part] for c in names}, schema=schema)
        sha = atomic_write_parquet(path, t)
        manifest.commit_extract_batch(table.qualified, {"file": str(path.relative_to(run.root)), "sha256": sha,
                                                        "rows": len(part)})
    manifest.finish_extract(table.qualified)


def users_run(tmp: Path, auth: list[dict[str, Any]], profiles: list[dict[str, Any]], batch_rows: int = 50,
              extra_config: dict[str, Any] | None = None, tables: tuple[TableInfo, ...] = ()) -> UsersRun:
    """A run folder with the given rows extracted (in the order given), and the plan of its users table."""
    run = RunDir.in_runs(tmp / "runs", "run1").create()
    manifest = Manifest.create(run.manifest_path, "run1", {})
    for table, rows in ((AUTH, auth), (PROFILES, profiles)):
        _write_extract(run, manifest, table, rows, batch_rows)
    extra = dict(extra_config or {})
    tables_rule = {"profiles": {"drop": ["password_hash"]}, **extra.pop("tables", {})}
    config = parse_config({"source": {"uri": "x.sql"}, "tables": tables_rule, **extra})
    plan = build_plan(config, [AUTH, PROFILES, *tables], load_target_schema(ROOT / "target_schema"))
    assert not plan.blocking, plan.blocking
    return UsersRun(run, manifest, config, plan.table("users"), plan.tables)


def write_extract(ur: UsersRun, table: TableInfo, rows: list[dict[str, Any]], batch_rows: int = 50) -> None:
    """Another source table's extract in the same run (e.g. user_roles)."""
    _write_extract(ur.run, ur.manifest, table, rows, batch_rows)

"""Target `users` rows from auth.users plus the users that exist only in profiles.

Kept apart from the generic table path because one target row draws on two source tables and on
policies (soft deletes, anonymous and SSO users, hash precedence) that no column rename expresses.
Both inputs are read from the committed extract files, so a resumed run builds identical users.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.plan import TablePlan
from pipeline.runs import Manifest, RunDir
from pipeline.sources.base import Column
from pipeline.transform import BatchInput, Staged, StageFn, extract_batches, row_keys
from transforms.auth_hashes import HashInfo, classify_hash, normalize_email

TEXT = Column("text", "text")
UUID = Column("id", "uuid")
TSTZ = Column("ts", "timestamp with time zone")
SOURCE_COLUMNS = {
    "id": UUID,
    "email": TEXT,
    "password_hash": TEXT,
    "full_name": TEXT,
    "user_category": TEXT,
    "created_at": TSTZ,
    "updated_at": TSTZ,
}
_PROFILE_COLUMNS = ("id", "email", "full_name", "user_category", "created_at", "updated_at")


def parse_ts(value: str | None) -> datetime | None:
    """Order-only parse of a Postgres timestamptz text; None when absent or not parseable."""
    if not value:
        return None
    v = value.strip().replace(" ", "T", 1)
    if v.endswith(("+00", "-00")) or (len(v) > 3 and v[-3] in "+-" and v[-2:].isdigit()):
        v += ":00"
    try:
        d = datetime.fromisoformat(v)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("t", "true", "1", "yes")


def _meta(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        m = json.loads(raw)
    except ValueError:
        return {}
    return m if isinstance(m, dict) else {}


def _hash_reason(info: HashInfo) -> str:
    return info.reason or f"{info.algorithm} hash cannot be used"


def choose_hash(
    config: Config,
    auth_hash: str | None,
    auth_updated: str | None,
    profile_hash: str | None,
    profile_updated: str | None,
) -> tuple[str | None, str | None, str]:
    """Pick the hash a user logs in with: (hash, reject reason, origin).

    Usable bcrypt wins over anything else; between two usable hashes the configured precedence
    decides (most recently changed row by default). Other algorithms are kept only by policy.
    """
    uc = config.users
    a, p = classify_hash(auth_hash), classify_hash(profile_hash)
    if a.usable and p.usable:
        if uc.hash_precedence == "auth":
            return auth_hash, None, "auth"
        if uc.hash_precedence == "profiles":
            return profile_hash, None, "profiles"
        ta, tp = parse_ts(auth_updated), parse_ts(profile_updated)
        if tp is not None and (ta is None or tp > ta):
            return profile_hash, None, "profiles"
        return auth_hash, None, "auth"
    if a.usable:
        return auth_hash, None, "auth"
    if p.usable:
        return profile_hash, None, "profiles"
    for info, value, origin in ((a, auth_hash, "auth"), (p, profile_hash, "profiles")):
        if info.algorithm in ("argon2", "fbscrypt", "scrypt"):
            if uc.other_algorithms == "keep":
                return value, None, origin
            return None, (f"password hash uses {info.variant or info.algorithm}, which the app cannot verify "
                          "(users.other_algorithms: reject)"), origin
    reason = _hash_reason(a)
    if a.algorithm == "empty":
        reason = "no password (empty hash: an OAuth, magic-link or invited user)"
    elif a.algorithm == "null":
        reason = "no password (NULL hash: a user inserted by SQL or without a password)"
    return None, f"no usable password hash: {reason}", "none"


def users_inputs_and_stager(
    plan: TablePlan, config: Config, run: RunDir, manifest: Manifest
) -> tuple[list[BatchInput], StageFn]:
    uc = config.users
    hash_col = uc.profile_hash_column
    profiles: dict[str, dict[str, str | None]] = {}
    auth_ids: set[str] = set()
    inputs: list[BatchInput] = []
    if plan.source is not None:
        inputs += extract_batches(run, manifest, plan.source.qualified, "auth-")
        for b in inputs:
            auth_ids.update(str(v) for v in pq.read_table(b.extract_file, columns=["id"]).column(0).to_pylist())
    prof_inputs: list[BatchInput] = []
    for extra in plan.extra_sources:
        prof_inputs = extract_batches(run, manifest, extra.qualified, "profiles-")
        wanted = [c for c in (*_PROFILE_COLUMNS, hash_col) if c in {x.name for x in extra.extract_columns}]
        for b in prof_inputs:
            for row in pq.read_table(b.extract_file, columns=wanted).to_pylist():
                profiles[str(row["id"])] = row
    inputs += prof_inputs
    now = datetime.now(UTC)

    def stage(b: BatchInput, data: pa.Table) -> Staged:
        if b.batch_id.startswith("auth-"):
            return _stage_auth(data, b.offset)
        return _stage_profiles(data)

    def _new(rows: list[dict[str, Any]], raw: list[dict[str, Any]], keys: list[str]) -> Staged:
        cols = {c: pa.array([r.get(c) for r in rows], pa.string()) for c in SOURCE_COLUMNS}
        return Staged(columns=cols, source_columns=dict(SOURCE_COLUMNS), keys=keys, raw=raw,
                      raw_table=pa.table({}))

    def _category(meta_value: Any, profile_value: str | None, staged_notes: Any) -> str:
        allowed = plan.target.column("user_category").allowed_values if _has(plan, "user_category") else None
        for cand in (meta_value, profile_value):
            if isinstance(cand, str) and (allowed is None or cand in allowed):
                return cand
        if meta_value is not None or profile_value is not None:
            staged_notes["user_category:defaulted"] += 1
        return uc.default_user_category

    def _stage_auth(data: pa.Table, offset: int) -> Staged:
        raw = data.to_pylist()
        keys = row_keys(data, ("id",), offset)
        rows: list[dict[str, Any]] = []
        fates: list[tuple[str, str, str | None] | None] = []
        notes: dict[str, int] = {}
        from collections import Counter

        cnotes: Counter[str] = Counter()
        for r in raw:
            uid = str(r["id"])
            prof = profiles.get(uid, {})
            meta = _meta(r.get("raw_user_meta_data"))
            fate: tuple[str, str, str | None] | None = None
            if r.get("deleted_at") and uc.soft_deleted == "skip":
                fate = ("filter", "soft-deleted user (users.soft_deleted: skip)", None)
            elif _truthy(r.get("is_anonymous")) and uc.anonymous == "skip":
                fate = ("filter", "anonymous user (users.anonymous: skip)", None)
            elif _truthy(r.get("is_sso_user")) and uc.sso == "skip":
                fate = ("filter", "SSO user (users.sso: skip)", None)
            elif uc.banned == "skip" and (bt := parse_ts(r.get("banned_until"))) and bt > now:
                fate = ("filter", "banned user (users.banned: skip)", None)
            email = normalize_email(r.get("email")) or normalize_email(prof.get("email"))
            chosen, why, origin = choose_hash(config, r.get("encrypted_password"), r.get("updated_at"),
                                              prof.get(hash_col), prof.get("updated_at"))
            if fate is None and email is None:
                fate = ("reject", "user has no email (a phone-only or anonymous user)", "email")
            if fate is None and why is not None:
                if uc.missing_hash == "reset_token" and origin == "none":
                    chosen = uc.unusable_hash_marker
                    cnotes["password_hash:reset_required"] += 1
                else:
                    fate = ("reject", why, "password_hash")
            if origin == "profiles":
                cnotes["password_hash:from_profiles"] += 1
            rows.append({
                "id": uid, "email": email, "password_hash": chosen,
                "full_name": meta.get("full_name") if isinstance(meta.get("full_name"), str) else prof.get("full_name"),
                "user_category": _category(meta.get("user_category"), prof.get("user_category"), cnotes),
                "created_at": r.get("created_at"), "updated_at": r.get("updated_at") or r.get("created_at"),
            })
            fates.append(fate)
        staged = _new(rows, raw, keys)
        _apply_fates(staged, fates)
        staged.notes.update(cnotes)
        staged.notes.update(notes)
        return staged

    def _stage_profiles(data: pa.Table) -> Staged:
        raw_all = data.to_pylist()
        raw = [r for r in raw_all if str(r["id"]) not in auth_ids]
        keys = [str(r["id"]) for r in raw]
        rows: list[dict[str, Any]] = []
        fates: list[tuple[str, str, str | None] | None] = []
        from collections import Counter

        cnotes: Counter[str] = Counter()
        for r in raw:
            email = normalize_email(r.get("email"))
            chosen, why, origin = choose_hash(config, None, None, r.get(hash_col), r.get("updated_at"))
            fate: tuple[str, str, str | None] | None = None
            if email is None:
                fate = ("reject", "profile-only user has no email", "email")
            elif why is not None:
                if uc.missing_hash == "reset_token" and origin == "none":
                    chosen = uc.unusable_hash_marker
                    cnotes["password_hash:reset_required"] += 1
                else:
                    fate = ("reject", f"profile-only user: {why}", "password_hash")
            cnotes["profile_only_user"] += 1
            rows.append({
                "id": str(r["id"]), "email": email, "password_hash": chosen, "full_name": r.get("full_name"),
                "user_category": _category(None, r.get("user_category"), cnotes),
                "created_at": r.get("created_at"), "updated_at": r.get("updated_at") or r.get("created_at"),
            })
            fates.append(fate)
        staged = _new(rows, raw, keys)
        _apply_fates(staged, fates)
        staged.notes.update(cnotes)
        return staged

    return inputs, stage


def _has(plan: TablePlan, column: str) -> bool:
    return any(c.name == column for c in plan.target.columns)


def _apply_fates(staged: Staged, fates: list[tuple[str, str, str | None] | None]) -> None:
    for i, fate in enumerate(fates):
        if fate is None:
            continue
        kind, reason, column = fate
        if kind == "filter":
            staged.filtered[i] = reason
        else:
            staged.reject(i, "user_" + (column or "row"), column, reason)

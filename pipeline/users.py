"""Target `users` rows from auth.users plus profile-only users, reset tokens, the census and the reset CSV.

Kept apart from the generic table path because one target row draws on two source tables and on
policies (soft deletes, anonymous and SSO users, hash precedence) that no column rename expresses.
Every input is a committed file of this run (extracts, the users transform batches, the run's
reset-token key), so a resumed run decides every user, and every token, exactly as before.
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config
from pipeline.errors import IntegrityError
from pipeline.logs import get_logger
from pipeline.plan import MigrationPlan, TablePlan
from pipeline.runs import Manifest, RunDir, atomic_write_bytes
from pipeline.scratch import Scratch, fetch_in_chunks
from pipeline.sources.base import Column
from pipeline.transform import BatchInput, Staged, StageFn, extract_batches, row_keys
from transforms.auth import (
    AuthCensus,
    AuthPolicy,
    UserDecision,
    decide_auth_user,
    decide_profile_user,
    oauth_only_by_provider,
    reset_token,
    reset_token_row_id,
    token_digest,
)

log = get_logger(stage="users")

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
RESET_COLUMNS = ("id", "user_id", "token", "expires_at", "used_at", "created_at")
_PROFILE_COLUMNS = ("id", "email", "full_name", "user_category", "created_at", "updated_at")
RESET_KEY_FILE = "reset-tokens.key"
RESETS_CSV = "password-resets.csv"


def auth_policy(config: Config) -> AuthPolicy:
    uc = config.users
    return AuthPolicy(soft_deleted=uc.soft_deleted, banned=uc.banned, anonymous=uc.anonymous, sso=uc.sso,
                      missing_hash=uc.missing_hash, other_algorithms=uc.other_algorithms,
                      hash_precedence=uc.hash_precedence, unusable_hash_marker=uc.unusable_hash_marker,
                      default_user_category=uc.default_user_category)


def run_started(manifest: Manifest) -> datetime:
    """The run's start time: 'now' for ban checks and token expiry, fixed so a resume decides the same."""
    raw = manifest.data.get("created_at")
    try:
        d = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _allowed_categories(plan: TablePlan) -> tuple[str, ...] | None:
    for c in plan.target.columns:
        if c.name == "user_category":
            return c.allowed_values
    return None


class UserSources:
    """The profiles by id and the auth.users ids, in the table's scratch file, asked a batch at a time.

    Both grow with the users (at 10M source rows: 400k of each, ~150 MB as Python objects), and each
    batch needs only its own: the auth batches their profiles, the profile batches which of their ids
    auth.users has. They are copied from the committed extract files on first use, in a fresh file,
    so a resumed run looks up exactly what an uninterrupted one did. A profile comes back as the dict
    of the columns its extract has (the deciders tell a missing column from a NULL one).
    """

    def __init__(self, scratch: Scratch, run: RunDir, manifest: Manifest, plan: TablePlan, hash_col: str) -> None:
        self._scratch = scratch
        self._run, self._manifest, self._plan = run, manifest, plan
        # per extra source (by index): its column names, and what picks their values out of a stored row
        self._shapes: list[tuple[tuple[str, ...], Callable[[tuple[Any, ...]], tuple[Any, ...]]]] = []
        self._columns = list(dict.fromkeys((*_PROFILE_COLUMNS, hash_col)))
        self._tables: tuple[str, str] | None = None

    def _built(self) -> tuple[str, str]:
        if self._tables is not None:
            return self._tables
        sc = self._scratch
        profiles, auth = sc.new_table("profiles"), sc.new_table("auth_ids")
        cols = ", ".join(f"c{k}" for k in range(len(self._columns)))
        sc.db.execute(f"CREATE TABLE {profiles} (id TEXT PRIMARY KEY, shape INTEGER NOT NULL, {cols}) WITHOUT ROWID")
        sc.db.execute(f"CREATE TABLE {auth} (id TEXT PRIMARY KEY) WITHOUT ROWID")
        marks = ", ".join("?" * (len(self._columns) + 2))
        for extra in self._plan.extra_sources:
            names = {x.name for x in extra.extract_columns}
            wanted = tuple(c for c in self._columns if c in names)
            # a row is (id, shape, c0, c1, ...): the picker takes the columns this shape has, in order
            places = [2 + self._columns.index(c) for c in wanted]
            pick = itemgetter(*places) if len(places) > 1 else (lambda row, k=places[0]: (row[k],))
            self._shapes.append((wanted, pick))
            shape = len(self._shapes) - 1
            for b in extract_batches(self._run, self._manifest, extra.qualified, "profiles-"):
                t = pq.read_table(b.extract_file, columns=list(wanted))
                lists = [t.column(c).to_pylist() if c in wanted else [None] * t.num_rows for c in self._columns]
                ids = [str(v) for v in t.column("id").to_pylist()]
                # a later row with the same id replaces an earlier one, as in a dict
                sc.write(f"INSERT OR REPLACE INTO {profiles} VALUES ({marks})",
                         zip(ids, [shape] * t.num_rows, *lists, strict=True))
        if self._plan.source is not None:
            for b in extract_batches(self._run, self._manifest, self._plan.source.qualified, "auth-"):
                ids = pq.read_table(b.extract_file, columns=["id"]).column(0).to_pylist()
                sc.write(f"INSERT OR IGNORE INTO {auth} VALUES (?)", ((str(v),) for v in ids))
        self._tables = (profiles, auth)
        return self._tables

    def _profile(self, row: tuple[Any, ...]) -> dict[str, Any]:
        names, pick = self._shapes[row[1]]
        return dict(zip(names, pick(row), strict=True))

    def profiles(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The profile of each of ids that has one."""
        profiles, _ = self._built()
        return {r[0]: self._profile(r) for r in self._scratch.with_ids(profiles, ids)}

    def in_auth(self, ids: list[str]) -> set[str]:
        """Those of ids that are auth.users ids."""
        _, auth = self._built()
        return {r[0] for r in self._scratch.with_ids(auth, ids, "id")}

    def profile_only(self) -> Iterator[list[dict[str, Any]]]:
        """Every profile whose id auth.users does not have, a block at a time."""
        profiles, auth = self._built()
        cur = self._scratch.db.execute(f"SELECT * FROM {profiles} WHERE id NOT IN (SELECT id FROM {auth})")
        for rows in fetch_in_chunks(cur):
            yield [self._profile(r) for r in rows]


def _profile_inputs(run: RunDir, manifest: Manifest, plan: TablePlan) -> list[BatchInput]:
    inputs: list[BatchInput] = []
    for extra in plan.extra_sources:  # the last extra source's batches are the profile-only batches
        inputs = extract_batches(run, manifest, extra.qualified, "profiles-")
    return inputs


def users_inputs_and_stager(
    plan: TablePlan, config: Config, run: RunDir, manifest: Manifest, scratch: Scratch
) -> tuple[list[BatchInput], StageFn]:
    """Batches: every auth.users extract batch, then every profiles batch (profile-only users)."""
    inputs: list[BatchInput] = []
    if plan.source is not None:
        inputs += extract_batches(run, manifest, plan.source.qualified, "auth-")
    inputs += _profile_inputs(run, manifest, plan)
    sources = UserSources(scratch, run, manifest, plan, config.users.profile_hash_column)
    decide_auth, decide_profiles = _deciders(plan, config, manifest, sources)

    def stage(b: BatchInput, data: pa.Table) -> Staged:
        if b.batch_id.startswith("auth-"):
            return _staged(_decided_in_chunks(data, decide_auth), data, row_keys(data, ("id",), b.offset))
        ids = [str(v) for v in data.column("id").to_pylist()]
        in_auth = sources.in_auth(ids)
        rest = data.filter(pa.array([i not in in_auth for i in ids], pa.bool_()))
        return _staged(_decided_in_chunks(rest, decide_profiles), rest, [i for i in ids if i not in in_auth])

    return inputs, stage


Decide = Callable[[list[dict[str, Any]]], list[UserDecision]]


def _deciders(plan: TablePlan, config: Config, manifest: Manifest, sources: UserSources) -> tuple[Decide, Decide]:
    """How a slice of auth.users rows and a slice of profile-only rows are decided: one definition
    for the transform and the census, so the census counts exactly what the transform did."""
    uc = config.users
    policy = auth_policy(config)
    now = run_started(manifest)
    allowed = _allowed_categories(plan)

    def decide_auth(rows: list[dict[str, Any]]) -> list[UserDecision]:
        profiles = sources.profiles([str(r["id"]) for r in rows])
        return [decide_auth_user(r, profiles.get(str(r["id"])), policy, now, allowed_categories=allowed,
                                 profile_hash_column=uc.profile_hash_column) for r in rows]

    def decide_profiles(rows: list[dict[str, Any]]) -> list[UserDecision]:
        return [decide_profile_user(r, policy, allowed_categories=allowed,
                                    profile_hash_column=uc.profile_hash_column) for r in rows]

    return decide_auth, decide_profiles


DECIDE_ROWS = 2000


def _decided_in_chunks(data: pa.Table, decide: Decide) -> Iterator[UserDecision]:
    """Each row's decision, made a slice at a time: a batch of wide auth.users rows as Python dicts
    (~2 KB each, with their profiles and target rows) cost ~100 MB, a slice of them a few."""
    for chunk in data.to_batches(max_chunksize=DECIDE_ROWS):
        yield from decide(chunk.to_pylist())


def _staged(decisions: Iterable[UserDecision], raw: pa.Table, keys: list[str]) -> Staged:
    """The batch's target columns and row fates; `raw` holds the source rows, read back only for
    the rejected ones (their rejects lines)."""
    values: dict[str, list[Any]] = {c: [] for c in SOURCE_COLUMNS}
    fates: list[tuple[int, UserDecision]] = []
    notes: Counter[str] = Counter()
    for i, d in enumerate(decisions):
        for c, taken in values.items():
            taken.append(d.row.get(c))
        if d.fate is not None:
            fates.append((i, d))
            continue
        if d.reset:
            notes["password_hash:reset_required"] += 1
        if d.kept_other:
            notes["password_hash:other_algorithm_kept"] += 1
        if d.origin == "profiles":
            notes["password_hash:from_profiles"] += 1
        if "profile_only" in d.flags:
            notes["id:profile_only_user"] += 1
        if "email_normalized" in d.flags:
            notes["email:lowercased_or_trimmed"] += 1
        if d.category_defaulted:
            notes["user_category:defaulted"] += 1
    cols = {c: pa.array(v, pa.string()) for c, v in values.items()}
    staged = Staged(columns=cols, source_columns=dict(SOURCE_COLUMNS), keys=keys, raw_table=raw, notes=notes)
    for i, d in fates:
        assert d.fate is not None
        kind, reason, column = d.fate
        if kind == "filter":
            staged.filtered[i] = reason
        else:
            staged.reject(i, "user_" + (column or "row"), column, reason)
    return staged


# Reset tokens ---------------------------------------------------------------------------------------
def reset_key(run: RunDir) -> bytes:
    """The run's private HMAC key for reset tokens, made once (0600) and reused by every resume."""
    path = run.root / RESET_KEY_FILE
    if not path.is_file():
        atomic_write_bytes(path, secrets.token_bytes(32).hex().encode())
    return bytes.fromhex(path.read_text().strip())


def reset_tokens_inputs_and_stager(
    plan: TablePlan, config: Config, run: RunDir, manifest: Manifest
) -> tuple[list[BatchInput], StageFn]:
    """One token batch per committed users batch: a token for every loaded user holding the marker.

    The users batch's sha256 stands in for the extract checksum, so if users is redone with other
    content the token batches are redone too (the generic transform checks it).
    """
    users_table = config.users.table
    marker = config.users.unusable_hash_marker
    inputs: list[BatchInput] = []
    batches = manifest.transform_state(users_table)["batches"]
    for bid in sorted(batches):
        e = batches[bid]
        inputs.append(BatchInput(bid, users_table, run.root / e["file"], e["sha256"], 0))
    started = run_started(manifest)
    fmt = config.types.timestamp_format
    created = started.strftime(fmt)
    expires = (started + timedelta(hours=config.users.reset_token_ttl_hours)).strftime(fmt)

    def stage(b: BatchInput, data: pa.Table) -> Staged:
        key = reset_key(run)
        ids = [str(u) for u, h in zip(data.column("id").to_pylist(), data.column("password_hash").to_pylist(),
                                      strict=True) if h == marker]
        values: dict[str, list[str | None]] = {
            "id": [reset_token_row_id(key, u) for u in ids], "user_id": list[str | None](ids),
            "token": [token_digest(reset_token(key, u)) for u in ids],
            "expires_at": [expires] * len(ids), "used_at": [None] * len(ids), "created_at": [created] * len(ids),
        }
        names = {c.name for c in plan.target.columns}
        cols = {c: pa.array(v, pa.string()) for c, v in values.items() if c in names}
        return Staged(columns=cols, source_columns={c: TEXT for c in cols}, keys=ids,
                      raw_table=pa.table({"user_id": pa.array(ids, pa.string())}))

    return inputs, stage


def write_password_resets(plan: MigrationPlan, config: Config, run: RunDir, manifest: Manifest) -> Path | None:
    """runs/<id>/password-resets.csv (email, token, expires_at; 0600) from the committed token batches.

    Each plain token is re-derived and checked against the hash committed for the target, so the CSV
    can only ever name tokens the target holds.
    """
    name = config.users.reset_token_table
    if not any(tp.name == name and tp.kind == "reset_tokens" for tp in plan.tables):
        return None
    tokens: list[tuple[str, str, str]] = []
    for _bid, e in sorted(manifest.transform_state(name)["batches"].items()):
        t = pq.read_table(run.root / e["file"], columns=["user_id", "token", "expires_at"])
        tokens.extend(zip(*(t.column(c).to_pylist() for c in ("user_id", "token", "expires_at")), strict=True))
    wanted = {u for u, _, _ in tokens}
    emails: dict[str, str] = {}
    for _bid, e in sorted(manifest.transform_state(config.users.table)["batches"].items()):
        t = pq.read_table(run.root / e["file"], columns=["id", "email"])
        for uid, email in zip(t.column("id").to_pylist(), t.column("email").to_pylist(), strict=True):
            if uid in wanted:
                emails[uid] = email
    key = reset_key(run) if tokens else b""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["email", "token", "expires_at"])
    for uid, digest, expires in sorted(tokens, key=lambda x: emails.get(x[0], "")):
        plain = reset_token(key, uid)
        if token_digest(plain) != digest or uid not in emails:
            raise IntegrityError(f"reset token of user {uid} does not match the committed token batch; "
                                 "rerun with `supamigrate resume --fresh`")
        w.writerow([emails[uid], plain, expires])
    path = run.root / RESETS_CSV
    atomic_write_bytes(path, buf.getvalue().encode(), mode=0o600)
    os.chmod(path, 0o600)
    log.info("password reset list written", file=RESETS_CSV, users=len(tokens))
    return path


# Census ---------------------------------------------------------------------------------------------
def auth_census(
    plan: MigrationPlan, config: Config, run: RunDir, manifest: Manifest,
    identities: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """report["auth"]: every source user counted by hash, origin and kind, plus what the transform did."""
    try:
        up = next(tp for tp in plan.tables if tp.kind == "users")
    except StopIteration:
        return {}
    uc = config.users
    census = AuthCensus()
    with Scratch(run, f"{up.name}.census") as scratch:
        sources = UserSources(scratch, run, manifest, up, uc.profile_hash_column)
        decide_auth, decide_profiles = _deciders(up, config, manifest, sources)
        if up.source is not None:
            for b in extract_batches(run, manifest, up.source.qualified, "auth-"):
                for d in _decided_in_chunks(pq.read_table(b.extract_file), decide_auth):
                    census.add(d, "auth")
        for block in sources.profile_only():
            for d in decide_profiles(block):
                census.add(d, "profiles")
    out = census.as_dict()
    out["policies"] = {k: getattr(uc, k) for k in ("soft_deleted", "anonymous", "sso", "banned", "missing_hash",
                                                  "other_algorithms", "hash_precedence")}
    ust = manifest.transform_state(up.name)["batches"].values()
    out["users_table"] = {k: sum(int(e[k]) for e in ust) for k in ("rows_in", "loaded", "rejected", "filtered")}
    reasons: Counter[str] = Counter()
    for e in ust:
        reasons.update(e["reasons"])
    out["users_table"]["email_duplicates_rejected"] = int(reasons.get("duplicate:email", 0))
    rst = manifest.transform_state(uc.reset_token_table)["batches"].values() if any(
        tp.kind == "reset_tokens" for tp in plan.tables) else []
    out["reset_tokens_issued"] = sum(int(e["loaded"]) for e in rst)
    if out["reset_tokens_issued"]:
        out["password_resets_file"] = RESETS_CSV
    if identities is None:
        out["oauth_only_by_provider"] = "not available (the source has no auth.identities)"
    else:
        out["oauth_only_by_provider"] = oauth_only_by_provider(identities)
    return out

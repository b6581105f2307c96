"""Issue 6 end to end: accounts survive the move (auth.users + profile hashes -> users, reset tokens, census).

One quirky xrozen database (real PostgreSQL, pgcrypto) gets extra users whose hashes come from three
independent bcrypt implementations; real runs go into real SQLite files, and every known password
is checked with bcrypt against what landed in the target.
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import os
import random
import sqlite3
import stat
import subprocess
import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bcrypt
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.errors import Interrupted
from pipeline.runner import RunOutcome, run
from pipeline.runs import Manifest
from pipeline.scratch import Scratch
from pipeline.transform import (
    BatchInput,
    SeenValues,
    Staged,
    TransformContext,
    extract_batches,
    row_keys,
    transform_table,
)
from pipeline.users import auth_census, users_inputs_and_stager
from tests.support.postgres import throwaway_database
from tests.support.synthetic_users import UsersRun, make_users, users_run
from tests.support.xrozen import (
    ALICE,
    ANONYMOUS,
    ARGON,
    ARGON2_HASH,
    BANNED,
    FRANK,
    INVITED,
    IVY,
    JACK,
    KIM_LOWER,
    KIM_UPPER,
    KNOWN_LOGINS,
    NED,
    NORA,
    OLGA,
    OSCAR,
    PHONE_ONLY,
    SID,
    SSO_USER,
    load_xrozen_fixture,
    user_id,
)

ROOT = Path(__file__).resolve().parents[2]
WRONG = b"definitely-not-the-password"

# Published bcrypt test vectors (password, hash), not made by any code in this repository:
#  - OpenBSD / jBCrypt vectors ("abc" at $2a$10$, the symbol string at $2a$12$);
#  - crypt_blowfish's (openwall) $2y$ vector for the 8-bit password b"\xff\xff\xa3", where $2y$ matters;
#  - the jBCrypt $2a$12$ vector under the $2b$ prefix: $2b$ changed only passwords over 255 bytes, so
#    for this 34-byte password the digest is the same (Python's bcrypt and pgcrypto below confirm it).
VECTOR_2A10 = (b"abc", "$2a$10$WvvTPHKwdBJ3uk0Z37EMR.hLA2W6N9AEBhEgrAOljy2Ae5MtaSIUi")
VECTOR_2B12 = (b"~!@#$%^&*()      ~!@#$%^&*()PNBFRD",
               "$2b$12$WApznUOJfkEGSmYRfnkrPOr466oFDCaj4b6HY3EXGvfxm43seyhgC")
VECTOR_2Y = (b"\xff\xff\xa3", "$2y$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e")

PG_USER, PY_USER, V2A_USER, V2B_USER, V2Y_USER = (user_id(n) for n in range(101, 106))
PG_PASSWORD = "pgcrypto-made-pw"
PY_PASSWORD = "python-bcrypt-pw"


def _known_logins() -> list[tuple[str, bytes, str]]:
    """(user id, password bytes, origin) of every login that must work after migration."""
    out = [(k.user_id, k.password.encode(), k.origin) for k in KNOWN_LOGINS if k.current]
    out += [(PG_USER, PG_PASSWORD.encode(), "pgcrypto gen_salt"), (PY_USER, PY_PASSWORD.encode(), "python bcrypt"),
            (V2A_USER, VECTOR_2A10[0], "vector $2a$10$"), (V2B_USER, VECTOR_2B12[0], "vector $2b$12$"),
            (V2Y_USER, VECTOR_2Y[0], "vector $2y$")]
    return out


@pytest.fixture(scope="module")
def source(pg_admin_dsn: str) -> Iterator[str]:
    """The xrozen quirks plus five users whose hashes come from pgcrypto, Python bcrypt and vectors."""
    with throwaway_database(pg_admin_dsn, prefix="smusers") as dsn:
        load_xrozen_fixture(dsn, messages=6, bulk_users=0)
        py_hash = bcrypt.hashpw(PY_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for n, uid, email, expr, arg in [
                (101, PG_USER, "PG.Made@Xrozen.test ", "extensions.crypt(%s, extensions.gen_salt('bf', 5))",
                 PG_PASSWORD),
                (102, PY_USER, "py@xrozen.test", "%s", py_hash),
                (103, V2A_USER, "v2a@xrozen.test", "%s", VECTOR_2A10[1]),
                (104, V2B_USER, "v2b@xrozen.test", "%s", VECTOR_2B12[1]),
                (105, V2Y_USER, "v2y@xrozen.test", "%s", VECTOR_2Y[1]),
            ]:
                conn.execute(
                    "INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, "
                    "raw_user_meta_data, created_at, updated_at, is_sso_user, is_anonymous) VALUES "
                    f"('00000000-0000-0000-0000-000000000000', %s, 'authenticated', 'authenticated', %s, {expr}, "
                    "%s::jsonb, now(), now(), false, false)",
                    (uid, email, arg, json.dumps({"full_name": f"Vector {n}", "user_category": "agency"})))
            # pgcrypto must agree with the vectors too (it knows only $2a$, whose digest $2b$ shares here)
            for pw, h in (VECTOR_2A10, VECTOR_2B12):
                as_2a = "$2a$" + h[4:]
                got = conn.execute("SELECT extensions.crypt(%s, %s)", (pw.decode(), as_2a)).fetchone()
                assert got is not None and got[0] == as_2a
        yield dsn


def _config(tmp: Path, dsn: str, users: dict[str, Any] | None = None, logins: dict[str, Any] | None = None) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["source"] = {"uri": dsn}
    data["target"] = {"path": str(tmp / "app.db"), "migrations": str(ROOT / "target_schema"),
                      "backups": {"enabled": False}}
    data["run"] = {"runs_dir": str(tmp / "runs")}
    data["users"].update(users or {})
    if logins is not None:
        data["logins"] = logins
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _users(db: Path) -> dict[str, dict[str, Any]]:
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return {r["id"]: dict(r) for r in conn.execute("SELECT * FROM users")}


def _rejects(o: RunOutcome, table: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in sorted((o.run_dir / "rejects" / table).glob("*.jsonl")):
        for line in p.read_text().splitlines():
            r = json.loads(line)
            out[r["key"]] = r
    return out


def _filtered(o: RunOutcome, table: str) -> dict[str, str]:
    m = json.loads((o.run_dir / "manifest.json").read_text())
    out: dict[str, str] = {}
    for b in m["transform"][table]["batches"].values():
        out.update(b["filtered_keys"])
    return out


def _table(o: RunOutcome, name: str) -> dict[str, Any]:
    return next(t for t in o.report["tables"] if t["name"] == name)


@pytest.fixture(scope="module")
def default_run(source: str, tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    """The shipped policies: missing hashes and argon2 rejected, soft-deleted and anonymous users skipped."""
    tmp = tmp_path_factory.mktemp("users-default")
    o = run(_config(tmp, source), target=str(tmp / "app.db"))
    assert o.exit_code == 0, o.report.get("error")
    return o


@pytest.fixture(scope="module")
def reset_run(source: str, tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    """missing_hash: reset_token and other_algorithms: keep, banned users skipped, SSO users skipped."""
    tmp = tmp_path_factory.mktemp("users-reset")
    o = run(_config(tmp, source, {"missing_hash": "reset_token", "other_algorithms": "keep", "banned": "skip",
                                  "reset_token_ttl_hours": 48}), target=str(tmp / "app.db"))
    assert o.exit_code == 0, o.report.get("error")
    return o


def test_every_known_password_verifies_after_migration(default_run: RunOutcome) -> None:
    users = _users(default_run.run_dir.parent.parent / "app.db")
    logins = [x for x in _known_logins() if x[0] not in (SID, KIM_LOWER)]  # skipped / duplicate, see below
    origins = {o for _, _, o in logins}
    assert {"pgcrypto", "python-bcrypt", "fixed-vector", "pgcrypto gen_salt", "python bcrypt",
            "vector $2a$10$", "vector $2b$12$", "vector $2y$"} <= origins
    prefixes = set()
    for uid, pw, origin in logins:
        stored = users[uid]["password_hash"].encode()
        prefixes.add(stored[:7].decode())
        assert bcrypt.checkpw(pw, stored), f"{origin} login of {uid} does not verify"
        assert not bcrypt.checkpw(WRONG, stored), f"{origin}: a wrong password verified"
    assert {"$2a$06$", "$2a$05$", "$2b$04$", "$2a$10$", "$2b$12$", "$2y$05$", "$2y$10$"} <= prefixes
    # Frank had an old auth hash and a newer profile hash: the newer one wins (hash_precedence most_recent)
    old = next(k for k in KNOWN_LOGINS if k.user_id == FRANK and not k.current)
    assert not bcrypt.checkpw(old.password.encode(), users[FRANK]["password_hash"].encode())


def test_hashes_are_copied_verbatim(default_run: RunOutcome, source: str) -> None:
    users = _users(default_run.run_dir.parent.parent / "app.db")
    with psycopg.connect(source) as conn:
        rows = conn.execute("SELECT id::text, encrypted_password FROM auth.users").fetchall()
    src: dict[str, str | None] = dict(rows)
    assert users[V2Y_USER]["password_hash"] == VECTOR_2Y[1]
    for uid in (ALICE, PG_USER, PY_USER, V2A_USER, V2B_USER):
        assert users[uid]["password_hash"] == src[uid]


def test_user_fields_email_name_category(default_run: RunOutcome) -> None:
    users = _users(default_run.run_dir.parent.parent / "app.db")
    assert users[PG_USER]["email"] == "pg.made@xrozen.test"  # lowercased and trimmed
    assert users[PG_USER]["full_name"] == "Vector 101" and users[PG_USER]["user_category"] == "agency"
    assert users[KIM_UPPER]["email"] == "kim@xrozen.test"
    assert users[ALICE]["full_name"] == "Alice Editor" and users[ALICE]["created_at"] == "2024-03-01 10:00:00"
    assert users[BANNED]["user_category"] == "client"  # banned: load by default


def test_default_policies_every_user_accounted_for(default_run: RunOutcome) -> None:
    o = default_run
    users = _users(o.run_dir.parent.parent / "app.db")
    rej = _rejects(o, "users")
    filt = _filtered(o, "users")
    assert filt[SID].startswith("soft-deleted user") and filt[ANONYMOUS].startswith("anonymous user")
    assert "no email" in rej[PHONE_ONLY]["reason"] and rej[PHONE_ONLY]["code"] == "user_email"
    assert rej[KIM_LOWER]["code"] == "duplicate" and KIM_UPPER in rej[KIM_LOWER]["reason"]
    for uid in (OLGA, OSCAR, SSO_USER, INVITED):
        assert "empty hash" in rej[uid]["reason"] and "users.missing_hash: reject" in rej[uid]["reason"]
    for uid in (NORA, NED):
        assert "NULL hash" in rej[uid]["reason"]
    for uid in (IVY, JACK):
        assert rej[uid]["reason"].startswith("profile-only user: no usable password hash")
    assert "argon2id" in rej[ARGON]["reason"] and "users.other_algorithms: reject" in rej[ARGON]["reason"]
    for r in rej.values():  # reasons never quote a hash
        assert "$2" not in r["reason"] and "$argon2" not in r["reason"]
    t = _table(o, "users")
    assert t["source_rows"] == 19 + 5 + 4  # fixed auth users, vector users, profile-only users
    assert t["source_rows"] == t["loaded"] + t["rejected"] + t["filtered"] == len(users) + len(rej) + len(filt)
    assert set(users) | set(rej) | set(filt) >= {ALICE, SID, PHONE_ONLY, ANONYMOUS, SSO_USER, ARGON, IVY}
    assert not any(x["name"] == "password_reset_tokens" for x in o.report["tables"])  # no tokens by default


def test_roles_of_users_that_did_not_migrate_carry_the_users_reason(default_run: RunOutcome) -> None:
    rej = _rejects(default_run, "user_roles")
    by_user = {r["row"]["user_id"]: r for r in rej.values()}
    assert by_user[OLGA]["code"] == "parent_rejected" and "no usable password hash" in by_user[OLGA]["reason"]
    assert by_user[SID]["code"] == "parent_rejected" and "soft-deleted user" in by_user[SID]["reason"]
    assert by_user[KIM_LOWER]["code"] == "parent_rejected" and "duplicate value" in by_user[KIM_LOWER]["reason"]
    admin = [r for r in rej.values() if r["row"]["role"] == "admin"]
    assert len(admin) == 1 and admin[0]["code"] == "enum_rejected"


def test_auth_census(default_run: RunOutcome) -> None:
    a = default_run.report["auth"]
    assert a["users_in_source"] == 28 and a["profile_only"] == 4 and a["auth_users"] == 24
    assert a["soft_deleted"] == 1 and a["phone_only"] == 1 and a["anonymous"] == 1
    assert a["sso"] == 1 and a["banned"] == 1 and a["no_email"] == 2
    assert a["email_case_duplicate_groups"] == 1 and a["email_case_duplicate_users"] == 2
    assert a["hash_algorithms"]["argon2id"] == 1 and a["hash_algorithms"]["empty"] == 6
    assert a["hash_algorithms"]["null"] == 4  # Nora, Ned, and the two profile-only users without a hash
    assert a["bcrypt_costs"]["$2b$ cost 12"] == 4 and a["bcrypt_costs"]["$2y$ cost 5"] == 1
    assert a["hash_origin"] == {"auth": 15, "profiles": 3, "none": 10}  # argon2 counts under auth
    assert a["no_usable_hash"] == 11 and a["usable_bcrypt"] == 17
    assert a["oauth_only_by_provider"] == {"github": 1, "google": 1, "phone": 1, "sso:8f1c": 1}
    assert a["users_table"]["email_duplicates_rejected"] == 1 and a["reset_tokens_issued"] == 0
    assert "statement" not in a
    assert default_run.report["auth"] == json.loads((default_run.run_dir / "report.json").read_text())["auth"]


def test_reset_token_policy(reset_run: RunOutcome) -> None:
    o = reset_run
    db = o.run_dir.parent.parent / "app.db"
    users = _users(db)
    needing = {OLGA, OSCAR, NORA, NED, INVITED, IVY, JACK}
    for uid in needing:
        assert users[uid]["password_hash"] == "!reset-required"
        with pytest.raises(ValueError):  # the marker can never verify
            bcrypt.checkpw(b"", users[uid]["password_hash"].encode())
    assert users[ARGON]["password_hash"] == ARGON2_HASH  # other_algorithms: keep
    filt = _filtered(o, "users")
    assert filt[BANNED] == "banned user (users.banned: skip)"
    assert SSO_USER in users  # SSO: load, with a reset token
    needing.add(SSO_USER)
    with closing(sqlite3.connect(db)) as conn:
        rows = {r[1]: r for r in conn.execute("SELECT id, user_id, token, expires_at, used_at, created_at "
                                              "FROM password_reset_tokens")}
    assert set(rows) == needing
    csv_path = o.run_dir / "password-resets.csv"
    assert stat.S_IMODE(csv_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(o.run_dir.stat().st_mode) == 0o700
    lines = list(csv.DictReader(csv_path.open()))
    assert len(lines) == len(needing)
    by_email = {u["email"]: uid for uid, u in users.items()}
    plain_tokens = []
    for line in lines:
        uid = by_email[line["email"]]
        _, _, stored, expires, used, created = rows[uid]
        assert stored == hashlib.sha256(line["token"].encode()).hexdigest() != line["token"]
        assert used is None and expires == line["expires_at"]
        fmt = "%Y-%m-%d %H:%M:%S"
        assert datetime.strptime(expires, fmt) - datetime.strptime(created, fmt) == timedelta(hours=48)
        assert len(line["token"]) >= 40
        plain_tokens.append(line["token"])
    t = _table(o, "password_reset_tokens")
    assert t["source_rows"] == t["loaded"] == len(needing) and t["rejected"] == t["filtered"] == 0
    assert all(c["ok"] for c in o.report["checks"])
    assert any(c["name"] == "content_checksum" and c["table"] == "password_reset_tokens" for c in o.report["checks"])
    a = o.report["auth"]
    assert a["reset_tokens_issued"] == len(needing) and a["reset_required"] == len(needing)
    assert a["other_algorithm_kept"] == 1
    # no plain token, marker-free: nothing secret in logs, reports or the manifest
    for name in ("log.jsonl", "report.json", "report.md", "report.html", "manifest.json"):
        text = (o.run_dir / name).read_text()
        for tok in plain_tokens:
            assert tok not in text, name
        for k in KNOWN_LOGINS:
            assert k.password not in text, name


@pytest.mark.parametrize("kill_at", ["transform.batch:3", "load.batch:2"])
def test_reset_tokens_consistent_after_a_kill_and_resume(source: str, tmp_path: Path, kill_at: str) -> None:
    """SIGKILL mid-transform or mid-load; the resumed run's CSV names exactly the tokens in its target."""
    cfg = _config(tmp_path, source, {"missing_hash": "reset_token"})
    code = ("import sys; from pipeline.runner import run; "
            "o = run(sys.argv[1]); sys.exit(o.exit_code)")
    env = dict(os.environ, SUPAMIGRATE_KILL_AT=kill_at)
    p = subprocess.run([sys.executable, "-c", code, str(cfg)], cwd=ROOT, env=env, capture_output=True, timeout=120)
    assert p.returncode == -9, p.stderr.decode()[-2000:]
    from pipeline.runner import resume

    o = resume(config_path=cfg)
    assert o.exit_code == 0, o.report.get("error")
    with closing(sqlite3.connect(tmp_path / "app.db")) as conn:
        stored = dict(conn.execute("SELECT u.email, t.token FROM password_reset_tokens t JOIN users u "
                                   "ON u.id = t.user_id"))
    lines = list(csv.DictReader((o.run_dir / "password-resets.csv").open()))
    assert len(lines) == len(stored) == 8
    for line in lines:
        assert stored[line["email"]] == hashlib.sha256(line["token"].encode()).hexdigest()


# The users builder's scratch file (no database: made-up extracts in a real run folder) ------------------
def _old_stager(ur: UsersRun) -> Callable[[BatchInput, pa.Table], Staged]:
    """The builder as it was before the scratch file: every profile in a dict, every auth id in a set."""
    from pipeline.users import _PROFILE_COLUMNS, _allowed_categories, _staged, auth_policy, run_started
    from transforms.auth import decide_auth_user, decide_profile_user

    uc, plan = ur.config.users, ur.plan
    policy, now, allowed = auth_policy(ur.config), run_started(ur.manifest), _allowed_categories(plan)
    profiles: dict[str, dict[str, Any]] = {}
    for extra in plan.extra_sources:
        names = {x.name for x in extra.extract_columns}
        wanted = [c for c in (*_PROFILE_COLUMNS, uc.profile_hash_column) if c in names]
        for b in extract_batches(ur.run, ur.manifest, extra.qualified, "profiles-"):
            for r in pq.read_table(b.extract_file, columns=wanted).to_pylist():
                profiles[str(r["id"])] = r
    assert plan.source is not None
    auth_ids = {str(v) for b in extract_batches(ur.run, ur.manifest, plan.source.qualified, "auth-")
                for v in pq.read_table(b.extract_file, columns=["id"]).column(0).to_pylist()}

    def stage(b: BatchInput, data: pa.Table) -> Staged:
        if b.batch_id.startswith("auth-"):
            raw = data.to_pylist()
            keys = row_keys(data, ("id",), b.offset)
            decisions = [decide_auth_user(r, profiles.get(str(r["id"])), policy, now, allowed_categories=allowed,
                                          profile_hash_column=uc.profile_hash_column) for r in raw]
            return _staged(decisions, data, keys)
        kept = [str(r["id"]) not in auth_ids for r in data.to_pylist()]
        raw = [r for r, k in zip(data.to_pylist(), kept, strict=True) if k]
        keys = [str(r["id"]) for r in raw]
        decisions = [decide_profile_user(r, policy, allowed_categories=allowed,
                                         profile_hash_column=uc.profile_hash_column) for r in raw]
        return _staged(decisions, data.filter(pa.array(kept, pa.bool_())), keys)

    return stage


def _staged_facts(s: Staged) -> tuple[Any, ...]:
    return (s.keys, s.raw_table.to_pylist(), s.errors, s.filtered, s.notes,
            {c: a.to_pylist() for c, a in s.columns.items()})


def _shuffled(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    out = list(rows)
    random.Random(seed).shuffle(out)
    return out


def _committed(ur: UsersRun, table: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """A table's committed rows, reject lines and manifest entries (less their timings)."""
    state = ur.manifest.transform_state(table)["batches"]
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for _bid, e in sorted(state.items()):
        rows += pq.read_table(ur.run.root / e["file"]).to_pylist()
        if e["rejects_file"]:
            rejects += [json.loads(line) for line in (ur.run.root / e["rejects_file"]).read_text().splitlines()]
    entries = {bid: {k: v for k, v in e.items() if k != "seconds"} for bid, e in state.items()}
    return rows, rejects, entries


def _users_in(tmp_path: Path, n: int, order: str, seed: int) -> UsersRun:
    """A run folder with n made-up users, extracted in key order or shuffled (64-row batches)."""
    auth, profiles = make_users(n)
    if order == "shuffled":
        auth, profiles = _shuffled(auth, seed), _shuffled(profiles, seed + 1)
    return users_run(tmp_path, auth, profiles, batch_rows=64)


@pytest.mark.parametrize("order", ["key_order", "shuffled"])
def test_users_builder_from_the_scratch_file_decides_as_the_in_memory_one(tmp_path: Path, order: str) -> None:
    ur = _users_in(tmp_path, 600, order, seed=1)
    old = _old_stager(ur)
    with Scratch(ur.run, "users") as scratch:
        inputs, stage = users_inputs_and_stager(ur.plan, ur.config, ur.run, ur.manifest, scratch)
        assert any(b.batch_id.startswith("profiles-") for b in inputs)
        for b in inputs:
            data = pq.read_table(b.extract_file)
            assert _staged_facts(stage(b, data)) == _staged_facts(old(b, data)), b.batch_id
    notes = Counter[str]()
    for b in inputs:
        notes.update(old(b, pq.read_table(b.extract_file)).notes)
    assert notes["id:profile_only_user"] > 20 and notes["password_hash:from_profiles"] > 5  # the quirks ran


def _transform(ur: UsersRun, tables: tuple[str, ...] = ("users",), **kwargs: Any) -> None:
    ctx = TransformContext(ur.run, ur.manifest)
    for name in tables:
        transform_table(next(t for t in ur.all_plans if t.name == name), ur.config, ur.run, ur.manifest, ctx,
                        **kwargs)


@pytest.mark.parametrize("order", ["key_order", "shuffled"])
def test_users_verdicts_the_same_with_e_mails_spilled_to_disk_or_held_in_memory(
        tmp_path: Path, order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    auth, profiles = make_users(900)
    if order == "shuffled":
        auth, profiles = _shuffled(auth, 3), _shuffled(profiles, 4)
    spills: list[int] = []
    real_spill = SeenValues._spill

    def spy(self: SeenValues, scratch: Scratch) -> None:
        spills.append(len(self))
        real_spill(self, scratch)

    monkeypatch.setattr(SeenValues, "_spill", spy)
    results = []
    for limit in (10**9, 40):
        monkeypatch.setattr("pipeline.transform.SPILL_VALUES", limit)
        ur = users_run(tmp_path / str(limit), auth, profiles, batch_rows=100)
        _transform(ur)
        results.append(_committed(ur, "users"))
    assert spills and all(n > 40 for n in spills)  # the second run took the disk path
    assert results[0] == results[1]
    rows, rejects, _ = results[0]
    dups = [r for r in rejects if r["code"] == "duplicate"]
    assert len(dups) > 20 and all("already used by row " in r["reason"] for r in dups)
    # the first row to take an address keeps it, whatever the order of the input
    first: dict[str, str] = {}
    for r in rows:
        first.setdefault(r["email"], r["id"])
    assert all(r["reason"].endswith("already used by row " + first[r["row"]["email"].strip().lower()])
               for r in dups if r["row"].get("email"))


def test_users_resume_after_a_kill_rebuilds_the_scratch_file_and_decides_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth, profiles = _shuffled(make_users(900)[0], 5), make_users(900)[1]
    monkeypatch.setattr("pipeline.transform.SPILL_VALUES", 30)
    whole = users_run(tmp_path / "whole", auth, profiles, batch_rows=100)
    _transform(whole)
    killed = users_run(tmp_path / "killed", auth, profiles, batch_rows=100)
    done: list[int] = []
    with pytest.raises(Interrupted):
        _transform(killed, progress=lambda _t, n: done.append(n), should_stop=lambda: len(done) >= 4)
    # a kill -9 leaves the file behind: a resume must not trust it (here: it lies about the e-mails)
    path = Scratch(killed.run, "users").path
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE seen_1 (v0, row TEXT, PRIMARY KEY (v0)) WITHOUT ROWID")
        db.executemany("INSERT INTO seen_1 VALUES (?, 'someone')", [(f"user{k}@example.test",) for k in range(900)])
        db.commit()
    resumed = Manifest.load(killed.run.manifest_path)
    _transform(UsersRun(killed.run, resumed, killed.config, killed.plan, killed.all_plans))
    assert _committed(UsersRun(killed.run, resumed, killed.config, killed.plan, killed.all_plans), "users") == \
        _committed(whole, "users")


def test_the_scratch_file_is_private_in_the_run_folder_and_gone_after_the_table(tmp_path: Path) -> None:
    auth, profiles = make_users(300)
    ur = users_run(tmp_path, auth, profiles, batch_rows=50)
    path = Scratch(ur.run, "users").path
    seen: list[tuple[int, int]] = []

    def check(_table: str, _n: int) -> None:
        seen.append((stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode)))

    _transform(ur, progress=check)
    assert path.parent.parent == ur.run.root
    assert seen and set(seen) == {(0o600, 0o700)}
    assert not path.exists() and list(path.parent.iterdir()) == []
    # and when the table stops early
    ur2 = users_run(tmp_path / "2", auth, profiles, batch_rows=50)
    with pytest.raises(Interrupted):
        _transform(ur2, should_stop=lambda: True)
    assert not Scratch(ur2.run, "users").path.exists()


def _old_census(ur: UsersRun) -> dict[str, Any]:
    """auth_census's counts as they were computed with every profile and auth id in memory."""
    from pipeline.users import _allowed_categories, auth_policy, run_started
    from transforms.auth import AuthCensus, decide_auth_user, decide_profile_user

    uc, up = ur.config.users, ur.plan
    policy, now, allowed = auth_policy(ur.config), run_started(ur.manifest), _allowed_categories(up)
    profiles = {str(r["id"]): r for extra in up.extra_sources
                for b in extract_batches(ur.run, ur.manifest, extra.qualified, "profiles-")
                for r in pq.read_table(b.extract_file).to_pylist()}
    census = AuthCensus()
    auth_ids: set[str] = set()
    assert up.source is not None
    for b in extract_batches(ur.run, ur.manifest, up.source.qualified, "auth-"):
        for r in pq.read_table(b.extract_file).to_pylist():
            auth_ids.add(str(r["id"]))
            census.add(decide_auth_user(r, profiles.get(str(r["id"])), policy, now, allowed_categories=allowed,
                                        profile_hash_column=uc.profile_hash_column), "auth")
    for uid, r in profiles.items():
        if uid not in auth_ids:
            census.add(decide_profile_user(r, policy, allowed_categories=allowed,
                                           profile_hash_column=uc.profile_hash_column), "profiles")
    return census.as_dict()


@pytest.mark.parametrize("order", ["key_order", "shuffled"])
def test_auth_census_from_the_scratch_file_counts_as_the_in_memory_one(tmp_path: Path, order: str) -> None:
    ur = _users_in(tmp_path, 700, order, seed=6)
    _transform(ur)
    from pipeline.plan import MigrationPlan

    got = auth_census(MigrationPlan(ur.all_plans, [], [], []), ur.config, ur.run, ur.manifest)
    expected = _old_census(ur)
    assert {k: got[k] for k in expected} == expected
    assert expected["profile_only"] > 20
    assert not (ur.run.root / "scratch" / "users.census.sqlite3").exists()


def _peak_traced(fn: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_users_transform_memory_does_not_grow_with_the_users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Peak Python allocation for 1,500 vs 6,000 users, same batch size: flat, not 4x (the profiles
    dict, the auth-id set and the e-mail set grew it ~2.5x before the scratch file)."""
    monkeypatch.setattr("pipeline.transform.SPILL_VALUES", 500)
    peaks = []
    for n in (1500, 6000):
        auth, profiles = make_users(n)
        ur = users_run(tmp_path / str(n), _shuffled(auth, 8), profiles, batch_rows=250)
        peaks.append(_peak_traced(lambda ur=ur: _transform(ur)))  # type: ignore[misc]
    assert peaks[1] < 1.4 * peaks[0], peaks


def test_a_users_batch_is_decided_a_slice_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak Python allocation of staging one batch of 3,000 users in 200-row slices against in one
    slice: the rows as dicts, their profiles and decisions live a slice at a time (a whole batch of
    them made the users table's peak ~100 MB at the bench's 20k-row batches)."""
    auth, profiles = make_users(3000)
    ur = users_run(tmp_path, auth, profiles, batch_rows=3000)
    peaks = {}
    for rows in (200, 3000):
        monkeypatch.setattr("pipeline.users.DECIDE_ROWS", rows)
        with Scratch(ur.run, "users") as scratch:
            inputs, stage = users_inputs_and_stager(ur.plan, ur.config, ur.run, ur.manifest, scratch)
            first = next(b for b in inputs if b.batch_id.startswith("auth-"))
            data = pq.read_table(first.extract_file)
            assert data.num_rows > 2000
            stage(first, data.slice(0, 1))  # the scratch file is built outside the measurement
            peaks[rows] = _peak_traced(lambda stage=stage, first=first, data=data: stage(first, data))  # type: ignore[misc]
    assert peaks[200] < 0.6 * peaks[3000], peaks

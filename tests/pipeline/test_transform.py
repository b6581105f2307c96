"""finish_batch on small Arrow batches: each row's fate (loaded, rejected with a reason, filtered).

The parents a batch is checked against are real committed transform files in a real run folder, the
same way a run hands them from one table to the next.
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import parse_config
from pipeline.plan import TablePlan, build_plan
from pipeline.runs import Manifest, RunDir, atomic_write_bytes, atomic_write_parquet
from pipeline.scratch import Scratch
from pipeline.sources.base import Column, TableInfo
from pipeline.target import TargetSchema, load_target_schema
from pipeline.transform import (
    SeenValues,
    TableState,
    TransformContext,
    _key_text,
    finish_batch,
    stage_table_batch,
    transform_table,
)
from tests.pipeline.conftest import MIGRATIONS
from tests.support.synthetic_users import UsersRun, make_users, user_uuid, users_run, write_extract
from transforms.policy import TypePolicy

U1, U2, U_REJ, U_GONE = (f"00000000-0000-4000-8000-00000000000{n}" for n in range(1, 5))


def rid(n: int) -> str:
    return f"aaaaaaaa-0000-4000-8000-{n:012d}"


@pytest.fixture(scope="module")
def schema() -> TargetSchema:
    return load_target_schema(MIGRATIONS)


def _plan(schema: TargetSchema, source: TableInfo, **rule: Any) -> TablePlan:
    target = source.name
    config = parse_config({"source": {"uri": "x.sql"}, "tables": {target: rule} if rule else {}})
    plan = build_plan(config, [source], schema)
    assert not plan.blocking, plan.blocking
    return plan.table(target)


def _ctx(tmp_path: Path) -> TransformContext:
    """A run whose users table committed U1 and U2 and rejected U_REJ."""
    rd = RunDir.in_runs(tmp_path / "runs", "run1").create()
    m = Manifest.create(rd.manifest_path, "run1", {})
    out = rd.transform_dir("users") / "auth-00001.parquet"
    sha = atomic_write_parquet(out, pa.table({"id": [U1, U2]}))
    rej = rd.rejects_dir("users") / "auth-00001.jsonl"
    atomic_write_bytes(rej, (json.dumps({"table": "users", "key": U_REJ, "column": "password_hash",
                                         "code": "user_password_hash", "reason": "no usable password hash"})
                             + "\n").encode())
    m.commit_transform_batch("users", "auth-00001", {"file": str(out.relative_to(rd.root)), "sha256": sha,
                                                     "rejects_file": str(rej.relative_to(rd.root))})
    return TransformContext(rd, m)


APP_ROLE = ("editor", "client", "agency", "admin", "superuser")
USER_ROLES = TableInfo("public", "user_roles", (Column("id", "uuid"), Column("user_id", "uuid"),
                                                 Column("role", "public.app_role", enum_values=APP_ROLE),
                                                 Column("created_at", "timestamp with time zone")), ("id",))


def _roles(rows: list[tuple[str, str | None, str | None]]) -> pa.Table:
    return pa.table({"id": [r[0] for r in rows], "user_id": [r[1] for r in rows], "role": [r[2] for r in rows],
                     "created_at": ["2024-03-01 10:00:00+02"] * len(rows)}, schema=pa.schema(
        [(c, pa.string()) for c in ("id", "user_id", "role", "created_at")]))


def test_user_roles_row_fates(schema: TargetSchema, tmp_path: Path) -> None:
    plan = _plan(schema, USER_ROLES, enum_map={"role": {"admin": "__reject__"}})
    data = _roles([(rid(1), U1, "editor"), (rid(2), U1, "admin"), (rid(3), U_GONE, "client"),
                   (rid(4), U_REJ, "client"), (rid(5), U1, "editor"), (rid(6), None, "agency"),
                   (rid(7), U2, None), (rid(8), U2, "superuser")])
    staged = stage_table_batch(plan, data, 0)
    out = finish_batch(plan, staged, TypePolicy(), _ctx(tmp_path), TableState())
    assert out.column("id").to_pylist() == [rid(1), rid(6)]
    assert out.column_names == ["id", "user_id", "role", "created_at"]
    assert out.column("created_at").to_pylist() == ["2024-03-01 08:00:00"] * 2
    fates = {staged.keys[i]: (code, col) for i, (code, col, _) in staged.errors.items()}
    assert fates == {rid(2): ("enum_rejected", "role"), rid(3): ("orphan", "user_id"),
                     rid(4): ("parent_rejected", "user_id"), rid(5): ("duplicate", None),
                     rid(7): ("missing_required", "role"), rid(8): ("invalid_value", "role")}, staged.errors
    reasons = {staged.keys[i]: reason for i, (_, _, reason) in staged.errors.items()}
    assert "'admin'" in reasons[rid(2)]
    assert "no usable password hash" in reasons[rid(4)]
    assert f"already used by row {rid(1)}" in reasons[rid(5)]
    assert "superuser" in reasons[rid(8)]


def test_uniques_are_remembered_across_batches(schema: TargetSchema, tmp_path: Path) -> None:
    plan = _plan(schema, USER_ROLES)
    ctx, state = _ctx(tmp_path), TableState()
    first = stage_table_batch(plan, _roles([(rid(1), U1, "editor")]), 0)
    assert finish_batch(plan, first, TypePolicy(), ctx, state).num_rows == 1
    second = stage_table_batch(plan, _roles([(rid(2), U1, "editor"), (rid(1), U2, "client")]), 1)
    assert finish_batch(plan, second, TypePolicy(), ctx, state).num_rows == 0
    assert sorted(code for code, _, _ in second.errors.values()) == ["duplicate", "duplicate"]


MESSAGES = TableInfo("public", "messages", (Column("id", "uuid"), Column("sender_id", "uuid"),
                                             Column("recipient_id", "uuid"), Column("content", "text"),
                                             Column("is_read", "boolean")), ("id",))


def _messages(rows: list[tuple[str, str | None, str | None, str | None, str | None]]) -> pa.Table:
    cols = ("id", "sender_id", "recipient_id", "content", "is_read")
    return pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)},
                    schema=pa.schema([(c, pa.string()) for c in cols]))


def _profiles_ctx(tmp_path: Path) -> TransformContext:
    ctx = _ctx(tmp_path)
    out = ctx.run.transform_dir("profiles") / "part-00001.parquet"
    sha = atomic_write_parquet(out, pa.table({"id": [U1, U2]}))
    ctx.manifest.commit_transform_batch("profiles", "part-00001", {"file": str(out.relative_to(ctx.run.root)),
                                                                   "sha256": sha, "rejects_file": None})
    return ctx


def test_orphans_set_null_only_where_the_column_may_be_null(schema: TargetSchema, tmp_path: Path) -> None:
    plan = _plan(schema, MESSAGES, orphans="set_null")
    data = _messages([(rid(101), U1, U_GONE, "hi", "t"), (rid(102), U_GONE, U1, "yo", "f"),
                      (rid(103), U2, None, "ok", None)])
    staged = stage_table_batch(plan, data, 0)
    out = finish_batch(plan, staged, TypePolicy(), _profiles_ctx(tmp_path), TableState())
    assert out.to_pylist() == [
        {"id": rid(101), "sender_id": U1, "recipient_id": None, "content": "hi", "is_read": 1},
        {"id": rid(103), "sender_id": U2, "recipient_id": None, "content": "ok", "is_read": 0},
    ]
    assert out.schema.field("is_read").type == pa.int64()
    assert [(staged.keys[i], e[0], e[1]) for i, e in staged.errors.items()] == [(rid(102), "orphan", "sender_id")]
    assert staged.notes["recipient_id:orphan_set_null"] == 1
    assert staged.notes["is_read:default_filled"] == 1


def test_orphan_policy_per_column(schema: TargetSchema, tmp_path: Path) -> None:
    plan = _plan(schema, MESSAGES, orphans={"recipient_id": "reject"})
    staged = stage_table_batch(plan, _messages([(rid(101), U1, U_GONE, "hi", "t")]), 0)
    assert finish_batch(plan, staged, TypePolicy(), _profiles_ctx(tmp_path), TableState()).num_rows == 0
    assert next(iter(staged.errors.values()))[:2] == ("orphan", "recipient_id")


def test_filters_take_rows_out_without_rejecting_them(schema: TargetSchema, tmp_path: Path) -> None:
    plan = _plan(schema, MESSAGES, filter=[{"column": "content", "op": "ne", "value": "spam"}])
    data = _messages([(rid(101), U1, None, "spam", "t"), (rid(102), U_GONE, None, "spam", "t"),
                      (rid(103), U1, None, "hi", "t")])
    staged = stage_table_batch(plan, data, 0)
    out = finish_batch(plan, staged, TypePolicy(), _profiles_ctx(tmp_path), TableState())
    assert out.column("id").to_pylist() == [rid(103)]
    assert set(staged.filtered) == {0, 1} and not staged.errors
    assert staged.filtered[0] == "filter content ne spam"


def test_defaults_fill_target_columns_the_source_lacks(schema: TargetSchema, tmp_path: Path) -> None:
    editors = TableInfo("public", "editors", (Column("id", "uuid"), Column("email", "text"),
                                              Column("hourly_rate", "numeric(10,2)")), ("id",))
    plan = _plan(schema, editors, defaults={"full_name": "Unknown editor"})
    data = pa.table({"id": [rid(201), rid(202)], "email": ["a@x", None], "hourly_rate": ["0.10", "NaN"]})
    staged = stage_table_batch(plan, data, 0)
    out = finish_batch(plan, staged, TypePolicy(), _ctx(tmp_path), TableState())
    rows = out.to_pylist()
    assert [r["id"] for r in rows] == [rid(201)]
    assert rows[0]["full_name"] == "Unknown editor" and rows[0]["hourly_rate"] == 0.1
    assert "employment_type" not in rows[0]  # not inserted: the target's own DEFAULT applies at load
    (err,) = staged.errors.values()
    assert err[0] in ("missing_required", "invalid_value")


def test_seen_values_name_the_first_row() -> None:
    from pipeline.transform import SeenValues

    seen = SeenValues()
    seen.add("u1", "u1")
    seen.add("a@x", "u2")
    seen.add(("p", 1), "(p, 1)")
    seen.add("u1", "u9")  # the first row stays
    assert seen.first("u1") == "u1" and seen.first("a@x") == "u2" and seen.first(("p", 1)) == "(p, 1)"
    assert seen.first("u2") is None and seen.first(("p", 2)) is None and len(seen) == 3


def _commit_roles(ctx: TransformContext, batch_id: str, ids: list[str]) -> None:
    out = ctx.run.transform_dir("user_roles") / f"{batch_id}.parquet"
    sha = atomic_write_parquet(out, pa.table({"id": ids, "user_id": [U1] * len(ids),
                                              "role": [f"r{i}" for i in range(len(ids))]}))
    ctx.manifest.commit_transform_batch("user_roles", batch_id, {"file": str(out.relative_to(ctx.run.root)),
                                                                 "sha256": sha, "rejects_file": None})


def _resumed_roles(schema: TargetSchema, tmp_path: Path, ids: list[str]
                   ) -> tuple[TablePlan, TransformContext, TableState]:
    """user_roles resumed after one committed batch holding ids, its guards rebuilt as a resume does."""
    from pipeline.transform import _rebuild_seen

    plan = _plan(schema, USER_ROLES)
    ctx = _ctx(tmp_path)
    _commit_roles(ctx, "part-00001", ids)
    state = TableState()
    _rebuild_seen(plan, ctx.run, ctx.manifest.transform_state("user_roles"), state)
    return plan, ctx, state


def test_keys_in_order_keep_no_values_and_a_break_reads_the_committed_ones_back(
        schema: TargetSchema, tmp_path: Path) -> None:
    plan, ctx, state = _resumed_roles(schema, tmp_path, [rid(1), rid(2)])
    pk = state.seen[("id",)]
    assert pk.ordered  # the resumed table's ids were increasing: only the largest is kept
    third = stage_table_batch(plan, _roles([(rid(3), U1, "editor")]), 2)
    assert finish_batch(plan, third, TypePolicy(), ctx, state).num_rows == 1 and pk.ordered
    _commit_roles(ctx, "part-00002", [rid(3)])
    # rid(2) again, out of order: the guard reads the committed batches and names the first row
    again = stage_table_batch(plan, _roles([(rid(4), U2, "client"), (rid(2), U2, "editor")]), 3)
    out = finish_batch(plan, again, TypePolicy(), ctx, state)
    assert out.column("id").to_pylist() == [rid(4)] and not pk.ordered
    assert [(c, r) for c, _, r in again.errors.values()] == [
        ("duplicate", f"duplicate value for unique (id) of user_roles: already used by row {rid(2)}")]


def test_a_resumed_table_whose_committed_keys_break_the_order_starts_with_all_of_them(
        schema: TargetSchema, tmp_path: Path) -> None:
    plan, ctx, state = _resumed_roles(schema, tmp_path, [rid(5), rid(1)])
    assert not state.seen[("id",)].ordered
    batch = stage_table_batch(plan, _roles([(rid(1), U2, "client"), (rid(9), U2, "editor")]), 2)
    assert finish_batch(plan, batch, TypePolicy(), ctx, state).column("id").to_pylist() == [rid(9)]
    assert "already used by row " + rid(1) in next(iter(batch.errors.values()))[2]


def test_foreign_key_lookup_from_the_smaller_side_equals_is_in() -> None:
    import pyarrow.compute as pc

    from pipeline.transform import _present_in

    parents = pa.array([rid(n) for n in range(0, 5000, 2)])  # even keys only
    for values in (pa.array([rid(n) if n % 7 else None for n in range(300)]),  # parents >> values
                   pa.array([rid(n) for n in range(6000)]),  # the plain path
                   pa.array([], pa.string()), pa.array([None, None], pa.string())):
        expected = pc.is_in(values, value_set=parents)
        assert _present_in(values, parents).equals(expected)
    got = _present_in(pa.array([rid(2), rid(3), None, rid(4998), rid(5000)]), parents).to_pylist()
    assert got == [True, False, False, True, False]
    ints = pa.array(list(range(0, 100_000, 3)), pa.int64())
    assert _present_in(pa.array([3, 4, 99_999], pa.int64()), ints).to_pylist() == [True, False, True]


# Unique values spilled to the scratch file ------------------------------------------------------------
def _value_batches(kind: str, seed: int) -> list[tuple[list[Any], list[str]]]:
    """Batches of (values, row names) with repeats inside a batch and across batches, unordered."""
    rng = random.Random(seed)
    pools: dict[str, list[Any]] = {
        "text": [f"User{n}@x" if n % 3 else f"user{n}@x" for n in range(300)],
        "integer": list(range(-50, 250)),
        "blob": [bytes([n % 7, n % 11, n]) for n in range(256)],
        "pair": [(rid(n % 120), ("editor", "client", "agency")[n % 3]) for n in range(300)],
        "real": [0.0, -0.0, 1.5, float("nan"), *[n / 4 for n in range(200)]],
    }
    pool = pools[kind]
    out = []
    for b in range(8):
        values = [rng.choice(pool) for _ in range(60)]
        if kind == "real":  # new float objects, as to_pylist makes them (a NaN is only ever itself)
            values = pa.array(values, pa.float64()).to_pylist()
        # about half the rows are named by their own value (a primary key), the rest by another key
        rows = [_key_text(v) if rng.random() < 0.5 else f"row {b}-{i}" for i, v in enumerate(values)]
        out.append((values, rows))
    return out


@pytest.mark.parametrize("kind", ["text", "integer", "blob", "pair", "real"])
@pytest.mark.parametrize("limit", [0, 25])
def test_seen_values_on_disk_answer_as_in_memory(tmp_path: Path, kind: str, limit: int) -> None:
    run = RunDir.in_runs(tmp_path / "runs", "r").create()
    memory = SeenValues()
    with Scratch(run, "t") as scratch:
        disk = SeenValues(scratch, limit=limit)
        for values, rows in _value_batches(kind, seed=limit + len(kind)):
            assert disk.claim(values, rows) == memory.claim(values, rows)
        assert disk.spilled and not memory.spilled
        for values, _ in _value_batches(kind, seed=99):
            assert [disk.first(v) for v in values] == [memory.first(v) for v in values]
        if kind != "real":  # NaN is never kept: it equals nothing
            assert len(disk) == len(memory)


def test_seen_values_stay_in_memory_without_a_scratch_file_or_below_the_limit(tmp_path: Path) -> None:
    run = RunDir.in_runs(tmp_path / "runs", "r").create()
    with Scratch(run, "t") as scratch:
        small = SeenValues(scratch, limit=1000)
        small.claim(["a", "b"], ["1", "2"])
        assert not small.spilled and not scratch.opened
        unbounded = SeenValues(limit=0)
        unbounded.claim(["a", "b"], ["1", "2"])
        assert not unbounded.spilled


def _roles_run(tmp_path: Path, n_roles: int, users: int = 400, seed: int = 3) -> UsersRun:
    """A run with `users` auth users and n_roles user_roles rows, in no key order, with repeated pairs."""
    auth, profiles = make_users(users)
    rng = random.Random(seed)
    roles = []
    for k in range(n_roles):
        user = user_uuid(rng.randrange(users + 20))  # some users never existed: orphans
        roles.append({"id": rid(k), "user_id": user, "role": rng.choice(APP_ROLE),
                      "created_at": "2024-03-01 10:00:00+02"})
    rng.shuffle(roles)
    ur = users_run(tmp_path, auth, profiles, batch_rows=200, tables=(USER_ROLES,),
                   extra_config={"tables": {"user_roles": {"enum_map": {"role": {"admin": "__reject__"}}}}})
    write_extract(ur, USER_ROLES, roles, batch_rows=200)
    return ur


def _transform_roles(ur: UsersRun) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ctx = TransformContext(ur.run, ur.manifest)
    for name in ("users", "user_roles"):
        transform_table(next(t for t in ur.all_plans if t.name == name), ur.config, ur.run, ur.manifest, ctx)
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for _bid, e in sorted(ur.manifest.transform_state("user_roles")["batches"].items()):
        rows += pq.read_table(ur.run.root / e["file"]).to_pylist()
        if e["rejects_file"]:
            rejects += [json.loads(x) for x in (ur.run.root / e["rejects_file"]).read_text().splitlines()]
    return rows, rejects


def test_user_roles_pairs_spilled_or_in_memory_give_the_same_verdicts(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    results = []
    for limit in (10**9, 50):
        monkeypatch.setattr("pipeline.transform.SPILL_VALUES", limit)
        results.append(_transform_roles(_roles_run(tmp_path / str(limit), 1500)))
    assert results[0] == results[1]
    reasons = Counter(r["code"] for r in results[0][1])
    assert reasons["duplicate"] > 50 and reasons["orphan"] > 10 and reasons["enum_rejected"] > 10
    assert any("unique (user_id, role) of user_roles: already used by row " in r["reason"] for r in results[0][1])


def test_unordered_unique_keys_memory_does_not_grow_with_the_table(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """user_roles with shuffled ids and (user_id, role) pairs: peak Python allocation for 1,500 vs
    6,000 rows is flat (both SeenValues sets grew it ~2x before they could spill)."""
    monkeypatch.setattr("pipeline.transform.SPILL_VALUES", 500)
    peaks = []
    for n in (1500, 6000):
        ur = _roles_run(tmp_path / str(n), n, users=2000)
        ctx = TransformContext(ur.run, ur.manifest)
        transform_table(ur.plan, ur.config, ur.run, ur.manifest, ctx)
        roles = next(t for t in ur.all_plans if t.name == "user_roles")
        gc.collect()
        tracemalloc.start()
        try:
            transform_table(roles, ur.config, ur.run, ur.manifest, ctx)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < 1.4 * peaks[0], peaks


PROJECTS = TableInfo("public", "projects", (Column("id", "uuid"), Column("name", "text"),
                                             Column("creator_id", "uuid"), Column("parent_project_id", "uuid")),
                     ("id",))


def _old_closure(plan: TablePlan, inputs: list[Any], stage_fn: Any, ctx: TransformContext) -> set[str]:
    """The self-reference closure as it was computed in memory (a walk up each row's parent chain)."""
    from pipeline.transform import _without_self_fks

    probe = TablePlan(target=_without_self_fks(plan), kind=plan.kind, rule=plan.rule, source=plan.source,
                      columns=plan.columns, extra_sources=plan.extra_sources)
    state, parents, alive = TableState(), {}, set()
    for b in inputs:
        table = finish_batch(probe, stage_fn(b, pq.read_table(b.extract_file)), TypePolicy(), ctx, state)
        for i, p in zip(table.column("id").to_pylist(), table.column("parent_project_id").to_pylist(), strict=True):
            alive.add(str(i))
            parents[str(i)] = None if p is None else str(p)
    ok: dict[str, bool] = {}

    def settle(node: str) -> bool:
        chain: list[str] = []
        cur: str | None = node
        verdict = True
        while cur is not None:
            if cur in ok:
                verdict = ok[cur]
                break
            if cur not in alive or cur in chain:
                verdict = False
                break
            chain.append(cur)
            cur = parents.get(cur)
        for c in chain:
            ok[c] = verdict
        return verdict

    return {n for n in alive if settle(n)}


def test_self_reference_closure_in_the_scratch_file_settles_as_the_walk_in_memory(tmp_path: Path) -> None:
    from pipeline.transform import _inputs_and_stager, _self_reference_closure

    rng = random.Random(11)
    n = 900
    rows = []
    for k in range(n):
        parent = None
        r = rng.random()
        if r < 0.5:
            parent = rid(rng.randrange(n))  # anywhere: later batches, itself, cycles
        elif r < 0.55:
            parent = rid(n + k)  # no such project
        rows.append({"id": rid(k), "name": None if k % 23 == 0 else f"p{k}",  # nameless: rejected
                     "creator_id": user_uuid(k % 50), "parent_project_id": parent})
    rows[10]["parent_project_id"], rows[11]["parent_project_id"] = rid(11), rid(10)  # a two-row cycle
    rows[12]["parent_project_id"] = rid(12)
    rng.shuffle(rows)
    ur = users_run(tmp_path, *make_users(60), batch_rows=100, tables=(PROJECTS,))
    write_extract(ur, PROJECTS, rows, batch_rows=100)
    ctx = TransformContext(ur.run, ur.manifest)
    transform_table(ur.plan, ur.config, ur.run, ur.manifest, ctx)
    plan = next(t for t in ur.all_plans if t.name == "projects")
    with Scratch(ur.run, "projects") as scratch:
        inputs, stage_fn = _inputs_and_stager(plan, ur.config, ur.run, ur.manifest, ctx, scratch)
        settled = _self_reference_closure(plan, inputs, stage_fn, TypePolicy(), ctx, scratch)
        every = pa.array([rid(k) for k in range(2 * n)])
        got = set(settled.accepted("parent_project_id", every).to_pylist())
    expected = _old_closure(plan, inputs, stage_fn, ctx)
    assert got == expected
    assert rid(10) not in got and rid(12) not in got and 100 < len(got) < n

"""The findings engine on its own: the severity rule (decided vs. undecided), exact counts, sample
keys, and suggestions that read back as the config they claim to be. No database needed: the plan is
built from the real target migrations and hand-made source tables, and reject reasons come from the
real conversion code so the engine's reading of them cannot drift from what the transform writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from pipeline.config import Config, explicit, parse_config
from pipeline.findings import _classify, collect_findings, sample_rejects, yaml_value
from pipeline.plan import MigrationPlan, build_plan
from pipeline.sources.base import Column, TableInfo
from pipeline.target import TargetSchema, load_target_schema
from transforms.policy import TypePolicy
from transforms.types import convert_column

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> TargetSchema:
    return load_target_schema(ROOT / "target_schema")


def _config(**extra: Any) -> Config:
    return parse_config({"source": {"uri": "postgresql://x"}, "target": {"migrations": str(ROOT / "target_schema")},
                         **extra})


def _source_like(schema: TargetSchema, name: str, extra: tuple[str, ...] = ()) -> TableInfo:
    """A source table with exactly the target's columns (all text), plus `extra` columns."""
    cols = [Column(c.name, "uuid" if c.name.endswith("id") else "text") for c in schema.tables[name].columns]
    cols += [Column(e, "text") for e in extra]
    return TableInfo("public", name, tuple(cols), ("id",))


def _totals(rejects: dict[str, int] | None = None, keys: dict[str, list[str]] | None = None,
            notes: dict[str, int] | None = None, filtered: dict[str, int] | None = None,
            source_rows: int = 100) -> dict[str, Any]:
    rej = sum((rejects or {}).values())
    filt = sum((filtered or {}).values())
    return {"source_rows": source_rows, "loaded": source_rows - rej - filt, "rejected": rej, "filtered": filt,
            "seconds": 0.1, "reject_reasons": rejects or {}, "filter_reasons": filtered or {},
            "notes": notes or {}, "sample_keys": keys or {}}


def _report(**kw: Any) -> dict[str, Any]:
    return {"tables": [], "checks": [], "unmigrated_tables": [], "auth": {}, **kw}


def _one(findings: list[dict[str, Any]], fid: str) -> dict[str, Any]:
    hits = [f for f in findings if f["id"] == fid]
    assert len(hits) == 1, (fid, [f["id"] for f in findings])
    return hits[0]


@pytest.mark.parametrize("value", [
    "admin", "public.audit_log", "yes", "no", "null", "a b", "50% done", "{x}", "#tag", "", "naïve: café",
    {"admin": "__reject__", "Super User": "client"}, ["created_at", "on"], {"id": "set_null"}, 3, None,
])
def test_yaml_value_reads_back_as_the_same_value(value: Any) -> None:
    assert yaml.safe_load(f"k: {yaml_value(value)}") == {"k": value}


def test_explicit_sees_keys_written_in_the_file_even_at_their_default_and_survives_overrides() -> None:
    config = _config(users={"missing_hash": "reject"}, tables={"messages": {"orphans": "reject"}})
    for c in (config, config.with_overrides(source="postgresql://y", target="/tmp/t.db", runs_dir="/tmp/r")):
        assert explicit(c.users, "missing_hash")
        assert not explicit(c.users, "other_algorithms")
        assert explicit(c.tables["messages"], "orphans")
        assert not explicit(c.tables["messages"], "enum_map")
        assert not explicit(c.types, "infinity")
    overridden = config.with_overrides(source="postgresql://y", target="/tmp/t.db", runs_dir="/tmp/r")
    assert (overridden.source.uri, overridden.target.path, overridden.run.runs_dir) == (
        "postgresql://y", "/tmp/t.db", "/tmp/r")
    assert overridden.digest() == _config(
        source={"uri": "postgresql://y"}, users={"missing_hash": "reject"},
        tables={"messages": {"orphans": "reject"}}, target={"migrations": str(ROOT / "target_schema"),
                                                            "path": "/tmp/t.db"}, run={"runs_dir": "/tmp/r"},
    ).digest()


def test_reasons_written_by_the_real_conversions_are_classified(schema: TargetSchema) -> None:
    role = schema.tables["user_roles"].column("role")
    conv = convert_column(pa.array(["editor", "admin", "Owner's"]), Column("role", "public.app_role"), role,
                          TypePolicy())
    assert [_classify("invalid_value", r) for r in conv.errors.values()] == [
        ("enum_not_allowed", "admin"), ("enum_not_allowed", "Owner's")]
    created = schema.tables["messages"].column("created_at")
    conv = convert_column(pa.array(["infinity", "0044-03-15 10:00:00+00 BC", "not a time"]),
                          Column("created_at", "timestamp with time zone"), created, TypePolicy())
    assert [_classify("invalid_value", conv.errors[i])[0] for i in range(3)] == [
        "infinity", "timestamp_out_of_range", "invalid_value"]


def _messages_plan(schema: TargetSchema, config: Config) -> MigrationPlan:
    return build_plan(config, [_source_like(schema, "messages")], schema)


MESSAGE_ORPHANS = {"orphan:project_id": 3, "parent_rejected:sender_id": 2}
MESSAGE_KEYS = {"orphan:project_id": ["m1", "m2", "m3"], "parent_rejected:sender_id": ["m4", "m5"]}


@pytest.mark.parametrize(("orphans", "project_sev", "sender_sev"), [
    (None, "blocking", "blocking"),
    ("reject", "warning", "warning"),
    ({"project_id": "reject"}, "warning", "blocking"),
    ({"project_id": "set_null", "sender_id": "reject"}, "warning", "warning"),
])
def test_foreign_key_rejects_block_until_an_orphans_policy_decides_them(
    schema: TargetSchema, orphans: Any, project_sev: str, sender_sev: str
) -> None:
    tables = {"messages": {"orphans": orphans}} if orphans is not None else {}
    config = _config(tables=tables, ignore_tables=[], run={"sample_keys": 2})
    plan = _messages_plan(schema, config)
    found = collect_findings(plan, {"messages": _totals(MESSAGE_ORPHANS, MESSAGE_KEYS)}, _report(), config)
    orphan = _one(found, "fk_orphan.messages.project_id")
    parent = _one(found, "fk_parent_not_migrated.messages.sender_id")
    assert (orphan["severity"], orphan["count"], orphan["sample_keys"]) == (project_sev, 3, ["m1", "m2"])
    assert (parent["severity"], parent["count"], parent["sample_keys"]) == (sender_sev, 2, ["m4", "m5"])
    assert orphan["rule"] == parent["rule"] == "tables.messages.orphans"
    if project_sev == "blocking":
        assert orphan["suggestion"] == "tables.messages.orphans: {project_id: reject}  # or set_null"
    if sender_sev == "blocking":  # sender_id is NOT NULL: set_null is not offered
        assert parent["suggestion"].startswith("tables.messages.orphans: {sender_id: reject}  # sender_id is NOT")


def test_enum_values_the_target_refuses_are_counted_per_value_from_the_reject_files(
    schema: TargetSchema, tmp_path: Path
) -> None:
    config = _config()
    plan = build_plan(config, [_source_like(schema, "user_roles")], schema)
    role = schema.tables["user_roles"].column("role")
    values = ["admin", "admin", "owner", "admin"]
    conv = convert_column(pa.array(values), Column("role", "public.app_role"), role, TypePolicy())
    rej = tmp_path / "rejects" / "user_roles"
    rej.mkdir(parents=True)
    lines = [json.dumps({"table": "user_roles", "key": f"r{i}", "column": "role", "code": "invalid_value",
                         "reason": conv.errors[i], "row": {"id": f"r{i}", "role": v, "secret": "s3cr3t"}})
             for i, v in enumerate(values)]
    (rej / "part-00001.jsonl").write_text("\n".join(lines) + "\n")
    totals = {"user_roles": _totals({"invalid_value:role": 4}, {"invalid_value:role": ["r0", "r1", "r2", "r3"]})}
    found = collect_findings(plan, totals, _report(), config, tmp_path)
    f = _one(found, "enum_not_allowed.user_roles.role")
    assert (f["severity"], f["count"], f["values"]) == ("blocking", 4, {"admin": 3, "owner": 1})
    assert f["sample_keys"] == ["r0", "r1", "r2", "r3"]
    assert f["suggestion"].startswith("tables.user_roles.enum_map.role: {admin: __reject__, owner: __reject__}")
    applied = yaml.safe_load(f["suggestion"].split("  #")[0].split(": ", 1)[1])
    decided = _config(tables={"user_roles": {"enum_map": {"role": applied}}})
    assert decided.tables["user_roles"].enum_map["role"] == {"admin": "__reject__", "owner": "__reject__"}
    # the sample rejects name the row and the reason, never the row's values
    samples = sample_rejects(tmp_path, plan, per_table=2)
    assert [s["key"] for s in samples] == ["r0", "r1"]
    assert all(set(s) == {"table", "key", "column", "reason"} for s in samples)
    assert "s3cr3t" not in json.dumps(samples)


def test_users_policies_block_only_while_nobody_wrote_them(schema: TargetSchema) -> None:
    auth = TableInfo("auth", "users", (Column("id", "uuid"), Column("email", "text")), ("id",))
    t = _totals({"user_password_hash:password_hash": 4}, {"user_password_hash:password_hash": ["u1", "u2"]},
                filtered={"soft-deleted user (users.soft_deleted: skip)": 1, "filter email not_null": 2})
    for written, sev, fsev in (({}, "blocking", "blocking"),
                               ({"missing_hash": "reject", "soft_deleted": "skip"}, "warning", "info")):
        config = _config(users=written)
        plan = build_plan(config, [auth], schema)
        found = collect_findings(plan, {"users": t}, _report(), config)
        hashes = _one(found, "users_missing_hash.users.password_hash")
        assert (hashes["severity"], hashes["count"], hashes["sample_keys"]) == (sev, 4, ["u1", "u2"])
        soft = _one(found, "users_filtered.users.soft_deleted")
        assert (soft["severity"], soft["count"]) == (fsev, 1)
        assert _one(found, "filtered.users")["severity"] == "info"
        if sev == "blocking":
            assert hashes["suggestion"] == "users.missing_hash: reject  # or reset_token"
            assert soft["suggestion"] == "users.soft_deleted: skip  # or load"


def test_plan_problems_unlisted_tables_and_conversion_notes(schema: TargetSchema) -> None:
    config = _config(ignore_tables=["public.invoices"], types={"infinity": "null"})
    tables = [_source_like(schema, "payments", extra=("invoice_ref",)),
              TableInfo("public", "invoices", (Column("id", "uuid"),), ("id",), row_estimate=3),
              TableInfo("public", "audit_log", (Column("id", "uuid"),), ("id",), row_estimate=4)]
    plan = build_plan(config, tables, schema)
    report = _report(unmigrated_tables=[{"name": n, "rows": r, "reason": why} for n, r, why in plan.unmigrated])
    notes = {"paid_date:microseconds_dropped": 7, "invoice_url:nul_character": 1, "due_date:infinity": 2}
    found = collect_findings(plan, {"payments": _totals(notes=notes)}, report, config)
    col = _one(found, "column_not_in_target.payments.invoice_ref")
    assert (col["severity"], col["count"]) == ("blocking", 100)
    assert col["suggestion"].startswith("tables.payments.drop: [invoice_ref]")
    audit = _one(found, "table_not_migrated.public.audit_log")
    assert (audit["severity"], audit["count"], audit["rule"]) == ("blocking", 4, "ignore_tables")
    assert _one(found, "table_not_migrated.public.invoices")["severity"] == "info"
    assert _one(found, "microseconds_dropped.payments.paid_date")["count"] == 7
    assert _one(found, "nul_character.payments.invoice_url")["severity"] == "warning"
    assert _one(found, "infinity_value.payments.due_date")["severity"] == "warning"
    # amount is text in this hand-made source, so no numeric-as-REAL finding
    assert not [f for f in found if f["kind"] == "numeric_as_real"]


def test_census_failed_checks_and_broken_equations() -> None:
    config = _config()
    empty = MigrationPlan([], [], [], [])
    auth = {"users_in_source": 10, "hash_algorithms": {"bcrypt": 7, "empty": 2, "argon2id": 1},
            "bcrypt_costs": {"$2a$ cost 10": 7}, "no_usable_hash": 3, "soft_deleted": 1,
            "policies": {"missing_hash": "reject"}, "users_table": {"rows_in": 10, "loaded": 7},
            "statement": "No user has a password hash the app can verify."}
    report = _report(
        auth=auth,
        checks=[{"name": "foreign_key_check", "table": None, "ok": False, "detail": "messages -> projects: row m1"},
                {"name": "integrity_check", "table": None, "ok": True, "detail": "ok"}],
        tables=[{"name": "messages", "source_rows": 10, "loaded": 7, "rejected": 1, "filtered": 0,
                 "equation_ok": False}])
    found = collect_findings(empty, {}, report, config)
    algos = _one(found, "auth_census.users.hash_algorithms")
    assert (algos["severity"], algos["count"]) == ("info", 10)
    assert "argon2id: 1" in algos["message"]
    assert "no usable hash 3" in _one(found, "auth_census.users.counts")["message"]
    assert _one(found, "auth_census.users.statement")["severity"] == "warning"
    assert not [f for f in found if f["id"].endswith("users_table")]
    assert _one(found, "fk_violation")["severity"] == "blocking"
    eq = _one(found, "count_equation.messages")
    assert (eq["severity"], eq["count"]) == ("blocking", 2)
    assert len({f["id"] for f in found}) == len(found)

"""The plan finds rule and schema problems once, before any row moves, naming the key to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config, parse_config
from pipeline.plan import MigrationPlan, build_plan
from pipeline.runner import dry_run, run
from pipeline.sources.base import Column, TableInfo
from pipeline.target import TargetSchema, load_target_schema
from tests.pipeline.conftest import CONFIG, MIGRATIONS
from tests.support.xrozen import XrozenFixture

UUID, TEXT, TSTZ = "uuid", "text", "timestamp with time zone"


@pytest.fixture(scope="module")
def schema() -> TargetSchema:
    return load_target_schema(MIGRATIONS)


def _t(qualified: str, *cols: tuple[str, str] | Column, rows: int = 5) -> TableInfo:
    schema, name = qualified.split(".")
    columns = tuple(c if isinstance(c, Column) else Column(c[0], c[1]) for c in cols)
    return TableInfo(schema, name, columns, ("id",), rows)


PROJECT_TYPES = _t("public.project_types", ("id", UUID), ("name", TEXT), ("created_at", TSTZ))
EDITORS = _t("public.editors", ("id", UUID), ("user_id", UUID), ("full_name", TEXT), ("email", TEXT),
             ("hourly_rate", "numeric(10,2)"))


def _plan(schema: TargetSchema, sources: list[TableInfo], **cfg: object) -> MigrationPlan:
    config: Config = parse_config({"source": {"uri": "x.sql"}, **cfg})
    return build_plan(config, sources, schema)


def _issues(plan: MigrationPlan, code: str) -> list[tuple[str | None, str | None]]:
    return [(i.table, i.column) for i in plan.issues if i.code == code]


def test_a_clean_table_maps_every_column_and_is_not_blocking(schema: TargetSchema) -> None:
    plan = _plan(schema, [PROJECT_TYPES])
    assert not plan.blocking
    tp = plan.table("project_types")
    assert [(c.source, c.target.name) for c in tp.columns] == [("id", "id"), ("name", "name"),
                                                                ("created_at", "created_at")]
    assert "profiles" in plan.empty_targets


def test_a_source_column_without_a_target_column_blocks_and_suggests_drop(schema: TargetSchema) -> None:
    t = _t("public.project_types", ("id", UUID), ("name", TEXT), ("legacy_code", TEXT))
    plan = _plan(schema, [t])
    (issue,) = plan.blocking
    assert (issue.code, issue.table, issue.column) == ("source_column_unmapped", "project_types", "legacy_code")
    assert issue.suggestion and "tables.project_types.drop" in issue.suggestion
    assert not _plan(schema, [t], tables={"project_types": {"drop": ["legacy_code"]}}).blocking
    renamed = _plan(schema, [t], tables={"project_types": {"rename": {"legacy_code": "name"}, "drop": ["name"]}})
    assert not renamed.blocking
    assert ("legacy_code", "name") in [(c.source, c.target.name) for c in renamed.table("project_types").columns]


def test_rules_naming_missing_columns_or_tables_block(schema: TargetSchema) -> None:
    plan = _plan(schema, [PROJECT_TYPES], tables={
        "project_types": {"drop": ["nope"], "enum_map": {"kind": {"a": "b"}},
                          "filter": [{"column": "gone", "op": "is_null"}]},
        "invoices": {},
    })
    assert set(_issues(plan, "rule_unknown_column")) == {("project_types", "nope"), ("project_types", "kind"),
                                                         ("project_types", "gone")}
    assert _issues(plan, "unknown_target_table") == [("invoices", None)]
    assert all(i.severity == "blocking" for i in plan.issues if i.code in ("rule_unknown_column",
                                                                          "unknown_target_table"))


def test_a_required_target_column_nothing_fills_blocks_unless_defaulted(schema: TargetSchema) -> None:
    t = _t("public.editors", ("id", UUID), ("email", TEXT))
    plan = _plan(schema, [t])
    assert ("editors", "full_name") in _issues(plan, "required_column_unfilled")
    ok = _plan(schema, [t], tables={"editors": {"defaults": {"full_name": "unknown"}}})
    assert not ok.blocking


def test_a_rule_naming_a_missing_source_table_blocks(schema: TargetSchema) -> None:
    plan = _plan(schema, [PROJECT_TYPES], tables={"editors": {"source": "public.staff"}})
    assert ("editors", None) in _issues(plan, "source_table_missing")


def test_unmigrated_source_tables_are_listed_with_their_reason(schema: TargetSchema) -> None:
    audit = _t("public.audit_log", ("id", UUID), rows=4)
    keys = _t("public.api_keys", ("id", UUID), ("key", TEXT), rows=3)
    plan = _plan(schema, [PROJECT_TYPES, audit, keys], ignore_tables=["public.api_keys"])
    assert sorted(plan.unmigrated) == [("public.api_keys", 3, "ignored by config (ignore_tables)"),
                                       ("public.audit_log", 4, "no rule migrates it")]
    sev = {i.table: i.severity for i in plan.issues if i.code == "table_not_migrated"}
    assert sev == {"public.audit_log": "warning", "public.api_keys": "info"}


def test_generated_columns_are_never_mapped(schema: TargetSchema) -> None:
    t = _t("public.project_types", ("id", UUID), ("name", TEXT), Column("created_at", TSTZ, generated=True))
    plan = _plan(schema, [t])
    assert "created_at" not in [c.target.name for c in plan.table("project_types").columns]
    assert ("project_types", "created_at") in _issues(plan, "generated_column")


def test_users_come_from_auth_and_profiles_and_parents_come_first(schema: TargetSchema) -> None:
    auth = _t("auth.users", ("id", UUID), ("email", TEXT), ("encrypted_password", TEXT))
    profiles = _t("public.profiles", ("id", UUID), ("email", TEXT), ("password_hash", TEXT))
    plan = _plan(schema, [auth, profiles, EDITORS], tables={"profiles": {"drop": ["password_hash"]}})
    users = plan.table("users")
    assert users.kind == "users" and users.source_tables == ["auth.users", "public.profiles"]
    order = [t.name for t in plan.tables]
    assert order.index("users") < order.index("profiles") and order.index("users") < order.index("editors")
    assert plan.source_tables() == ["auth.users", "public.profiles", "public.editors"]


def test_a_blocking_plan_stops_run_with_exit_2_and_dry_run_reports_it(
    xrozen_source: tuple[str, XrozenFixture], tmp_path: Path
) -> None:
    """The shipped config minus `profiles.drop: [password_hash]`: that column has no target column."""
    text = CONFIG.read_text().replace("    drop: [password_hash]", "    drop: []")
    assert text != CONFIG.read_text()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text.replace("migrations: target_schema", f"migrations: {MIGRATIONS}"))
    dsn, _ = xrozen_source
    out = run(cfg, source=dsn, runs_dir=str(tmp_path / "runs"), target=str(tmp_path / "app.db"))
    assert (out.exit_code, out.status) == (2, "failed")
    assert "profiles.password_hash" in out.report["error"] and "tables.profiles.drop" in out.report["error"]
    assert not (tmp_path / "app.db").exists()
    dry = dry_run(cfg, source=dsn, runs_dir=str(tmp_path / "runs"), target=str(tmp_path / "app.db"))
    assert (dry.exit_code, dry.status) == (1, "dry_run_blocked")
    assert any(f["severity"] == "blocking" and "password_hash" in f["message"] for f in dry.report["findings"])
    assert not (tmp_path / "app.db").exists()

"""Decide, before touching any row, which source feeds each target column and what is left over.

A plan problem (a source column with no place in the target, a required target column nothing
fills, a rule naming a column that does not exist) is found here, once, with the key path to fix,
instead of surfacing as a million identical row rejects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from pipeline.config import Config, TableRule
from pipeline.sources.base import Column, TableInfo
from pipeline.surrogates import SurrogateSpec, detect
from pipeline.target import TargetColumn, TargetSchema, TargetTable
from transforms.types import UnsupportedConversion, convert_column

Severity = Literal["blocking", "warning", "info"]


@dataclass(frozen=True)
class PlanIssue:
    severity: Severity
    code: str
    table: str | None
    column: str | None
    message: str
    suggestion: str | None = None


@dataclass(frozen=True)
class ColumnMap:
    source: str
    target: TargetColumn
    source_column: Column


@dataclass
class TablePlan:
    target: TargetTable
    kind: Literal["table", "users", "reset_tokens"]  # reset_tokens: derived from the users batches
    rule: TableRule
    source: TableInfo | None
    columns: list[ColumnMap] = field(default_factory=list)
    extra_sources: list[TableInfo] = field(default_factory=list)
    surrogate: SurrogateSpec | None = None  # integer surrogate keys (pipeline/surrogates.py)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def source_tables(self) -> list[str]:
        out = [self.source.qualified] if self.source else []
        return out + [t.qualified for t in self.extra_sources]


@dataclass
class MigrationPlan:
    tables: list[TablePlan]
    unmigrated: list[tuple[str, int | None, str]]
    issues: list[PlanIssue]
    empty_targets: list[str]

    @property
    def blocking(self) -> list[PlanIssue]:
        return [i for i in self.issues if i.severity == "blocking"]

    def source_tables(self) -> list[str]:
        seen: list[str] = []
        for t in self.tables:
            for s in t.source_tables:
                if s not in seen:
                    seen.append(s)
        return seen

    def table(self, name: str) -> TablePlan:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)


def _users_plan(
    config: Config, target: TargetTable, by_name: dict[str, TableInfo], issues: list[PlanIssue]
) -> TablePlan | None:
    uc = config.users
    auth = by_name.get(uc.auth_table)
    if auth is None:
        issues.append(PlanIssue("warning", "users_source_missing", target.name, None,
                                f"source has no {uc.auth_table}; {target.name} is built from profiles only"
                                if uc.profiles_table in by_name else
                                f"source has no {uc.auth_table}; {target.name} stays empty"))
    profiles = by_name.get(uc.profiles_table) if uc.profiles_table else None
    if auth is None and profiles is None:
        return None
    plan = TablePlan(target=target, kind="users", rule=config.tables.get(target.name, TableRule()),
                     source=auth, extra_sources=[profiles] if profiles else [])
    if profiles is not None and uc.profile_hash_column not in {c.name for c in profiles.columns}:
        issues.append(PlanIssue("info", "no_profile_hashes", target.name, uc.profile_hash_column,
                                f"{profiles.qualified} has no {uc.profile_hash_column}; only auth hashes are used"))
    return plan


def build_plan(config: Config, tables: list[TableInfo], schema: TargetSchema) -> MigrationPlan:
    by_name = {t.qualified: t for t in tables}
    issues: list[PlanIssue] = []
    plans: list[TablePlan] = []
    empty_targets: list[str] = []
    for tname in schema.dependency_order():
        target = schema.tables[tname]
        rule = config.tables.get(tname, TableRule())
        if rule.skip:
            issues.append(PlanIssue("info", "target_skipped", tname, None, f"{tname} is skipped by config"))
            continue
        if config.users.enabled and tname == config.users.table:
            up = _users_plan(config, target, by_name, issues)
            if up is not None:
                plans.append(up)
            continue
        if (config.users.issues_reset_tokens and tname == config.users.reset_token_table
                and any(p.kind == "users" for p in plans)):
            plans.append(TablePlan(target=target, kind="reset_tokens", rule=rule, source=None))
            continue
        src_name = rule.source or f"public.{tname}"
        src = by_name.get(src_name)
        if src is None:
            if rule.source:
                issues.append(PlanIssue("blocking", "source_table_missing", tname, None,
                                        f"tables.{tname}.source names {src_name}, which the source does not have"))
            else:
                empty_targets.append(tname)
                issues.append(PlanIssue("info", "target_without_source", tname, None,
                                        f"target table {tname} has no source table {src_name}; it stays empty"))
            continue
        spec = detect(target, src, rule, schema, issues)
        # columns are planned on the uuid-space copy: the integers are the transform's last step
        plans.append(_table_plan(tname, spec.work_target if spec and spec.work_target else target, src, rule,
                                 issues, config))
        if spec is not None:
            plans[-1].target, plans[-1].surrogate = target, spec
    for unknown in sorted(set(config.tables) - set(schema.tables)):
        issues.append(PlanIssue("blocking", "unknown_target_table", unknown, None,
                                f"tables.{unknown}: the target schema has no table {unknown}"))
    used = {s for p in plans for s in p.source_tables}
    ignored = set(config.ignore_tables)
    unmigrated: list[tuple[str, int | None, str]] = []
    for t in tables:
        if t.qualified in used:
            continue
        reason = "ignored by config (ignore_tables)" if t.qualified in ignored else "no rule migrates it"
        unmigrated.append((t.qualified, t.row_estimate, reason))
        issues.append(PlanIssue("info" if t.qualified in ignored else "warning", "table_not_migrated", t.qualified,
                                None, f"source table {t.qualified} is not migrated: {reason}",
                                None if t.qualified in ignored else f"add {t.qualified} to ignore_tables, or a "
                                "target migration and a tables rule for it"))
    return MigrationPlan(plans, unmigrated, issues, empty_targets)


def _table_plan(tname: str, target: TargetTable, src: TableInfo, rule: TableRule,
                issues: list[PlanIssue], config: Config) -> TablePlan:
    plan = TablePlan(target=target, kind="table", rule=rule, source=src)
    src_cols = {c.name: c for c in src.columns}
    tgt_cols = {c.name: c for c in target.columns}
    for col in list(rule.rename) + rule.drop:
        if col not in src_cols:
            issues.append(PlanIssue("blocking", "rule_unknown_column", tname, col,
                                    f"tables.{tname} names source column {col}, which {src.qualified} does not have"))
    mapped_targets: set[str] = set()
    for c in src.columns:
        if c.name in rule.drop:
            continue
        tgt_name = rule.rename.get(c.name, c.name)
        if c.generated:
            if tgt_name in tgt_cols:
                issues.append(PlanIssue("info", "generated_column", tname, c.name,
                                        f"{src.qualified}.{c.name} is generated in the source; not copied"))
            continue
        if tgt_name not in tgt_cols:
            issues.append(PlanIssue(
                "blocking", "source_column_unmapped", tname, c.name,
                f"source column {src.qualified}.{c.name} has no column in target {tname}",
                f"add {c.name} to tables.{tname}.drop, or map it with tables.{tname}.rename"))
            continue
        try:
            convert_column(pa.array([], pa.string()), c, tgt_cols[tgt_name], config.types.policy())
        except UnsupportedConversion as exc:
            issues.append(PlanIssue("blocking", "unsupported_conversion", tname, c.name,
                                    f"{src.qualified}.{c.name} ({c.pg_type}) cannot go into {tname}.{tgt_name} "
                                    f"({tgt_cols[tgt_name].decl_type}): {exc}",
                                    f"drop it (tables.{tname}.drop) or change the target column type"))
            continue
        plan.columns.append(ColumnMap(c.name, tgt_cols[tgt_name], c))
        mapped_targets.add(tgt_name)
    for col in list(rule.enum_map) + list(rule.defaults):
        if col not in tgt_cols:
            issues.append(PlanIssue("blocking", "rule_unknown_column", tname, col,
                                    f"tables.{tname} names target column {col}, which {tname} does not have"))
    for f in rule.filter:
        if f.column not in src_cols:
            issues.append(PlanIssue("blocking", "rule_unknown_column", tname, f.column,
                                    f"tables.{tname}.filter names {f.column}, which {src.qualified} does not have"))
    for tc in target.columns:
        if tc.name in mapped_targets or tc.name in rule.defaults:
            continue
        if tc.notnull and tc.default is None and not tc.pk:
            issues.append(PlanIssue("blocking", "required_column_unfilled", tname, tc.name,
                                    f"target column {tname}.{tc.name} is NOT NULL and no source column fills it",
                                    f"set tables.{tname}.defaults.{tc.name} or rename a source column to it"))
        elif tc.pk and tc.name not in mapped_targets:
            issues.append(PlanIssue("blocking", "required_column_unfilled", tname, tc.name,
                                    f"target primary key {tname}.{tc.name} has no source column"))
    return plan

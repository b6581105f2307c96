"""`supamigrate init`: a starter config.yaml that says, line by line, what is still to decide.

A new user's first question is "what does my project need?". Guessing is worse than asking, so the
file pre-fills only what has one right answer (which source table feeds each target table, where the
auth users and app-side hashes live) and writes every real choice as a commented-out line under a
`# DECIDE <key>:` comment, with the alternatives beside it. The decisions are the ones the real
engine would block on: by default `init` runs a dry run of the draft (a probe, in a temporary folder
that is deleted afterwards) and turns each blocking finding into a decision, so uncommenting every
decision gives a clean dry run. `probe=False` skips the data pass and derives the decisions from the
catalog alone (plan issues, enum labels the target refuses, foreign keys the source does not enforce,
a census of auth.users): faster on a large project, but it may ask about rows that do not exist.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline.config import REJECT, Config, TargetConfig, UsersConfig, parse_config
from pipeline.console import Console
from pipeline.errors import ConfigError, SourceError, SupamigrateError
from pipeline.findings import yaml_value
from pipeline.plan import MigrationPlan, TablePlan, build_plan
from pipeline.redact import redact_dsn
from pipeline.sources import open_source
from pipeline.sources.base import Source, TableInfo
from pipeline.target import TargetSchema, TargetTable, load_target_schema

DECIDE = "# DECIDE "
PASSWORD_ENV = "PGPASSWORD"
SERVICE_KEY_ENV = "SUPABASE_SERVICE_KEY"
_PROBE_URI = "dump:/supamigrate-init-probe.sql"  # never opened: the real URI is passed as an override
_BCRYPT = re.compile(r"^\$2[aby]\$")


@dataclass
class Decision:
    """One config key still to choose: the findings it settles and the line to uncomment."""

    key: str                      # full key path, e.g. tables.profiles.drop
    line: str                     # YAML relative to the block it goes in, e.g. "drop: [password_hash]"
    reasons: list[str] = field(default_factory=list)
    alternatives: str = ""


@dataclass
class UserCensus:
    """auth.users counts that decide the users.* policies (never a hash or an email)."""

    total: int = 0
    missing_hash: int = 0
    other_algorithm: int = 0
    soft_deleted: int = 0
    anonymous: int = 0


@dataclass
class _Draft:
    source_uri: str               # as written into the file (password replaced by ${PGPASSWORD})
    kind: str
    tables: list[TableInfo]
    schema: TargetSchema
    plan: MigrationPlan
    migrations_rel: str
    census: UserCensus | None
    rows: dict[str, int] = field(default_factory=dict)   # exact counts from the probe
    probed: bool = False


def init_config(
    source_uri: str,
    *,
    output: str | Path = "config.yaml",
    migrations_dir: str | Path = "target_schema",
    force: bool = False,
    probe: bool = True,
    console: Console | None = None,
) -> Path:
    """Write a starter config for `source_uri` against the migrations in `migrations_dir`.

    Refuses to overwrite `output` unless `force`; raises ConfigError (exit 2) for that and for a bad
    URI, SourceError (exit 3) when the source cannot be read.
    """
    out = Path(output)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    if out.exists() and out.is_dir():
        raise ConfigError(f"{out} is a folder; give a file name with --output")
    migrations = Path(migrations_dir)
    console = console or Console.quiet()
    schema = _target_schema(migrations)
    base = out.resolve().parent
    kind, open_uri, written_uri = _source_forms(source_uri, base)
    src = open_source(open_uri, service_key=os.environ.get(SERVICE_KEY_ENV))
    try:
        tables = src.tables()
        census = _user_census(src, tables, open_uri)
    finally:
        src.close()
    draft_config = _draft_config(_PROBE_URI, tables, schema, "target_schema", kind)
    plan = build_plan(draft_config, tables, schema)
    draft = _Draft(written_uri, kind, tables, schema, plan, _relative(migrations, base), census)
    decisions = _probe(draft, open_uri, migrations, console) if probe else _static_decisions(draft, draft_config)
    text = render(draft, decisions)
    Config.model_validate(_yaml_load(text))  # valid as written (${ENV} references not expanded here)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def decision_keys(text: str) -> list[str]:
    """The keys a config file still marks `# DECIDE`, in file order (for tests and `init`'s summary)."""
    return [m.group(1) for m in re.finditer(r"^\s*# DECIDE (\S+?):", text, re.MULTILINE)]


# -- source ------------------------------------------------------------------------------------------


def _source_forms(uri: str, base: Path) -> tuple[str, str, str]:
    """(kind, the URI to open now, the URI to write into the file, without a secret)."""
    lowered = uri.strip().lower()
    if lowered.startswith(("postgresql://", "postgres://")):
        return "postgres", uri, _password_to_env(uri)
    if lowered.startswith(("https://", "http://")):
        return "rest", uri, uri
    if "=" in uri and not lowered.endswith((".sql", ".dump", ".backup", ".pgdump")):
        raise ConfigError("init takes a postgresql:// URI, a dump file or an https:// URL, not a key=value DSN")
    path = Path(uri[len("dump:"):] if lowered.startswith("dump:") else uri).expanduser()
    if not path.is_file():
        raise SourceError(f"no dump file at {path}")
    return "dump", str(path.resolve()), _relative(path, base)


def _password_to_env(uri: str) -> str:
    """The DSN with its password replaced by ${PGPASSWORD}: config files get committed, secrets not."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{quote(parts.username or '', safe='')}:${{{PASSWORD_ENV}}}@{host}"
    query = re.sub(r"(^|&)password=[^&]*", rf"\1password=${{{PASSWORD_ENV}}}", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), base)
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def _target_schema(migrations: Path) -> TargetSchema:
    if not migrations.is_dir() or not any(migrations.glob("*.sql")):
        return TargetSchema()
    return load_target_schema(migrations)


def _user_census(src: Source, tables: list[TableInfo], uri: str) -> UserCensus | None:
    auth = next((t for t in tables if t.qualified == "auth.users"), None)
    if auth is None:
        return None
    cols = {c.name for c in auth.columns}
    if src.kind == "postgres" and {"encrypted_password", "deleted_at", "is_anonymous"} <= cols:
        import psycopg

        try:
            with psycopg.connect(uri, connect_timeout=10) as conn:
                row = conn.execute(
                    "SELECT count(*),"
                    " count(*) FILTER (WHERE coalesce(encrypted_password, '') = ''),"
                    " count(*) FILTER (WHERE coalesce(encrypted_password, '') <> ''"
                    "                    AND encrypted_password !~ '^\\$2[aby]\\$'),"
                    " count(*) FILTER (WHERE deleted_at IS NOT NULL),"
                    " count(*) FILTER (WHERE is_anonymous)"
                    " FROM auth.users").fetchone()
        except psycopg.Error as exc:
            raise SourceError(f"cannot count auth.users on {redact_dsn(uri)}: {type(exc).__name__}") from None
        assert row is not None
        return UserCensus(*(int(v) for v in row))
    census = UserCensus()
    for batch in src.read(auth, batch_rows=5000):
        data = batch.data.to_pydict()
        n = batch.data.num_rows
        census.total += n
        hashes = data.get("encrypted_password", [None] * n)
        for h in hashes:
            if not h:
                census.missing_hash += 1
            elif not _BCRYPT.match(h):
                census.other_algorithm += 1
        census.soft_deleted += sum(1 for v in data.get("deleted_at", []) if v)
        census.anonymous += sum(1 for v in data.get("is_anonymous", []) if v == "t")
    return census


# -- the draft and the probe -------------------------------------------------------------------------


def _draft_config(uri: str, tables: list[TableInfo], schema: TargetSchema, migrations: str, kind: str) -> Config:
    data: dict[str, Any] = {"source": {"uri": uri}, "target": {"migrations": migrations}}
    if not schema.tables:
        data["auto_schema"] = {"enabled": True}
    rules: dict[str, Any] = {}
    names = {t.qualified for t in tables}
    for tname in schema.tables:
        if f"public.{tname}" in names:
            rules[tname] = {"source": f"public.{tname}"}
    data["tables"] = rules
    if UsersConfig().table not in schema.tables:
        data["users"] = {"enabled": False}
    return parse_config(data, "init draft")


def _probe(draft: _Draft, open_uri: str, migrations: Path, console: Console) -> list[Decision]:
    """A dry run of the draft in a temporary folder: the engine itself says what blocks."""
    from pipeline.runner import dry_run

    with tempfile.TemporaryDirectory(prefix="supamigrate-init-") as tmp:
        root = Path(tmp)
        mig = root / "migrations"
        if migrations.is_dir():
            shutil.copytree(migrations, mig)  # auto schema writes here, never into the user's folder
        else:
            mig.mkdir()
        probe_draft = _Draft(_PROBE_URI, draft.kind, draft.tables, draft.schema, draft.plan, str(mig), None)
        cfg = root / "config.yaml"
        cfg.write_text(render(probe_draft, []), encoding="utf-8")
        outcome = dry_run(cfg, source=open_uri, runs_dir=str(root / "runs"), console=console)
        if outcome.status not in ("dry_run_clean", "dry_run_blocked"):
            err = outcome.report.get("error") or outcome.status
            raise SupamigrateError(f"the probe dry run did not finish: {err}")
    draft.probed = True
    for t in outcome.report.get("tables") or []:
        draft.rows[t["name"]] = int(t["source_rows"])
    for u in outcome.report.get("unmigrated_tables") or []:
        if isinstance(u.get("rows"), int):
            draft.rows[u["name"]] = u["rows"]
    return decisions_from_findings([f for f in outcome.report.get("findings") or []
                                    if f.get("severity") == "blocking"], draft.schema)


def decisions_from_findings(findings: list[dict[str, Any]], schema: TargetSchema) -> list[Decision]:
    """Group blocking findings by the config key that settles them, one Decision per key."""
    by_key: dict[str, Decision] = {}
    drops: dict[str, list[str]] = {}
    orphans: dict[str, dict[str, bool]] = {}   # table -> column -> nullable
    enums: dict[str, dict[str, dict[str, str]]] = {}
    defaults: dict[str, list[str]] = {}
    ignore: list[str] = []

    def note(key: str, reason: str) -> Decision:
        d = by_key.setdefault(key, Decision(key, ""))
        d.reasons.append(reason)
        return d

    for f in findings:
        kind, table, column, rule = f.get("kind"), f.get("table"), f.get("column"), f.get("rule")
        msg = str(f.get("message", ""))
        if kind == "table_not_migrated" and table:
            ignore.append(table)
            note("ignore_tables", msg)
        elif kind in ("column_not_in_target", "unsupported_conversion") and table and column:
            drops.setdefault(table, []).append(column)
            note(f"tables.{table}.drop", msg)
        elif kind == "required_column_unfilled" and table and column:
            defaults.setdefault(table, []).append(column)
            note(f"tables.{table}.defaults", msg)
        elif kind in ("fk_orphan", "fk_parent_not_migrated") and table and column:
            orphans.setdefault(table, {})[column] = _nullable(schema, table, column)
            note(f"tables.{table}.orphans", msg)
        elif kind == "enum_not_allowed" and table and column:
            for value in f.get("values") or {}:
                enums.setdefault(table, {}).setdefault(column, {})[str(value)] = REJECT
            note(f"tables.{table}.enum_map", msg)
        elif isinstance(rule, str) and rule.startswith(("users.", "types.")) and f.get("suggestion"):
            line, _, alt = str(f["suggestion"]).partition("#")
            d = note(rule, msg)
            d.line = line.strip()[len(rule.split(".")[0]) + 1:]
            d.alternatives = alt.strip()
        else:
            note("unknown", msg + (f" ({f['suggestion']})" if f.get("suggestion") else ""))
    if ignore:
        by_key["ignore_tables"].line = f"ignore_tables: {yaml_value(sorted(set(ignore)))}"
        by_key["ignore_tables"].alternatives = "or a target migration and a tables.<target>.source rule"
    for t, cols in drops.items():
        d = by_key[f"tables.{t}.drop"]
        d.line = f"drop: {yaml_value(sorted(set(cols)))}"
        d.alternatives = f"or rename: {{{yaml_value(cols[0])}: <target column>}}"
    for t, cols_ in defaults.items():
        d = by_key[f"tables.{t}.defaults"]
        d.line = "defaults: " + yaml_value({c: "<value>" for c in cols_})
        d.alternatives = "or rename a source column to it"
    for t, nullable in orphans.items():
        d = by_key[f"tables.{t}.orphans"]
        d.line = "orphans: " + yaml_value({c: "reject" for c in sorted(nullable)})
        keep = [c for c in sorted(nullable) if nullable[c]]
        d.alternatives = (f"or set_null for {', '.join(keep)} (keeps the rows without the link)" if keep
                          else "required links: set_null cannot keep these rows")
    for t, cols_map in enums.items():
        d = by_key[f"tables.{t}.enum_map"]
        d.line = "enum_map: " + yaml_value({c: dict(sorted(v.items())) for c, v in sorted(cols_map.items())})
        allowed = sorted({a for c in cols_map for a in _allowed(schema, t, c)})
        d.alternatives = "or map each value to an allowed one" + (f": {', '.join(allowed)}" if allowed else "")
    return list(by_key.values())


def _static_decisions(draft: _Draft, config: Config) -> list[Decision]:
    """Decisions from the catalog alone: what the plan blocks on, plus what the data may need."""
    findings: list[dict[str, Any]] = []
    auto = config.auto_schema.enabled
    for issue in draft.plan.issues:
        if issue.code == "table_not_migrated":
            if auto and not (issue.table or "").startswith("public."):
                continue
            findings.append({"kind": "table_not_migrated", "table": issue.table, "message": issue.message})
        elif issue.code == "source_column_unmapped":
            findings.append({"kind": "column_not_in_target", "table": issue.table, "column": issue.column,
                             "message": issue.message})
        elif issue.severity == "blocking":
            findings.append({"kind": issue.code, "table": issue.table, "column": issue.column,
                             "message": issue.message, "suggestion": issue.suggestion})
    for tp in draft.plan.tables:
        for col, refused in _refused_labels(tp).items():
            findings.append({"kind": "enum_not_allowed", "table": tp.name, "column": col,
                             "values": dict.fromkeys(refused, 0),
                             "message": f"{tp.name}.{col}: the source type has labels the target refuses: "
                                        + ", ".join(refused)})
        for col, parent, why in _loose_foreign_keys(tp, draft.plan):
            findings.append({"kind": "fk_orphan", "table": tp.name, "column": col,
                             "message": f"{tp.name}.{col} -> {parent}: {why}"})
    c = draft.census
    users = config.users
    if c is not None and users.enabled and users.table in draft.schema.tables:
        for key, count, value, other, what in (
            ("missing_hash", c.missing_hash, "reject", "reset_token", "have no password hash"),
            ("other_algorithms", c.other_algorithm, "reject", "keep, reset_token", "have a non-bcrypt hash"),
            ("soft_deleted", c.soft_deleted, "skip", "load", "are soft-deleted"),
            ("anonymous", c.anonymous, "skip", "load", "are anonymous"),
        ):
            if count:
                findings.append({"kind": f"users_{key}", "table": users.table, "rule": f"users.{key}",
                                 "suggestion": f"users.{key}: {value}  # or {other}",
                                 "message": f"{count} auth.users row(s) {what}"})
    return decisions_from_findings(findings, draft.schema)


def _refused_labels(tp: TablePlan) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cm in tp.columns:
        allowed = cm.target.allowed_values
        labels = cm.source_column.enum_values
        if allowed is not None and labels is not None:
            refused = [v for v in labels if v not in allowed]
            if refused:
                out[cm.target.name] = refused
    return out


def _loose_foreign_keys(tp: TablePlan, plan: MigrationPlan) -> list[tuple[str, str, str]]:
    """Target foreign keys whose rows may lose their parent: not enforced by the source, or the
    parent is built by rules that reject rows (users)."""
    if tp.source is None or tp.kind != "table":
        return []
    source_fks = {fk.columns: fk.parent for fk in tp.source.foreign_keys}
    out: list[tuple[str, str, str]] = []
    for fk in tp.target.foreign_keys:
        if len(fk.columns) != 1 or fk.parent == tp.name:
            continue
        col = fk.columns[0]
        parent_plan = next((p for p in plan.tables if p.name == fk.parent), None)
        if parent_plan is None:
            continue
        if parent_plan.kind == "users":
            out.append((col, fk.parent, "users without a usable hash or email are rejected, so their rows may "
                                        "lose their parent"))
        elif source_fks.get(fk.columns) not in parent_plan.source_tables:
            out.append((col, fk.parent, "the source does not enforce this foreign key (orphans possible)"))
    return out


def _nullable(schema: TargetSchema, table: str, column: str) -> bool:
    t = schema.tables.get(table)
    if t is None:
        return False
    return not any(c.name == column and (c.notnull or c.pk) for c in t.columns)


def _allowed(schema: TargetSchema, table: str, column: str) -> tuple[str, ...]:
    t = schema.tables.get(table)
    for c in t.columns if t else ():
        if c.name == column:
            return c.allowed_values or ()
    return ()


# -- rendering ---------------------------------------------------------------------------------------


def render(draft: _Draft, decisions: list[Decision]) -> str:
    """The YAML text, written by hand so every choice can carry its comment."""
    by_key = {d.key: d for d in decisions}
    used: set[str] = set()
    L: list[str] = []
    n = sum(1 for d in decisions if d.line)
    L += [
        f"# supamigrate configuration, written by `supamigrate init` on {datetime.now(UTC):%Y-%m-%d}",
        f"# from {redact_dsn(draft.source_uri)} ({draft.kind} source).",
        "# yaml-language-server: $schema=./config.schema.json",
        "#",
    ]
    if n:
        L += [f"# {n} decision(s) left. Each `# DECIDE <key>:` comment says what needs a choice; uncomment the",
              "# line under it (the first choice is written out, the alternatives follow `# or`) or write",
              "# your own. Then: supamigrate config check && supamigrate dry-run"]
    else:
        L += ["# No decision left: supamigrate dry-run should be clean."]
    if not draft.probed:
        L += ["# (written from the catalog without reading rows: some decisions may concern rows that do",
              "# not exist; `supamigrate dry-run` tells.)"]
    L += ["", "source:", f"  uri: {_scalar(draft.source_uri)}"]
    if PASSWORD_ENV in draft.source_uri:
        L.append(f"  # the password comes from the environment: export {PASSWORD_ENV}=...")
    if draft.kind == "rest":
        L.append(f"  service_key: ${{{SERVICE_KEY_ENV}}}   # the service_role key; never the key itself here")
    L += ["  schemas: [public, auth]", "", "target:",
          f"  path: {_scalar(TargetConfig().path)}",
          f"  migrations: {_scalar(draft.migrations_rel)}"]
    if not draft.schema.tables:
        L += ["", "# The target folder has no migrations: generate one per public table (see README, Auto schema).",
              "auto_schema:", "  enabled: true"]
    L += ["", "run:", "  runs_dir: runs", "  batch_rows: 20000", "", "types:",
          f"  timestamp_format: {_scalar('%Y-%m-%d %H:%M:%S')}   # UTC; add .%f to keep microseconds"]
    L += _decisions_in(by_key, used, "types.", "  ")
    L += _users_block(draft, by_key, used)
    L += ["", "tables:"]
    L += _tables_block(draft, by_key, used)
    ignore = by_key.get("ignore_tables")
    if ignore is not None:
        used.add("ignore_tables")
        L += ["", *_decision(ignore, "")]
    rest = [d for d in decisions if d.key not in used]
    if rest:
        L += ["", "# Problems init cannot turn into a config line (see `supamigrate dry-run`):"]
        L += [f"#   {r}" for d in rest for r in d.reasons]
    return "\n".join(L) + "\n"


def _scalar(value: str) -> str:
    return yaml_value(value)


def _decision(d: Decision, indent: str) -> list[str]:
    reasons = d.reasons[:6] + ([f"... and {len(d.reasons) - 6} more"] if len(d.reasons) > 6 else [])
    head = f"{indent}{DECIDE}{d.key}: " + reasons[0]
    out = [head] + [f"{indent}#   {r}" for r in reasons[1:]]
    out.append(f"{indent}# {d.line}" + (f"   # {d.alternatives}" if d.alternatives else ""))
    return out


def _decisions_in(by_key: dict[str, Decision], used: set[str], prefix: str, indent: str) -> list[str]:
    out: list[str] = []
    for key, d in by_key.items():
        if key.startswith(prefix) and key.count(".") == prefix.count(".") and key not in used and d.line:
            used.add(key)
            out += _decision(d, indent)
    return out


def _users_block(draft: _Draft, by_key: dict[str, Decision], used: set[str]) -> list[str]:
    names = {t.qualified: t for t in draft.tables}
    defaults = UsersConfig()
    if defaults.table not in draft.schema.tables:
        return ["", "users:", f"  enabled: false   # the target has no {defaults.table} table"]
    auth = names.get(defaults.auth_table)
    profiles = names.get(defaults.profiles_table or "")
    L = ["", f"# {defaults.table} is built from {defaults.auth_table}"
         + (f" and the app-side hashes in {profiles.qualified}" if profiles else "") + " (see README, Accounts).",
         "users:"]
    c = draft.census
    if auth is not None and c is not None:
        L.append(f"  # {defaults.auth_table}: {c.total} user(s); {c.missing_hash} without a password hash "
                 f"(OAuth, magic link, invited, NULL), {c.other_algorithm} with a non-bcrypt hash, "
                 f"{c.soft_deleted} soft-deleted, {c.anonymous} anonymous")
    L.append(f"  auth_table: {defaults.auth_table}" + ("" if auth else "   # not in this source"))
    has_hash = profiles is not None and any(col.name == defaults.profile_hash_column for col in profiles.columns)
    L.append(f"  profiles_table: {yaml_value(profiles.qualified) if profiles else 'null'}"
             + (f"   # {defaults.profile_hash_column}: bcrypt hashes of profile-only users" if has_hash else ""))
    L += _decisions_in(by_key, used, "users.", "  ")
    return L


def _tables_block(draft: _Draft, by_key: dict[str, Decision], used: set[str]) -> list[str]:
    L: list[str] = []
    planned = {tp.name: tp for tp in draft.plan.tables}
    names = {t.qualified: t for t in draft.tables}
    if not draft.schema.tables:
        L.append("  {}   # auto schema decides; add per-table rules here after the first dry run")
        return L
    for tname in draft.schema.dependency_order():
        tp = planned.get(tname)
        target = draft.schema.tables[tname]
        mine = [d for k, d in by_key.items() if k.startswith(f"tables.{tname}.") and d.line]
        if tp is None:
            src = names.get(f"public.{tname}")
            L.append(f"  # {tname}: no source table public.{tname}; it stays empty" if src is None
                     else f"  # {tname}: skipped")
            continue
        if tp.kind != "table":
            what = ("built from " + " + ".join(tp.source_tables)) if tp.kind == "users" else \
                "filled with the reset tokens users.missing_hash: reset_token issues"
            if not mine:
                L.append(f"  # {tname}: {what} (see users:)")
                continue
            L += [f"  {yaml_value(tname)}:   # {what}", "    skip: false"]
        else:
            assert tp.source is not None
            rows = draft.rows.get(tname)
            count = f"{rows} rows" if rows is not None else _estimate(tp.source.row_estimate)
            L += [f"  {yaml_value(tname)}:   # {tp.source.qualified}, {count}",
                  f"    source: {yaml_value(tp.source.qualified)}"]
            L += _context(tp, target)
        for d in mine:
            used.add(d.key)
            L += _decision(d, "    ")
    return L


def _estimate(n: int | None) -> str:
    return f"~{n} rows (estimate)" if n is not None and n >= 0 else "row count unknown"


def _context(tp: TablePlan, target: TargetTable) -> list[str]:
    """Comments a reviewer wants beside the rule: enums, and links the source does not guarantee."""
    out: list[str] = []
    mapped = {cm.source: cm for cm in tp.columns}
    assert tp.source is not None
    for col in tp.source.columns:
        labels = col.enum_values
        if labels is None:
            continue
        cm = mapped.get(col.name)
        allowed = cm.target.allowed_values if cm else None
        refused = [v for v in labels if allowed is not None and v not in allowed]
        out.append(f"    # enum {col.name} ({col.pg_type}): {', '.join(labels)}"
                   + (f"; the target refuses {', '.join(refused)}" if refused else ""))
    source_fks = {fk.columns: fk.parent for fk in tp.source.foreign_keys}
    loose = [f"{'/'.join(fk.columns)} -> {fk.parent}" for fk in target.foreign_keys
             if fk.parent != tp.name and fk.columns not in source_fks]
    if loose:
        out.append("    # foreign keys the source does not enforce (orphans possible): " + ", ".join(loose))
    return out


def _yaml_load(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def summarize(path: Path) -> list[str]:
    """What `supamigrate init` prints after writing the file."""
    keys = decision_keys(path.read_text(encoding="utf-8"))
    counts = Counter(k.split(".")[0] for k in keys)
    lines = [f"wrote {path}"]
    if keys:
        lines.append(f"{len(keys)} decision(s) to make (" + ", ".join(f"{k}: {n}" for k, n in counts.items())
                     + "): search the file for '# DECIDE'")
    else:
        lines.append("no decision left")
    lines.append(f"next: supamigrate config check --config {path} && supamigrate dry-run --config {path}")
    return lines

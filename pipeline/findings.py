"""One findings engine for dry runs and real runs: what a team must decide before a cutover.

The severity rule (docs/report-schema.md, "Severity") is about decisions, not about how bad a number
looks, so that a team can drive a dry run to clean by writing rules:

- blocking: rows or columns would be lost (or a check failed) because of a default nobody chose,
  and a config key exists that decides it. Its `suggestion` is that key, as one YAML line that can be
  pasted into config.yaml as written (`path: value  # alternatives`).
- warning: rows are rejected or values change because of a rule somebody wrote (orphans: reject,
  enum_map __reject__, users.missing_hash: reject), because the target's declared types lose
  something (numeric into REAL, dropped microseconds), or because the target's constraints refuse
  rows no rule can keep (duplicate emails, users without an email).
- info: everything else worth knowing (tables left out on purpose, columns dropped on purpose).

"Somebody wrote it" means the key is in the config file (pydantic's model_fields_set, see
pipeline.config.explicit), even when it is spelled with its default value.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import REJECT, Config, TableRule, explicit
from pipeline.plan import MigrationPlan, PlanIssue, TablePlan

SAMPLE_REJECTS_PER_TABLE = 3

_NUMERIC_TYPES = ("numeric", "decimal", "money")
_USERS_FILTER = re.compile(r"\(users\.(\w+): (\w+)\)")
_NOT_ALLOWED = re.compile(r"(?:enum )?value ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") is not allowed by the target")
_ENUM_REJECTED = re.compile(r"value ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") is rejected by tables\.")
_OUT_OF_RANGE = ("cannot be represented", "beyond 9999", "outside years 1..9999")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}

# note kind -> (severity, kind, message tail, suggestion or None)
_NOTES: dict[str, tuple[str, str, str, str | None]] = {
    "precision_loss": ("warning", "precision_loss", "stored with less precision than the source had",
                       "types.numeric_mode: text  # only if the target column is TEXT; a REAL column cannot "
                       "hold these digits"),
    "infinity": ("warning", "infinity_value", "are infinity and were kept or nulled by types.infinity", None),
    "nan": ("warning", "nan_value", "are NaN and were kept or nulled by types.nan", None),
    "microseconds_dropped": ("warning", "microseconds_dropped",
                             "lost their fractional seconds (the target's timestamp format has none)",
                             'types.timestamp_format: "%Y-%m-%d %H:%M:%S.%f"  # only if the app reads this shape'),
    "unknown_type_as_text": ("warning", "unknown_type_as_text", "have a type with no rule and were kept as text",
                             "types.unknown_type: text  # or reject"),
    "nul_character": ("warning", "nul_character",
                      "contain NUL characters, which SQLite text functions and the app's C strings cut off",
                      "remove the NUL characters in the source, or tables.<table>.drop the column"),
    "array_lower_bound_dropped": ("warning", "array_lower_bound_dropped",
                                  "are arrays with a non-default lower bound; the JSON array keeps only the elements",
                                  None),
    "orphan_set_null": ("warning", "fk_set_null", "referred to a missing parent row and were set to NULL "
                        "(orphans: set_null)", None),
    "reset_required": ("warning", "users_reset_required",
                       "have no usable password hash and were loaded with an unusable marker; they must reset "
                       "their password (users.missing_hash: reset_token)", None),
    "default_filled": ("info", "default_filled", "were NULL and filled with the column default", None),
    "from_profiles": ("info", "hash_from_profiles", "took their hash from profiles (newer than auth.users)", None),
    "defaulted": ("info", "value_defaulted", "had a value the target does not allow and got the default", None),
    "profile_only_user": ("info", "profile_only_user", "exist only in profiles (no auth.users row)", None),
}


@dataclass
class _Bucket:
    """Rejects of one table grouped by what decides them; counts exact, keys a sample."""

    count: int = 0
    keys: list[str] = field(default_factory=list)
    values: Counter[str] = field(default_factory=Counter)
    example: str = ""


def collect_findings(
    plan: MigrationPlan,
    totals: dict[str, dict[str, Any]],
    report: dict[str, Any],
    config: Config,
    run_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Every finding of a run, each with severity, where, exact count, sample keys and a suggestion.

    `run_dir` lets the engine read the reject files for reasons one reject code lumps together (an
    enum value the target refuses vs. a malformed value; a missing hash vs. an argon2 hash); without
    it those stay one finding per code.
    """
    f = _Findings(plan, totals, report, config, run_dir)
    f.plan_issues()
    f.dropped_columns()
    for tp in plan.tables:
        t = totals.get(tp.name)
        if t is None:
            continue
        f.rejects(tp, t)
        f.filtered(tp, t)
        f.notes(tp, t)
        f.numeric_as_real(tp, t)
    f.auth_census()
    if (report.get("source") or {}).get("kind") == "rest" and config.users.enabled:
        f.add("password_hashes_unavailable", "warning", config.users.table, "password_hash", 1,
              "password hashes are not available over the Supabase REST API: every migrated user will need "
              "a password reset",
              "set users.missing_hash: reset_token, or migrate from a database connection or a dump to keep "
              "the hashes", rule="users.missing_hash")
    if report.get("snapshot_restarted"):
        f.add("snapshot_restarted", "warning", None, None, 1,
              "the extract continued in a newer source snapshot (a dropped connection was retried, a checkpoint "
              "was redone or a half-read extract was resumed), so the tables are not one instant of the source; "
              "each table's row count was verified against the source afterwards (checks: source_count)",
              "pause writes to the source while migrating, or rerun with `supamigrate resume --fresh` "
              "for one snapshot")
    f.checks()
    f.equations()
    return f.out


def sample_rejects(
    run_dir: Path, plan: MigrationPlan, per_table: int = SAMPLE_REJECTS_PER_TABLE
) -> list[dict[str, Any]]:
    """A few rejects per table for the report pages: table, key, column and reason, never row values.

    The reject files hold whole source rows (password hashes included); the report is meant to be
    shared, so only the fields that name a row and say why are copied.
    """
    out: list[dict[str, Any]] = []
    manifest = _manifest(run_dir)
    for tp in plan.tables:
        if per_table <= 0:
            break
        for taken, rec in enumerate(_iter_rejects(run_dir, manifest, tp.name), start=1):
            out.append({"table": tp.name, "key": str(rec.get("key")), "column": rec.get("column"),
                        "reason": str(rec.get("reason", ""))})
            if taken >= per_table:
                break
    return out


def yaml_value(value: Any) -> str:
    """One-line YAML (flow style) that pastes into config.yaml and reads back as `value`."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_value(k)}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------


def _manifest(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None:
        return None
    try:
        data = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _batches(manifest: dict[str, Any] | None, table: str) -> list[dict[str, Any]]:
    if manifest is None:
        return []
    state = (manifest.get("transform") or {}).get(table) or {}
    return [b for _, b in sorted((state.get("batches") or {}).items())]


def _iter_rejects(run_dir: Path, manifest: dict[str, Any] | None, table: str) -> Iterator[dict[str, Any]]:
    """Reject records in batch order, from the files the manifest lists as committed."""
    files = [run_dir / b["rejects_file"] for b in _batches(manifest, table) if b.get("rejects_file")]
    if manifest is None:
        files = sorted((run_dir / "rejects" / table).glob("*.jsonl"))
    for path in files:
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    rec = json.loads(line)
                    if isinstance(rec, dict):
                        yield rec


def _reason_key(code: str, column: str | None) -> str:
    return f"{code}:{column}" if column else code


def _literal(text: str) -> str:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return str(value)


def _orphans_explicit(rule: TableRule, column: str) -> bool:
    if not explicit(rule, "orphans"):
        return False
    return isinstance(rule.orphans, str) or column in rule.orphans


class _Findings:
    def __init__(self, plan: MigrationPlan, totals: dict[str, dict[str, Any]], report: dict[str, Any],
                 config: Config, run_dir: Path | None) -> None:
        self.plan = plan
        self.totals = totals
        self.report = report
        self.config = config
        self.run_dir = run_dir
        self.manifest = _manifest(run_dir)
        self.n_keys = config.run.sample_keys
        self.out: list[dict[str, Any]] = []
        self._ids: Counter[str] = Counter()

    # -- output ------------------------------------------------------------------------------------

    def add(self, kind: str, severity: str, table: str | None, column: str | None, count: int, message: str,
            suggestion: str | None = None, *, keys: list[str] | None = None, rule: str | None = None,
            values: dict[str, int] | None = None, tag: str | None = None) -> None:
        base = ".".join(p for p in (kind, table, column, tag) if p)
        self._ids[base] += 1
        fid = base if self._ids[base] == 1 else f"{base}.{self._ids[base]}"
        finding: dict[str, Any] = {
            "id": fid, "kind": kind, "severity": severity, "table": table, "column": column,
            "count": int(count), "sample_keys": [str(k) for k in (keys or [])][: self.n_keys],
            "message": message, "suggestion": suggestion, "rule": rule,
        }
        if values is not None:
            finding["values"] = dict(values)
        self.out.append(finding)

    def _source_rows(self, table: str | None) -> int:
        t = self.totals.get(table or "")
        return int(t["source_rows"]) if t else 0

    # -- plan --------------------------------------------------------------------------------------

    def plan_issues(self) -> None:
        rows_of = {u["name"]: u.get("rows") for u in self.report.get("unmigrated_tables") or []}
        for issue in self.plan.issues:
            if issue.code == "table_not_migrated":
                self._unmigrated(issue, rows_of.get(issue.table or ""))
            elif issue.code == "source_column_unmapped":
                t, c = issue.table, issue.column
                self.add("column_not_in_target", "blocking", t, c, self._source_rows(t),
                         issue.message + "; its values would be lost without a decision",
                         f"tables.{t}.drop: [{yaml_value(c)}]  # or tables.{t}.rename: {{{yaml_value(c)}: "
                         "<target column>}", rule=f"tables.{t}.drop")
            elif issue.code == "required_column_unfilled":
                t, c = issue.table, issue.column
                self.add("required_column_unfilled", "blocking", t, c, self._source_rows(t),
                         issue.message + "; every row would be rejected",
                         f"tables.{t}.defaults: {{{yaml_value(c)}: <value>}}  # or tables.{t}.rename: "
                         f"{{<source column>: {yaml_value(c)}}}", rule=f"tables.{t}.defaults")
            else:
                self.add(issue.code, issue.severity, issue.table, issue.column, 0, issue.message,
                         issue.suggestion)

    def _unmigrated(self, issue: PlanIssue, rows: Any) -> None:
        name = issue.table or ""
        count = rows if isinstance(rows, int) and rows >= 0 else 0
        if name in self.config.ignore_tables:
            self.add("table_not_migrated", "info", name, None, count,
                     f"source table {name} is not migrated: listed in ignore_tables", rule="ignore_tables")
        elif self.config.auto_schema.enabled and not name.startswith("public."):
            # auto schema covers public tables; Supabase's own schemas (auth sessions, tokens, logs)
            # are platform state, so leaving them is the expected outcome, said but not blocking
            self.add("table_not_migrated", "warning", name, None, count,
                     f"source table {name} ({count} rows) is not migrated: auto schema generates public "
                     "tables only", f"ignore_tables: [{yaml_value(name)}]  # or a target migration and "
                     f"tables.<target>.source: {yaml_value(name)}", rule="ignore_tables")
        else:
            self.add("table_not_migrated", "blocking", name, None, count,
                     f"source table {name} ({count} rows) is not migrated and no rule says so; it would be "
                     "left behind silently",
                     f"ignore_tables: [{yaml_value(name)}]  # or add a target table and "
                     f"tables.<target>.source: {yaml_value(name)}", rule="ignore_tables")

    def dropped_columns(self) -> None:
        for tp in self.plan.tables:
            if tp.kind != "table" or tp.source is None:
                continue
            for col in tp.rule.drop:
                if any(c.name == col for c in tp.source.columns):
                    self.add("column_dropped", "info", tp.name, col, self._source_rows(tp.name),
                             f"source column {tp.source.qualified}.{col} is not migrated (tables.{tp.name}.drop)",
                             rule=f"tables.{tp.name}.drop")

    # -- rejects -----------------------------------------------------------------------------------

    def rejects(self, tp: TablePlan, t: dict[str, Any]) -> None:
        reasons: dict[str, int] = t.get("reject_reasons") or {}
        samples: dict[str, list[str]] = t.get("sample_keys") or {}
        split = {r for r in reasons if r.split(":", 1)[0] in ("invalid_value", "user_password_hash",
                                                               "enum_rejected")}
        buckets = self._scan(tp.name, split) if split and self.run_dir is not None else {}
        for reason, count in reasons.items():
            code, _, column = reason.partition(":")
            col = column or None
            keys = samples.get(reason, [])
            if reason in split and buckets:
                for (sub, _), b in sorted(((k, v) for k, v in buckets.items() if k[1] == reason),
                                          key=lambda kv: kv[0][0]):
                    self._split_reject(tp, code, col, sub, b)
                continue
            self._reject(tp, code, col, count, keys)

    def _scan(self, table: str, reasons: set[str]) -> dict[tuple[str, str], _Bucket]:
        assert self.run_dir is not None
        buckets: dict[tuple[str, str], _Bucket] = {}
        for rec in _iter_rejects(self.run_dir, self.manifest, table):
            reason_key = _reason_key(str(rec.get("code")), rec.get("column"))
            if reason_key not in reasons:
                continue
            text = str(rec.get("reason", ""))
            sub, value = _classify(str(rec.get("code")), text)
            b = buckets.setdefault((sub, reason_key), _Bucket(example=text))
            b.count += 1
            if value is not None:
                b.values[value] += 1
            if len(b.keys) < self.n_keys:
                b.keys.append(str(rec.get("key")))
        return buckets

    def _reject(self, tp: TablePlan, code: str, col: str | None, count: int, keys: list[str]) -> None:
        t = tp.name
        if code in ("orphan", "parent_rejected") and col:
            self._fk_reject(tp, code, col, count, keys)
        elif code == "missing_required" and col:
            self.add("missing_required", "blocking", t, col, count,
                     f"{count} row(s) of {t} have no value for required column {col} and no default fills it",
                     f"tables.{t}.defaults: {{{yaml_value(col)}: <value>}}  # or filter the rows out with "
                     f"tables.{t}.filter", keys=keys, rule=f"tables.{t}.defaults")
        elif code == "duplicate":
            self.add("duplicate", "warning", t, col, count,
                     f"{count} row(s) of {t} repeat a value of a unique key" + (f" ({col})" if col else "")
                     + " already taken by an earlier row; the first row is kept, the others are rejected",
                     "merge or rename the duplicates in the source before the cutover; no config key can keep "
                     "both rows", keys=keys)
        elif code == "user_email":
            self.add("users_no_email", "warning", t, col, count,
                     f"{count} user(s) have no email (phone-only or anonymous sign-ups); the target requires "
                     "one, so they are rejected",
                     "give them an email in the source, or accept that they cannot log in to the app", keys=keys)
        elif code == "enum_rejected" and col:
            self._enum_rejected(tp, col, _Bucket(count=count, keys=keys))
        elif code == "invalid_value":
            self.add("invalid_value", "warning", t, col, count,
                     f"{count} value(s) of {t}.{col} cannot be stored in the target; the rows are rejected",
                     "fix the values in the source, or leave the column out with "
                     f"tables.{t}.drop", keys=keys)
        elif code == "user_password_hash":
            self._missing_hash(tp, col, _Bucket(count=count, keys=keys))
        else:
            self.add(code, "warning", t, col, count,
                     f"{count} row(s) of {t} rejected: {code.replace('_', ' ')}" + (f" in {col}" if col else ""),
                     f"see rejects/{t}/ for each row's reason", keys=keys)

    def _fk_reject(self, tp: TablePlan, code: str, col: str, count: int, keys: list[str]) -> None:
        t = tp.name
        fk = next((fk for fk in tp.target.foreign_keys if fk.columns == (col,)), None)
        parent = fk.parent if fk else "its parent table"
        nullable = not any(c.name == col and (c.notnull or c.pk) for c in tp.target.columns)
        if code == "orphan":
            kind = "fk_orphan"
            what = f"{count} row(s) of {t} refer through {col} to {parent} rows that do not exist in the source"
        else:
            kind = "fk_parent_not_migrated"
            what = (f"{count} row(s) of {t} refer through {col} to {parent} rows that were rejected or "
                    "filtered themselves")
        alt = "set_null" if nullable else None
        if _orphans_explicit(tp.rule, col):
            self.add(kind, "warning", t, col, count, what + "; rejected by tables." + t + ".orphans",
                     f"tables.{t}.orphans: {{{yaml_value(col)}: set_null}}  # keeps the rows without the link"
                     if alt else f"{col} is required, so only migrating the {parent} rows keeps these (see the "
                     f"{parent} findings)", keys=keys, rule=f"tables.{t}.orphans")
        else:
            tail = f"  # or {alt}" if alt else f"  # {col} is NOT NULL, so set_null cannot keep them"
            self.add(kind, "blocking", t, col, count,
                     what + "; rejected only because no orphans policy was written",
                     f"tables.{t}.orphans: {{{yaml_value(col)}: reject}}" + tail, keys=keys,
                     rule=f"tables.{t}.orphans")

    def _split_reject(self, tp: TablePlan, code: str, col: str | None, sub: str, b: _Bucket) -> None:
        t = tp.name
        types = self.config.types
        if sub == "enum_not_allowed" and col:
            allowed = _allowed(tp, col)
            listing = ", ".join(f"{v!r} x{n}" for v, n in sorted(b.values.items()))
            mapping = {v: REJECT for v in sorted(b.values)}
            self.add("enum_not_allowed", "blocking", t, col, b.count,
                     f"{b.count} row(s) of {t} have {col} values the target does not allow: {listing}"
                     + (f" (allowed: {', '.join(allowed)})" if allowed else ""),
                     f"tables.{t}.enum_map.{col}: {yaml_value(mapping)}  # or map each value to an allowed one"
                     + (f": {', '.join(allowed)}" if allowed else ""),
                     keys=b.keys, rule=f"tables.{t}.enum_map.{col}", values=dict(b.values))
        elif sub == "enum_rejected" and col:
            self._enum_rejected(tp, col, b)
        elif sub in ("infinity", "nan"):
            decided = explicit(types, sub)
            word = "infinity" if sub == "infinity" else "NaN"
            self.add(f"{sub}_rejected", "warning" if decided else "blocking", t, col, b.count,
                     f"{b.count} value(s) of {t}.{col} are {word}; the rows are rejected "
                     + ("(types." + sub + ": reject)" if decided else "because no types." + sub + " policy was "
                        "written"),
                     f"types.{sub}: reject  # or null, keep" if not decided else f"types.{sub}: null  # or keep",
                     keys=b.keys, rule=f"types.{sub}")
        elif sub == "timestamp_out_of_range":
            self.add("timestamp_out_of_range", "warning", t, col, b.count,
                     f"{b.count} value(s) of {t}.{col} are dates or timestamps outside years 1..9999, which the "
                     f"target format cannot hold; the rows are rejected (e.g. {b.example})",
                     f"fix the values in the source, or leave the column out with tables.{t}.drop", keys=b.keys)
        elif sub == "other_algorithm":
            decided = explicit(self.config.users, "other_algorithms")
            self.add("users_other_algorithm", "warning" if decided else "blocking", t, col, b.count,
                     f"{b.count} user(s) have a password hash the app cannot verify (argon2, scrypt, ...): "
                     + ("rejected by users.other_algorithms" if decided
                        else "rejected only because no users.other_algorithms policy was written"),
                     "users.other_algorithms: keep  # stores the hash as is; those users must reset" if decided
                     else "users.other_algorithms: reject  # or keep", keys=b.keys,
                     rule="users.other_algorithms")
        elif sub == "missing_hash":
            self._missing_hash(tp, col, b)
        else:
            self.add("invalid_value", "warning", t, col, b.count,
                     f"{b.count} value(s) of {t}.{col} cannot be stored in the target; the rows are rejected "
                     f"(e.g. {b.example})",
                     f"fix the values in the source, or leave the column out with tables.{t}.drop", keys=b.keys)

    def _enum_rejected(self, tp: TablePlan, col: str, b: _Bucket) -> None:
        t = tp.name
        allowed = _allowed(tp, col)
        listing = ", ".join(f"{v!r} x{n}" for v, n in sorted(b.values.items()))
        self.add("enum_rejected", "warning", t, col, b.count,
                 f"{b.count} row(s) of {t} rejected by tables.{t}.enum_map.{col}" + (f": {listing}" if listing else ""),
                 f"tables.{t}.enum_map.{col}: {{<value>: <one of {', '.join(allowed)}>}}  # keeps the rows"
                 if allowed else None, keys=b.keys, rule=f"tables.{t}.enum_map.{col}",
                 values=dict(b.values) if b.values else None)

    def _missing_hash(self, tp: TablePlan, col: str | None, b: _Bucket) -> None:
        decided = explicit(self.config.users, "missing_hash")
        self.add("users_missing_hash", "warning" if decided else "blocking", tp.name, col, b.count,
                 f"{b.count} user(s) have no usable password hash (OAuth, magic-link, invited or NULL): "
                 + ("rejected by users.missing_hash: reject" if decided
                    else "rejected only because no users.missing_hash policy was written"),
                 "users.missing_hash: reset_token  # loads them with a reset token instead" if decided
                 else "users.missing_hash: reject  # or reset_token", keys=b.keys, rule="users.missing_hash")

    # -- filters -----------------------------------------------------------------------------------

    def filtered(self, tp: TablePlan, t: dict[str, Any]) -> None:
        keys_by_reason: dict[str, list[str]] = {}
        for b in _batches(self.manifest, tp.name):
            for key, reason in (b.get("filtered_keys") or {}).items():
                lst = keys_by_reason.setdefault(reason, [])
                if len(lst) < self.n_keys:
                    lst.append(str(key))
        for reason, count in sorted((t.get("filter_reasons") or {}).items()):
            keys = keys_by_reason.get(reason, [])
            m = _USERS_FILTER.search(reason)
            if m and m.group(1) in type(self.config.users).model_fields:
                key, value = m.group(1), m.group(2)
                decided = explicit(self.config.users, key)
                other = "load" if value == "skip" else "skip"
                self.add("users_filtered", "info" if decided else "blocking", tp.name, None, count,
                         f"{count} row(s) of {tp.name} left out: {reason}"
                         + ("" if decided else " — by default; no users." + key + " policy was written"),
                         None if decided else f"users.{key}: {value}  # or {other}", keys=keys,
                         rule=f"users.{key}", tag=key)
            else:
                self.add("filtered", "info", tp.name, None, count, f"{count} row(s) of {tp.name} filtered: {reason}",
                         keys=keys, rule=f"tables.{tp.name}.filter")

    # -- conversion notes --------------------------------------------------------------------------

    def notes(self, tp: TablePlan, t: dict[str, Any]) -> None:
        for note, count in sorted((t.get("notes") or {}).items()):
            column, sep, kind = note.partition(":")
            col: str | None = column
            if not sep:
                kind, col = column, None
            if kind == "precision_loss" and col and _is_numeric_to_real(tp, col):
                continue  # reported by numeric_as_real with the column's types
            if kind in ("infinity", "nan") and getattr(self.config.types, kind) == "reject":
                continue  # every one of them is a reject, reported with the rejects
            severity, fkind, tail, suggestion = _NOTES.get(
                kind, ("info", kind or "note", kind.replace("_", " "), None))
            where = f"{tp.name}.{col}" if col else tp.name
            if suggestion:
                suggestion = suggestion.replace("<table>", tp.name)
            self.add(fkind, severity, tp.name, col, count, f"{count} value(s) of {where} {tail}", suggestion)

    def numeric_as_real(self, tp: TablePlan, t: dict[str, Any]) -> None:
        notes: dict[str, int] = t.get("notes") or {}
        for cm in tp.columns:
            if not _is_numeric_to_real(tp, cm.target.name):
                continue
            lost = int(notes.get(f"{cm.target.name}:precision_loss", 0))
            src = f"{cm.source_column.pg_type} into {cm.target.decl_type or cm.target.storage}"
            if lost:
                self.add("precision_loss", "warning", tp.name, cm.target.name, lost,
                         f"{lost} value(s) of {tp.name}.{cm.target.name} lost precision going from {src} "
                         "(an 8-byte float keeps about 15 significant digits)",
                         "declare the target column TEXT (exact digits) or INTEGER with types.numeric_mode: "
                         "minor_units", rule="types.numeric_mode")
            else:
                self.add("numeric_as_real", "info", tp.name, cm.target.name, 0,
                         f"{tp.name}.{cm.target.name} goes from {src}; no value in this data lost precision",
                         rule="types.numeric_mode")

    # -- auth census, checks, equation -------------------------------------------------------------

    def auth_census(self) -> None:
        auth = self.report.get("auth")
        if not isinstance(auth, dict) or not auth:
            return
        table = self.config.users.table
        total = auth.get("users_in_source")
        count = total if isinstance(total, int) else 0
        breakdowns = [(k, v) for k, v in auth.items() if isinstance(v, dict) and v and k != "users_table"
                      and all(isinstance(n, int) for n in v.values())]
        for key, counts in breakdowns:
            listing = ", ".join(f"{k}: {n}" for k, n in counts.items())
            self.add("auth_census", "info", table, None, sum(counts.values()),
                     f"users by {key.replace('_', ' ')}: {listing}", tag=key)
        scalars = [f"{k.replace('_', ' ')} {v}" for k, v in auth.items()
                   if isinstance(v, int) and not isinstance(v, bool)]
        if scalars:
            self.add("auth_census", "info", table, None, count, "password-hash census: " + ", ".join(scalars),
                     tag="counts")
        statement = auth.get("statement")
        if isinstance(statement, str) and statement:
            self.add("auth_census", "warning", table, None, count, statement,
                     "users.missing_hash: reset_token  # and send runs/<id>/password-resets.csv", tag="statement")

    def checks(self) -> None:
        for c in self.report.get("checks") or []:
            if c.get("ok"):
                continue
            kind = "fk_violation" if c.get("name") == "foreign_key_check" else f"check_{c.get('name')}"
            self.add(kind, "blocking", c.get("table"), None, 1, f"check {c.get('name')} failed: {c.get('detail')}",
                     "a bug or a damaged run folder, not a config question: rerun with "
                     "`supamigrate resume --fresh` and report it if it fails again")

    def equations(self) -> None:
        for t in self.report.get("tables") or []:
            if t.get("equation_ok"):
                continue
            missing = int(t["source_rows"]) - int(t["loaded"]) - int(t["rejected"]) - int(t["filtered"])
            self.add("count_equation", "blocking", t["name"], None, abs(missing),
                     f"source rows {t['source_rows']} != loaded {t['loaded']} + rejected {t['rejected']} + "
                     f"filtered {t['filtered']}",
                     "a bug, not a config question: rerun with `supamigrate resume --fresh`")


def _classify(code: str, reason: str) -> tuple[str, str | None]:
    """Which decision a reject reason belongs to, and the offending value when the reason names one."""
    if code == "user_password_hash":
        return ("other_algorithm" if "other_algorithms" in reason else "missing_hash"), None
    if code == "enum_rejected":
        m = _ENUM_REJECTED.search(reason)
        return "enum_rejected", _literal(m.group(1)) if m else None
    m = _NOT_ALLOWED.search(reason)
    if m:
        return "enum_not_allowed", _literal(m.group(1))
    if "infinity policy" in reason:
        return "infinity", None
    if "nan policy" in reason:
        return "nan", None
    if any(s in reason for s in _OUT_OF_RANGE):
        return "timestamp_out_of_range", None
    return "invalid_value", None


def _allowed(tp: TablePlan, column: str) -> tuple[str, ...]:
    for c in tp.target.columns:
        if c.name == column:
            return c.allowed_values or ()
    return ()


def _is_numeric_to_real(tp: TablePlan, column: str) -> bool:
    for cm in tp.columns:
        if cm.target.name == column:
            pg = (cm.source_column.base_type or cm.source_column.pg_type).lower()
            return cm.target.storage == "REAL" and pg.startswith(_NUMERIC_TYPES)
    return False


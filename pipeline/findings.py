"""One findings engine for dry runs and real runs: what a team must decide before a cutover.

Findings come from the plan (columns and tables with no place), from the rows (reject and filter
reasons, conversion notes) and from the checks; each carries a severity, a count and sample keys.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config
from pipeline.plan import MigrationPlan

NOTE_SEVERITY = {
    "precision_loss": "warning",
    "infinity": "warning",
    "nan": "warning",
    "microseconds_dropped": "info",
    "unknown_type_as_text": "warning",
    "nul_character": "warning",
    "default_filled": "info",
    "orphan_set_null": "info",
    "reset_required": "warning",
    "from_profiles": "info",
    "defaulted": "info",
    "array_lower_bound_dropped": "warning",
}


def collect_findings(
    plan: MigrationPlan, totals: dict[str, dict[str, Any]], report: dict[str, Any], config: Config
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, issue in enumerate(plan.issues):
        out.append({"id": f"plan.{issue.code}.{i}", "severity": issue.severity, "table": issue.table,
                    "column": issue.column, "count": 1, "sample_keys": [], "message": issue.message,
                    "suggestion": issue.suggestion})
    for table, t in totals.items():
        for reason, count in sorted(t["reject_reasons"].items()):
            code, _, column = reason.partition(":")
            out.append({"id": f"rejects.{table}.{reason}", "severity": "warning", "table": table,
                        "column": column or None, "count": count,
                        "sample_keys": t["sample_keys"].get(reason, [])[: config.run.sample_keys],
                        "message": f"{count} row(s) of {table} rejected: {code.replace('_', ' ')}"
                                   + (f" in {column}" if column else ""),
                        "suggestion": f"see rejects/{table}/ for each row's reason"})
        for reason, count in sorted(t["filter_reasons"].items()):
            out.append({"id": f"filtered.{table}.{reason}", "severity": "info", "table": table, "column": None,
                        "count": count, "sample_keys": [], "message": f"{count} row(s) of {table} filtered: {reason}",
                        "suggestion": None})
        for note, count in sorted(t["notes"].items()):
            column, _, kind = note.partition(":")
            out.append({"id": f"notes.{table}.{note}", "severity": NOTE_SEVERITY.get(kind, "info"), "table": table,
                        "column": column, "count": count, "sample_keys": [],
                        "message": f"{count} value(s) of {table}.{column}: {kind.replace('_', ' ')}",
                        "suggestion": None})
    for c in report.get("checks", []):
        if not c["ok"]:
            out.append({"id": f"check.{c['name']}.{c['table']}", "severity": "blocking", "table": c["table"],
                        "column": None, "count": 1, "sample_keys": [], "message": f"check {c['name']} failed: "
                        f"{c['detail']}", "suggestion": None})
    for t in report.get("tables", []):
        if not t["equation_ok"]:
            out.append({"id": f"equation.{t['name']}", "severity": "blocking", "table": t["name"], "column": None,
                        "count": 1, "sample_keys": [], "message": "source rows != loaded + rejected + filtered",
                        "suggestion": None})
    return out

"""The run report in three forms: report.json for machines, report.md for reviews, report.html to share.

All three are rendered from one plain dict the runner builds. Every string in it (dict keys included:
reject reasons are keys) passes through pipeline.redact before it is validated or rendered, so a value
that slipped into an error message or a reject reason cannot reach a file (invariant 5). The HTML page
is self-contained and names no URL a browser or mail client would fetch or link.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema

from pipeline.checks import count_equation
from pipeline.errors import ConfigError, SupamigrateError
from pipeline.redact import redact_dsn, redact_text, redact_value

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("report_schema.json")
REPORT_FILES = {"json": "report.json", "md": "report.md", "html": "report.html"}
SEVERITIES = ("blocking", "warning", "info")

Format = Literal["json", "md", "html"]


class ReportError(SupamigrateError):
    """A report that does not match report_schema.json: a bug in whoever built it, or a damaged file."""

    exit_code = 1


@cache
def _schema_text() -> str:
    return SCHEMA_PATH.read_text(encoding="utf-8")


def report_schema() -> dict[str, Any]:
    """A fresh copy of the report's JSON Schema, so callers cannot alter the cached one."""
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


def scrub(report: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy with every key and string redacted and the source URI stripped of its password."""
    cleaned = _scrub_value("report", report)
    assert isinstance(cleaned, dict)
    source = cleaned.get("source")
    if isinstance(source, dict) and isinstance(source.get("uri"), str):
        source["uri"] = redact_dsn(source["uri"])
    return cleaned


def _scrub_value(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            clean_key = redact_text(str(k))
            clean = _scrub_value(str(k), v)
            previous = out.get(clean_key)
            if isinstance(previous, int) and isinstance(clean, int) and not isinstance(clean, bool):
                clean = previous + clean
            out[clean_key] = clean
        return out
    if isinstance(value, list | tuple):
        return [_scrub_value(key, v) for v in value]
    if isinstance(value, str):
        return redact_value(key, value)
    return value


def validate_report(report: Mapping[str, Any]) -> None:
    """Schema errors and broken invariants, listed together so one run fixes them all."""
    validator = jsonschema.Draft202012Validator(report_schema())
    problems = [
        f"{_path(error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(report), key=lambda e: list(map(str, e.absolute_path)))
    ]
    problems.extend(_invariant_problems(report))
    if problems:
        shown = problems[:20]
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ReportError(redact_text("report does not match its schema:\n  " + "\n  ".join(shown) + more))


def _path(parts: Iterable[str | int]) -> str:
    text = "report"
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _invariant_problems(report: Mapping[str, Any]) -> list[str]:
    problems = [f"{path}: {value} is not a finite number" for path, value in _non_finite(report, "report")]
    tables = report.get("tables")
    if isinstance(tables, list):
        for i, table in enumerate(tables):
            if not isinstance(table, Mapping):
                continue
            raw = [table.get(k) for k in ("source_rows", "loaded", "rejected", "filtered")]
            counts = [c for c in raw if isinstance(c, int)]
            if len(counts) != 4 or not isinstance(table.get("equation_ok"), bool):
                continue
            holds = count_equation(*counts)
            if holds != table["equation_ok"]:
                problems.append(
                    f"report.tables[{i}].equation_ok: says {table['equation_ok']} but source_rows "
                    f"{counts[0]} vs loaded+rejected+filtered {sum(counts[1:])} says {holds}"
                )
    return problems


def _non_finite(value: Any, path: str) -> list[tuple[str, float]]:
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(path, value)]
    if isinstance(value, Mapping):
        return [hit for k, v in value.items() for hit in _non_finite(v, f"{path}.{k}")]
    if isinstance(value, list | tuple):
        return [hit for i, v in enumerate(value) for hit in _non_finite(v, f"{path}[{i}]")]
    return []


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_reports(run_dir: Path, report: Mapping[str, Any]) -> dict[str, Path]:
    """Redact, validate, then write report.md, report.html and last report.json, each atomically.

    report.json goes last so that, if anything fails midway, the machine-readable file never
    describes a newer state than the pages next to it.
    """
    cleaned = scrub(report)
    validate_report(cleaned)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in ("md", "html", "json"):
        path = run_dir / REPORT_FILES[fmt]
        _atomic_write(path, _render_clean(cleaned, fmt).encode("utf-8"))
        written[fmt] = path
    return {fmt: written[fmt] for fmt in ("json", "md", "html")}


def load_report(run_dir: Path) -> dict[str, Any]:
    """Read and validate a run's report.json; a missing file is a usage error (wrong run id)."""
    path = run_dir / REPORT_FILES["json"]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no report in {run_dir}: the run has not written one (yet)") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} does not hold a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{path} has schema_version {version!r}; this supamigrate reads version {SCHEMA_VERSION}"
        )
    cleaned = scrub(data)
    validate_report(cleaned)
    return cleaned


def open_report(run_dir: Path, opener: Callable[[str], bool] | None = None) -> Path:
    """Open a run's report.html in the system browser; returns the page's path.

    report.json is validated first so a damaged run folder is an error here, not a blank tab. The
    page is opened from disk (file://): it is self-contained, nothing is served or fetched.
    """
    load_report(run_dir)
    page = (run_dir / REPORT_FILES["html"]).resolve()
    if not page.is_file():
        raise ConfigError(f"no report.html in {run_dir}; print it with --format html instead")
    if opener is None:
        import webbrowser

        opener = webbrowser.open
    if not opener(page.as_uri()):
        raise ConfigError(f"no browser could be started; open {page} yourself")
    return page


def render(report: Mapping[str, Any], fmt: Format | str) -> str:
    """The report as json, md or html text; redacts again so a hand-edited file cannot leak."""
    if fmt not in REPORT_FILES:
        raise ConfigError(f"unknown report format {fmt!r}: choose one of json, md, html")
    return _render_clean(scrub(report), fmt)


def _render_clean(report: dict[str, Any], fmt: str) -> str:
    renderers: dict[str, Callable[[dict[str, Any]], str]] = {
        "json": _render_json,
        "md": _render_md,
        "html": _render_html,
    }
    return renderers[fmt](report)


def _render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ----------------------------------------------------------------------------------------------
# shared helpers


def _tables(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [t for t in report.get("tables") or [] if isinstance(t, dict)]


def _list(report: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return [x for x in report.get(key) or [] if isinstance(x, dict)]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _equation_ok(table: Mapping[str, Any]) -> bool:
    return count_equation(
        _int(table.get("source_rows")),
        _int(table.get("loaded")),
        _int(table.get("rejected")),
        _int(table.get("filtered")),
    )


def _totals(tables: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return {
        key: sum(_float(t.get(key)) for t in tables)
        for key in ("source_rows", "loaded", "rejected", "filtered", "seconds")
    }


def _by_severity(findings: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {s: [] for s in SEVERITIES}
    for finding in findings:
        groups.setdefault(str(finding.get("severity", "info")), []).append(finding)
    return groups


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        pairs: list[tuple[str, str]] = []
        for k in sorted(value, key=str):
            pairs.extend(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return pairs
    if isinstance(value, list | tuple):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, "null" if value is None else str(value))]


def decision_rules(report: Mapping[str, Any]) -> list[str]:
    """The suggestions of blocking findings that name a config key, once each, ready to paste.

    A team clears a blocked dry run by writing these rules (or the alternatives after '#'); the same
    lines show in the console, report.md and report.html so nobody has to hunt through the table.
    """
    seen: list[str] = []
    for f in _list(report, "findings"):
        suggestion = f.get("suggestion")
        if f.get("severity") != "blocking" or not isinstance(suggestion, str):
            continue
        head = suggestion.split("#", 1)[0]
        if ": " not in head or " " in head.split(": ", 1)[0].strip():
            continue
        if suggestion not in seen:
            seen.append(suggestion)
    return seen


def _fmt_num(value: Any, digits: int) -> str:
    return f"{_float(value):.{digits}f}"


def _fmt_seconds(value: Any) -> str:
    return f"{_float(value):.3f}s"


def _where(finding: Mapping[str, Any]) -> str:
    table, column = finding.get("table"), finding.get("column")
    if table and column:
        return f"{table}.{column}"
    return str(table or column or "")


# ----------------------------------------------------------------------------------------------
# console


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """The console summary, pgloader style: one aligned line per table, a total, then the status."""
    clean = scrub(report)
    tables = _tables(clean)
    name_w = min(max([len("table name"), len("Total"), *(len(str(t.get("name", ""))) for t in tables)]), 40)
    src_w = min(max([len("source"), *(len(str(t.get("source_table", ""))) for t in tables)]), 40)
    num_w = max([9, *(len(str(_int(t.get(k)))) for t in tables for k in ("source_rows", "loaded"))])
    heads = ("source rows", "loaded", "rejected", "filtered")
    num_w = max(num_w, *(len(h) for h in heads))

    def line(name: str, source: str, nums: Sequence[str], seconds: str, flag: str) -> str:
        cols = [f"{_clip(name, name_w):<{name_w}}", f"{_clip(source, src_w):<{src_w}}"]
        cols += [f"{n:>{num_w}}" for n in nums]
        cols.append(f"{seconds:>10}")
        return ("  ".join(cols) + ("  " + flag if flag else "")).rstrip()

    rule = line("-" * name_w, "-" * src_w, ["-" * num_w] * 4, "-" * 10, "")
    lines = [line("table name", "source", heads, "time", ""), rule]
    for t in tables:
        nums = [str(_int(t.get(k))) for k in ("source_rows", "loaded", "rejected", "filtered")]
        flag = "" if _equation_ok(t) else "COUNT MISMATCH"
        lines.append(
            line(
                str(t.get("name", "")),
                str(t.get("source_table", "")),
                nums,
                _fmt_seconds(t.get("seconds")),
                flag,
            )
        )
    totals = _totals(tables)
    lines.append(rule)
    total_nums = [str(int(totals[k])) for k in ("source_rows", "loaded", "rejected", "filtered")]
    lines.append(line("Total", "", total_nums, _fmt_seconds(totals["seconds"]), ""))
    lines.append("")
    lines.extend(_status_lines(clean))
    return lines


def _status_lines(report: Mapping[str, Any]) -> list[str]:
    status = str(report.get("status", "unknown"))
    out = [f"status: {status}" + (" (dry run)" if report.get("dry_run") and "dry_run" not in status else "")]
    failed_checks = [c for c in _list(report, "checks") if not c.get("ok")]
    if failed_checks:
        out.append(f"failed checks: {len(failed_checks)}")
        out.extend(
            f"  {c.get('name')}{' ' + str(c['table']) if c.get('table') else ''}: {c.get('detail', '')}"
            for c in failed_checks[:10]
        )
    groups = _by_severity(_list(report, "findings"))
    counts = ", ".join(f"{len(groups[s])} {s}" for s in SEVERITIES if groups.get(s))
    if counts:
        out.append(f"findings: {counts}")
    blocking = groups.get("blocking", [])
    for f in blocking[:10]:
        out.append(f"  blocking {_where(f) or f.get('id')}: {_clip(str(f.get('message', '')), 110)}")
    if len(blocking) > 10:
        out.append(f"  ... and {len(blocking) - 10} more blocking (see report.md)")
    rules = decision_rules(report)
    if rules:
        out.append("config rules that decide the blocking findings:")
        out.extend(f"  {r}" for r in rules)
    unmigrated = _list(report, "unmigrated_tables")
    if unmigrated:
        out.append(f"not migrated: {', '.join(str(u.get('name')) for u in unmigrated)}")
    target = report.get("target")
    if isinstance(target, Mapping) and target.get("path"):
        if report.get("dry_run"):
            out.append(f"target (not touched by a dry run): {target['path']}")
        else:
            out.append(f"target: {target['path']}" + (" (swapped in)" if target.get("swapped") else " (not changed)"))
    if report.get("error"):
        out.append(f"error: {report['error']}")
    return out


# ----------------------------------------------------------------------------------------------
# markdown


def _md(value: Any) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("*", "\\*")
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split())


def _md_table(head: Sequence[str], align: str, rows: Iterable[Sequence[Any]]) -> list[str]:
    aligns = {"l": "---", "r": "--:", "c": ":-:"}
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(aligns[a] for a in align) + "|"]
    out.extend("| " + " | ".join(_md(c) for c in row) + " |" for row in rows)
    return out


def _render_md(report: dict[str, Any]) -> str:
    out: list[str] = [f"# supamigrate run {_md(report.get('run_id'))}", ""]
    source = report.get("source") if isinstance(report.get("source"), dict) else {}
    target = report.get("target") if isinstance(report.get("target"), dict) else {}
    assert isinstance(source, dict) and isinstance(target, dict)
    meta = [
        ("status", report.get("status")),
        ("dry run", "yes" if report.get("dry_run") else "no"),
        ("started", report.get("started_at")),
        ("finished", report.get("finished_at") or "—"),
        ("source", f"{source.get('kind', '')} {source.get('uri', '')}".strip()),
        ("target", target.get("path")),
        ("swapped in", "yes" if target.get("swapped") else "no"),
        ("staging", target.get("staging")),
        ("backup before", target.get("backup_before")),
        ("backup after", target.get("backup_after")),
    ]
    out += [f"- **{k}:** {_md(v)}" for k, v in meta if v not in (None, "")]
    identity = source.get("identity")
    if isinstance(identity, dict) and identity:
        out.append(
            "- **source identity:** " + ", ".join(f"{_md(k)}={_md(v)}" for k, v in sorted(identity.items()))
        )
    if report.get("error"):
        out += ["", "## Error", "", "```", str(report["error"]).replace("```", "'''"), "```"]

    tables = _tables(report)
    out += ["", "## Tables", ""]
    rows: list[list[Any]] = []
    for t in tables:
        rows.append(
            [
                t.get("name"),
                t.get("source_table"),
                _int(t.get("source_rows")),
                _int(t.get("loaded")),
                _int(t.get("rejected")),
                _int(t.get("filtered")),
                f"{_float(t.get('seconds')):.3f}",
                "ok" if _equation_ok(t) else "MISMATCH",
                t.get("checksum") or "",
            ]
        )
    totals = _totals(tables)
    rows.append(
        [
            "Total",
            "",
            *(int(totals[k]) for k in ("source_rows", "loaded", "rejected", "filtered")),
            f"{totals['seconds']:.3f}",
            "",
            "",
        ]
    )
    out += _md_table(
        [
            "table",
            "source",
            "source rows",
            "loaded",
            "rejected",
            "filtered",
            "seconds",
            "count check",
            "checksum",
        ],
        "llrrrrrll",
        rows,
    )
    reasons = [
        (t.get("name"), r, n) for t in tables for r, n in sorted((t.get("reject_reasons") or {}).items())
    ]
    if reasons:
        out += ["", "### Reject reasons", ""]
        out += _md_table(["table", "reason", "rows"], "llr", reasons)

    unmigrated = _list(report, "unmigrated_tables")
    out += ["", "## Tables not migrated", ""]
    if unmigrated:
        out += _md_table(
            ["source table", "rows", "reason"],
            "lrl",
            (
                [u.get("name"), "?" if u.get("rows") is None else u.get("rows"), u.get("reason")]
                for u in unmigrated
            ),
        )
    else:
        out.append("None: every source table is mapped.")

    checks = _list(report, "checks")
    out += ["", "## Checks", ""]
    if checks:
        out += _md_table(
            ["check", "table", "result", "detail"],
            "llll",
            (
                [
                    c.get("name"),
                    c.get("table") or "(database)",
                    "ok" if c.get("ok") else "FAILED",
                    c.get("detail"),
                ]
                for c in checks
            ),
        )
    else:
        out.append("No checks ran.")

    out += ["", "## Findings", ""]
    groups = _by_severity(_list(report, "findings"))
    if not any(groups.values()):
        out.append("No findings.")
    for severity, findings in groups.items():
        if not findings:
            continue
        out += [f"### {severity.capitalize()} ({len(findings)})", ""]
        for f in findings:
            where = _where(f)
            line = f"- **{_md(f.get('id'))}**" + (f" `{_md(where)}`" if where else "")
            line += f" — {_int(f.get('count'))} row(s): {_md(f.get('message'))}"
            out.append(line)
            if f.get("suggestion"):
                out.append(f"  - suggestion: {_md(f['suggestion'])}")
            keys = [str(k) for k in f.get("sample_keys") or []]
            if keys:
                out.append("  - sample keys: " + ", ".join(_md(k) for k in keys))
        out.append("")
    if out[-1] == "":
        out.pop()
    rules = decision_rules(report)
    if rules:
        out += ["", "### Config rules that decide the blocking findings", "",
                "Each line is a key path and a value (`tables.x.y: v` is `y: v` under `x:` under `tables:`); "
                "the comment names the alternatives.", "", "```yaml"]
        out += [r.replace("`", "'") for r in rules]
        out.append("```")

    rejects = _list(report, "sample_rejects")
    if rejects:
        out += ["", "## Sample rejects", ""]
        out += _md_table(
            ["table", "key", "column", "reason"],
            "llll",
            ([r.get("table"), r.get("key"), r.get("column") or "", r.get("reason")] for r in rejects),
        )

    stages = _list(report, "stages")
    out += ["", "## Stages", ""]
    if stages:
        out += _md_table(
            ["stage", "seconds", "rows", "rows/s"],
            "lrrr",
            (
                [
                    s.get("name"),
                    f"{_float(s.get('seconds')):.3f}",
                    _int(s.get("rows")),
                    f"{_float(s.get('rows_per_second')):.0f}",
                ]
                for s in stages
            ),
        )
    else:
        out.append("No stage timings recorded.")

    auth = report.get("auth")
    if isinstance(auth, dict) and auth:
        out += ["", "## Auth census", ""]
        out += _md_table(["item", "value"], "lr", _flatten(auth))
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# html


def _h(value: Any) -> str:
    """Escape for text and attributes; '://' is written as an entity so no URL appears in the page."""
    text = "" if value is None else str(value)
    return html.escape(text, quote=True).replace("://", "&#58;//")


_CSS = """
:root{--loaded:#2e7d32;--rejected:#c62828;--filtered:#f9a825;--missing:#6a1b9a;--ink:#1d1d1f;--mute:#666}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);margin:2rem auto;
max-width:1100px;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.25rem}
h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.25rem}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #e3e3e3;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:600;border-top:2px solid #bbb}
.status{display:inline-block;padding:.15rem .6rem;border-radius:1rem;color:#fff;font-weight:600}
.status-succeeded,.status-dry_run_clean{background:var(--loaded)}
.status-failed,.status-dry_run_blocked{background:var(--rejected)}
.status-running,.status-interrupted{background:#546e7a}
.ok{color:var(--loaded);font-weight:600}.bad{color:var(--rejected);font-weight:600}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dl.meta dt{color:var(--mute)}
dl.meta dd{margin:0;word-break:break-all}
tr.sev-head th{background:#eee}
tr.finding[data-severity=blocking] td:first-child{border-left:4px solid var(--rejected)}
tr.finding[data-severity=warning] td:first-child{border-left:4px solid var(--filtered)}
tr.finding[data-severity=info] td:first-child{border-left:4px solid #90a4ae}
svg.chart{width:100%;height:auto}svg.chart text{font-size:12px;fill:var(--ink)}
.seg-loaded{fill:var(--loaded)}.seg-rejected{fill:var(--rejected)}.seg-filtered{fill:var(--filtered)}
.seg-missing{fill:var(--missing)}.frame{fill:none;stroke:#333;stroke-width:1}
.legend span{display:inline-block;margin-right:1rem}.legend i{display:inline-block;width:.8rem;height:.8rem;
margin-right:.3rem;vertical-align:middle}
pre.error{background:#fff3f3;border:1px solid #f2c6c6;padding:.75rem;white-space:pre-wrap}
pre.rules{background:#f6f8fa;border:1px solid #ddd;padding:.75rem;white-space:pre-wrap}
.verdict span{font-weight:600}.verdict .sev-blocking{color:var(--rejected)}.verdict .sev-warning{color:#b26a00}
"""


def _html_table(head: Sequence[tuple[str, bool]], rows: Iterable[str]) -> str:
    ths = "".join(f'<th class="n">{_h(h)}</th>' if num else f"<th>{_h(h)}</th>" for h, num in head)
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _td(value: Any, num: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("n" if num else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{_h(value)}</td>"


def _chart(tables: Sequence[Mapping[str, Any]]) -> str:
    """Per-table 100% stacked bars: where each table's source rows went.

    Each bar is scaled to its own table so a 40-row table is as readable as a 4-million-row one; a
    purple gap means rows are unaccounted for, a bar overrunning its frame means rows were counted
    twice.
    """
    label_w, bar_x, bar_w, row_h, bar_h = 190, 200, 520, 26, 16
    width = bar_x + bar_w + 300
    height = max(row_h * len(tables) + 8, row_h)
    parts = [
        f'<svg class="chart" role="img" aria-label="rows per table" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}">'
    ]
    for i, t in enumerate(tables):
        name = str(t.get("name", ""))
        source = _int(t.get("source_rows"))
        segs = [
            ("loaded", _int(t.get("loaded"))),
            ("rejected", _int(t.get("rejected"))),
            ("filtered", _int(t.get("filtered"))),
        ]
        accounted = sum(n for _, n in segs)
        if source > accounted:
            segs.append(("missing", source - accounted))
        denom = max(source, accounted, 1)
        y = 4 + i * row_h
        parts.append(f'<g class="chart-row" data-table="{_h(name)}" transform="translate(0,{y})">')
        parts.append(
            f'<text x="{label_w}" y="{bar_h - 3}" text-anchor="end">{_h(_clip(name, 28))}'
            f"<title>{_h(name)}</title></text>"
        )
        x = float(bar_x)
        for kind, n in segs:
            if n <= 0:
                continue
            w = bar_w * n / denom
            parts.append(
                f'<rect class="seg-{kind}" x="{x:.2f}" y="0" width="{max(w, 0.5):.2f}" '
                f'height="{bar_h}"><title>{_h(name)} {kind}: {n}</title></rect>'
            )
            x += w
        frame_w = bar_w * source / denom if source else bar_w
        parts.append(
            f'<rect class="frame" x="{bar_x}" y="0" width="{frame_w:.2f}" height="{bar_h}">'
            f"<title>{_h(name)} source rows: {source}</title></rect>"
        )
        label = f"{_int(t.get('loaded'))} / {source} loaded"
        extra = [f"{n} {k}" for k, n in segs[1:] if n]
        if extra:
            label += " (" + ", ".join(extra) + ")"
        parts.append(f'<text x="{bar_x + bar_w + 8}" y="{bar_h - 3}">{_h(label)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:var(--{k})"></i>{_h(k)}</span>'
        for k in ("loaded", "rejected", "filtered", "missing")
    )
    return "".join(parts) + f'<p class="legend">{legend} — each bar is one table\'s source rows</p>'


def _render_html(report: dict[str, Any]) -> str:
    status = str(report.get("status", "unknown"))
    run_id = str(report.get("run_id", ""))
    source = report.get("source") if isinstance(report.get("source"), dict) else {}
    target = report.get("target") if isinstance(report.get("target"), dict) else {}
    assert isinstance(source, dict) and isinstance(target, dict)
    body: list[str] = [
        f"<header><h1>supamigrate run <code>{_h(run_id)}</code></h1>",
        f'<p><span class="status status-{_h(status)}">{_h(status)}</span>'
        + (" dry run" if report.get("dry_run") else "")
        + "</p>",
    ]
    verdict = _by_severity(_list(report, "findings"))
    body.append(
        '<p class="verdict" id="verdict">findings: '
        + ", ".join(
            f'<span class="sev-{_h(s)}" data-severity="{_h(s)}">{len(verdict.get(s, []))} {_h(s)}</span>'
            for s in SEVERITIES
        )
        + (" — the config rules that decide the blocking ones are listed under Findings" if verdict["blocking"]
           else "")
        + "</p>"
    )
    meta = [
        ("started", report.get("started_at")),
        ("finished", report.get("finished_at") or "—"),
        ("source", f"{source.get('kind', '')} {source.get('uri', '')}".strip()),
        ("target", target.get("path")),
        ("swapped in", "yes" if target.get("swapped") else "no"),
        ("staging", target.get("staging")),
        ("backup before", target.get("backup_before")),
        ("backup after", target.get("backup_after")),
    ]
    identity = source.get("identity")
    if isinstance(identity, dict) and identity:
        meta.append(("source identity", ", ".join(f"{k}={v}" for k, v in sorted(identity.items()))))
    body.append(
        '<dl class="meta">'
        + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in meta if v not in (None, ""))
        + "</dl></header>"
    )
    if report.get("error"):
        body.append(
            f'<section id="error"><h2>Error</h2><pre class="error">{_h(report["error"])}</pre></section>'
        )

    tables = _tables(report)
    body.append('<section id="tables"><h2>Tables</h2>')
    body.append(_chart(tables) if tables else "<p>No tables.</p>")
    rows = []
    for t in tables:
        ok = _equation_ok(t)
        rows.append(
            f'<tr data-table="{_h(t.get("name"))}">'
            + _td(t.get("name"))
            + _td(t.get("source_table"))
            + "".join(
                _td(_int(t.get(k)), num=True) for k in ("source_rows", "loaded", "rejected", "filtered")
            )
            + _td(f"{_float(t.get('seconds')):.3f}", num=True)
            + _td("ok" if ok else "MISMATCH", cls="ok" if ok else "bad")
            + _td(t.get("checksum") or "")
            + "</tr>"
        )
    totals = _totals(tables)
    rows.append(
        '<tr class="total">'
        + _td("Total")
        + _td("")
        + "".join(_td(int(totals[k]), num=True) for k in ("source_rows", "loaded", "rejected", "filtered"))
        + _td(f"{totals['seconds']:.3f}", num=True)
        + _td("")
        + _td("")
        + "</tr>"
    )
    body.append(
        _html_table(
            [
                ("table", False),
                ("source", False),
                ("source rows", True),
                ("loaded", True),
                ("rejected", True),
                ("filtered", True),
                ("seconds", True),
                ("count check", False),
                ("checksum", False),
            ],
            rows,
        )
    )
    reasons = [
        (t.get("name"), r, n) for t in tables for r, n in sorted((t.get("reject_reasons") or {}).items())
    ]
    if reasons:
        body.append(
            "<h3>Reject reasons</h3>"
            + _html_table(
                [("table", False), ("reason", False), ("rows", True)],
                (f"<tr>{_td(a)}{_td(b)}{_td(n, num=True)}</tr>" for a, b, n in reasons),
            )
        )
    body.append("</section>")

    unmigrated = _list(report, "unmigrated_tables")
    body.append('<section id="unmigrated"><h2>Tables not migrated</h2>')
    if unmigrated:
        body.append(
            _html_table(
                [("source table", False), ("rows", True), ("reason", False)],
                (
                    f"<tr>{_td(u.get('name'))}"
                    f"{_td('?' if u.get('rows') is None else u.get('rows'), num=True)}"
                    f"{_td(u.get('reason'))}</tr>"
                    for u in unmigrated
                ),
            )
        )
    else:
        body.append("<p>None: every source table is mapped.</p>")
    body.append("</section>")

    checks = _list(report, "checks")
    body.append('<section id="checks"><h2>Checks</h2>')
    if checks:
        body.append(
            _html_table(
                [("check", False), ("table", False), ("result", False), ("detail", False)],
                (
                    f'<tr class="check" data-ok="{"true" if c.get("ok") else "false"}">{_td(c.get("name"))}'
                    f"{_td(c.get('table') or '(database)')}"
                    f"{_td('ok' if c.get('ok') else 'FAILED', cls='ok' if c.get('ok') else 'bad')}"
                    f"{_td(c.get('detail'))}</tr>"
                    for c in checks
                ),
            )
        )
    else:
        body.append("<p>No checks ran.</p>")
    body.append("</section>")

    groups = _by_severity(_list(report, "findings"))
    body.append('<section id="findings"><h2>Findings</h2>')
    if any(groups.values()):
        head = [
            ("severity", False),
            ("finding", False),
            ("where", False),
            ("rows", True),
            ("message", False),
            ("suggestion", False),
            ("sample keys", False),
        ]
        ths = "".join(f'<th class="n">{_h(h)}</th>' if num else f"<th>{_h(h)}</th>" for h, num in head)
        parts = [f"<table><thead><tr>{ths}</tr></thead>"]
        for severity, findings in groups.items():
            if not findings:
                continue
            parts.append(
                f'<tbody data-severity="{_h(severity)}"><tr class="sev-head"><th colspan="7">'
                f"{_h(severity.capitalize())} ({len(findings)})</th></tr>"
            )
            for f in findings:
                keys = ", ".join(str(k) for k in f.get("sample_keys") or [])
                parts.append(
                    f'<tr class="finding" data-severity="{_h(severity)}" data-id="{_h(f.get("id"))}" '
                    f'data-count="{_int(f.get("count"))}">{_td(severity)}{_td(f.get("id"))}'
                    f"{_td(_where(f))}{_td(_int(f.get('count')), num=True)}{_td(f.get('message'))}"
                    f"{_td(f.get('suggestion') or '')}<td><code>{_h(keys)}</code></td></tr>"
                )
            parts.append("</tbody>")
        parts.append("</table>")
        body.append("".join(parts))
        rules = decision_rules(report)
        if rules:
            body.append(
                '<h3>Config rules that decide the blocking findings</h3><pre class="rules" id="rules">'
                + _h("\n".join(rules))
                + "</pre>"
            )
    else:
        body.append("<p>No findings.</p>")
    body.append("</section>")

    rejects = _list(report, "sample_rejects")
    body.append('<section id="rejects"><h2>Sample rejects</h2>')
    if rejects:
        body.append(
            _html_table(
                [("table", False), ("key", False), ("column", False), ("reason", False)],
                (
                    f'<tr class="reject">{_td(r.get("table"))}<td><code>{_h(r.get("key"))}</code></td>'
                    f"{_td(r.get('column') or '')}{_td(r.get('reason'))}</tr>"
                    for r in rejects
                ),
            )
        )
    else:
        body.append("<p>No sample rejects recorded.</p>")
    body.append("</section>")

    stages = _list(report, "stages")
    body.append('<section id="stages"><h2>Stages</h2>')
    if stages:
        body.append(
            _html_table(
                [("stage", False), ("seconds", True), ("rows", True), ("rows/s", True)],
                (
                    f"<tr>{_td(s.get('name'))}{_td(_fmt_num(s.get('seconds'), 3), num=True)}"
                    f"{_td(_int(s.get('rows')), num=True)}"
                    f"{_td(_fmt_num(s.get('rows_per_second'), 0), num=True)}</tr>"
                    for s in stages
                ),
            )
        )
    else:
        body.append("<p>No stage timings recorded.</p>")
    body.append("</section>")

    auth = report.get("auth")
    if isinstance(auth, dict) and auth:
        body.append(
            '<section id="auth"><h2>Auth census</h2>'
            + _html_table(
                [("item", False), ("value", True)],
                (f"<tr>{_td(k)}{_td(v, num=True)}</tr>" for k, v in _flatten(auth)),
            )
            + "</section>"
        )

    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>supamigrate run {_h(run_id)}: {_h(status)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )

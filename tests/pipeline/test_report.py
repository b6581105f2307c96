from __future__ import annotations

import copy
import json
import re
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pipeline.errors import ConfigError
from pipeline.report import (
    SCHEMA_PATH,
    ReportError,
    load_report,
    render,
    report_schema,
    summary_lines,
    validate_report,
    write_reports,
)

BCRYPT = "$2b$12$" + "R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"[:53]
DSN_PASSWORD = "s3cr3t-Pa55word"
DSN = f"postgresql://postgres:{DSN_PASSWORD}@db.example.internal:5432/postgres"


def base_report() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "run_id": "20250101T000000Z-abc123",
        "status": "succeeded",
        "dry_run": False,
        "started_at": "2025-01-01T00:00:00Z",
        "finished_at": "2025-01-01T00:01:00Z",
        "source": {"kind": "dump", "uri": "dump:examples/xrozen.sql", "identity": {"sha256": "ab" * 32}},
        "target": {
            "path": "runs/x/xrozen.db",
            "staging": "runs/x/staging/xrozen.db",
            "backup_before": None,
            "backup_after": "runs/x/xrozen-backup-2025-01-01T00-01-00-000Z.db",
            "swapped": True,
        },
        "tables": [
            {
                "name": "users",
                "source_table": "auth.users+public.profiles",
                "source_rows": 120,
                "loaded": 110,
                "rejected": 6,
                "filtered": 4,
                "seconds": 0.42,
                "equation_ok": True,
                "checksum": "0123456789abcdef",
                "reject_reasons": {"no usable password hash": 6},
            },
            {
                "name": "project_clients",
                "source_table": "public.project_clients",
                "source_rows": 30,
                "loaded": 27,
                "rejected": 3,
                "filtered": 0,
                "seconds": 0.05,
                "equation_ok": True,
                "checksum": None,
                "reject_reasons": {"orphan project_id": 3},
            },
            {
                "name": "database_config",
                "source_table": "public.database_config",
                "source_rows": 0,
                "loaded": 0,
                "rejected": 0,
                "filtered": 0,
                "seconds": 0.0,
                "equation_ok": True,
                "checksum": "0000000000000000",
                "reject_reasons": {},
            },
        ],
        "unmigrated_tables": [{"name": "public.invoices", "rows": 12, "reason": "no target table"}],
        "checks": [
            {"name": "integrity_check", "table": None, "ok": True, "detail": "ok"},
            {"name": "foreign_keys", "table": "project_clients", "ok": True, "detail": "no violations"},
        ],
        "findings": [
            {
                "id": "role_not_allowed",
                "severity": "warning",
                "table": "user_roles",
                "column": "role",
                "count": 2,
                "sample_keys": ["9b2c6d0e-0000-4000-8000-000000000001"],
                "message": "'admin' is not an allowed role",
                "suggestion": "map admin to agency in mapping.enum_maps",
            },
            {
                "id": "orphan_rows",
                "severity": "blocking",
                "table": "project_clients",
                "column": "project_id",
                "count": 3,
                "sample_keys": ["pc-1", "pc-2"],
                "message": "project_id points at no project",
                "suggestion": None,
            },
            {
                "id": "precision",
                "severity": "info",
                "table": None,
                "column": None,
                "count": 0,
                "sample_keys": [],
                "message": "no precision lost",
                "suggestion": None,
            },
        ],
        "stages": [
            {"name": "extract", "seconds": 1.5, "rows": 150, "rows_per_second": 100.0},
            {"name": "load", "seconds": 0.5, "rows": 137, "rows_per_second": 274.0},
        ],
        "auth": {"algorithms": {"bcrypt": {"10": 100, "12": 10}, "none": 6}, "users_total": 116},
        "error": None,
        "sample_rejects": [
            {"table": "project_clients", "key": "pc-1", "column": "project_id", "reason": "orphan"}
        ],
    }


def secret_report() -> dict[str, Any]:
    report = base_report()
    report["status"] = "failed"
    report["source"]["uri"] = DSN
    report["error"] = f"connection to {DSN} failed while loading user with hash {BCRYPT}"
    report["tables"][0]["reject_reasons"] = {f"hash {BCRYPT} has unknown cost": 6}
    report["findings"][0]["message"] = f"user u1 password {BCRYPT} rejected"
    report["findings"][0]["sample_keys"] = [BCRYPT]
    report["checks"][0]["detail"] = f"password={DSN_PASSWORD} in log"
    report["auth"]["encrypted_password"] = BCRYPT
    report["sample_rejects"][0]["reason"] = f"bad hash {BCRYPT}"
    return report


class _ChartParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chart_rows: list[str] = []
        self.findings: list[str] = []
        self.hrefs: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if "chart-row" in classes:
            self.chart_rows.append(a.get("data-table") or "")
        if tag == "tr" and "finding" in classes:
            self.findings.append(a.get("data-severity") or "")
        for name in ("href", "src"):
            if a.get(name):
                self.external.append(f"{tag}.{name}={a[name]}")
        if tag in ("script", "link", "iframe", "img"):
            self.external.append(tag)


def parse_html(text: str) -> _ChartParser:
    parser = _ChartParser()
    parser.feed(text)
    parser.close()
    return parser


def test_schema_is_a_valid_versioned_json_schema() -> None:
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]["const"] == 1
    assert json.loads(SCHEMA_PATH.read_text()) == schema


def test_written_report_validates_against_the_schema(tmp_path: Path) -> None:
    paths = write_reports(tmp_path, base_report())
    assert set(paths) == {"json", "md", "html"}
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    jsonschema.validate(data, report_schema(), cls=jsonschema.Draft202012Validator)
    assert data["tables"][0]["name"] == "users"
    assert paths["json"].read_text(encoding="utf-8") == json.dumps(data, sort_keys=True, indent=2) + "\n"


def test_report_files_are_private_and_no_tmp_is_left(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    paths = write_reports(run_dir, base_report())
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html", "report.json", "report.md"]


def test_load_report_round_trips(tmp_path: Path) -> None:
    report = base_report()
    write_reports(tmp_path, report)
    assert load_report(tmp_path) == report
    assert render(load_report(tmp_path), "json") == (tmp_path / "report.json").read_text(encoding="utf-8")


def test_load_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no report"):
        load_report(tmp_path)
    data = base_report()
    data["schema_version"] = 2
    (tmp_path / "report.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="schema_version 2"):
        load_report(tmp_path)
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        load_report(tmp_path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("findings"), "'findings' is a required property"),
        (lambda r: r.__setitem__("status", "done"), "report.status"),
        (lambda r: r["tables"][1].__setitem__("loaded", -1), r"report.tables\[1\].loaded"),
        (lambda r: r["tables"][0].__setitem__("checksum", "XYZ"), r"report.tables\[0\].checksum"),
        (lambda r: r["findings"][0].__setitem__("severity", "fatal"), r"report.findings\[0\].severity"),
        (lambda r: r["stages"][0].__setitem__("name", "dance"), r"report.stages\[0\].name"),
        (lambda r: r["tables"][0].__setitem__("loaded", 100), r"equation_ok: says True"),
        (lambda r: r["stages"][0].__setitem__("rows_per_second", float("inf")), "not a finite number"),
    ],
)
def test_invalid_reports_are_refused_and_nothing_is_written(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    report = base_report()
    mutate(report)
    with pytest.raises(ReportError, match=message):
        write_reports(tmp_path, report)
    assert list(tmp_path.iterdir()) == []


def test_equation_ok_false_is_accepted_when_it_tells_the_truth(tmp_path: Path) -> None:
    report = base_report()
    report["status"] = "failed"
    report["tables"][0]["loaded"] = 100
    report["tables"][0]["equation_ok"] = False
    write_reports(tmp_path, report)
    assert "MISMATCH" in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert any("COUNT MISMATCH" in line for line in summary_lines(report))


@pytest.mark.parametrize("fmt", ["json", "md", "html"])
def test_secrets_never_reach_any_format(tmp_path: Path, fmt: str) -> None:
    report = secret_report()
    validate_report(json.loads(render(report, "json")))
    text = render(report, fmt)
    assert BCRYPT not in text
    assert "$2b$12$" not in text
    assert DSN_PASSWORD not in text
    written = write_reports(tmp_path, report)[fmt].read_text(encoding="utf-8")
    assert written == text
    assert "db.example.internal" in text


def test_secrets_never_reach_the_console_summary() -> None:
    lines = "\n".join(summary_lines(secret_report()))
    assert BCRYPT not in lines and DSN_PASSWORD not in lines
    assert "error:" in lines


def test_redaction_keeps_reject_reason_counts() -> None:
    report = base_report()
    report["tables"][0]["reject_reasons"] = {f"hash {BCRYPT}": 4, "hash $2b$12$" + "B" * 53: 2}
    data = json.loads(render(report, "json"))
    assert data["tables"][0]["reject_reasons"] == {"hash ***": 6}


def test_html_is_self_contained_with_one_chart_row_per_table() -> None:
    report = base_report()
    report["source"]["uri"] = "https://abcd.supabase.co"
    report["tables"][1]["name"] = 'odd <b>"name"</b> & co'
    report["findings"][1]["message"] = "<script>alert(1)</script>"
    text = render(report, "html")
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text
    parsed = parse_html(text)
    assert parsed.external == []
    assert parsed.chart_rows == [t["name"] for t in report["tables"]]
    assert sorted(parsed.findings) == ["blocking", "info", "warning"]
    assert parsed.findings == ["blocking", "warning", "info"]
    assert "&lt;b&gt;" in text


def test_html_chart_shows_unaccounted_rows() -> None:
    report = base_report()
    report["tables"][0]["loaded"] = 50
    report["tables"][0]["equation_ok"] = False
    text = render(report, "html")
    row = re.search(r'<g class="chart-row" data-table="users".*?</g>', text, re.S)
    assert row is not None
    assert 'class="seg-missing"' in row.group(0)
    assert "60 missing" in row.group(0)


def test_html_has_sample_rejects_section() -> None:
    text = render(base_report(), "html")
    assert 'id="rejects"' in text and 'class="reject"' in text and "pc-1" in text
    report = base_report()
    del report["sample_rejects"]
    assert "No sample rejects" in render(report, "html")


def test_markdown_lists_every_table_and_section() -> None:
    report = base_report()
    text = render(report, "md")
    for table in report["tables"]:
        assert table["name"] in text
        assert table["source_table"] in text
    assert "public.invoices" in text
    for heading in ("## Tables", "## Tables not migrated", "## Checks", "## Findings", "## Stages"):
        assert heading in text
    blocking, warning, info = (text.index(h) for h in ("### Blocking (1)", "### Warning (1)", "### Info (1)"))
    assert blocking < warning < info
    assert "pc-1, pc-2" in text
    assert re.search(r"\| Total \|  \| 150 \| 137 \| 9 \| 4 \|", text)


def test_markdown_escapes_table_breaking_characters() -> None:
    report = base_report()
    report["findings"][0]["message"] = "a | b\nc"
    text = render(report, "md")
    assert "a \\| b c" in text


def test_summary_lines_are_aligned_with_totals_and_status() -> None:
    report = base_report()
    lines = summary_lines(report)
    header, rule = lines[0], lines[1]
    table_lines = lines[2:5]
    assert [line.split()[0] for line in table_lines] == ["users", "project_clients", "database_config"]
    assert len({len(line) for line in [header, rule, *table_lines]}) == 1
    loaded_end = header.index("loaded") + len("loaded")
    for line in table_lines:
        assert line[loaded_end - 1] != " "
    total = next(line for line in lines if line.startswith("Total"))
    assert total.split()[1:5] == ["150", "137", "9", "4"]
    assert "status: succeeded" in lines
    assert any(line.startswith("not migrated: public.invoices") for line in lines)
    assert any(line.startswith("findings: 1 blocking, 1 warning, 1 info") for line in lines)


def test_render_rejects_unknown_format() -> None:
    with pytest.raises(ConfigError, match="unknown report format"):
        render(base_report(), "pdf")


def test_scrubbing_does_not_mutate_the_callers_report(tmp_path: Path) -> None:
    report = secret_report()
    before = copy.deepcopy(report)
    write_reports(tmp_path, report)
    assert report == before

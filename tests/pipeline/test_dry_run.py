"""Dry runs on the quirky Xrozen fixture: every quirk is a finding a team can decide, and deciding
them all (by pasting the report's own suggestions) makes the dry run clean.

The "bare" config names only the migrations, so every quirk surfaces as a decision nobody made;
the shipped config.yaml decides all of them; the "decided" config is the bare one plus
exactly the rules the bare report suggested.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
import pytest
import yaml
from click.testing import CliRunner

from pipeline import cli
from pipeline.report import SCHEMA_PATH, decision_rules
from pipeline.runner import RunOutcome, dry_run
from tests.support.postgres import throwaway_database
from tests.support.xrozen import (
    ADMIN_ROLE_IDS,
    ANONYMOUS_IDS,
    ARGON2_IDS,
    AUTH_WITHOUT_PROFILE_IDS,
    CASE_DUPLICATE_EMAIL_IDS,
    EMPTY_PASSWORD_USER_IDS,
    NULL_PASSWORD_USER_IDS,
    ORPHAN_MESSAGE_IDS,
    ORPHAN_PAYMENT_IDS,
    ORPHAN_PROJECT_CLIENT_IDS,
    ORPHAN_VIDEO_VERSION_IDS,
    PHONE_ONLY_IDS,
    PROFILE_ONLY_NO_HASH_IDS,
    PROJECTS_BY_SOFT_DELETED_IDS,
    SOFT_DELETED_IDS,
    XrozenFixture,
    load_xrozen_fixture,
)

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "target_schema"
SHIPPED_CONFIG = ROOT / "config.yaml"
DSN_PASSWORD = "J-dry-run-Secr3t"
SAMPLE_KEYS = 5
REJECT_KINDS = {
    "fk_orphan", "fk_parent_not_migrated", "enum_not_allowed", "enum_rejected", "users_missing_hash",
    "users_other_algorithm", "users_no_email", "duplicate", "invalid_value", "missing_required",
    "infinity_rejected", "nan_rejected", "timestamp_out_of_range",
}
FILTER_KINDS = {"users_filtered", "filtered"}
HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}|\$argon2id?\$v=")


@dataclass
class Snapshot:
    """Bytes and times of everything under the live target's folder (the target, its backups)."""

    files: dict[str, tuple[str, int, int]]
    dirs: dict[str, tuple[int, tuple[str, ...]]]

    @classmethod
    def take(cls, root: Path) -> Snapshot:
        files: dict[str, tuple[str, int, int]] = {}
        dirs: dict[str, tuple[int, tuple[str, ...]]] = {}
        for path in sorted([root, *root.rglob("*")]):
            st = path.stat()
            rel = str(path.relative_to(root))
            if path.is_dir():
                dirs[rel] = (st.st_mtime_ns, tuple(sorted(p.name for p in path.iterdir())))
            else:
                files[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_size)
        return cls(files, dirs)


@dataclass
class DryRuns:
    fixture: XrozenFixture
    dsn: str
    live: Path
    before: Snapshot
    after: Snapshot
    bare: RunOutcome
    decided: RunOutcome
    decided_config: dict[str, Any]
    shipped_exit: int
    shipped_report: dict[str, Any]


def _with_password(dsn: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["password"] = DSN_PASSWORD
    return f"postgresql://{info.get('user', 'postgres')}:{DSN_PASSWORD}@{info.get('host', '127.0.0.1')}:" \
           f"{info.get('port', 5432)}/{info['dbname']}"


def apply_suggestion(config: dict[str, Any], suggestion: str) -> None:
    """Write one suggested rule (`a.b.c: value  # comment`) into a config dict, merging maps and lists."""
    line = suggestion.split("  #", 1)[0].strip()
    path, sep, raw = line.partition(": ")
    assert sep and " " not in path, f"suggestion is not a config rule: {suggestion!r}"
    assert "<" not in raw, f"suggestion needs a value filled in: {suggestion!r}"
    value = yaml.safe_load(raw)
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    current = node.get(leaf)
    if isinstance(current, dict) and isinstance(value, dict):
        current.update(value)
    elif isinstance(current, list) and isinstance(value, list):
        current.extend(v for v in value if v not in current)
    else:
        node[leaf] = value


@pytest.fixture(scope="module")
def runs(pg_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DryRuns]:
    tmp = tmp_path_factory.mktemp("dryrun")
    with throwaway_database(pg_admin_dsn, prefix="smdry") as dsn:
        fixture = load_xrozen_fixture(dsn)
        source = _with_password(dsn)
        live = tmp / "live"
        (live / "backups").mkdir(parents=True)
        target = live / "xrozen.db"
        target.write_bytes(b"SQLite format 3\x00 the team's current production file")
        (live / "backups" / "xrozen-backup-2025-01-01T00-00-00-000Z.db").write_bytes(b"an older backup")
        os.utime(live / "backups", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
        os.utime(live, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
        before = Snapshot.take(live)

        bare_config = {"source": {"uri": "postgresql://placeholder"}, "target": {"migrations": str(MIGRATIONS)},
                       "run": {"sample_keys": SAMPLE_KEYS}}
        bare_path = tmp / "bare.yaml"
        bare_path.write_text(yaml.safe_dump(bare_config))
        runs_dir = str(tmp / "runs")
        bare = dry_run(bare_path, source=source, runs_dir=runs_dir, target=str(target))

        decided_config = json.loads(json.dumps(bare_config))
        for f in bare.report["findings"]:
            if f["severity"] == "blocking":
                apply_suggestion(decided_config, f["suggestion"])
        decided_path = tmp / "decided.yaml"
        decided_path.write_text(yaml.safe_dump(decided_config))
        decided = dry_run(decided_path, source=source, runs_dir=runs_dir, target=str(target))

        shipped = CliRunner().invoke(cli.main, ["-q", "dry-run", "--config", str(SHIPPED_CONFIG), "--source",
                                                source, "--runs-dir", str(tmp / "runs-shipped"),
                                                "--target", str(target)])
        shipped_dirs = sorted((tmp / "runs-shipped").iterdir())
        assert len(shipped_dirs) == 1, shipped.output
        shipped_report = json.loads((shipped_dirs[0] / "report.json").read_text())
        after = Snapshot.take(live)
        yield DryRuns(fixture, source, live, before, after, bare, decided, decided_config, shipped.exit_code,
                      shipped_report)


def _by_id(outcome: RunOutcome) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in outcome.report["findings"]}


def test_dry_runs_leave_the_live_target_its_backups_and_folder_untouched(runs: DryRuns) -> None:
    assert runs.after.files == runs.before.files
    assert runs.after.dirs == runs.before.dirs
    for outcome in (runs.bare, runs.decided):
        assert outcome.target is None
        assert outcome.report["dry_run"] is True
        assert outcome.report["target"]["swapped"] is False
        assert outcome.report["target"]["backup_before"] is None
        assert outcome.report["target"]["backup_after"] is None
        staging = Path(outcome.report["target"]["staging"])
        assert staging.parent == outcome.run_dir / "staging" and staging.name == "dry-run-xrozen.db"
        assert staging.is_file()


def test_bare_config_is_blocked_and_the_suggested_rules_make_it_clean(runs: DryRuns) -> None:
    assert (runs.bare.status, runs.bare.exit_code) == ("dry_run_blocked", 1)
    assert runs.bare.report["status"] == "dry_run_blocked"
    assert (runs.decided.status, runs.decided.exit_code) == ("dry_run_clean", 0)
    assert [f for f in runs.decided.report["findings"] if f["severity"] == "blocking"] == []
    assert decision_rules(runs.decided.report) == []
    # deciding changed no row's fate: every formerly blocking finding is still there, same count, now decided
    before, after = _by_id(runs.bare), _by_id(runs.decided)
    decided_kind = {"column_not_in_target": "column_dropped", "enum_not_allowed": "enum_rejected"}
    for fid, f in before.items():
        if f["severity"] != "blocking":
            continue
        now = after[fid.replace(f["kind"], decided_kind.get(f["kind"], f["kind"]), 1)]
        assert now["severity"] in ("warning", "info"), fid
        assert now["count"] == f["count"], fid
        assert now["rule"] == f["rule"], fid
    for b, d in zip(runs.bare.report["tables"], runs.decided.report["tables"], strict=True):
        assert (b["name"], b["loaded"], b["rejected"], b["filtered"]) == (
            d["name"], d["loaded"], d["rejected"], d["filtered"])
    # the rules were written in the config file, not inferred
    assert runs.decided_config["users"]["missing_hash"] == "reject"
    assert runs.decided_config["tables"]["user_roles"]["enum_map"] == {"role": {"admin": "__reject__"}}
    assert set(runs.decided_config["ignore_tables"]) == {
        "public.notifications", "public.invoices", "public.api_keys", "public.audit_log", "auth.identities"}


def test_shipped_config_decides_everything_and_exits_0(runs: DryRuns) -> None:
    """config.yaml carries a rule for every quirk, so its dry run is the clean gate CI relies on."""
    report = runs.shipped_report
    assert runs.shipped_exit == 0, [f for f in report["findings"] if f["severity"] == "blocking"]
    assert report["status"] == "dry_run_clean"
    by_id = {f["id"]: f for f in report["findings"]}
    assert by_id["fk_orphan.messages.project_id"]["severity"] == "warning"
    assert by_id["table_not_migrated.public.audit_log"]["severity"] == "info"
    assert by_id["enum_rejected.user_roles.role"]["severity"] == "warning"
    assert by_id["enum_rejected.user_roles.role"]["values"] == {"admin": len(ADMIN_ROLE_IDS)}
    assert by_id["users_missing_hash.users.password_hash"]["severity"] == "warning"
    assert by_id["column_dropped.projects.invoice_id"]["severity"] == "info"
    assert by_id["table_not_migrated.public.invoices"]["severity"] == "info"


def _expect(findings: dict[str, dict[str, Any]], fid: str, severity: str, count: int,
            keys: frozenset[str] | None = None) -> dict[str, Any]:
    assert fid in findings, f"missing finding {fid}; have {sorted(findings)}"
    f = findings[fid]
    assert (f["severity"], f["count"]) == (severity, count), (fid, f)
    if keys is not None:
        assert len(f["sample_keys"]) == min(count, SAMPLE_KEYS), f
        assert set(f["sample_keys"]) <= keys, f
        if count <= SAMPLE_KEYS and len(keys) == count:
            assert set(f["sample_keys"]) == keys, f
    if severity in ("blocking", "warning"):
        assert f["suggestion"], f
    return f


def test_every_xrozen_quirk_is_a_finding_with_severity_count_and_keys(runs: DryRuns) -> None:
    fx = runs.fixture
    found = _by_id(runs.bare)
    counts = fx.row_counts
    # columns the target lacks
    _expect(found, "column_not_in_target.profiles.password_hash", "blocking", counts["public.profiles"])
    _expect(found, "column_not_in_target.projects.invoice_id", "blocking", counts["public.projects"])
    for col in ("approval_status", "final_link_requested"):
        _expect(found, f"column_not_in_target.video_versions.{col}", "blocking", counts["public.video_versions"])
    # source tables not migrated
    for table in ("public.notifications", "public.invoices", "public.api_keys", "public.audit_log",
                  "auth.identities"):
        f = _expect(found, f"table_not_migrated.{table}", "blocking", counts[table])
        assert f["suggestion"].startswith(f"ignore_tables: [{table}]")
    # 'admin' is not a target role: the distinct values with their counts
    f = _expect(found, "enum_not_allowed.user_roles.role", "blocking", len(ADMIN_ROLE_IDS), ADMIN_ROLE_IDS)
    assert f["values"] == {"admin": len(ADMIN_ROLE_IDS)}
    assert f["suggestion"].startswith("tables.user_roles.enum_map.role: {admin: __reject__}")
    # orphan project ids (the dropped foreign keys)
    for table, ids in (("project_clients", ORPHAN_PROJECT_CLIENT_IDS), ("video_versions", ORPHAN_VIDEO_VERSION_IDS),
                       ("payments", ORPHAN_PAYMENT_IDS), ("messages", ORPHAN_MESSAGE_IDS)):
        f = _expect(found, f"fk_orphan.{table}.project_id", "blocking", len(ids), ids)
        assert f["suggestion"] == f"tables.{table}.orphans: {{project_id: reject}}  # or set_null"
    # users: no usable hash, other algorithms, no email, case-duplicate emails, soft-deleted, anonymous
    missing = (EMPTY_PASSWORD_USER_IDS | NULL_PASSWORD_USER_IDS | PROFILE_ONLY_NO_HASH_IDS) - PHONE_ONLY_IDS \
        - ANONYMOUS_IDS
    _expect(found, "users_missing_hash.users.password_hash", "blocking", len(missing), missing)
    _expect(found, "users_other_algorithm.users.password_hash", "blocking", len(ARGON2_IDS), ARGON2_IDS)
    _expect(found, "users_no_email.users.email", "warning", len(PHONE_ONLY_IDS), PHONE_ONLY_IDS)
    dup = _expect(found, "duplicate.users.email", "warning", len(CASE_DUPLICATE_EMAIL_IDS) - 1,
                  CASE_DUPLICATE_EMAIL_IDS)
    _expect(found, "users_filtered.users.soft_deleted", "blocking", len(SOFT_DELETED_IDS), SOFT_DELETED_IDS)
    _expect(found, "users_filtered.users.anonymous", "blocking", len(ANONYMOUS_IDS), ANONYMOUS_IDS)
    # profiles whose user did not migrate (the dropped profiles.id -> auth.users FK)
    no_user = (missing | ARGON2_IDS | SOFT_DELETED_IDS | set(dup["sample_keys"])) - AUTH_WITHOUT_PROFILE_IDS
    _expect(found, "fk_parent_not_migrated.profiles.id", "blocking", len(no_user), frozenset(no_user))
    _expect(found, "fk_parent_not_migrated.projects.creator_id", "blocking", len(PROJECTS_BY_SOFT_DELETED_IDS),
            PROJECTS_BY_SOFT_DELETED_IDS)
    # numeric(10,2) -> REAL: reported per column; this data loses nothing
    for where in ("payments.amount", "projects.fee", "editors.hourly_rate", "clients.project_rate"):
        _expect(found, f"numeric_as_real.{where}", "info", 0)
    _expect(found, "microseconds_dropped.payments.paid_date", "warning", 1)
    # the password-hash census (pipeline.users builds report["auth"]; the engine turns it into findings)
    census = runs.bare.report["auth"]
    algos = _expect(found, "auth_census.users.hash_algorithms", "info", census["users_in_source"])
    assert f"argon2id: {len(ARGON2_IDS)}" in algos["message"]
    assert "$2a$ cost 6" in found["auth_census.users.bcrypt_costs"]["message"]
    counts_msg = found["auth_census.users.counts"]["message"]
    for part in (f"soft deleted {len(SOFT_DELETED_IDS)}", f"phone only {len(PHONE_ONLY_IDS)}",
                 f"anonymous {len(ANONYMOUS_IDS)}", f"email case duplicate users {len(CASE_DUPLICATE_EMAIL_IDS)}"):
        assert part in counts_msg, part
    # every finding is well formed; ids are unique
    assert len(found) == len(runs.bare.report["findings"])
    for f in runs.bare.report["findings"]:
        assert f["severity"] in ("blocking", "warning", "info")
        if f["severity"] == "blocking":
            assert f["rule"], f


def test_finding_counts_add_up_to_the_table_counts(runs: DryRuns) -> None:
    for outcome in (runs.bare, runs.decided):
        for t in outcome.report["tables"]:
            mine = [f for f in outcome.report["findings"] if f["table"] == t["name"]]
            assert sum(f["count"] for f in mine if f["kind"] in REJECT_KINDS) == t["rejected"], t["name"]
            assert sum(f["count"] for f in mine if f["kind"] in FILTER_KINDS) == t["filtered"], t["name"]
            assert t["equation_ok"] and t["source_rows"] == t["loaded"] + t["rejected"] + t["filtered"]


def test_report_json_validates_against_its_schema_and_carries_stage_timings(runs: DryRuns) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for run_dir in (runs.bare.run_dir, runs.decided.run_dir):
        report = json.loads((run_dir / "report.json").read_text())
        validator.validate(report)
        assert report["schema_version"] == schema["properties"]["schema_version"]["const"]
        assert [s["name"] for s in report["stages"]] == ["extract", "transform", "load", "checks"]
        for s in report["stages"]:
            assert s["seconds"] >= 0 and s["rows_per_second"] >= 0
        assert report["stages"][0]["rows"] > 0
        for r in report["sample_rejects"]:
            assert set(r) == {"table", "key", "column", "reason"}
    bad = json.loads((runs.bare.run_dir / "report.json").read_text())
    bad["findings"][0]["severity"] = "fatal"
    assert not validator.is_valid(bad)


def test_report_schema_doc_names_every_field_and_finding_kind(runs: DryRuns) -> None:
    doc = (ROOT / "docs" / "report-schema.md").read_text()
    schema = json.loads(SCHEMA_PATH.read_text())
    for key in schema["properties"]:
        assert f"`{key}`" in doc, key
    for key in schema["properties"]["findings"]["items"]["properties"]:
        assert f"`{key}`" in doc, key
    kinds = {f["kind"] for o in (runs.bare, runs.decided) for f in o.report["findings"]}
    kinds |= {f["kind"] for f in runs.shipped_report["findings"]}
    for kind in kinds:
        assert f"`{kind}`" in doc, kind


def test_no_secret_in_any_report_log_or_manifest(runs: DryRuns) -> None:
    for run_dir in (runs.bare.run_dir, runs.decided.run_dir):
        for name in ("report.json", "report.md", "report.html", "manifest.json", "log.jsonl"):
            text = (run_dir / name).read_text(encoding="utf-8")
            assert DSN_PASSWORD not in text, name
            assert not HASH.search(text), name


def test_report_command_prints_each_format_and_opens_the_page(runs: DryRuns,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    runs_dir = str(runs.bare.run_dir.parent)
    run_id = runs.bare.run_id
    runner = CliRunner()
    as_json = runner.invoke(cli.main, ["report", run_id, "--format", "json", "--runs-dir", runs_dir])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["findings"] == json.loads(
        (runs.bare.run_dir / "report.json").read_text())["findings"]
    as_md = runner.invoke(cli.main, ["report", run_id, "--runs-dir", runs_dir])
    assert "### Config rules that decide the blocking findings" in as_md.output
    assert "tables.user_roles.enum_map.role: {admin: __reject__}" in as_md.output
    opened: list[str] = []

    def fake_open(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", fake_open)
    res = runner.invoke(cli.main, ["report", run_id, "--open", "--runs-dir", runs_dir])
    assert res.exit_code == 0, res.output
    assert opened == [(runs.bare.run_dir / "report.html").resolve().as_uri()]
    missing = runner.invoke(cli.main, ["report", "no-such-run", "--open", "--runs-dir", runs_dir])
    assert missing.exit_code == 2

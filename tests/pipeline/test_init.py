"""`supamigrate init` against the quirky fixture: the file it writes asks exactly what a dry run
blocks on, and answering every question (uncommenting the lines, as a user would) makes it clean."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.init import decision_keys, init_config
from pipeline.runner import dry_run
from tests.pipeline.conftest import MIGRATIONS, ROOT, dsn_with_password
from tests.support.xrozen import XrozenFixture

pytestmark = pytest.mark.postgres


def fill_decisions(text: str) -> str:
    """Uncomment the choice under every `# DECIDE` comment: what a user accepting them all does."""
    lines = text.splitlines()
    out: list[str] = []
    pending = False
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("# DECIDE "):
            pending = True
            out.append(line)
            continue
        if pending and not stripped.startswith("#   "):
            indent = line[: len(line) - len(stripped)]
            assert stripped.startswith("# "), line
            out.append(indent + stripped[2:])
            pending = False
            continue
        out.append(line)
    assert not pending
    return "\n".join(out) + "\n"


def _decided_by(rule: str) -> str:
    """The decision key a finding's rule belongs to: enum_map choices are one line per table."""
    parts = rule.split(".")
    return ".".join(parts[:3]) if parts[0] == "tables" else rule


def _blocking(report: dict[str, object]) -> list[dict[str, object]]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return [f for f in findings if f["severity"] == "blocking"]


def test_init_asks_exactly_what_the_dry_run_blocks_on_and_filling_it_is_clean(
    xrozen_source: tuple[str, XrozenFixture], tmp_path: Path
) -> None:
    dsn, _ = xrozen_source
    cfg = tmp_path / "config.yaml"
    res = CliRunner().invoke(main, ["init", "--source", dsn, "--output", str(cfg), "--migrations", str(MIGRATIONS)])
    assert res.exit_code == 0, res.output
    assert "decision(s) to make" in res.output
    text = cfg.read_text()
    keys = decision_keys(text)
    assert len(keys) == len(set(keys))
    # the quirks of the fixture each appear as a decision, with the row counts of this source
    for key in ("users.missing_hash", "users.other_algorithms", "tables.user_roles.enum_map",
                "tables.profiles.drop", "tables.projects.drop", "tables.video_versions.drop",
                "tables.messages.orphans", "ignore_tables"):
        assert key in keys, key
    assert "# enum role (public.app_role): editor, client, agency, admin; the target refuses admin" in text
    assert re.search(r"auth\.users: \d+ user\(s\); \d+ without a password hash", text)
    assert "public.messages, 200 rows" in text

    check = CliRunner().invoke(main, ["config", "check", "--config", str(cfg)])
    assert check.exit_code == 0, check.output

    first = dry_run(cfg, runs_dir=str(tmp_path / "runs"))
    assert first.status == "dry_run_blocked" and first.exit_code == 1
    blocking = _blocking(first.report)
    assert {_decided_by(str(f["rule"])) for f in blocking} == set(keys)

    cfg.write_text(fill_decisions(text))
    assert decision_keys(cfg.read_text()) == keys  # the comments stay; the choices are now written
    load_config(cfg)
    second = dry_run(cfg, runs_dir=str(tmp_path / "runs"))
    assert _blocking(second.report) == []
    assert second.status == "dry_run_clean" and second.exit_code == 0


def test_init_refuses_to_overwrite_without_force(xrozen_source: tuple[str, XrozenFixture], tmp_path: Path) -> None:
    dsn, _ = xrozen_source
    cfg = tmp_path / "config.yaml"
    cfg.write_text("# mine\n")
    res = CliRunner().invoke(main, ["init", "--source", dsn, "--output", str(cfg), "--no-probe",
                                    "--migrations", str(MIGRATIONS)])
    assert res.exit_code == 2
    assert "--force" in res.output
    assert cfg.read_text() == "# mine\n"
    res = CliRunner().invoke(main, ["init", "--source", dsn, "--output", str(cfg), "--no-probe", "--force",
                                    "--migrations", str(MIGRATIONS)])
    assert res.exit_code == 0, res.output
    assert "source:" in cfg.read_text()


def test_init_never_writes_the_password(xrozen_source: tuple[str, XrozenFixture], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, _ = xrozen_source
    secret_dsn, password = dsn_with_password(dsn)
    cfg = tmp_path / "config.yaml"
    res = CliRunner().invoke(main, ["init", "--source", secret_dsn, "--output", str(cfg), "--no-probe",
                                    "--migrations", str(MIGRATIONS)])
    assert res.exit_code == 0, res.output
    text = cfg.read_text()
    assert password not in text and password not in res.output
    assert ":${PGPASSWORD}@" in text
    monkeypatch.setenv("PGPASSWORD", password)
    assert load_config(cfg).source.uri == secret_dsn


def test_init_from_a_dump_with_the_catalog_only(tmp_path: Path) -> None:
    """No server: the demo dump, decisions from the catalog and an auth.users scan of the dump."""
    dump = ROOT / "examples" / "xrozen-demo.sql"
    if not dump.exists():
        pytest.skip("examples/xrozen-demo.sql is not generated yet")
    cfg = tmp_path / "sub" / "config.yaml"
    path = init_config(str(dump), output=cfg, migrations_dir=MIGRATIONS, probe=False)
    text = path.read_text()
    config = load_config(path)
    assert (cfg.parent / config.source.uri).resolve() == dump.resolve()  # relative to the config file
    assert (cfg.parent / config.target.migrations).resolve() == MIGRATIONS.resolve()
    keys = decision_keys(text)
    for key in ("tables.profiles.drop", "tables.user_roles.enum_map", "users.missing_hash", "ignore_tables"):
        assert key in keys
    assert "written from the catalog without reading rows" in text
    load_config_text = fill_decisions(text)
    cfg.write_text(load_config_text)
    load_config(cfg)


def test_init_without_migrations_turns_on_auto_schema_and_writes_nothing_there(
    xrozen_source: tuple[str, XrozenFixture], tmp_path: Path
) -> None:
    dsn, _ = xrozen_source
    empty = tmp_path / "migrations"
    empty.mkdir()
    cfg = init_config(dsn, output=tmp_path / "config.yaml", migrations_dir=empty)
    assert list(empty.iterdir()) == []  # the probe generated its migrations in a temporary copy
    config = load_config(cfg)
    assert config.auto_schema.enabled
    assert config.users.enabled is False

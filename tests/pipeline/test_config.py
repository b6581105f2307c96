"""config.yaml into validated models: ${ENV} interpolation, unknown keys and wrong types named by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Config, load_config, parse_config
from pipeline.errors import ConfigError
from tests.pipeline.conftest import CONFIG


def test_shipped_config_loads_with_the_xrozen_rules() -> None:
    cfg = load_config(CONFIG)
    assert cfg.tables["user_roles"].enum_map["role"]["admin"] == "__reject__"
    assert "password_hash" in cfg.tables["profiles"].drop
    assert cfg.users.missing_hash == "reject"
    assert "public.api_keys" in cfg.ignore_tables


def test_env_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_CFG_PW", "s3cret")
    monkeypatch.delenv("SM_CFG_HOST", raising=False)
    cfg = parse_config({"source": {"uri": "postgresql://u:${SM_CFG_PW}@${SM_CFG_HOST:-db.local}:5432/x"}})
    assert cfg.source.uri == "postgresql://u:s3cret@db.local:5432/x"


def test_missing_env_var_names_the_key_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SM_CFG_MISSING", raising=False)
    with pytest.raises(ConfigError) as exc:
        parse_config({"source": {"uri": "x.sql"},
                      "tables": {"users": {"defaults": {"full_name": "${SM_CFG_MISSING}"}}}})
    assert "tables.users.defaults.full_name" in str(exc.value) and "SM_CFG_MISSING" in str(exc.value)
    assert exc.value.exit_code == 2


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"source": {"uri": "x"}, "tables": {"profiles": {"dorp": ["a"]}}}, "tables.profiles.dorp"),
        ({"source": {"uri": "x"}, "target": {"backups": {"kep": 3}}}, "target.backups.kep"),
        ({"source": {"uri": "x"}, "sourc": {}}, "sourc"),
    ],
)
def test_unknown_keys_are_refused_naming_the_path(data: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert f"{path}: unknown key" in str(exc.value)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"source": {"uri": "x"}, "run": {"batch_rows": "lots"}}, "run.batch_rows"),
        ({"source": {"uri": "x"}, "run": {"batch_rows": 0}}, "run.batch_rows"),
        ({"source": {"uri": "x"}, "types": {"infinity": "maybe"}}, "types.infinity"),
        ({"source": {"uri": "x"}, "tables": {"projects": {"orphans": "delete"}}}, "tables.projects.orphans"),
        ({"source": {"uri": "x"}, "tables": {"projects": {"filter": [{"column": "a", "op": "in", "value": "b"}]}}},
         "tables.projects.filter.0"),
        ({"source": {"uri": ["x"]}}, "source.uri"),
        ({}, "source"),
    ],
)
def test_wrong_types_are_refused_naming_the_path(data: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert f"  {path}" in str(exc.value), str(exc.value)


def test_not_a_mapping_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    p.write_text("source: {uri: x\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_and_fingerprint_keep_the_password_out() -> None:
    cfg = parse_config({"source": {"uri": "x.sql"}}).with_overrides(
        source="postgresql://u:pw-123@h/db", target="out.db", runs_dir="r")
    assert isinstance(cfg, Config)
    assert (cfg.source.uri, cfg.target.path, cfg.run.runs_dir) == ("postgresql://u:pw-123@h/db", "out.db", "r")
    assert "pw-123" not in str(cfg.fingerprint_data())
    other = cfg.with_overrides(source="postgresql://u:other-pw@h/db")
    assert other.digest() == cfg.digest()

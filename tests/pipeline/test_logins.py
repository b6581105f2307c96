"""verify-logins: real accounts sign in against the migrated SQLite file (bcrypt, then the app's JWT).

The accounts' passwords live only in environment variables here, as they must in real use; the
tests check the pass and fail paths through the library, the CLI, and the gate before the swap.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import bcrypt
import jwt
import pytest
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.logins import LoginResult, check_logins, issue_token, verify_logins, verify_token
from pipeline.runner import run
from tests.support.postgres import throwaway_database
from tests.support.xrozen import KNOWN_LOGINS, load_xrozen_fixture

ROOT = Path(__file__).resolve().parents[2]
SECRET = "app-jwt-secret-for-tests-0123456789abcdef"
ACCOUNTS = {k.email: k.password for k in KNOWN_LOGINS
            if k.email in ("alice@xrozen.test", "erin@xrozen.test", "gina@xrozen.test")}
ENV = {"APP_JWT_SECRET": SECRET, "PW_ALICE": ACCOUNTS["alice@xrozen.test"],
       "PW_ERIN": ACCOUNTS["erin@xrozen.test"], "PW_GINA": ACCOUNTS["gina@xrozen.test"]}


def _logins(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"jwt_secret_env": "APP_JWT_SECRET", "accounts": [
        {"email": "Alice@Xrozen.test", "password_env": "PW_ALICE"},
        {"email": "erin@xrozen.test", "password_env": "PW_ERIN"},
        {"email": "gina@xrozen.test", "password_env": "PW_GINA"},
    ]}
    data.update(over)
    return data


def _config(tmp: Path, dsn: str, logins: dict[str, Any]) -> Path:
    data = yaml.safe_load((ROOT / "config.yaml").read_text())
    data["source"] = {"uri": dsn}
    data["target"] = {"path": str(tmp / "app.db"), "migrations": str(ROOT / "target_schema"),
                      "backups": {"enabled": False}}
    data["run"] = {"runs_dir": str(tmp / "runs")}
    data["logins"] = logins
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def source(pg_admin_dsn: str) -> Iterator[str]:
    with throwaway_database(pg_admin_dsn, prefix="smlogins") as dsn:
        load_xrozen_fixture(dsn, messages=6, bulk_users=0)
        yield dsn


@pytest.fixture(scope="module")
def migrated(source: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """A run whose configured logins all pass: the gate lets the swap happen."""
    tmp = tmp_path_factory.mktemp("logins")
    cfg = _config(tmp, source, _logins())
    with pytest.MonkeyPatch.context() as mp:
        for k, v in ENV.items():
            mp.setenv(k, v)
        o = run(cfg)
    assert o.exit_code == 0, o.report.get("error")
    assert o.target is not None
    return cfg, o.target, o.report


def test_run_checks_logins_before_the_swap(migrated: tuple[Path, Path, dict[str, Any]]) -> None:
    _, target, report = migrated
    assert [(r["email"], r["ok"]) for r in report["logins"]] == [
        ("alice@xrozen.test", True), ("erin@xrozen.test", True), ("gina@xrozen.test", True)]
    assert target.is_file()


def test_a_failed_login_blocks_the_swap(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PW_ERIN", "not-erins-password")
    o = run(_config(tmp_path, source, _logins()))
    assert o.status == "failed" and o.exit_code == 1
    assert not (tmp_path / "app.db").exists()  # nothing was swapped into place
    assert [r["ok"] for r in o.report["logins"]] == [True, False, True]
    assert o.report["logins"][1]["step"] == "bcrypt"
    assert "login check failed" in (o.report["error"] or "")
    for name in ("report.json", "report.md", "log.jsonl"):
        text = (o.run_dir / name).read_text()
        assert "not-erins-password" not in text and SECRET not in text
        assert all(pw not in text for pw in ACCOUNTS.values())


def test_library_pass_wrong_password_and_tampered_secret(migrated: tuple[Path, Path, dict[str, Any]]) -> None:
    cfg, target, _ = migrated
    results = verify_logins(cfg, target=target, environ=ENV)
    assert all(isinstance(r, LoginResult) and r.ok for r in results) and len(results) == 3
    wrong = verify_logins(cfg, target=target, environ={**ENV, "PW_GINA": "gina-pw-WRONG"})
    assert [r.ok for r in wrong] == [True, True, False] and wrong[2].step == "bcrypt"
    logins = load_config(cfg).logins.model_copy(update={"verify_secret_env": "APP_DEPLOYED_SECRET"})
    tampered = check_logins(target, logins, environ={**ENV, "APP_DEPLOYED_SECRET": SECRET + "x"})
    assert not any(r.ok for r in tampered)
    assert {r.step for r in tampered} == {"token"} and "signature" in tampered[0].detail
    no_secret = verify_logins(cfg, target=target, environ={k: v for k, v in ENV.items() if k != "APP_JWT_SECRET"})
    assert {r.step for r in no_secret} == {"secret"}
    for r in [*results, *wrong, *tampered, *no_secret]:
        assert SECRET not in r.line() and all(pw not in r.line() for pw in ACCOUNTS.values())


def test_missing_password_env_prompts_or_fails(migrated: tuple[Path, Path, dict[str, Any]]) -> None:
    cfg, target, _ = migrated
    env = {k: v for k, v in ENV.items() if k != "PW_ALICE"}
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return ACCOUNTS["alice@xrozen.test"]

    assert all(r.ok for r in verify_logins(cfg, target=target, environ=env, prompt=prompt))
    assert asked == ["password for alice@xrozen.test"]
    no_tty = verify_logins(cfg, target=target, environ=env)
    assert not no_tty[0].ok and no_tty[0].step == "password" and "PW_ALICE" in no_tty[0].detail


def test_cli_pass_and_fail(migrated: tuple[Path, Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, target, _ = migrated
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    ok = runner.invoke(main, ["verify-logins", "--config", str(cfg), "--target", str(target)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.count("PASS ") == 3 and "FAIL" not in ok.output
    monkeypatch.setenv("PW_ALICE", "alice-wrong")
    bad = runner.invoke(main, ["verify-logins", "--config", str(cfg), "--target", str(target)])
    assert bad.exit_code == 1
    assert "FAIL alice@xrozen.test: wrong password" in bad.output and bad.output.count("PASS ") == 2
    assert "alice-wrong" not in bad.output and SECRET not in bad.output
    # without --target: the newest succeeded run's target (target.path here is fixed, so it is that file)
    monkeypatch.setenv("PW_ALICE", ACCOUNTS["alice@xrozen.test"])
    again = runner.invoke(main, ["verify-logins", "--config", str(cfg)])
    assert again.exit_code == 0, again.output


def test_reset_marker_and_absent_user_fail(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE users (id TEXT, email TEXT, password_hash TEXT, user_category TEXT)")
        conn.execute("INSERT INTO users VALUES ('u1', 'reset@x.test', '!reset-required', 'editor')")
        conn.execute("INSERT INTO users VALUES ('u2', 'ok@x.test', ?, 'client')",
                     (bcrypt.hashpw(b"pw-ok", bcrypt.gensalt(4)).decode(),))
        conn.commit()
    logins = load_config(_config(tmp_path, "postgresql://x@localhost/db", _logins(accounts=[
        {"email": "reset@x.test", "password_env": "P"}, {"email": "nobody@x.test", "password_env": "P"},
        {"email": "ok@x.test", "password_env": "Q"}]))).logins
    res = check_logins(db, logins, environ={"P": "anything", "Q": "pw-ok", "APP_JWT_SECRET": SECRET})
    assert [(r.ok, r.step) for r in res] == [(False, "hash"), (False, "lookup"), (True, "done")]


def test_config_never_takes_a_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(_config(tmp_path, "postgresql://x@localhost/db", _logins(
            accounts=[{"email": "a@x.test", "password": "in-the-file"}])))


def test_token_claims_tamper_and_expiry() -> None:
    tok = issue_token("u1", "a@x.test", "editor", SECRET, 60)
    assert verify_token(tok, SECRET, user_id="u1", email="a@x.test", role="editor") is None
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"])
    assert {k: claims[k] for k in ("sub", "email", "role")} == {"sub": "u1", "email": "a@x.test", "role": "editor"}
    forged = jwt.encode({**claims, "role": "agency"}, "attacker-secret-0123456789abcdef0123", algorithm="HS256")
    assert "signature" in (verify_token(forged, SECRET, user_id="u1", email="a@x.test", role="agency") or "")
    assert verify_token(tok, SECRET, user_id="u1", email="a@x.test", role="client") is not None
    old = issue_token("u1", "a@x.test", "editor", SECRET, 60, now=1_000_000)
    assert "expired" in (verify_token(old, SECRET, user_id="u1", email="a@x.test", role="editor") or "")

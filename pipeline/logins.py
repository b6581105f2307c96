"""verify-logins: sign in as real accounts against a target, the way the app does, before anyone else.

A migration whose rows all check out can still lock everybody out (a hash mangled in transit, a
marker where a hash should be, the wrong JWT secret in the deployment). So for each configured
account we check the password with bcrypt against users.password_hash, issue the app's access
token with pyjwt, and verify it. Passwords come from environment variables or a hidden prompt,
never from the config file; results carry pass/fail and a reason, never a password, hash or token.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bcrypt
import jwt

from pipeline.config import Config, LoginsConfig, load_config
from pipeline.errors import ConfigError, IntegrityError, TargetError
from pipeline.logs import get_logger
from pipeline.runs import Manifest, find_runs
from transforms.auth_hashes import classify_hash, normalize_email

log = get_logger(stage="logins")
ALGORITHM = "HS256"
Prompt = Callable[[str], str | None]


@dataclass(frozen=True)
class LoginResult:
    email: str
    ok: bool
    step: str  # where it stopped: password, lookup, hash, bcrypt, secret, token, or done
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'} {self.email}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def issue_token(user_id: str, email: str, role: str, secret: str, ttl_seconds: int,
                now: int | None = None) -> str:
    """The app's access token: sub = user id, email, role = user_category, iat and exp (HS256)."""
    iat = int(time.time()) if now is None else now
    claims = {"sub": user_id, "email": email, "role": role, "iat": iat, "exp": iat + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str, *, user_id: str, email: str, role: str) -> str | None:
    """None when the token verifies with `secret` and carries exactly these claims; else why not."""
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "iat"]})
    except jwt.InvalidSignatureError:
        return "access token signature does not verify with the app's secret"
    except jwt.ExpiredSignatureError:
        return "access token is already expired"
    except jwt.InvalidTokenError as exc:
        return f"access token is invalid ({type(exc).__name__})"
    for name, want in (("sub", user_id), ("email", email), ("role", role)):
        if claims.get(name) != want:
            return f"access token claim {name} does not round-trip"
    return None


def _password(account_email: str, env_name: str | None, environ: Mapping[str, str],
              prompt: Prompt | None) -> str | None:
    if env_name and environ.get(env_name):
        return environ[env_name]
    if prompt is not None:
        return prompt(f"password for {account_email}")
    return None


def check_logins(
    db: Path,
    logins: LoginsConfig,
    *,
    prompt: Prompt | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[LoginResult]:
    """Check every configured account against the SQLite file `db` (opened read-only)."""
    env = os.environ if environ is None else environ
    secret = env.get(logins.jwt_secret_env) or None
    vname = logins.verify_secret_env or logins.jwt_secret_env
    vsecret = env.get(vname) or None
    if not db.is_file():
        raise TargetError(f"target {db} does not exist")
    results: list[LoginResult] = []
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        for acc in logins.accounts:
            results.append(_check_one(conn, acc.email, acc.password_env, env, prompt, secret, vsecret,
                                      logins, vname))
    for r in results:
        log.info("login check", email=r.email, ok=r.ok, step=r.step)
    return results


def _check_one(conn: sqlite3.Connection, account: str, env_name: str | None, env: Mapping[str, str],
               prompt: Prompt | None, secret: str | None, vsecret: str | None, logins: LoginsConfig,
               vname: str) -> LoginResult:
    email = normalize_email(account) or account
    pw = _password(email, env_name, env, prompt)
    if not pw:
        where = f"environment variable {env_name} is not set" if env_name else "no password_env configured"
        return LoginResult(email, False, "password", f"no password to try ({where}, and no terminal to ask)")
    try:
        row = conn.execute("SELECT id, password_hash, user_category FROM users WHERE email = ?", (email,)).fetchone()
    except sqlite3.Error as exc:
        return LoginResult(email, False, "lookup", f"cannot read users ({type(exc).__name__})")
    if row is None:
        return LoginResult(email, False, "lookup", "no user with this email in the target")
    uid, stored, role = str(row[0]), row[1], str(row[2])
    info = classify_hash(stored if isinstance(stored, str) else None)
    if not info.usable:
        return LoginResult(email, False, "hash", "stored password is not a usable bcrypt hash "
                                                 f"({info.algorithm}); the user must reset it")
    try:
        matched = bcrypt.checkpw(pw.encode(), stored.encode())
    except ValueError:
        return LoginResult(email, False, "bcrypt", "password cannot be checked by bcrypt (longer than 72 bytes?)")
    if not matched:
        return LoginResult(email, False, "bcrypt", "wrong password: bcrypt does not match the stored hash")
    if secret is None:
        return LoginResult(email, False, "secret",
                           f"password ok, but the JWT secret (environment variable {logins.jwt_secret_env}) is not set")
    if vsecret is None:
        return LoginResult(email, False, "secret",
                           f"password ok, but the verifying secret (environment variable {vname}) is not set")
    token = issue_token(uid, email, role, secret, logins.token_ttl_seconds)
    why = verify_token(token, vsecret, user_id=uid, email=email, role=role)
    if why is not None:
        return LoginResult(email, False, "token", f"password ok, but {why}")
    return LoginResult(email, True, "done", f"password verified, access token issued and verified (role {role})")


def resolve_target(config: Config, base: Path, target: str | Path | None) -> Path:
    """--target, else target.path; a `{run_id}` path means the newest succeeded run's target."""
    if target:
        return Path(target)
    raw = config.target.path
    if "{run_id}" not in raw:
        p = Path(raw)
        return p if p.is_absolute() else base / p
    runs = Path(config.run.runs_dir)
    runs = runs if runs.is_absolute() else base / runs
    for rd in reversed(find_runs(runs)):
        with contextlib.suppress(Exception):
            if Manifest.load(rd / "manifest.json").data.get("status") == "succeeded":
                p = Path(raw.format(run_id=rd.name, runs_dir=config.run.runs_dir))
                p = p if p.is_absolute() else base / p
                if p.is_file():
                    return p
    raise ConfigError(f"no succeeded run with a target in {runs}; pass --target PATH")


def verify_logins(
    config_path: str | Path | None = None,
    *,
    target: str | Path | None = None,
    prompt: Prompt | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[LoginResult]:
    """Library form of `supamigrate verify-logins`: one result per account in logins.accounts."""
    config = load_config(config_path)
    base = Path(config_path).resolve().parent if config_path else Path.cwd()
    if not config.logins.accounts:
        raise ConfigError("no accounts to check: add logins.accounts (email, password_env) to the config")
    return check_logins(resolve_target(config, base, target), config.logins, prompt=prompt, environ=environ)


def logins_gate(config: Config, db: Path, report: dict[str, Any]) -> None:
    """Run the configured login checks on the staging file before the swap; a failure blocks the swap."""
    if not config.logins.accounts:
        return
    results = check_logins(db, config.logins)
    report["logins"] = [r.as_dict() for r in results]
    failed = [r for r in results if not r.ok]
    if failed:
        raise IntegrityError("login check failed; the target was not touched:\n" + "\n".join(
            f"  {r.line()}" for r in failed))

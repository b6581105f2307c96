"""config.yaml into validated models.

Secrets come in through `${ENV_VAR}` so the file itself can be committed; every error names the key
path so a user can find the line to fix without reading a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.redact import redact_dsn
from transforms.policy import TypePolicy

DEFAULT_CONFIG = Path("config.yaml")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    uri: str = Field(description="postgresql://... (live), a .sql/.dump file or dump:PATH, or https://... (REST)")
    schema_file: str | None = Field(None, description="plain schema dump for a data-only dump source")
    schemas: tuple[str, ...] = Field(("public", "auth"), description="source schemas to read")
    service_key: str | None = Field(
        None, description="REST source: the service_role key or an sb_secret_ key, e.g. ${SUPABASE_SERVICE_KEY}")
    jwt_secret: str | None = Field(
        None, description="REST source: the project's JWT secret, to mint a service_role key (${SUPABASE_JWT_SECRET})")


class BackupConfig(_Model):
    enabled: bool = True
    dir: str | None = Field(None, description="default: backups/ beside the target")
    keep: Annotated[int, Field(ge=1)] = 10
    prefix: str | None = Field(None, description="backup file prefix; default: the target file's stem")


class TargetConfig(_Model):
    path: str = Field(
        "{runs_dir}/{run_id}/xrozen.db", description="the SQLite file to produce; {run_id} and {runs_dir} expand"
    )
    migrations: str = Field("target_schema", description="folder of NNN_name.sql migrations")
    backups: BackupConfig = BackupConfig()

    def resolve(self, run_id: str, runs_dir: str) -> str:
        return self.path.format(run_id=run_id, runs_dir=runs_dir)


class RunConfig(_Model):
    runs_dir: str = "runs"
    batch_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    memory_limit_mb: Annotated[int, Field(ge=64)] = 512
    sample_keys: Annotated[int, Field(ge=0, le=100)] = 5
    allow_blocking_findings: bool = Field(
        False, description="swap in the target even when findings still need a decision (not recommended)"
    )


class TypesConfig(_Model):
    timestamp_format: str = "%Y-%m-%d %H:%M:%S"
    numeric_mode: Literal["auto", "text", "real", "minor_units"] = "auto"
    minor_units_scale: Annotated[int, Field(ge=0, le=18)] = 2
    infinity: Literal["reject", "null", "keep"] = "reject"
    nan: Literal["reject", "null", "keep"] = "reject"
    unknown_type: Literal["text", "reject"] = "text"
    out_of_range: Literal["reject", "keep"] = "reject"

    def policy(self) -> TypePolicy:
        return TypePolicy(**self.model_dump())


class AutoSchemaConfig(_Model):
    """Generate target migrations from the source catalog for tables no migration covers."""

    enabled: bool = Field(False, description="write NNN_auto_<table>.sql into target.migrations, then migrate")
    strict: bool = Field(False, description="declare the generated tables STRICT")
    tables: Literal["unmigrated"] | list[str] = Field(
        "unmigrated", description="'unmigrated' (every public table no rule migrates) or a list of public tables")
    surrogate_keys: bool = Field(
        False, description="a single uuid primary key becomes INTEGER PRIMARY KEY (uuid kept in <key>_uuid); "
                           "foreign keys to it hold the integer")


FilterOp = Literal["is_null", "not_null", "eq", "ne", "in", "not_in"]


class RowFilter(_Model):
    """Keep a row only when the condition holds on the source value (text form)."""

    column: str
    op: FilterOp
    value: str | list[str] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> RowFilter:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"op {self.op} needs a list value")
        if self.op in ("eq", "ne") and not isinstance(self.value, str):
            raise ValueError(f"op {self.op} needs a string value")
        return self


OrphanPolicy = Literal["reject", "set_null"]
REJECT = "__reject__"


class TableRule(_Model):
    """How one target table is filled from one source table."""

    source: str | None = Field(None, description="qualified source table; default public.<target name>")
    rename: dict[str, str] = Field(default_factory=dict, description="source column -> target column")
    drop: list[str] = Field(default_factory=list, description="source columns deliberately not migrated")
    enum_map: dict[str, dict[str, str | None]] = Field(
        default_factory=dict,
        description="target column -> {source value: target value}; '__reject__' rejects the row",
    )
    filter: list[RowFilter] = Field(default_factory=list, description="rows failing any filter are filtered")
    orphans: OrphanPolicy | dict[str, OrphanPolicy] = Field(
        "reject", description="a foreign key whose parent row is not in the target: reject the row or set NULL"
    )
    defaults: dict[str, str | int | float | None] = Field(
        default_factory=dict, description="target column -> value used when the source has none"
    )
    skip: bool = Field(False, description="do not migrate this target table")

    def orphan_policy(self, column: str) -> OrphanPolicy:
        if isinstance(self.orphans, str):
            return self.orphans
        return self.orphans.get(column, "reject")


class UsersConfig(_Model):
    """How target `users` rows are built from auth.users and app-side profile hashes."""

    enabled: bool = True
    table: str = "users"
    auth_table: str = "auth.users"
    profiles_table: str | None = "public.profiles"
    profile_hash_column: str = "password_hash"
    soft_deleted: Literal["skip", "load"] = "skip"
    banned: Literal["skip", "load"] = "load"
    anonymous: Literal["skip", "load"] = "skip"
    sso: Literal["skip", "load"] = "load"
    missing_hash: Literal["reject", "reset_token"] = "reject"
    other_algorithms: Literal["reject", "keep", "reset_token"] = "reject"
    hash_precedence: Literal["most_recent", "auth", "profiles"] = "most_recent"
    reset_token_ttl_hours: Annotated[int, Field(ge=1)] = 72
    reset_token_table: str = "password_reset_tokens"
    unusable_hash_marker: str = "!reset-required"
    default_user_category: str = "editor"

    @field_validator("unusable_hash_marker")
    @classmethod
    def _marker_never_verifies(cls, v: str) -> str:
        # A marker that parsed as bcrypt could match some password; it must be refused by any verifier.
        from transforms.auth_hashes import classify_hash

        if not v.strip() or classify_hash(v).algorithm != "unknown":
            raise ValueError("must be a non-empty string that is not a password hash (e.g. '!reset-required')")
        return v

    @property
    def issues_reset_tokens(self) -> bool:
        return self.enabled and "reset_token" in (self.missing_hash, self.other_algorithms)


class LoginAccount(_Model):
    """An account `verify-logins` signs in as; the password comes from the environment or a prompt."""

    email: str
    password_env: str | None = Field(None, description="environment variable holding the password")


class LoginsConfig(_Model):
    """The post-migration login check: bcrypt against the target, then the app's access token."""

    jwt_secret_env: str = Field("JWT_SECRET", description="environment variable holding the app's JWT secret")
    verify_secret_env: str | None = Field(
        None, description="environment variable of the secret the app verifies with, if not jwt_secret_env")
    token_ttl_seconds: Annotated[int, Field(ge=1)] = 900
    accounts: list[LoginAccount] = Field(default_factory=list)


class Config(_Model):
    source: SourceConfig
    target: TargetConfig = TargetConfig()
    run: RunConfig = RunConfig()
    types: TypesConfig = TypesConfig()
    users: UsersConfig = UsersConfig()
    logins: LoginsConfig = LoginsConfig()
    auto_schema: AutoSchemaConfig = AutoSchemaConfig()
    tables: dict[str, TableRule] = Field(default_factory=dict, description="target table -> rule")
    ignore_tables: list[str] = Field(
        default_factory=list, description="source tables deliberately not migrated (reported as info)"
    )

    @field_validator("tables")
    @classmethod
    def _no_blank_names(cls, v: dict[str, TableRule]) -> dict[str, TableRule]:
        for name in v:
            if not name.strip():
                raise ValueError("table names must not be empty")
        return v

    def with_overrides(
        self, *, source: str | None = None, target: str | None = None, runs_dir: str | None = None
    ) -> Config:
        # exclude_unset keeps model_fields_set intact, so the findings engine can still tell a rule
        # the user wrote from a default nobody chose (see `explicit`).
        data = self.model_dump(exclude_unset=True)
        if source:
            data.setdefault("source", {})["uri"] = source
        if target:
            data.setdefault("target", {})["path"] = target
        if runs_dir:
            data.setdefault("run", {})["runs_dir"] = runs_dir
        return Config.model_validate(data)

    def fingerprint_data(self) -> dict[str, Any]:
        """The config as it affects results: secrets out, so the fingerprint can be stored."""
        data = self.model_dump(mode="json")
        data["source"]["uri"] = redact_dsn(data["source"]["uri"])
        for secret in ("service_key", "jwt_secret"):  # never stored; a rotated key changes no row
            data["source"].pop(secret, None)
        data.pop("logins", None)  # which accounts get checked changes no row; a resume stays allowed
        return data

    def digest(self) -> str:
        raw = json.dumps(self.fingerprint_data(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


def explicit(model: BaseModel, field: str) -> bool:
    """True when the config file itself set `field` (even to its default value).

    A dry run is clean only when every quirk is covered by a rule somebody wrote; a default that
    happens to reject rows is not a decision, so the findings engine asks this, not the value.
    """
    return field in model.model_fields_set


def _interpolate(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            got = os.environ.get(name)
            if got is None:
                if default is not None:
                    return default
                raise ConfigError(f"config key {path}: environment variable {name} is not set")
            return got

        return _ENV_REF.sub(sub, value)
    return value


def _format_validation(exc: ValidationError, origin: str) -> str:
    lines = [f"{origin}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, origin: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of keys")
    data = _interpolate(data, "")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, origin)) from None


def load_config(path: str | Path | None = None) -> Config:
    p = Path(path) if path else DEFAULT_CONFIG
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{where}: not valid YAML") from None
    return parse_config(data, str(p))


def config_json_schema() -> dict[str, Any]:
    return Config.model_json_schema()

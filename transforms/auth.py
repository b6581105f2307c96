"""auth.users (+ app-side profile hashes) -> target `users` decisions, reset tokens, and the auth census.

Pure functions, no I/O: the transform stage and the census both call `decide_auth_user` /
`decide_profile_user`, so the report counts exactly what the transform did. Nothing here returns a
hash or token inside a reason: reasons go to reports and reject files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from transforms.auth_hashes import HashInfo, classify_hash, normalize_email

OTHER_ALGORITHMS = ("argon2", "fbscrypt", "scrypt")
Origin = Literal["auth", "profiles", "none"]
FateKind = Literal["filter", "reject"]


@dataclass(frozen=True)
class AuthPolicy:
    """The users.* config that decides a user's fate, detached from pydantic so this module stays pure."""

    soft_deleted: str = "skip"
    banned: str = "load"
    anonymous: str = "skip"
    sso: str = "load"
    missing_hash: str = "reject"
    other_algorithms: str = "reject"
    hash_precedence: str = "most_recent"
    unusable_hash_marker: str = "!reset-required"
    default_user_category: str = "editor"


@dataclass(frozen=True)
class HashChoice:
    value: str | None
    reason: str | None
    origin: Origin
    info: HashInfo


@dataclass(frozen=True)
class UserDecision:
    """One source user's target row (text values) and fate; `fate` None means it goes to the target."""

    row: dict[str, Any]
    fate: tuple[FateKind, str, str | None] | None
    origin: Origin
    info: HashInfo
    reset: bool = False
    kept_other: bool = False
    category_defaulted: bool = False
    flags: frozenset[str] = frozenset()


def parse_ts(value: str | None) -> datetime | None:
    """Order-only parse of a Postgres timestamptz text; None when absent or not parseable."""
    if not value:
        return None
    v = value.strip().replace(" ", "T", 1)
    if v.endswith(("+00", "-00")) or (len(v) > 3 and v[-3] in "+-" and v[-2:].isdigit()):
        v += ":00"
    try:
        d = datetime.fromisoformat(v)
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("t", "true", "1", "yes")


def parse_meta(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        m = json.loads(raw)
    except ValueError:
        return {}
    return m if isinstance(m, dict) else {}


def _is_other(info: HashInfo) -> bool:
    return info.algorithm in OTHER_ALGORITHMS


def choose_hash(
    policy: AuthPolicy,
    auth_hash: str | None,
    auth_updated: str | None,
    profile_hash: str | None,
    profile_updated: str | None,
) -> HashChoice:
    """Pick the hash a user logs in with.

    A usable bcrypt hash beats anything else, because it is the only kind the app verifies. Between
    two usable hashes `hash_precedence` decides: `most_recent` takes the row changed last (the app
    wrote profiles.password_hash on its own password changes, so a newer profile row means a newer
    password), ties and unknown times go to auth.users. Without a usable hash, an argon2 / scrypt
    hash is reported (origin set) so the other_algorithms policy can decide; else origin is 'none'.
    """
    a, p = classify_hash(auth_hash), classify_hash(profile_hash)
    if a.usable and p.usable:
        pick_profile = policy.hash_precedence == "profiles"
        if policy.hash_precedence == "most_recent":
            ta, tp = parse_ts(auth_updated), parse_ts(profile_updated)
            pick_profile = tp is not None and (ta is None or tp > ta)
        return HashChoice(profile_hash, None, "profiles", p) if pick_profile else HashChoice(auth_hash, None, "auth", a)
    if a.usable:
        return HashChoice(auth_hash, None, "auth", a)
    if p.usable:
        return HashChoice(profile_hash, None, "profiles", p)
    for info, value, origin in ((a, auth_hash, "auth"), (p, profile_hash, "profiles")):
        if _is_other(info):
            return HashChoice(value, f"password hash uses {info.variant or info.algorithm}, which the app "
                                     "(bcrypt) cannot verify", origin, info)  # type: ignore[arg-type]
    info = a if profile_hash is None else (p if auth_hash is None else a)
    if info.algorithm == "empty":
        why = "empty hash: an OAuth, magic-link, SSO or invited user"
    elif info.algorithm == "null":
        why = "NULL hash: a user inserted by SQL or without a password"
    else:
        why = info.reason or f"{info.algorithm} hash cannot be used"
    return HashChoice(None, f"no usable password hash ({why})", "none", info)


def _category(allowed: tuple[str, ...] | None, default: str, *candidates: Any) -> tuple[str, bool]:
    for cand in candidates:
        if isinstance(cand, str) and (allowed is None or cand in allowed):
            return cand, False
    return default, any(c is not None for c in candidates)


def _apply_hash(policy: AuthPolicy, choice: HashChoice, prefix: str) -> tuple[
        str | None, tuple[FateKind, str, str | None] | None, bool, bool]:
    """(value for users.password_hash, fate, reset issued, other algorithm kept)."""
    if choice.reason is None:
        return choice.value, None, False, False
    other = choice.origin != "none"
    rule = policy.other_algorithms if other else policy.missing_hash
    key = "users.other_algorithms" if other else "users.missing_hash"
    if other and rule == "keep":
        return choice.value, None, False, True
    if rule == "reset_token":
        return policy.unusable_hash_marker, None, True, False
    return None, ("reject", f"{prefix}{choice.reason} ({key}: reject)", "password_hash"), False, False


def decide_auth_user(
    row: dict[str, Any],
    profile: dict[str, Any] | None,
    policy: AuthPolicy,
    now: datetime,
    *,
    allowed_categories: tuple[str, ...] | None = None,
    profile_hash_column: str = "password_hash",
) -> UserDecision:
    """The target row and fate of one auth.users row (text values, as extracted)."""
    prof = profile or {}
    flags: set[str] = set()
    fate: tuple[FateKind, str, str | None] | None = None
    banned_until = parse_ts(row.get("banned_until"))
    if row.get("deleted_at"):
        flags.add("soft_deleted")
    if truthy(row.get("is_anonymous")):
        flags.add("anonymous")
    if truthy(row.get("is_sso_user")):
        flags.add("sso")
    if banned_until is not None and banned_until > now:
        flags.add("banned")
    raw_email = row.get("email")
    if not (raw_email or "").strip() and row.get("phone"):
        flags.add("phone_only")
    for flag, setting, what in (("soft_deleted", policy.soft_deleted, "soft-deleted user"),
                                ("anonymous", policy.anonymous, "anonymous user"),
                                ("sso", policy.sso, "SSO user"),
                                ("banned", policy.banned, "banned user")):
        if flag in flags and fate is None:
            fate = ("filter", f"{what} (users.{flag}: skip)", None) if setting == "skip" else None
    email = normalize_email(raw_email) or normalize_email(prof.get("email"))
    if email is not None and raw_email is not None and email != raw_email:
        flags.add("email_normalized")
    choice = choose_hash(policy, row.get("encrypted_password"), row.get("updated_at"),
                         prof.get(profile_hash_column), prof.get("updated_at"))
    if fate is None and email is None:
        kind = "a phone-only user" if "phone_only" in flags else "an anonymous or phone-only user"
        fate = ("reject", f"user has no email ({kind}); the app signs in by email", "email")
    value, hash_fate, reset, kept = _apply_hash(policy, choice, "")
    if fate is None:
        fate = hash_fate
    meta = parse_meta(row.get("raw_user_meta_data"))
    full_name = meta.get("full_name") if isinstance(meta.get("full_name"), str) else prof.get("full_name")
    category, defaulted = _category(allowed_categories, policy.default_user_category,
                                    meta.get("user_category"), prof.get("user_category"))
    target = {
        "id": str(row["id"]), "email": email, "password_hash": value, "full_name": full_name,
        "user_category": category, "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at") or row.get("created_at"),
    }
    return UserDecision(target, fate, choice.origin, choice.info, reset and fate is None, kept and fate is None,
                        defaulted, frozenset(flags))


def decide_profile_user(
    row: dict[str, Any],
    policy: AuthPolicy,
    *,
    allowed_categories: tuple[str, ...] | None = None,
    profile_hash_column: str = "password_hash",
) -> UserDecision:
    """A user that exists only in profiles (the app's own signup wrote profiles.password_hash)."""
    flags = {"profile_only"}
    email = normalize_email(row.get("email"))
    if email is not None and row.get("email") != email:
        flags.add("email_normalized")
    choice = choose_hash(policy, None, None, row.get(profile_hash_column), row.get("updated_at"))
    value, hash_fate, reset, kept = _apply_hash(policy, choice, "profile-only user: ")
    fate: tuple[FateKind, str, str | None] | None = (
        ("reject", "profile-only user has no email", "email") if email is None else hash_fate)
    category, defaulted = _category(allowed_categories, policy.default_user_category, row.get("user_category"))
    target = {
        "id": str(row["id"]), "email": email, "password_hash": value, "full_name": row.get("full_name"),
        "user_category": category, "created_at": row.get("created_at"),
        "updated_at": row.get("updated_at") or row.get("created_at"),
    }
    return UserDecision(target, fate, choice.origin, choice.info, reset and fate is None, kept and fate is None,
                        defaulted, frozenset(flags))


# Reset tokens ---------------------------------------------------------------------------------------
def reset_token(key: bytes, user_id: str) -> str:
    """The plain one-time token for a user: an HMAC under the run's private key.

    Derived, not drawn, so a resumed run re-creates exactly the tokens an uninterrupted one would,
    and the CSV can be rebuilt from committed rows; the key never leaves the run folder.
    """
    mac = hmac.new(key, b"reset-token\0" + user_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def token_digest(token: str) -> str:
    """What the target stores: the app looks a presented token up by its sha256, never the plain value."""
    return hashlib.sha256(token.encode()).hexdigest()


def reset_token_row_id(key: bytes, user_id: str) -> str:
    mac = hmac.new(key, b"reset-token-id\0" + user_id.encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=mac[:16], version=4))


# Census ---------------------------------------------------------------------------------------------
@dataclass
class AuthCensus:
    """Counts over every source user; only numbers and provider names, never an address or a hash."""

    counts: Counter[str] = field(default_factory=Counter)
    algorithms: Counter[str] = field(default_factory=Counter)
    bcrypt_costs: Counter[str] = field(default_factory=Counter)
    origins: Counter[str] = field(default_factory=Counter)
    emails: Counter[str] = field(default_factory=Counter)
    usable: int = 0

    def add(self, d: UserDecision, source: str) -> None:
        self.counts["users"] += 1
        self.counts[f"from_{source}"] += 1
        for flag in d.flags:
            self.counts[flag] += 1
        if d.row["email"] is None:
            self.counts["no_email"] += 1
        else:
            self.emails[d.row["email"]] += 1
        self.algorithms[d.info.algorithm if d.info.variant is None or d.info.algorithm != "argon2"
                        else d.info.variant] += 1
        if d.info.algorithm == "bcrypt":
            self.bcrypt_costs[f"${d.info.variant}$ cost {d.info.cost if d.info.cost is not None else '?'}"] += 1
        self.origins[d.origin] += 1
        if d.info.usable:
            self.usable += 1
        else:
            self.counts["no_usable_hash"] += 1
        if d.reset:
            self.counts["reset_required"] += 1
        if d.kept_other:
            self.counts["other_algorithm_kept"] += 1

    def as_dict(self) -> dict[str, Any]:
        dup_groups = [n for n in self.emails.values() if n > 1]
        c = self.counts
        out: dict[str, Any] = {
            "users_in_source": c["users"],
            "auth_users": c["from_auth"],
            "profile_only": c["from_profiles"],
            "hash_algorithms": dict(sorted(self.algorithms.items())),
            "bcrypt_costs": dict(sorted(self.bcrypt_costs.items())),
            "hash_origin": {k: self.origins.get(k, 0) for k in ("auth", "profiles", "none")},
            "usable_bcrypt": self.usable,
            "no_usable_hash": c["no_usable_hash"],
            "reset_required": c["reset_required"],
            "other_algorithm_kept": c["other_algorithm_kept"],
            "email_case_duplicate_groups": len(dup_groups),
            "email_case_duplicate_users": sum(dup_groups),
            "email_normalized": c["email_normalized"],
            "soft_deleted": c["soft_deleted"],
            "phone_only": c["phone_only"],
            "no_email": c["no_email"],
            "anonymous": c["anonymous"],
            "sso": c["sso"],
            "banned": c["banned"],
        }
        if c["users"] and self.usable == 0:
            out["statement"] = ("No user has a password hash the app can verify: every migrated user will need "
                                "a password reset.")
        return out


def oauth_only_by_provider(providers: dict[str, set[str]]) -> dict[str, int]:
    """Users whose identities are all non-email providers, counted by provider ('google+github' if several).

    Such users never had a password: they cannot sign in to a bcrypt app until they reset one.
    """
    out: Counter[str] = Counter()
    for provs in providers.values():
        if provs and "email" not in provs:
            out["+".join(sorted(provs))] += 1
    return dict(sorted(out.items()))

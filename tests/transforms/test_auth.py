"""The pure user decisions: hash precedence, policies, reset tokens and the census."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bcrypt
import pytest

from pipeline.config import UsersConfig
from transforms.auth import (
    AuthCensus,
    AuthPolicy,
    choose_hash,
    decide_auth_user,
    decide_profile_user,
    oauth_only_by_provider,
    reset_token,
    reset_token_row_id,
    token_digest,
)

NOW = datetime(2024, 7, 1, tzinfo=UTC)
H1 = bcrypt.hashpw(b"one", bcrypt.gensalt(4)).decode()
H2 = bcrypt.hashpw(b"two", bcrypt.gensalt(4, prefix=b"2a")).decode()
ARGON = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$aGFzaGhhc2hoYXNo"


def _auth(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": "u1", "email": " Mixed@Case.Test ", "encrypted_password": H1,
                           "raw_user_meta_data": '{"full_name": "Meta Name", "user_category": "client"}',
                           "created_at": "2024-01-01 00:00:00+00", "updated_at": "2024-02-01 00:00:00+00",
                           "deleted_at": None, "is_anonymous": "f", "is_sso_user": "f", "banned_until": None,
                           "phone": None}
    row.update(over)
    return row


@pytest.mark.parametrize(("precedence", "auth_ts", "prof_ts", "want"), [
    ("most_recent", "2024-01-01 00:00:00+00", "2024-06-01 00:00:00+00", "profiles"),
    ("most_recent", "2024-06-01 00:00:00+00", "2024-01-01 00:00:00+00", "auth"),
    ("most_recent", "2024-06-01 00:00:00+00", "2024-06-01 00:00:00+00", "auth"),  # tie: auth
    ("most_recent", None, "2024-01-01 00:00:00+00", "profiles"),
    ("auth", "2024-01-01 00:00:00+00", "2024-06-01 00:00:00+00", "auth"),
    ("profiles", "2024-06-01 00:00:00+00", "2024-01-01 00:00:00+00", "profiles"),
])
def test_hash_precedence(precedence: str, auth_ts: str | None, prof_ts: str | None, want: str) -> None:
    c = choose_hash(AuthPolicy(hash_precedence=precedence), H1, auth_ts, H2, prof_ts)
    assert c.origin == want and c.value == (H1 if want == "auth" else H2)


def test_usable_bcrypt_beats_other_algorithms_and_empty() -> None:
    assert choose_hash(AuthPolicy(), ARGON, None, H2, None).origin == "profiles"
    assert choose_hash(AuthPolicy(), "", None, H2, None).value == H2
    c = choose_hash(AuthPolicy(), ARGON, None, None, None)
    assert c.origin == "auth" and c.reason is not None and "argon2id" in c.reason and ARGON not in c.reason


def test_auth_user_fields_and_email_normalisation() -> None:
    d = decide_auth_user(_auth(), None, AuthPolicy(), NOW, allowed_categories=("editor", "client", "agency"))
    assert d.fate is None and d.row["email"] == "mixed@case.test" and "email_normalized" in d.flags
    assert d.row["full_name"] == "Meta Name" and d.row["user_category"] == "client"
    d = decide_auth_user(_auth(raw_user_meta_data='{"user_category": "admin"}'), {"user_category": "nope"},
                         AuthPolicy(), NOW, allowed_categories=("editor", "client"))
    assert d.row["user_category"] == "editor" and d.category_defaulted


@pytest.mark.parametrize(("over", "setting", "flag"), [
    ({"deleted_at": "2024-05-01 00:00:00+00"}, "soft_deleted", "soft_deleted"),
    ({"is_anonymous": "t"}, "anonymous", "anonymous"),
    ({"is_sso_user": "t"}, "sso", "sso"),
    ({"banned_until": "2999-01-01 00:00:00+00"}, "banned", "banned"),
])
def test_skip_and_load_policies(over: dict[str, Any], setting: str, flag: str) -> None:
    skip = decide_auth_user(_auth(**over), None, AuthPolicy(**{setting: "skip"}), NOW)
    assert skip.fate is not None and skip.fate[0] == "filter" and f"users.{setting}: skip" in skip.fate[1]
    load = decide_auth_user(_auth(**over), None, AuthPolicy(**{setting: "load"}), NOW)
    assert load.fate is None and flag in load.flags


def test_expired_ban_is_not_a_ban() -> None:
    d = decide_auth_user(_auth(banned_until="2020-01-01 00:00:00+00"), None, AuthPolicy(banned="skip"), NOW)
    assert d.fate is None and "banned" not in d.flags


def test_phone_only_user_is_rejected_for_its_email() -> None:
    d = decide_auth_user(_auth(email=None, phone="15550001111", encrypted_password=""), None, AuthPolicy(), NOW)
    assert d.fate == ("reject", "user has no email (a phone-only user); the app signs in by email", "email")
    assert "phone_only" in d.flags


def test_missing_hash_reject_and_reset_token() -> None:
    rej = decide_auth_user(_auth(encrypted_password=""), None, AuthPolicy(), NOW)
    assert rej.fate is not None and rej.fate[2] == "password_hash" and "users.missing_hash: reject" in rej.fate[1]
    reset = decide_auth_user(_auth(encrypted_password=None), None, AuthPolicy(missing_hash="reset_token"), NOW)
    assert reset.fate is None and reset.reset and reset.row["password_hash"] == "!reset-required"


def test_other_algorithms_reject_keep_reset() -> None:
    row = _auth(encrypted_password=ARGON)
    rej = decide_auth_user(row, None, AuthPolicy(other_algorithms="reject"), NOW)
    assert rej.fate is not None and "users.other_algorithms: reject" in rej.fate[1]
    keep = decide_auth_user(row, None, AuthPolicy(other_algorithms="keep"), NOW)
    assert keep.fate is None and keep.row["password_hash"] == ARGON and keep.kept_other
    reset = decide_auth_user(row, None, AuthPolicy(other_algorithms="reset_token", missing_hash="reject"), NOW)
    assert reset.fate is None and reset.reset


def test_profile_only_user() -> None:
    d = decide_profile_user({"id": "p1", "email": "P@X.test", "password_hash": H2, "user_category": "agency",
                             "full_name": None, "created_at": None, "updated_at": None}, AuthPolicy())
    assert d.fate is None and d.origin == "profiles" and d.row["email"] == "p@x.test" and "profile_only" in d.flags
    none = decide_profile_user({"id": "p2", "email": "q@x.test", "password_hash": None}, AuthPolicy())
    assert none.fate is not None and none.fate[1].startswith("profile-only user: no usable password hash")


def test_reset_tokens_are_deterministic_per_key_and_stored_hashed() -> None:
    k1, k2 = b"k" * 32, b"j" * 32
    assert reset_token(k1, "u1") == reset_token(k1, "u1") != reset_token(k1, "u2")
    assert reset_token(k1, "u1") != reset_token(k2, "u1")
    t = reset_token(k1, "u1")
    assert len(t) == 43 and token_digest(t) != t and len(token_digest(t)) == 64
    assert reset_token_row_id(k1, "u1") != reset_token_row_id(k1, "u2")


def test_census_statement_when_nobody_can_log_in() -> None:
    c = AuthCensus()
    for i, h in enumerate(("", None, ARGON)):
        c.add(decide_auth_user(_auth(id=f"u{i}", email=f"u{i}@x.test", encrypted_password=h), None,
                               AuthPolicy(), NOW), "auth")
    out = c.as_dict()
    assert out["no_usable_hash"] == 3 and "every migrated user will need a password reset" in out["statement"]
    c.add(decide_auth_user(_auth(id="ok"), None, AuthPolicy(), NOW), "auth")
    assert "statement" not in c.as_dict() and c.as_dict()["bcrypt_costs"] == {"$2b$ cost 4": 1}


def test_oauth_only_by_provider() -> None:
    got = oauth_only_by_provider({"a": {"google"}, "b": {"email", "github"}, "c": {"github"},
                                  "d": {"github", "google"}, "e": set()})
    assert got == {"github": 1, "github+google": 1, "google": 1}


@pytest.mark.parametrize("marker", ["", "   ", "$2b$04$" + "a" * 53, "$argon2id$v=19$x"])
def test_marker_must_not_be_a_hash(marker: str) -> None:
    with pytest.raises(ValueError, match="not a password hash"):
        UsersConfig(unusable_hash_marker=marker)

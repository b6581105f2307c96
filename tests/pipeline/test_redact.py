"""Secrets never reach logs, reports or messages: DSN passwords, hashes, keys and tokens are masked."""

from __future__ import annotations

import pytest

from pipeline.redact import MASK, redact_dsn, redact_text, redact_value

BCRYPT = "$2b$12$" + "a" * 22 + "B" * 31


@pytest.mark.parametrize(
    ("uri", "want"),
    [
        ("postgresql://postgres:Sup3r-S3cret@db.x.supabase.co:5432/postgres?sslmode=require",
         "postgresql://postgres:***@db.x.supabase.co:5432/postgres"),
        ("postgresql://postgres:p%40ss@127.0.0.1/db", "postgresql://postgres:***@127.0.0.1/db"),
        ("postgresql://postgres@127.0.0.1:5432/db", "postgresql://postgres@127.0.0.1:5432/db"),
        ("examples/xrozen-demo.sql", "examples/xrozen-demo.sql"),
        ("host=h user=u password=hunter2 dbname=d", "host=h user=u password=*** dbname=d"),
    ],
)
def test_redact_dsn(uri: str, want: str) -> None:
    assert redact_dsn(uri) == want


def test_redact_dsn_drops_a_password_in_the_query() -> None:
    out = redact_dsn("postgresql://h/db?password=qs-secret&user=u")
    assert "qs-secret" not in out


def test_redact_text_masks_credentials_in_free_text() -> None:
    text = (f"connect postgresql://u:pw1@h/db failed; hash {BCRYPT}; "
            "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$Jm9V7oQvU3Qy and sb_secret_N7UND0UgjKTVK-Uodkm0Hg "
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.abcdefSIGNATURE password='quoted pw'")
    out = redact_text(text)
    for secret in ("pw1", BCRYPT, "$argon2id", "sb_secret_N7UND0", "eyJhbGciOiJIUzI1NiJ9", "quoted pw"):
        assert secret not in out
    assert out.startswith("connect postgresql://u:***@h/db failed")


def test_redact_value_masks_secret_keys_and_walks_structures() -> None:
    got = redact_value("event", {
        "encrypted_password": "x", "api_key": "k", "recovery_token": "t", "note": f"saw {BCRYPT}",
        "rows": 3, "list": [{"password": "p"}], "empty_token": "",
    })
    assert got == {"encrypted_password": MASK, "api_key": MASK, "recovery_token": MASK, "note": f"saw {MASK}",
                   "rows": 3, "list": [{"password": MASK}], "empty_token": ""}

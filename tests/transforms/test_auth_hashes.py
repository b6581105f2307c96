from __future__ import annotations

import bcrypt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.auth_hashes import HashInfo, classify_hash, normalize_email

_HASH_2B = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(rounds=4)).decode()
_HASH_2A = bcrypt.hashpw(b"battery staple", bcrypt.gensalt(rounds=5, prefix=b"2a")).decode()
_BODY = _HASH_2B[7:]  # 22 salt + 31 digest characters


def _assert_reason_is_safe(info: HashInfo, value: str) -> None:
    assert info.reason is not None
    assert not info.usable
    for piece in (value, value[7:], value[7:29], value[-31:]):
        if len(piece) >= 8:
            assert piece not in info.reason


def test_real_bcrypt_hashes_are_usable() -> None:
    assert classify_hash(_HASH_2B) == HashInfo("bcrypt", "2b", 4, True, None)
    assert classify_hash(_HASH_2A) == HashInfo("bcrypt", "2a", 5, True, None)
    assert bcrypt.checkpw(b"correct horse", _HASH_2B.encode())


def test_2y_is_usable() -> None:
    info = classify_hash("$2y$10$" + _BODY)
    assert info.usable and info.variant == "2y" and info.cost == 10


@given(st.integers(min_value=4, max_value=31))
def test_every_valid_cost_is_usable(cost: int) -> None:
    info = classify_hash(f"$2b${cost:02d}$" + _BODY)
    assert info.usable and info.cost == cost


def test_empty_and_null() -> None:
    assert classify_hash(None) == HashInfo("null", reason="no password hash (NULL)")
    empty = classify_hash("")
    assert empty.algorithm == "empty" and not empty.usable and empty.reason
    blank = classify_hash("   ")
    assert blank.algorithm == "empty" and not blank.usable


def test_argon2_fbscrypt_scrypt_are_not_usable() -> None:
    argon = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
    info = classify_hash(argon)
    assert (info.algorithm, info.variant) == ("argon2", "argon2id")
    _assert_reason_is_safe(info, argon)
    assert classify_hash("$argon2i$v=19$m=4096,t=3,p=1$abc$def").variant == "argon2i"
    fb = "$fbscrypt$v=1,n=14,r=8,p=1,ss=Bw==,sk=ou9tdYTGyYm8kuR6Dt0Bp0kDuAYoXrK16mbZO4yGwAn3oLspjnN0$zvGk$wW6d"
    info = classify_hash(fb)
    assert info.algorithm == "fbscrypt"
    _assert_reason_is_safe(info, fb)
    for s in ("$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
              "$7$C6..../....SodiumChloride$kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D"):
        info = classify_hash(s)
        assert info.algorithm == "scrypt"
        _assert_reason_is_safe(info, s)


@pytest.mark.parametrize(
    ("value", "reason_part", "variant", "cost"),
    [
        ("$2a$03$" + _BODY, "cost 3 is outside 04..31", "2a", 3),
        ("$2a$32$" + _BODY, "cost 32 is outside", "2a", 32),
        ("$2a$4$" + _BODY, "cost is not two digits", "2a", None),
        ("$2b$10$" + _BODY[:-1], "59 characters long, not 60", "2b", 10),
        ("$2b$10$" + _BODY + "x", "61 characters long, not 60", "2b", 10),
        ("$2b$10$" + _BODY[:-1] + "+", "outside [./A-Za-z0-9]", "2b", 10),
        ("$2b$10$" + _BODY[:-1] + "=", "outside [./A-Za-z0-9]", "2b", 10),
        ("$2x$10$" + _BODY, "variant 2x is not supported", "2x", 10),
        ("$2$10$" + _BODY, "variant 2 is not supported", "2", 10),
        (" $2b$10$" + _BODY, "white space", "2b", 10),
        ("$2b$10$" + _BODY + "\n", "white space", "2b", 10),
    ],
)
def test_malformed_bcrypt_not_usable(value: str, reason_part: str, variant: str, cost: int | None) -> None:
    info = classify_hash(value)
    assert info.algorithm == "bcrypt"
    assert (info.variant, info.cost) == (variant, cost)
    assert info.reason is not None and reason_part in info.reason
    _assert_reason_is_safe(info, value)


@pytest.mark.parametrize("value", ["plaintextpassword", "5f4dcc3b5aa765d61d8327deb882cf99", "$1$abc$def", "$"])
def test_unknown_formats(value: str) -> None:
    info = classify_hash(value)
    assert info.algorithm == "unknown"
    _assert_reason_is_safe(info, value)
    assert "plaintext" not in (info.reason or "")


@given(st.text(max_size=80))
def test_only_wellformed_bcrypt_is_ever_usable(value: str) -> None:
    info = classify_hash(value)
    if info.usable:
        assert len(value) == 60 and value[:4] in ("$2a$", "$2b$", "$2y$")
    else:
        assert info.reason is not None
        if len(value) >= 8:
            assert value not in info.reason


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("  Alice@Example.COM ", "alice@example.com"),
        ("bob@example.com", "bob@example.com"),
    ],
)
def test_normalize_email(value: str | None, expected: str | None) -> None:
    assert normalize_email(value) == expected

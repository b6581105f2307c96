"""Which stored password hashes the target app can verify, decided from their shape alone.

The Xrozen app checks passwords with bcrypt, so a user keeps a working login only when the source
hash is a well-formed bcrypt string; everything else (empty for OAuth / magic-link users, NULL for
SQL-inserted users, argon2 / firebase-scrypt from imports) needs a reset path. The check is
structural on purpose: it must not verify anything against a password, and it must not let a
malformed string into users.password_hash where the app's bcrypt library would throw at login.
Reasons never quote the hash: they are written to reports and reject files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Algorithm = Literal["bcrypt", "argon2", "fbscrypt", "scrypt", "empty", "null", "unknown"]

BCRYPT_USABLE_VARIANTS = ("2a", "2b", "2y")
BCRYPT_MIN_COST = 4
BCRYPT_MAX_COST = 31
_BCRYPT_ALPHABET = re.compile(r"[./A-Za-z0-9]*")
_BCRYPT_PREFIX = re.compile(r"\$(2[a-z]?)\$([^$]*)\$")
_ARGON2 = re.compile(r"\$(argon2(?:id|i|d))\$")
_SCRYPT_PREFIXES = ("$scrypt$", "$7$", "$s0$", "$s1$")


@dataclass(frozen=True)
class HashInfo:
    algorithm: Algorithm
    variant: str | None = None
    cost: int | None = None
    usable: bool = False
    reason: str | None = None


def classify_hash(value: str | None) -> HashInfo:
    """Classify a stored password hash; usable only for a well-formed $2a$/$2b$/$2y$ bcrypt string.

    bcrypt's modular crypt form is '$2b$' + two-digit cost (04..31) + '$' + 22 salt and 31 digest
    characters of the bcrypt base64 alphabet [./A-Za-z0-9], 60 characters in all. '$2x$' (the
    crypt_blowfish bug-compatibility marker) and the original '$2$' are recognised as bcrypt but not
    usable: common bcrypt libraries refuse them.
    """
    if value is None:
        return HashInfo("null", reason="no password hash (NULL)")
    if value == "":
        return HashInfo("empty", reason="empty password hash (OAuth, magic-link or invited user)")
    if not value.strip():
        return HashInfo("empty", reason="password hash is only white space")
    if value != value.strip():
        inner = classify_hash(value.strip())
        return HashInfo(inner.algorithm, inner.variant, inner.cost, False,
                        "password hash has leading or trailing white space")
    m = _BCRYPT_PREFIX.match(value)
    if m:
        return _classify_bcrypt(value, m.group(1), m.group(2), value[m.end():])
    m = _ARGON2.match(value)
    if m:
        return HashInfo("argon2", variant=m.group(1),
                        reason=f"{m.group(1)} hash cannot be verified by a bcrypt-verifying app")
    if value.startswith("$fbscrypt$"):
        return HashInfo("fbscrypt",
                        reason="firebase scrypt hash cannot be verified by a bcrypt-verifying app")
    if value.startswith(_SCRYPT_PREFIXES):
        return HashInfo("scrypt", reason="scrypt hash cannot be verified by a bcrypt-verifying app")
    return HashInfo("unknown", reason=f"not a recognised password hash format ({len(value)} characters)")


def _classify_bcrypt(value: str, variant: str, cost_text: str, rest: str) -> HashInfo:
    cost = int(cost_text) if re.fullmatch(r"\d{2}", cost_text) else None
    if variant not in BCRYPT_USABLE_VARIANTS:
        return HashInfo("bcrypt", variant, cost, False, f"bcrypt variant {variant} is not supported")
    if cost is None:
        return HashInfo("bcrypt", variant, None, False, "bcrypt cost is not two digits")
    if not BCRYPT_MIN_COST <= cost <= BCRYPT_MAX_COST:
        return HashInfo("bcrypt", variant, cost, False,
                        f"bcrypt cost {cost} is outside {BCRYPT_MIN_COST:02d}..{BCRYPT_MAX_COST}")
    if not _BCRYPT_ALPHABET.fullmatch(rest):
        return HashInfo("bcrypt", variant, cost, False,
                        "bcrypt salt and digest contain characters outside [./A-Za-z0-9]")
    if len(rest) != 53:
        return HashInfo("bcrypt", variant, cost, False,
                        f"bcrypt hash is {len(value)} characters long, not 60")
    return HashInfo("bcrypt", variant, cost, True, None)


def normalize_email(value: str | None) -> str | None:
    """Lowercase and trim an address so users.email UNIQUE matches how Supabase Auth compares them."""
    if value is None:
        return None
    s = value.strip().lower()
    return s or None

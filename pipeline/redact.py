"""Keep secrets out of everything we write: logs, reports, manifests and error messages."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEYS = re.compile(
    r"^(.*[_-])?(password|passwd|pwd|secret|token|service_key|api_key|apikey|anon_key|service_role_key"
    r"|jwt_secret|password_hash|encrypted_password|authorization|dsn_password)$",
    re.IGNORECASE,
)
_DSN_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
_BCRYPT = re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}")
_OTHER_HASH = re.compile(r"\$(argon2(id|i|d)|fbscrypt|scrypt|pbkdf2[-_a-z0-9]*)\$[^\s\"',]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
_SB_KEY = re.compile(r"\bsb_(secret|publishable)_[A-Za-z0-9_-]+")

MASK = "***"


def redact_dsn(uri: str) -> str:
    """Drop the password from a connection URI or key=value DSN, keep the rest readable."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return redact_text(uri)
    if parts.scheme and parts.password is not None:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        netloc = f"{user}:{MASK}@{host}"
        uri = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return uri
    if parts.scheme:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return redact_text(uri)


def redact_text(text: str) -> str:
    """Mask anything in free text that looks like a credential or a password hash."""
    text = _DSN_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    text = _BCRYPT.sub(MASK, text)
    text = _OTHER_HASH.sub(MASK, text)
    text = _JWT.sub(MASK, text)
    text = _SB_KEY.sub(MASK, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    """Redact a structured value; keys that name secrets are masked outright."""
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    if isinstance(value, str):
        if _SECRET_KEYS.search(key) and value:
            return MASK
        return redact_text(value)
    return value

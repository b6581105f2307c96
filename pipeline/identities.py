"""Which sign-in providers each user has, read from auth.identities for the auth census.

auth.identities is not migrated (the app signs in by email and password only), so it is read
straight from the source rather than extracted: the census only counts users per provider, and a
source without the table (a REST source, an older project) just yields no provider report.
"""

from __future__ import annotations

from pipeline.logs import get_logger
from pipeline.sources.base import Source, TableInfo

log = get_logger(stage="users")
IDENTITIES = "auth.identities"


def identity_providers(
    source: Source, tables: dict[str, TableInfo], *, batch_rows: int = 20_000
) -> dict[str, set[str]] | None:
    """user id -> the providers linked to it; None when the source has no readable auth.identities."""
    info = tables.get(IDENTITIES)
    if info is None:
        return None
    names = {c.name for c in info.extract_columns}
    if not {"user_id", "provider"} <= names:
        return None
    out: dict[str, set[str]] = {}
    try:
        for batch in source.read(info, batch_rows=batch_rows):
            users = batch.data.column(batch.data.schema.get_field_index("user_id")).to_pylist()
            provs = batch.data.column(batch.data.schema.get_field_index("provider")).to_pylist()
            for uid, prov in zip(users, provs, strict=True):
                if uid is not None and prov:
                    out.setdefault(str(uid), set()).add(str(prov))
    except Exception as exc:  # the census is informative; a read problem must not fail the run
        log.warning("auth.identities could not be read; no provider census", error=type(exc).__name__)
        return None
    return out

"""Pick a source by the shape of its URI, so the CLI and config take one string for any source.

Source modules are imported only when chosen: a dump run needs no database driver state and a live run
never touches the dump parser.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.errors import ConfigError
from pipeline.redact import redact_dsn
from pipeline.sources.base import Column, ForeignKey, Source, SourceBatch, TableInfo

__all__ = ["Column", "ForeignKey", "Source", "SourceBatch", "TableInfo", "open_source"]

_DUMP_SUFFIXES = (".sql", ".dump", ".backup", ".pgdump")
_LIBPQ_KEYWORDS = re.compile(r"^\s*(host|hostaddr|dbname|user|port|service|password)\s*=", re.IGNORECASE)


def open_source(uri: str, **options: Any) -> Source:
    """Open the source `uri` names; options a source does not know are ignored."""
    lowered = uri.strip().lower()
    schemas: dict[str, tuple[str, ...]] = {}
    if options.get("schemas") is not None:
        schemas["schemas"] = tuple(options["schemas"])
    if lowered.startswith(("postgresql://", "postgres://")) or _LIBPQ_KEYWORDS.match(uri):
        from pipeline.sources.postgres import PostgresSource

        pg_options: dict[str, Any] = dict(schemas)
        if options.get("connect_timeout") is not None:
            pg_options["connect_timeout"] = int(options["connect_timeout"])
        return PostgresSource(uri, **pg_options)
    if lowered.startswith("dump:") or lowered.endswith(_DUMP_SUFFIXES):
        from pipeline.sources.dump import DumpSource  # type: ignore[import-not-found,unused-ignore]

        path = uri.strip()[len("dump:"):] if lowered.startswith("dump:") else uri.strip()
        source: Source = DumpSource(path, schema_path=options.get("schema_path"), **schemas)
        return source
    if lowered.startswith(("https://", "http://")):
        from pipeline.sources.rest import RestSource

        return RestSource(uri.strip(), schemas=schemas.get("schemas", ("public", "auth")),
                          service_key=options.get("service_key"), jwt_secret=options.get("jwt_secret"))
    raise ConfigError(
        f"unrecognised source {redact_dsn(uri)!r}: expected postgresql://..., a .sql/.dump/.backup/.pgdump "
        "file or dump:PATH, or https://"
    )

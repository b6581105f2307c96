"""The one protocol every source speaks: table descriptions in, all-text Arrow batches out.

Sources hand over PostgreSQL's text output form for every value so that the live, dump and REST
sources produce identical checkpoints, and so no driver gets a chance to mangle numeric, infinity
timestamps, intervals or out-of-range years. Conversion is the transform stage's job alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = True
    generated: bool = False
    enum_values: tuple[str, ...] | None = None
    base_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pg_type": self.pg_type,
            "nullable": self.nullable,
            "generated": self.generated,
            "enum_values": list(self.enum_values) if self.enum_values is not None else None,
            "base_type": self.base_type,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Column:
        ev = d.get("enum_values")
        return cls(
            name=d["name"],
            pg_type=d["pg_type"],
            nullable=bool(d.get("nullable", True)),
            generated=bool(d.get("generated", False)),
            enum_values=tuple(ev) if ev is not None else None,
            base_type=d.get("base_type"),
        )


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    row_estimate: int | None = None
    foreign_keys: tuple[ForeignKey, ...] = field(default=())
    # unique constraints / unique indexes over plain columns (not the primary key), and other
    # plain-column indexes. Only the live source reads them (auto schema uses them); they are left
    # out of equality so a dump and a live source of one database still describe equal tables.
    unique: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    indexes: tuple[tuple[str, ...], ...] = field(default=(), compare=False)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def extract_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if not c.generated)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.qualified} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, pa.string()) for c in self.extract_columns])

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "columns": [c.to_dict() for c in self.columns],
            "primary_key": list(self.primary_key),
            "row_estimate": self.row_estimate,
            "foreign_keys": [fk.to_dict() for fk in self.foreign_keys],
            "unique": [list(u) for u in self.unique],
            "indexes": [list(i) for i in self.indexes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TableInfo:
        return cls(
            schema=d["schema"],
            name=d["name"],
            columns=tuple(Column.from_dict(c) for c in d["columns"]),
            primary_key=tuple(d.get("primary_key") or ()),
            row_estimate=d.get("row_estimate"),
            foreign_keys=tuple(ForeignKey.from_dict(f) for f in d.get("foreign_keys") or ()),
            unique=tuple(tuple(u) for u in d.get("unique") or ()),
            indexes=tuple(tuple(i) for i in d.get("indexes") or ()),
        )


@dataclass(frozen=True)
class ForeignKey:
    """A source-side foreign key, kept so reports and auto schema can name parents."""

    columns: tuple[str, ...]
    parent: str  # qualified: 'public.projects'
    parent_columns: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "parent": self.parent, "parent_columns": list(self.parent_columns)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForeignKey:
        return cls(tuple(d["columns"]), d["parent"], tuple(d["parent_columns"]))


@dataclass(frozen=True)
class SourceBatch:
    data: pa.RecordBatch
    resume_token: dict[str, Any]


class Source(Protocol):
    kind: str

    def identity(self) -> dict[str, str]:
        """Fingerprint parts (system identifier, snapshot point, dump checksum); never a secret."""
        ...

    def tables(self) -> list[TableInfo]: ...

    def read(
        self, table: TableInfo, *, batch_rows: int, resume_token: dict[str, Any] | None = None
    ) -> Iterator[SourceBatch]: ...

    def close(self) -> None: ...

"""What the target SQLite schema looks like, read back from the migrations themselves.

The transform needs the target's columns, storage classes, CHECK value lists and foreign keys to
decide row by row whether a value fits; reading them from a database built by the real migrations
keeps that knowledge in one place (the SQL) instead of a second copy in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StorageClass = Literal["TEXT", "INTEGER", "REAL", "BLOB"]


@dataclass(frozen=True)
class TargetColumn:
    name: str
    decl_type: str
    storage: StorageClass
    notnull: bool = False
    default: str | None = None
    pk: int = 0
    allowed_values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TargetForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"


@dataclass(frozen=True)
class TargetTable:
    name: str
    columns: tuple[TargetColumn, ...]
    foreign_keys: tuple[TargetForeignKey, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    strict: bool = False
    without_rowid: bool = False

    @property
    def primary_key(self) -> tuple[str, ...]:
        return tuple(c.name for c in sorted((c for c in self.columns if c.pk), key=lambda c: c.pk))

    def column(self, name: str) -> TargetColumn:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"target table {self.name} has no column {name!r}")


@dataclass
class TargetSchema:
    tables: dict[str, TargetTable] = field(default_factory=dict)

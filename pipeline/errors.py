"""Error taxonomy: each kind maps to an exit code and to one way the run reacts."""

from __future__ import annotations


class SupamigrateError(Exception):
    """Base of every error the tool raises on purpose; the CLI prints it and exits with its code."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(SupamigrateError):
    """The config or the command line is wrong; nothing ran."""

    exit_code = 2


class SourceError(SupamigrateError):
    """The source cannot be read (unreachable, unreadable dump, missing tool)."""

    exit_code = 3


class TransientSourceError(SourceError):
    """A failure worth retrying: a dropped connection, a timeout, a 429 or 5xx."""


class TargetError(SupamigrateError):
    """The target or run folder cannot be written (locked, unreachable, not SQLite)."""

    exit_code = 3


class IntegrityError(SupamigrateError):
    """A post-load check failed; the live target was left untouched."""

    exit_code = 1


class Interrupted(SupamigrateError):
    """The user interrupted; the run stopped at a batch boundary and can be resumed."""

    exit_code = 130


class DataError(SupamigrateError):
    """One source row cannot be mapped; it goes to the rejects file, never silently away."""

    def __init__(self, table: str, key: str, column: str | None, reason: str) -> None:
        where = f"{table} row {key}" + (f" column {column}" if column else "")
        super().__init__(f"{where}: {reason}")
        self.table = table
        self.key = key
        self.column = column
        self.reason = reason

"""supamigrate: move a Supabase project into a verified SQLite database.

The Python API is the CLI's own: `from pipeline import run, dry_run, resume` gives the functions
`supamigrate run`, `dry-run` and `resume` call, with the same effect and the same exit codes (in
`RunOutcome.exit_code`). They are imported on first use, so `import pipeline` stays cheap (no Arrow,
no database driver) for tools that only want the version or a submodule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["RunOutcome", "check_config", "dry_run", "init_config", "resume", "run", "status"]

if TYPE_CHECKING:
    from pipeline.init import init_config
    from pipeline.runner import RunOutcome, check_config, dry_run, resume, run, status

_LAZY = {
    "run": "pipeline.runner",
    "dry_run": "pipeline.runner",
    "resume": "pipeline.runner",
    "status": "pipeline.runner",
    "check_config": "pipeline.runner",
    "RunOutcome": "pipeline.runner",
    "init_config": "pipeline.init",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

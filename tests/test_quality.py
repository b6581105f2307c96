"""The code stays ruff- and mypy-clean: checked here so the README's test command enforces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_clean() -> None:
    res = _run(str(BIN / "ruff"), "check", "pipeline", "transforms", "tests", "bench", "examples")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_clean() -> None:
    res = _run(str(BIN / "mypy"))
    assert res.returncode == 0, res.stdout + res.stderr

"""What a person sees: progress bars on a terminal, clean lines in a CI log, -v / -q / --log-format.

The terminal case runs the real command under a pseudo-terminal (python's pty), because the bar
only exists when the stream is a TTY; the log case runs it with pipes, as CI does.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "xrozen-demo.sql"
CLI = [sys.executable, "-m", "pipeline.cli"]
# anything below 0x20 except the newline, DEL, and the C1 controls: ESC, \r, backspace, bell, ...
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\x80-\x9f]")

pytestmark = pytest.mark.skipif(not DEMO.exists(), reason="examples/xrozen-demo.sql is not generated yet")


def _piped(tmp_path: Path, *global_opts: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *global_opts, "dry-run", "--config", str(ROOT / "config.yaml"),
                           "--runs-dir", str(tmp_path / "runs")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TERM": "xterm-256color", "FORCE_COLOR": ""})


@pytest.mark.parametrize("opts", [(), ("-v",), ("-vv",), ("--log-format", "json", "-v")])
def test_output_that_is_not_a_terminal_has_no_control_characters(tmp_path: Path, opts: tuple[str, ...]) -> None:
    res = _piped(tmp_path, *opts)
    assert res.returncode == 0, res.stdout + res.stderr
    for name, text in (("stdout", res.stdout), ("stderr", res.stderr)):
        bad = CONTROL.search(text)
        assert bad is None, f"{name} holds {bad.group()!r} near {text[max(0, bad.start() - 60):bad.end() + 20]!r}"
    assert "extract public.profiles: 141 rows in" in res.stderr  # one plain line per table and stage
    assert "rows/s" in res.stderr
    assert "status: dry_run_clean" in res.stdout


def test_verbosity_and_log_format(tmp_path: Path) -> None:
    quiet = _piped(tmp_path, "-q")
    assert quiet.stderr == ""  # -q: the summary (stdout) and errors only
    assert "status: dry_run_clean" in quiet.stdout
    normal = _piped(tmp_path)
    assert "info:" not in normal.stderr and "debug:" not in normal.stderr
    verbose = _piped(tmp_path, "-v")
    assert "info: run started" in verbose.stderr and "debug:" not in verbose.stderr
    as_json = _piped(tmp_path, "--log-format", "json", "-v")
    events = [json.loads(line) for line in as_json.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "run started" and e["level"] == "info" for e in events)
    assert all("timestamp" in e for e in events)


def _under_a_terminal(args: list[str], timeout: float = 120) -> tuple[int, bytes]:
    """Run `args` with stdin/stdout/stderr on a pseudo-terminal; return its exit code and all output."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"})
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = os.read(master, 65536)
        except OSError as exc:  # EIO: the child closed its side
            if exc.errno != errno.EIO:
                raise
            break
        if not data:
            break
        chunks.append(data)
        assert time.monotonic() < deadline, "the command did not finish"
    os.close(master)
    return proc.wait(timeout=30), b"".join(chunks)


def test_a_terminal_gets_progress_bars_per_table(tmp_path: Path) -> None:
    code, raw = _under_a_terminal([*CLI, "dry-run", "--config", str(ROOT / "config.yaml"),
                                   "--runs-dir", str(tmp_path / "runs")])
    out = raw.decode("utf-8", "replace")
    assert code == 0, out[-2000:]
    assert "\x1b[" in out and "\r" in out  # redrawn in place, not printed line by line
    assert "━" in out  # the bar
    for stage in ("extract", "transform", "load"):
        assert f"{stage} public.profiles" in out or f"{stage} profiles" in out
    assert re.search(r"\d+/\d+", out)  # rows done / rows in the table
    assert re.search(r"[\d,]+ rows/s", out)  # the rate of each table
    assert re.search(r"\d:\d\d:\d\d", out)  # the time remaining (ETA) column
    assert "status: dry_run_clean" in out

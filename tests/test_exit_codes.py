"""Every documented exit code, produced by the real command in a subprocess (README, Command line).

0 success, 1 failed check or blocking finding, 2 usage or config error, 3 source or target
unreachable, 130 interrupted (and the printed resume command then finishes the run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "xrozen-demo.sql"
CLI = [sys.executable, "-m", "pipeline.cli"]


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def demo() -> Path:
    if not DEMO.exists():
        pytest.skip("examples/xrozen-demo.sql is not generated yet")
    return DEMO


def test_exit_0_on_a_clean_dry_run(demo: Path, tmp_path: Path) -> None:
    res = _cli("dry-run", "--config", str(ROOT / "config.yaml"), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "status: dry_run_clean" in res.stdout


def test_exit_1_on_a_blocking_finding(demo: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"source: {{uri: {demo}}}\ntarget: {{migrations: {ROOT / 'target_schema'}}}\n")
    res = _cli("dry-run", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs"))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "status: dry_run_blocked" in res.stdout


@pytest.mark.parametrize("args", [["run", "--no-such-option"], ["no-such-command"]])
def test_exit_2_on_a_usage_error(args: list[str]) -> None:
    assert _cli(*args).returncode == 2


def test_exit_2_on_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("source: {uri: x.sql}\nrun: {batch_rowz: 5}\n")
    res = _cli("config", "check", "--config", str(cfg))
    assert res.returncode == 2
    assert "run.batch_rowz: unknown key" in res.stderr


def test_exit_3_when_the_source_is_unreachable(tmp_path: Path) -> None:
    res = _cli("dry-run", "--config", str(ROOT / "config.yaml"), "--runs-dir", str(tmp_path / "runs"),
               "--source", "postgresql://someone:hunter2-secret@127.0.0.1:1/nothing")
    assert res.returncode == 3, res.stdout + res.stderr
    assert "hunter2-secret" not in res.stdout + res.stderr


def test_exit_130_on_ctrl_c_and_the_printed_resume_finishes(demo: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # hold the run at its first extract batch so the SIGINT lands inside the run, not before it
    env = {**os.environ, "SUPAMIGRATE_PAUSE_AT": "extract.batch:1:3"}
    proc = subprocess.Popen([*CLI, "run", "--config", str(ROOT / "config.yaml"), "--runs-dir", str(runs),
                             "--target", str(tmp_path / "app.db")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(runs.glob("*/log.jsonl")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    run_id = next(runs.iterdir()).name
    assert f"supamigrate resume {run_id}" in out + err
    assert not (tmp_path / "app.db").exists()
    res = _cli("resume", run_id, "--config", str(ROOT / "config.yaml"), "--runs-dir", str(runs),
               "--target", str(tmp_path / "app.db"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "app.db").exists()

"""`python -m bench`: generate an xrozen-shaped source, run `supamigrate run` on it, measure ceilings.

The run is a child process so its peak RSS is the operating system's figure (wait4's ru_maxrss),
not an estimate from inside; per-stage peaks come from sampling /proc/<pid>/status while the child
prints one line per finished table, each sample belonging to the table line that follows it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bench.ceilings import copy_ceiling, insert_ceiling
from bench.generate import create_database, drop_database, generate, table_counts
from pipeline.migrations import migrate_up

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DSN = os.environ.get("SUPAMIGRATE_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
STAGES = ("extract", "transform", "load")


def _supamigrate() -> str:
    exe = Path(sys.executable).parent / "supamigrate"
    return str(exe) if exe.exists() else "supamigrate"


def write_config(work: Path, source_dsn: str, batch_rows: int | None) -> Path:
    """The repo's config.yaml pointed at the bench source, with the bench's few extra rules."""
    cfg: dict[str, Any] = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["source"]["uri"] = source_dsn
    cfg["target"]["path"] = str(work / "target" / "xrozen.db")
    cfg["target"]["migrations"] = str(ROOT / "target_schema")
    cfg["target"].setdefault("backups", {})["dir"] = str(work / "backups")
    cfg["run"]["runs_dir"] = str(work / "runs")
    if batch_rows:
        cfg["run"]["batch_rows"] = batch_rows
    tables = cfg.setdefault("tables", {})
    projects = tables.setdefault("projects", {})
    projects["drop"] = [*projects.get("drop", []), "tags"]     # the bench-only text[] column
    for t in ("editors", "clients"):                             # ON DELETE SET NULL in the app too
        tables.setdefault(t, {})["orphans"] = {"user_id": "set_null"}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return path


def seed_target(target: Path) -> None:
    """An existing (empty, migrated) app database, so the run takes both backups as a cutover would."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    with sqlite3.connect(target) as conn:
        migrate_up(conn, ROOT / "target_schema")


@dataclass
class ChildRun:
    returncode: int
    wall: float
    max_rss_kb: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    lines: list[tuple[float, str]] = field(default_factory=list)


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_child(args: list[str], env: dict[str, str] | None = None) -> ChildRun:
    """Run a supamigrate command; wall time, OS peak RSS, RSS samples and timestamped output lines."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, text=True)
    out = ChildRun(0, 0.0, 0)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            kb = _rss_kb(proc.pid)
            if kb is not None:
                out.samples.append((time.perf_counter() - t0, kb))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        out.lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    _pid, status, usage = os.wait4(proc.pid, 0)
    out.wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.returncode = proc.returncode
    out.max_rss_kb = int(usage.ru_maxrss)
    return out


def stage_peaks(child: ChildRun) -> dict[str, int]:
    """Peak sampled RSS (KiB) per stage: a sample belongs to the stage of the next table line."""
    events = [(t, line.split(" ", 1)[0]) for t, line in child.lines if line.split(" ", 1)[0] in STAGES]
    peaks: dict[str, int] = {}
    for t, kb in child.samples:
        stage = next((s for te, s in events if te >= t), "checks+swap" if events else "setup")
        peaks[stage] = max(peaks.get(stage, 0), kb)
    return peaks


def _bytes(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def _only_run(runs: Path) -> Path:
    dirs = sorted(p for p in runs.iterdir() if (p / "manifest.json").is_file())
    if not dirs:
        raise SystemExit(f"no run folder in {runs}")
    return dirs[-1]


def _mb(n: float) -> float:
    return round(n / 1e6, 2)


def summarize(child: ChildRun, run_dir: Path, target: Path, copy_bytes: int | None) -> dict[str, Any]:
    report = json.loads((run_dir / "report.json").read_text())
    extract_bytes = _bytes(list((run_dir / "extract").rglob("*.parquet")))
    transform_bytes = _bytes(list((run_dir / "transform").rglob("*.parquet")))
    source_rows = sum(int(t["source_rows"]) for t in report["tables"])
    loaded = sum(int(t["loaded"]) for t in report["tables"])
    peaks = stage_peaks(child)
    stages = []
    for s in report["stages"]:
        secs = float(s["seconds"])
        rows = int(s["rows"]) or source_rows
        stages.append({
            "name": s["name"], "seconds": round(secs, 3), "rows": rows,
            "rows_per_second": round(rows / secs, 1) if secs else None,
            "mb_per_second": round(copy_bytes / secs / 1e6, 2) if copy_bytes and secs else None,
            "peak_rss_mb": round(peaks.get(s["name"], 0) / 1024, 1) if s["name"] in peaks else None,
        })
    if "checks+swap" in peaks:
        stages.append({"name": "checks+swap (rss)", "peak_rss_mb": round(peaks["checks+swap"] / 1024, 1)})
    return {
        "status": report["status"], "run_id": report["run_id"], "returncode": child.returncode,
        "wall_seconds": round(child.wall, 3), "source_rows": source_rows, "loaded_rows": loaded,
        "rows_per_second": round(source_rows / child.wall, 1),
        "mb_per_second": round(copy_bytes / child.wall / 1e6, 2) if copy_bytes else None,
        "peak_rss_mb": round(child.max_rss_kb / 1024, 1),
        "stage_seconds_sum": round(sum(float(s["seconds"]) for s in report["stages"]), 3),
        "stages": stages,
        "extract_parquet_bytes": extract_bytes, "transform_parquet_bytes": transform_bytes,
        "target_bytes": target.stat().st_size if target.exists() else None,
        "checks_ok": all(c["ok"] for c in report["checks"]),
        "backups": {"before": report["target"]["backup_before"], "after": report["target"]["backup_after"]},
    }


def resume_test(cfg: Path, work: Path, target: Path, full_wall: float) -> dict[str, Any]:
    """Kill a fresh run with SIGKILL after 90% of its load batches, then time `supamigrate resume`."""
    prev = _only_run(work / "runs")
    batches = sum(len(v["batches"]) for v in json.loads((prev / "manifest.json").read_text())["transform"].values())
    kill_at = max(1, math.ceil(batches * 0.9))
    shutil.rmtree(work / "runs")
    seed_target(target)
    killed = run_child([_supamigrate(), "run", "--config", str(cfg)], {"SUPAMIGRATE_KILL_AT": f"load.batch:{kill_at}"})
    resumed = run_child([_supamigrate(), "resume", "--config", str(cfg)])
    run_dir = _only_run(work / "runs")
    report = json.loads((run_dir / "report.json").read_text())
    return {
        "load_batches": batches, "killed_after_batch": kill_at, "killed_returncode": killed.returncode,
        "killed_wall_seconds": round(killed.wall, 3), "resume_returncode": resumed.returncode,
        "resume_status": report["status"], "resume_wall_seconds": round(resumed.wall, 3),
        "resume_peak_rss_mb": round(resumed.max_rss_kb / 1024, 1),
        "resume_stages": [{"name": s["name"], "seconds": s["seconds"]} for s in report["stages"]],
        "fraction_of_full_run": round(resumed.wall / full_wall, 3),
    }


def _print(result: dict[str, Any]) -> None:
    r = result["run"]
    print(f"\nrun {r['run_id']}: {r['status']} (exit {r['returncode']}), checks ok: {r['checks_ok']}")
    print(f"{'stage':<20}{'seconds':>10}{'rows':>12}{'rows/s':>12}{'MB/s':>10}{'peak RSS MB':>14}")
    for s in r["stages"]:
        print(f"{s['name']:<20}{s.get('seconds', ''):>10}{s.get('rows', ''):>12}{s.get('rows_per_second') or '':>12}"
              f"{s.get('mb_per_second') or '':>10}{s.get('peak_rss_mb') or '':>14}")
    print(f"{'total (wall)':<20}{r['wall_seconds']:>10}{r['source_rows']:>12}{r['rows_per_second']:>12}"
          f"{r['mb_per_second'] or '':>10}{r['peak_rss_mb']:>14}")
    print(f"Parquet bytes: extract {_mb(r['extract_parquet_bytes'])} MB, transform "
          f"{_mb(r['transform_parquet_bytes'])} MB; target {_mb(r['target_bytes'] or 0)} MB")
    c = result.get("ceilings", {})
    if "copy" in c:
        a = c["copy"]
        print(f"ceiling (a) COPY TO STDOUT: {a['rows_per_second']:.0f} rows/s, {a['mb_per_second']} MB/s; "
              f"pipeline = {r['rows_per_second'] / a['rows_per_second']:.1%} (extract stage "
              f"{(r['stages'][0]['rows_per_second'] or 0) / a['rows_per_second']:.1%})")
    if "insert" in c:
        b = c["insert"]
        load = next((s for s in r["stages"] if s["name"] == "load"), None)
        print(f"ceiling (b) executemany, one transaction: {b['rows_per_second']:.0f} rows/s "
              f"(insert only {b['insert_only_rows_per_second']:.0f}); pipeline = "
              f"{r['rows_per_second'] / b['rows_per_second']:.1%}"
              + (f" (load stage {(load['rows_per_second'] or 0) / b['rows_per_second']:.1%})" if load else ""))
    if "resume" in result:
        z = result["resume"]
        print(f"resume after kill at load batch {z['killed_after_batch']}/{z['load_batches']}: "
              f"{z['resume_wall_seconds']} s = {z['fraction_of_full_run']:.1%} of the full run ({z['resume_status']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000, help="source rows in total (default 1M)")
    ap.add_argument("--dsn", default=DEFAULT_DSN, help="admin DSN of the Postgres server to generate on")
    ap.add_argument("--db", default=None, help="bench database name (default supamigrate_bench_<rows>)")
    ap.add_argument("--keep-db", action="store_true", help="keep the bench database afterwards")
    ap.add_argument("--skip-generate", action="store_true", help="reuse an existing bench database")
    ap.add_argument("--work-dir", type=Path, default=None, help="where runs, target and backups go")
    ap.add_argument("--batch-rows", type=int, default=None, help="override run.batch_rows")
    ap.add_argument("--no-ceilings", action="store_true")
    ap.add_argument("--resume-test", action="store_true", help="also time a resume after a kill at 90%% of load")
    ap.add_argument("--label", default="", help="a note stored with the results")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ns = ap.parse_args(argv)

    db = ns.db or f"supamigrate_bench_{ns.rows}"
    work = ns.work_dir or Path(tempfile.mkdtemp(prefix="supamigrate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("runs", "backups", "target"):
        shutil.rmtree(work / sub, ignore_errors=True)
    result: dict[str, Any] = {"label": ns.label, "rows_requested": ns.rows, "database": db,
                              "started_at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count()}
    try:
        source = urlsplit(ns.dsn)._replace(path="/" + db).geturl()
        if not ns.skip_generate:
            t0 = time.perf_counter()
            create_database(ns.dsn, db)
            result["generate"] = generate(source, ns.rows)
            result["generate"]["seconds"] = round(time.perf_counter() - t0, 2)
            print(f"generated {result['generate']['total']} rows in {result['generate']['seconds']} s")
        counts = table_counts(source)
        result["source_counts"] = counts
        cfg = write_config(work, source, ns.batch_rows)
        target = work / "target" / "xrozen.db"
        seed_target(target)
        child = run_child([_supamigrate(), "run", "--config", str(cfg)])
        if child.returncode != 0:
            print("\n".join(line for _, line in child.lines[-40:]))
            raise SystemExit(f"supamigrate run failed with exit code {child.returncode}")
        run_dir = _only_run(work / "runs")
        ceilings: dict[str, Any] = {}
        if not ns.no_ceilings:
            ceilings["copy"] = copy_ceiling(source, list(counts))
            ceilings["insert"] = insert_ceiling(run_dir, ROOT / "target_schema", work / "ceiling.db")
            (work / "ceiling.db").unlink(missing_ok=True)
        result["ceilings"] = ceilings
        result["run"] = summarize(child, run_dir, target, ceilings.get("copy", {}).get("bytes"))
        if ceilings:
            result["fraction_of_copy_ceiling"] = round(
                result["run"]["rows_per_second"] / ceilings["copy"]["rows_per_second"], 3)
            result["fraction_of_insert_ceiling"] = round(
                result["run"]["rows_per_second"] / ceilings["insert"]["rows_per_second"], 3)
        if ns.resume_test:
            result["resume"] = resume_test(cfg, work, target, child.wall)
        _print(result)
    finally:
        if not ns.keep_db and not ns.skip_generate:
            drop_database(ns.dsn, db)
        if ns.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    ns.results.mkdir(parents=True, exist_ok=True)
    out = ns.results / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one place that knows the stage order, the run lifecycle and when a resume is allowed.

Library first: `run`, `dry_run` and `resume` here are what the CLI calls, with the same effect.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline import faults
from pipeline.autoschema import generate_for_config
from pipeline.backup import atomic_swap, create_backup
from pipeline.checks import (
    TableChecksum,
    checksum_parquet,
    checksum_sqlite,
    combine_checksums,
    count_rows,
    foreign_key_violations,
    integrity_check,
)
from pipeline.config import Config, load_config
from pipeline.console import Console
from pipeline.errors import ConfigError, IntegrityError, Interrupted, SupamigrateError
from pipeline.extract import extract_table
from pipeline.findings import collect_findings, sample_rejects
from pipeline.identities import identity_providers
from pipeline.load import StaleStaging, load_all, open_db
from pipeline.logins import logins_gate
from pipeline.logs import close_run_log, get_logger, open_run_log
from pipeline.memory import prefer_returning_allocator, release_memory
from pipeline.migrations import schema_checksum
from pipeline.plan import MigrationPlan, build_plan
from pipeline.redact import redact_dsn
from pipeline.report import write_reports
from pipeline.runs import Manifest, RunDir, file_lock, find_runs, new_run_id, target_lock_path, utcnow_iso
from pipeline.sources import open_source
from pipeline.sources.base import Source
from pipeline.sqlite_settings import apply_app_pragmas
from pipeline.target import load_target_schema
from pipeline.transform import transform_all
from pipeline.users import auth_census, write_password_resets

log = get_logger(stage="run")
VOLATILE_IDENTITY = ("snapshot",)


@dataclass
class RunOutcome:
    run_id: str
    run_dir: Path
    status: str
    exit_code: int
    report: dict[str, Any]
    target: Path | None = None
    summary: list[str] = field(default_factory=list)


class _StopFlag:
    """SIGINT sets a flag checked at batch boundaries; a second Ctrl-C aborts at once."""

    def __init__(self) -> None:
        self.stop = False

    def __call__(self) -> bool:
        return self.stop

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        try:
            previous = signal.getsignal(signal.SIGINT)
        except ValueError:
            yield
            return

        def handler(_sig: int, _frame: FrameType | None) -> None:
            if self.stop:
                raise KeyboardInterrupt
            self.stop = True

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def stable_identity(identity: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in identity.items() if not k.startswith(VOLATILE_IDENTITY)}


def fingerprint(config: Config, source: Source, migrations_dir: Path, dry_run: bool) -> dict[str, Any]:
    return {
        "config_sha256": config.digest(),
        "config": config.fingerprint_data(),
        "source": stable_identity(source.identity()),
        "schema_sha256": schema_checksum(migrations_dir),
        "dry_run": dry_run,
    }


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Name what changed between two fingerprints, down to the config key."""
    changes: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif a != b:
            changes.append(path)

    walk(old.get("config", {}), new.get("config", {}), "")
    if old.get("source") != new.get("source"):
        changes.append("source identity (" + ", ".join(
            k for k in sorted(set(old.get("source", {})) | set(new.get("source", {})))
            if old.get("source", {}).get(k) != new.get("source", {}).get(k)) + ")")
    if old.get("schema_sha256") != new.get("schema_sha256"):
        changes.append("target schema (target_schema/ migrations)")
    return changes


def _resolve(config_path: str | Path | None, source: str | None, target: str | None,
             runs_dir: str | None) -> tuple[Config, Path]:
    config = load_config(config_path).with_overrides(source=source, target=target, runs_dir=runs_dir)
    base = Path(config_path).resolve().parent if config_path else Path.cwd()
    return config, base


def _abs(base: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else base / q


def run(
    config_path: str | Path | None = None,
    *,
    source: str | None = None,
    target: str | None = None,
    runs_dir: str | None = None,
    dry_run: bool = False,
    console: Console | None = None,
) -> RunOutcome:
    """Run the whole pipeline; continue an unfinished run of the same fingerprint if there is one."""
    return _execute(config_path, source=source, target=target, runs_dir=runs_dir, dry_run=dry_run,
                    run_id=None, fresh=False, auto_resume=True, console=console)


def dry_run(
    config_path: str | Path | None = None,
    *,
    source: str | None = None,
    target: str | None = None,
    runs_dir: str | None = None,
    console: Console | None = None,
) -> RunOutcome:
    """The full pipeline into a scratch file in the run folder; the configured target is not touched."""
    return _execute(config_path, source=source, target=target, runs_dir=runs_dir, dry_run=True,
                    run_id=None, fresh=False, auto_resume=False, console=console)


def resume(
    run_id: str | None = None,
    *,
    config_path: str | Path | None = None,
    source: str | None = None,
    target: str | None = None,
    runs_dir: str | None = None,
    fresh: bool = False,
    console: Console | None = None,
) -> RunOutcome:
    """Continue a run from its last committed batch; refuse if config, source or schema changed."""
    return _execute(config_path, source=source, target=target, runs_dir=runs_dir, dry_run=None,
                    run_id=run_id, fresh=fresh, auto_resume=True, console=console, must_resume=not fresh)


def _pick_resumable(runs_root: Path, run_id: str | None, must: bool) -> Manifest | None:
    if run_id:
        m = Manifest.load(runs_root / run_id / "manifest.json")
        if m.data.get("status") == "succeeded":
            raise ConfigError(f"run {run_id} already succeeded; nothing to resume")
        return m
    for p in reversed(find_runs(runs_root)):
        m = Manifest.load(p / "manifest.json")
        if m.data.get("status") not in ("succeeded", "dry_run_clean", "dry_run_blocked"):
            return m
    if must:
        raise ConfigError(f"no unfinished run in {runs_root} to resume")
    return None


def _execute(
    config_path: str | Path | None,
    *,
    source: str | None,
    target: str | None,
    runs_dir: str | None,
    dry_run: bool | None,
    run_id: str | None,
    fresh: bool,
    auto_resume: bool,
    console: Console | None,
    must_resume: bool = False,
) -> RunOutcome:
    config, base = _resolve(config_path, source, target, runs_dir)
    console = console or Console.quiet()
    prefer_returning_allocator()
    runs_root = _abs(base, config.run.runs_dir)
    migrations_dir = _abs(base, config.target.migrations)
    src_uri = config.source.uri
    if not src_uri.startswith(("postgres://", "postgresql://", "https://", "http://", "dump:")):
        src_uri = str(_abs(base, src_uri))
    schema_file = str(_abs(base, config.source.schema_file)) if config.source.schema_file else None
    src = open_source(src_uri, schema_path=schema_file, schemas=config.source.schemas,
                      service_key=config.source.service_key, jwt_secret=config.source.jwt_secret)
    try:
        # Before the fingerprint, so its schema checksum covers the generated files: a resume then
        # finds them in place, generates nothing new and computes the same fingerprint.
        generated = generate_for_config(config, src, migrations_dir) if config.auto_schema.enabled else []
        previous = _pick_resumable(runs_root, run_id, must_resume) if auto_resume and not fresh else None
        is_dry = bool(previous.data["fingerprint"].get("dry_run")) if previous and dry_run is None else bool(dry_run)
        fp = fingerprint(config, src, migrations_dir, is_dry)
        if previous is not None:
            changes = describe_difference(previous.data["fingerprint"], fp)
            if changes:
                if must_resume:
                    raise ConfigError(
                        f"cannot resume run {previous.data['run_id']}: changed since it started: "
                        + "; ".join(changes) + ". Use `supamigrate resume --fresh` to start over.")
                previous = None
        rd = RunDir(previous.path.parent) if previous is not None else RunDir.in_runs(runs_root, new_run_id()).create()
        # The lock comes before any write to the manifest: a second process that picked the same run
        # must not overwrite the manifest its owner is committing batches to with an older copy.
        with file_lock(rd.lock_path, f"run folder {rd.root}"):
            if previous is not None:
                manifest = Manifest.load(previous.path)  # as its last owner left it, read under the lock
                if manifest.data.get("status") == "succeeded":
                    raise ConfigError(f"run {rd.run_id} succeeded meanwhile; nothing to resume")
                console.line(f"resuming run {rd.run_id}")
                manifest.set("resumed", int(manifest.data.get("resumed") or 0) + 1)
            else:
                manifest = Manifest.create(rd.manifest_path, rd.run_id, fp)
            if generated:
                manifest.set("auto_schema",
                              sorted({*manifest.data.get("auto_schema", []), *(p.name for p in generated)}))
            open_run_log(rd.log_path)
            try:
                return _stages(config, base, src, src_uri, rd, manifest, migrations_dir, is_dry, console)
            finally:
                close_run_log()
    finally:
        src.close()


def _stages(
    config: Config,
    base: Path,
    src: Source,
    src_uri: str,
    rd: RunDir,
    manifest: Manifest,
    migrations_dir: Path,
    is_dry: bool,
    console: Console,
) -> RunOutcome:
    started = manifest.data.get("created_at", utcnow_iso())
    manifest.set("status", "running")
    target = _abs(base, config.target.resolve(rd.run_id, config.run.runs_dir))
    log.info("run started", run_id=rd.run_id, source=redact_dsn(src_uri), dry_run=is_dry, target=str(target))
    stop = _StopFlag()
    report: dict[str, Any] = {
        "schema_version": 1, "run_id": rd.run_id, "status": "running", "dry_run": is_dry,
        "started_at": started, "finished_at": None,
        "source": {"kind": src.kind, "uri": redact_dsn(src_uri), "identity": src.identity()},
        "target": {"path": str(target), "staging": None, "backup_before": None, "backup_after": None,
                   "swapped": False},
        "tables": [], "unmigrated_tables": [], "checks": [], "findings": [], "stages": [], "auth": {},
        "error": None,
    }
    if manifest.data.get("auto_schema"):
        report["auto_schema"] = {"migrations": manifest.data["auto_schema"], "folder": str(migrations_dir)}
    plan: MigrationPlan | None = None
    totals: dict[str, dict[str, Any]] = {}
    stages: list[dict[str, Any]] = []
    try:
        with stop.installed(), contextlib.ExitStack() as stack:
            if not is_dry:
                stack.enter_context(file_lock(target_lock_path(target), f"target {target}"))
            schema = load_target_schema(migrations_dir)
            tables = src.tables()
            plan = build_plan(config, tables, schema)
            report["unmigrated_tables"] = [{"name": n, "rows": r, "reason": why} for n, r, why in plan.unmigrated]
            if plan.blocking and not is_dry:
                raise ConfigError("the plan has blocking problems:\n" + "\n".join(
                    f"  {i.table}{'.' + i.column if i.column else ''}: {i.message}"
                    + (f" ({i.suggestion})" if i.suggestion else "") for i in plan.blocking))
            by_name = {t.qualified: t for t in tables}
            # extract
            t0 = time.perf_counter()
            rows = 0
            # which process's snapshot read which rows decides what a source count proves (_source_counts)
            read_before = any(manifest.extract_state(n)["batches"] for n in plan.source_tables())
            done_before = all(manifest.extract_state(n)["done"] for n in plan.source_tables())
            with console.stage("extract") as bar:
                for name in plan.source_tables():
                    info = by_name[name]
                    bar.table(name, info.row_estimate)
                    n, redone, retries = extract_table(src, info, rd, manifest, batch_rows=config.run.batch_rows,
                                                       progress=bar.advance, should_stop=stop)
                    rows += n
                    if redone:
                        report.setdefault("redone_checkpoints", []).extend(redone)
                    if retries:
                        report.setdefault("retries", {})[name] = retries
            source_checks = _source_counts(src, plan, by_name, manifest, report, read_before, done_before)
            stages.append(_stage("extract", t0, rows))
            release_memory()
            # transform
            t0 = time.perf_counter()
            with console.stage("transform") as bar:
                totals = transform_all(plan, config, rd, manifest, progress=bar.advance, should_stop=stop)
            stages.append(_stage("transform", t0, sum(t["source_rows"] for t in totals.values())))
            release_memory()
            report["auth"] = auth_census(plan, config, rd, manifest, identity_providers(src, by_name))
            # load
            staging = rd.staging_dir / (("dry-run-" if is_dry else "") + target.name)
            report["target"]["staging"] = str(staging)
            t0 = time.perf_counter()
            with console.stage("load") as bar:
                try:
                    loaded = load_all(plan, rd, manifest, staging, migrations_dir, progress=bar.advance,
                                      should_stop=stop)
                except StaleStaging as exc:
                    log.warning("staging file is stale; rebuilding it", reason=str(exc))
                    _remove_sqlite(staging)
                    loaded = load_all(plan, rd, manifest, staging, migrations_dir, progress=bar.advance,
                                      should_stop=stop)
            stages.append(_stage("load", t0, int(sum(v["rows"] for v in loaded.values()))))
            release_memory()
            # checks
            t0 = time.perf_counter()
            checks = source_checks + run_checks(plan, rd, manifest, staging)
            report["checks"] = checks
            stages.append(_stage("checks", t0, 0))
            report["tables"] = _table_rows(plan, totals, checks, loaded)
            failed = [c for c in checks if not c["ok"]]
            if failed:
                raise IntegrityError("post-load checks failed; the target was not touched:\n" + "\n".join(
                    f"  {c['name']}{' on ' + c['table'] if c['table'] else ''}: {c['detail']}" for c in failed))
            if not is_dry and not config.run.allow_blocking_findings:
                blocking_now = [f for f in collect_findings(plan, totals, report, config, rd.root)
                                if f["severity"] == "blocking"]
                if blocking_now:
                    raise IntegrityError(
                        f"{len(blocking_now)} blocking finding(s) need a decision in the config before a cutover; "
                        "the target was not touched. Run `supamigrate dry-run` for the rules that decide them:\n"
                        + "\n".join(f"  {f['table'] or ''}{'.' + f['column'] if f['column'] else ''}: {f['message']}"
                                    for f in blocking_now[:20]))
            logins_gate(config, staging, report)  # before the swap: a failed login blocks it
            if not is_dry and write_password_resets(plan, config, rd, manifest) is not None:
                report["auth"]["password_resets_written"] = True
            if not is_dry:
                t0 = time.perf_counter()
                _finalize_staging(staging, rd.run_id, started, redact_dsn(src_uri), config.digest())
                faults.point("swap.before")
                bk = config.target.backups
                bdir = _abs(base, bk.dir.format(run_id=rd.run_id)) if bk.dir else None
                if bk.enabled and target.exists():
                    report["target"]["backup_before"] = str(
                        create_backup(target, backup_dir=bdir, prefix=bk.prefix, keep=bk.keep))
                faults.point("swap.after_backup")
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_swap(staging, target)
                report["target"]["swapped"] = True
                with open_db(target) as conn:
                    conn.execute("PRAGMA journal_mode=WAL")
                faults.point("swap.after_rename")
                if bk.enabled:
                    # the file passed integrity_check in run_checks; since then only the provenance row
                    # and ANALYZE's statistics were written, so a page copy of it needs quick_check only
                    report["target"]["backup_after"] = str(
                        create_backup(target, backup_dir=bdir, prefix=bk.prefix, keep=bk.keep,
                                      verify="quick"))
                stages.append(_stage("swap", t0, 0))
        report["sample_rejects"] = sample_rejects(rd.root, plan)
        report["findings"] = collect_findings(plan, totals, report, config, rd.root)
        blocking = any(f["severity"] == "blocking" for f in report["findings"])
        status = ("dry_run_blocked" if blocking else "dry_run_clean") if is_dry else "succeeded"
        exit_code = 1 if (is_dry and blocking) else 0
    except Interrupted as exc:
        status, exit_code = "interrupted", Interrupted.exit_code
        report["error"] = str(exc) + f"; resume with: supamigrate resume {rd.run_id}"
    except SupamigrateError as exc:
        status, exit_code = "failed", exc.exit_code
        report["error"] = str(exc)
    except KeyboardInterrupt:
        status, exit_code = "interrupted", Interrupted.exit_code
        report["error"] = f"interrupted; resume with: supamigrate resume {rd.run_id}"
    if status in ("failed", "interrupted") and plan is not None and totals and not report["tables"]:
        report["tables"] = _table_rows(plan, totals, [], {})
    if status in ("failed", "interrupted") and plan is not None and not report["findings"]:
        with contextlib.suppress(Exception):
            report["sample_rejects"] = sample_rejects(rd.root, plan)
            report["findings"] = collect_findings(plan, totals, report, config, rd.root)
    report["stages"] = stages
    report["status"] = status
    report["finished_at"] = utcnow_iso()
    manifest.set("status", status)
    write_reports(rd.root, report)
    log.info("run finished", status=status, exit_code=exit_code, error=report["error"])
    return RunOutcome(rd.run_id, rd.root, status, exit_code, report,
                      target if report["target"]["swapped"] else None)


def _source_counts(src: Source, plan: MigrationPlan, by_name: dict[str, Any], manifest: Manifest,
                   report: dict[str, Any], read_before: bool, done_before: bool) -> list[dict[str, Any]]:
    """Compare extracted rows with the live source's own count.

    One snapshot covers an uninterrupted extract, but a reconnect after a dropped connection, a redone
    checkpoint, or a resume in a new process that continues a half-read extract, reads the rest in a
    newer snapshot; then the counts are verified after the fact, and a difference stops the run before
    anything is swapped in. The verdict is kept in the manifest: when an earlier process read every
    row, counting now would compare that snapshot with a newer state of a live source (a spurious
    failure for any resume after the extract), so the counts that process verified stand, failed
    ones included.
    """
    counter = getattr(src, "count_rows", None)
    if not callable(counter):
        return []
    restarted = bool(report.get("retries") or report.get("redone_checkpoints")) or (read_before and not done_before)
    if restarted and not manifest.data.get("snapshot_restarted"):
        manifest.set("snapshot_restarted", True)
    if manifest.data.get("snapshot_restarted"):
        report["snapshot_restarted"] = True
    kept = manifest.data.get("source_counts")
    if done_before and not restarted and kept is not None:
        return [dict(c) for c in kept]
    out = []
    for name in plan.source_tables():
        now = int(counter(by_name[name]))
        got = int(manifest.extract_state(name)["rows"])
        out.append({"name": "source_count", "table": name, "ok": now == got,
                    "detail": f"the source holds {now} rows, {got} were extracted"})
    manifest.set("source_counts", out)
    return out


def _stage(name: str, t0: float, rows: int) -> dict[str, Any]:
    s = round(time.perf_counter() - t0, 4)
    return {"name": name, "seconds": s, "rows": rows, "rows_per_second": round(rows / s, 1) if s > 0 else 0.0}


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path) + suffix)


def run_checks(plan: MigrationPlan, rd: RunDir, manifest: Manifest, staging: Path) -> list[dict[str, Any]]:
    """Counts, content checksums, foreign keys and integrity of the staging file.

    PRAGMA foreign_key_check and integrity_check run inside SQLite without the GIL, so they go to a
    thread each, with their own connections, while this one computes the (Python) SQLite-side
    content checksums: the same checks, spread over the cores (the 1M-row bench: 38 s -> 23-32 s
    with both pragmas on one thread, which then was the longest path).
    """
    out: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=2) as pool, open_db(staging) as conn:
        integrity = pool.submit(_sqlite_integrity, staging)
        fk_check = pool.submit(_sqlite_fks, staging)
        for tp in plan.tables:
            st = manifest.transform_state(tp.name)["batches"]
            files = [rd.root / e["file"] for _, e in sorted(st.items())]
            src_rows = sum(e["rows_in"] for e in st.values())
            loaded = sum(e["loaded"] for e in st.values())
            rej = sum(e["rejected"] for e in st.values())
            filt = sum(e["filtered"] for e in st.values())
            eq_ok = src_rows == loaded + rej + filt
            extracted = sum(manifest.extract_state(s)["rows"] for s in tp.source_tables)
            out.append({"name": "count_equation", "table": tp.name, "ok": eq_ok,
                        "detail": f"source {src_rows} = loaded {loaded} + rejected {rej} + filtered {filt}"})
            if tp.kind == "table":
                out.append({"name": "extracted_rows", "table": tp.name, "ok": extracted == src_rows,
                            "detail": f"extracted {extracted}, transformed {src_rows}"})
            in_db = count_rows(conn, tp.name)
            out.append({"name": "row_count", "table": tp.name, "ok": in_db == loaded,
                        "detail": f"target has {in_db} rows, {loaded} were loaded"})
            if files:
                import pyarrow.parquet as pq

                cols = pq.ParquetFile(files[0]).schema_arrow.names
                a = _transformed_checksum(st, files, cols)
                b = checksum_sqlite(conn, tp.name, cols)
                out.append({"name": "content_checksum", "table": tp.name, "ok": a == b, "digest": b.digest,
                            "detail": f"transformed {a.rows} rows {a.digest}, target {b.rows} rows {b.digest}"})
        fks, ic = fk_check.result(), integrity.result()
        out.append({"name": "foreign_key_check", "table": None, "ok": not fks,
                    "detail": "no violations" if not fks else "; ".join(
                        f"{v.table} -> {v.parent}: row {v.key}" for v in fks[:10])})
        out.append({"name": "integrity_check", "table": None, "ok": ic == ["ok"], "detail": "; ".join(ic[:5])})
        dup = conn.execute("SELECT count(*) FROM (SELECT 1 FROM _supamigrate_ledger GROUP BY table_name, batch_id "
                           "HAVING count(*) > 1)").fetchone()[0]
        out.append({"name": "ledger_unique", "table": None, "ok": dup == 0, "detail": f"{dup} batches recorded twice"})
    return out


def _transformed_checksum(batches: dict[str, Any], files: list[Path], cols: list[str]) -> TableChecksum:
    """The transformed side's content checksum: the per-batch checksums the transform computed from
    the very Arrow tables it committed (their files are sha256-verified before any reuse), summed;
    the Parquet files are read back only when a batch lacks one (manifests from older versions) or
    was checksummed over other columns."""
    stored = [e.get("checksum") for _, e in sorted(batches.items())]
    if all(c is not None and list(c["columns"]) == list(cols) for c in stored):
        return combine_checksums(TableChecksum(rows=int(c["rows"]), digest=str(c["digest"])) for c in stored)
    return checksum_parquet(files, cols)


def _sqlite_integrity(staging: Path) -> list[str]:
    with open_db(staging) as conn:
        return integrity_check(conn)


def _sqlite_fks(staging: Path) -> list[Any]:
    with open_db(staging) as conn:
        return foreign_key_violations(conn)


def _finalize_staging(staging: Path, run_id: str, started: str, source: str, config_sha: str) -> None:
    with open_db(staging) as conn:
        conn.execute("INSERT OR REPLACE INTO _supamigrate_runs VALUES (?, ?, ?, ?, ?)",
                     (run_id, started, utcnow_iso(), source, config_sha))
        conn.execute("ANALYZE")
        apply_app_pragmas(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _table_rows(plan: MigrationPlan, totals: dict[str, dict[str, Any]], checks: list[dict[str, Any]],
                loaded: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for tp in plan.tables:
        t = totals.get(tp.name)
        if t is None:
            continue
        checksum = next((c["digest"] for c in checks
                         if c["name"] == "content_checksum" and c["table"] == tp.name and c["ok"]), None)
        rows.append({
            "name": tp.name, "source_table": "+".join(tp.source_tables), "source_rows": t["source_rows"],
            "loaded": t["loaded"], "rejected": t["rejected"], "filtered": t["filtered"],
            "seconds": round(t["seconds"] + loaded.get(tp.name, {}).get("seconds", 0.0), 4),
            "equation_ok": t["source_rows"] == t["loaded"] + t["rejected"] + t["filtered"],
            "checksum": checksum, "reject_reasons": t["reject_reasons"],
            "filter_reasons": t["filter_reasons"],
        })
    return rows


def status(run_id: str | None = None, *, runs_dir: str | Path = "runs") -> list[dict[str, Any]]:
    """The state of one run, or of every run in the runs folder."""
    root = Path(runs_dir)
    paths = [root / run_id] if run_id else find_runs(root)
    out = []
    for p in paths:
        m = Manifest.load(p / "manifest.json")
        out.append({
            "run_id": m.data["run_id"], "status": m.data.get("status"), "created_at": m.data.get("created_at"),
            "dry_run": m.data["fingerprint"].get("dry_run"),
            "extract": {k: {"rows": v["rows"], "batches": len(v["batches"]), "done": v["done"]}
                        for k, v in m.data["extract"].items()},
            "transform": {k: {"batches": len(v["batches"]), "done": v["done"]}
                          for k, v in m.data["transform"].items()},
        })
    return out


def check_config(config_path: str | Path | None = None) -> Config:
    """Validate a config file without touching any source; raises ConfigError naming the bad key."""
    return load_config(config_path)


def staged_ledger(staging: Path) -> list[tuple[str, str, int]]:
    with contextlib.closing(sqlite3.connect(staging)) as conn:
        return list(conn.execute("SELECT table_name, batch_id, rows FROM _supamigrate_ledger ORDER BY 1, 2"))


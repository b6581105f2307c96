"""Source batches into Parquet checkpoints, one committed file per batch.

A batch's file is renamed into place before the manifest records it, and the manifest entry carries
the file's checksum and the source's resume token, so a resumed extract keeps every verified batch
and asks the source for exactly the rows after the last one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from pipeline import faults
from pipeline.errors import Interrupted, SourceError, TransientSourceError
from pipeline.logs import get_logger
from pipeline.runs import Manifest, RunDir, atomic_write_json, atomic_write_parquet, file_sha256
from pipeline.sources.base import Source, TableInfo

log = get_logger(stage="extract")

Progress = Callable[[str, int], None]


@dataclass
class ExtractResult:
    rows: dict[str, int] = field(default_factory=dict)
    redone_batches: list[str] = field(default_factory=list)
    retries: int = 0


def batch_path(run: RunDir, table: str, n: int) -> Path:
    return run.extract_dir(table) / f"part-{n:05d}.parquet"


def verified_batches(run: RunDir, manifest: Manifest, table: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Keep the committed batches whose files still match their checksum; drop the first bad one and
    everything after it, since later batches' resume tokens assume the earlier ones."""
    state = manifest.extract_state(table)
    good: list[dict[str, Any]] = []
    bad: list[str] = []
    for entry in state["batches"]:
        p = run.root / entry["file"]
        if not p.is_file() or file_sha256(p) != entry["sha256"]:
            bad.append(entry["file"])
            break
        good.append(entry)
    if bad:
        dropped = state["batches"][len(good):]
        for entry in dropped:
            with contextlib.suppress(FileNotFoundError):
                (run.root / entry["file"]).unlink()
        state["batches"] = good
        state["rows"] = sum(e["rows"] for e in good)
        state["done"] = False
        manifest.save()
        log.warning("checkpoint failed verification; redoing from it", table=table, file=bad[0])
    return good, bad


def extract_table(
    source: Source,
    table: TableInfo,
    run: RunDir,
    manifest: Manifest,
    *,
    batch_rows: int,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    max_attempts: int = 6,
) -> tuple[int, list[str], int]:
    """Extract one table; returns (rows, redone checkpoint files, retries)."""
    name = table.qualified
    atomic_write_json(run.extract_dir(name) / "schema.json", table.to_dict())
    _good, bad = verified_batches(run, manifest, name)
    state = manifest.extract_state(name)
    if state["done"] and not bad:
        return state["rows"], [], 0
    retries = 0

    def on_retry(rs: RetryCallState) -> None:
        nonlocal retries
        retries += 1
        exc = rs.outcome.exception() if rs.outcome else None
        log.warning("transient source error; retrying", table=name, attempt=rs.attempt_number, cause=str(exc))
        reconnect = getattr(source, "reconnect", None)
        if callable(reconnect):
            reconnect()

    retrying = Retrying(
        retry=retry_if_exception_type(TransientSourceError),
        stop=stop_after_attempt(max_attempts),
        wait=wait_random_exponential(multiplier=0.2, max=10),
        before_sleep=on_retry,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            _extract_from(source, table, run, manifest, batch_rows, progress, should_stop)
    manifest.finish_extract(name)
    return manifest.extract_state(name)["rows"], bad, retries


def _extract_from(
    source: Source,
    table: TableInfo,
    run: RunDir,
    manifest: Manifest,
    batch_rows: int,
    progress: Progress | None,
    should_stop: Callable[[], bool],
) -> None:
    name = table.qualified
    state = manifest.extract_state(name)
    token = state["batches"][-1]["resume_token"] if state["batches"] else None
    n = len(state["batches"])
    expected = table.arrow_schema()
    for batch in source.read(table, batch_rows=batch_rows, resume_token=token):
        if batch.data.num_rows == 0:
            continue
        if batch.data.schema.names != expected.names:
            raise SourceError(f"{name}: source returned columns {batch.data.schema.names}, expected {expected.names}")
        n += 1
        t0 = time.perf_counter()
        path = batch_path(run, name, n)
        digest = atomic_write_parquet(path, pa.Table.from_batches([batch.data]).cast(expected))
        faults.point("extract.after_file")
        manifest.commit_extract_batch(
            name,
            {
                "file": str(path.relative_to(run.root)),
                "rows": batch.data.num_rows,
                "sha256": digest,
                "resume_token": json.loads(json.dumps(batch.resume_token)),
            },
        )
        log.debug("extract batch committed", table=name, batch=n, rows=batch.data.num_rows,
                  seconds=round(time.perf_counter() - t0, 4))
        faults.point("extract.batch")
        if progress:
            progress(name, batch.data.num_rows)
        if should_stop():
            raise Interrupted(f"interrupted during extract of {name} after batch {n}")

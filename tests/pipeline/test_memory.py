"""release_memory and the allocator choice: what they change is observable, not assumed."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa

from pipeline.memory import prefer_returning_allocator, release_memory


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_release_memory_gives_freed_python_objects_back_to_the_os() -> None:
    before = _rss_kib()
    # 2 KB objects come from glibc's heap (pymalloc serves up to 512 bytes); the one kept last pins
    # the top of the heap, so free() alone cannot shrink it: the freed pages stay resident
    junk = [bytes(2048) + i.to_bytes(4, "big") for i in range(100_000)]
    pin = junk[-1]
    grown = _rss_kib()
    del junk
    release_memory()
    after = _rss_kib()
    assert pin
    assert grown - before > 100_000
    assert after - before < (grown - before) / 2, (before, grown, after)


def test_arrow_uses_jemalloc_unless_the_user_chose_a_pool() -> None:
    code = ("import pyarrow as pa; from pipeline.memory import prefer_returning_allocator as p; p(); "
            "print(pa.default_memory_pool().backend_name)")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    chosen = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert chosen.stdout.strip() == "jemalloc"
    env["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    kept = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert kept.stdout.strip() == "system"
    prefer_returning_allocator()  # in-process: idempotent
    assert isinstance(pa.default_memory_pool(), pa.MemoryPool)

"""What a person sees while a run works: rich progress bars on a terminal, plain lines elsewhere.

CI logs must stay readable and free of control characters, so the bar only exists when the stream
is a real terminal; otherwise each table prints one line when it finishes.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from rich.console import Console as RichConsole
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        # a table done in under a second gives rich no speed samples: use the measured rate then
        speed = task.finished_speed or task.speed or task.fields.get("rate")
        return Text(f"{speed:,.0f} rows/s" if speed else "")


class StageProgress:
    def __init__(self, console: Console, stage: str) -> None:
        self.console = console
        self.stage = stage
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.current: str | None = None
        self.rows = 0
        self.t0 = time.perf_counter()

    def table(self, name: str, total: int | None) -> None:
        self._finish_table()
        self.current, self.rows, self.t0 = name, 0, time.perf_counter()
        if self.progress is not None:
            self.task = self.progress.add_task(f"{self.stage} {name}", total=total if total and total > 0 else None)

    def advance(self, name: str, rows: int) -> None:
        if name != self.current:
            self.table(name, None)
        self.rows += rows
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, rows)

    def _finish_table(self) -> None:
        if self.current is None:
            return
        secs = time.perf_counter() - self.t0
        rate = self.rows / secs if secs > 0 else 0.0
        if self.progress is None:
            self.console.line(f"{self.stage} {self.current}: {self.rows} rows in {secs:.2f}s ({rate:,.0f} rows/s)")
        elif self.task is not None:
            self.progress.update(self.task, total=self.rows, completed=self.rows, rate=rate)
        self.current = None


class Console:
    """Console output for one invocation; `quiet` prints nothing but errors and the summary."""

    def __init__(self, stream: TextIO | None = None, *, verbosity: int = 0, force_plain: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbosity = verbosity
        self.interactive = (not force_plain) and self.stream.isatty() and verbosity >= 0

    @classmethod
    def quiet(cls) -> Console:
        return cls(verbosity=-1, force_plain=True)

    def line(self, text: str) -> None:
        if self.verbosity >= 0:
            self.stream.write(text + "\n")
            self.stream.flush()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageProgress]:
        sp = StageProgress(self, name)
        if self.interactive:
            rc = RichConsole(file=self.stream)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          _RateColumn(), TimeRemainingColumn(),
                          console=rc, transient=False) as progress:
                sp.progress = progress
                yield sp
                sp._finish_table()
        else:
            yield sp
            sp._finish_table()

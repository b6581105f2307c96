"""Structured logs: JSON lines into the run folder, short lines on the console, secrets never.

Every event passes through a redaction processor before any renderer sees it, so a DSN password or a
hash that slipped into an event value is masked in the file and on the screen alike.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Literal, TextIO

import structlog

from pipeline.redact import redact_value

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
LogFormat = Literal["console", "json"]


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: redact_value(k, v) for k, v in event.items()}


class _Sink:
    """Writes each event to the run's log.jsonl and, above the console level, to stderr."""

    def __init__(self) -> None:
        self.file: TextIO | None = None
        self.console_level = LEVELS["warning"]
        self.console_format: LogFormat = "console"
        self.stream: TextIO = sys.stderr
        self.lock = threading.Lock()

    def emit(self, event: MutableMapping[str, Any]) -> None:
        level = str(event.get("level", "info"))
        line = json.dumps(event, default=str, ensure_ascii=False)
        with self.lock:
            if self.file is not None:
                self.file.write(line + "\n")
                self.file.flush()
            if LEVELS.get(level, 20) >= self.console_level:
                if self.console_format == "json":
                    self.stream.write(line + "\n")
                else:
                    extras = " ".join(
                        f"{k}={v}" for k, v in event.items() if k not in ("event", "level", "timestamp")
                    )
                    self.stream.write(f"{level}: {event.get('event')}" + (f" ({extras})" if extras else "") + "\n")
                self.stream.flush()


_SINK = _Sink()


class _SinkLogger:
    def msg(self, event: MutableMapping[str, Any]) -> None:
        _SINK.emit(event)

    debug = info = warning = warn = error = critical = exception = log = msg


def _to_sink(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    return ((event,), {})


structlog.configure(
    processors=[
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact,
        _to_sink,
    ],
    logger_factory=lambda *args: _SinkLogger(),
    cache_logger_on_first_use=False,
)


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger().bind(**bind)


def configure_console(
    *, level: str = "warning", log_format: LogFormat = "console", stream: TextIO | None = None
) -> None:
    _SINK.console_level = LEVELS.get(level, 30)
    _SINK.console_format = log_format
    _SINK.stream = stream or sys.stderr


def open_run_log(path: Path) -> None:
    close_run_log()
    path.touch(mode=0o600, exist_ok=True)
    _SINK.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run's lifetime


def close_run_log() -> None:
    if _SINK.file is not None:
        _SINK.file.close()
        _SINK.file = None

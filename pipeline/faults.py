"""Named crash points for the kill tests: SUPAMIGRATE_KILL_AT=point:N sends SIGKILL to ourselves.

The crash is a real SIGKILL at a real point of the real code path, so resume is tested against the
same torn states a power cut would leave; with the variable unset this costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

ENV = "SUPAMIGRATE_KILL_AT"
PAUSE_ENV = "SUPAMIGRATE_PAUSE_AT"
_hits: Counter[str] = Counter()
_pause_hits: Counter[str] = Counter()


def point(name: str) -> None:
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        _pause(name, pause)
    spec = os.environ.get(ENV)
    if not spec:
        return
    _hits[name] += 1
    for item in spec.split(","):
        want, _, nth = item.partition(":")
        if want == name and _hits[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def _pause(name: str, spec: str) -> None:
    """SUPAMIGRATE_PAUSE_AT=point:N:seconds holds the run still, so a test can break a connection
    at a known place (pg_terminate_backend) instead of racing the extract."""
    _pause_hits[name] += 1
    for item in spec.split(","):
        want, _, rest = item.partition(":")
        nth, _, secs = rest.partition(":")
        if want == name and _pause_hits[name] == int(nth or 1):
            time.sleep(float(secs or 1))

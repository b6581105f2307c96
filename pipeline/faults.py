"""Named crash points for the kill tests: SUPAMIGRATE_KILL_AT=point:N sends SIGKILL to ourselves.

The crash is a real SIGKILL at a real point of the real code path, so resume is tested against the
same torn states a power cut would leave; with the variable unset this costs one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "SUPAMIGRATE_KILL_AT"
_hits: Counter[str] = Counter()


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    _hits[name] += 1
    for item in spec.split(","):
        want, _, nth = item.partition(":")
        if want == name and _hits[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)

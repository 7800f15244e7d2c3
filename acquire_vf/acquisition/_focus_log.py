"""Every closed-loop focus event of a run, one JSON line each, in the run folder's
``focus.jsonl``: the whole record of a three-day run, where ``session.json`` keeps the first
:data:`acquire_vf.acquisition._focus.MAX_RECORDS` of each kind (memory stays flat)."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path

from acquire_vf.acquisition._payloads import FocusEvent

FOCUS_LOG = "focus.jsonl"


class FocusLog:
    """Appends each ``signals.focus`` event as it comes (any thread), a line at a time, so a
    run that dies keeps every event written before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = path.open("a", buffering=1, encoding="utf-8")  # line-buffered
        self._lock = threading.Lock()

    def write(self, event: FocusEvent) -> None:
        line = json.dumps({"kind": type(event).__name__, **asdict(event)})
        with self._lock:
            if not self._f.closed:
                self._f.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._f.close()

"""Every closed-loop focus event and every judged sentinel of a run, one JSON line each, in
the run folder's ``focus.jsonl`` and ``sentinels.jsonl``: the whole record of a three-day run,
where ``session.json`` keeps an evenly thinned sample of each kind
(:class:`acquire_vf._stats.Thinned`), so the session's memory stops growing early."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

FOCUS_LOG = "focus.jsonl"
SENTINEL_LOG = "sentinels.jsonl"


class EventLog:
    """Appends each event (a dataclass, from any thread) as it comes, a line at a time, so a
    run that dies keeps every event written before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = path.open("a", buffering=1, encoding="utf-8")  # line-buffered
        self._lock = threading.Lock()

    def write(self, event: Any) -> None:
        line = json.dumps({"kind": type(event).__name__, **asdict(event)})
        with self._lock:
            if not self._f.closed:
                self._f.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            self._f.close()

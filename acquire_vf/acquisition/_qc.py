"""Per virtual channel: frames made, frames flagged by QC and counts by flag, with a warning
line the first time each flag is raised (a run whose engine sees inputs unlike its training
data must not look clean). ``session.json``'s ``qc`` is :meth:`QcTally.report`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from acquire_vf._frames import Frame, raised_flags

log = logging.getLogger(__name__)


class QcTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_channel: dict[str, dict[str, Any]] = {}

    def count(self, frame: Frame) -> None:
        flags = [f.value for f in raised_flags(frame.qc)]
        c = frame.id.c
        with self._lock:
            tally = self._by_channel.setdefault(c, {"frames": 0, "flagged": 0, "by_flag": {}})
            tally["frames"] += 1
            tally["flagged"] += bool(flags)
            new = [f for f in flags if f not in tally["by_flag"]]
            for f in flags:
                tally["by_flag"][f] = tally["by_flag"].get(f, 0) + 1
        for f in new:
            log.warning("virtual channel '%s': QC flag '%s' from t=%d (the virtual frames are "
                        "saved and marked; session.json 'qc' counts them)", c, f, frame.id.t)

    def report(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {c: {**v, "by_flag": dict(v["by_flag"])}
                    for c, v in sorted(self._by_channel.items())}

"""Frame-number bookkeeping: which expected frames arrived, which went missing."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from acquire_vf._frames import FrameId

LOOKAHEAD = 50_000
"""How far ahead of the next expected frame an arrival is looked for: a frame further on than
this is reported as not in the protocol, not as a gap of that many frames (reading that far
ahead in a plan costs about a second, once)."""
RECENT = 4096
"""Frames that arrived lately, remembered so a duplicate is not taken for an unexpected one."""


class SequenceChecker:
    """Checks arrivals against the protocol's frame order and reports gaps as they happen.

    Micro-Manager delivers frames in event order, so a frame arriving ahead of the next
    expected one means the frames in between were lost. The expected frames are read from
    an iterator as arrivals need them (a plan is never held whole: issue 34), so memory and
    start-up do not grow with the plan; ``total`` is their number.
    """

    def __init__(self, expected: Iterable[FrameId], optional: set[str] | None = None,
                 total: int | None = None) -> None:
        self._optional = optional or set()
        if total is None:
            expected = [f for f in expected if f.c not in self._optional]
            total = len(expected)
        self.total = total
        """Frames that must arrive (fallback exposures are optional and not counted)."""
        self._ahead: Iterator[FrameId] = (f for f in expected if f.c not in self._optional)
        self._buffer: deque[FrameId] = deque()
        """Expected frames read from the iterator but not yet passed."""
        self._recent: deque[FrameId] = deque(maxlen=RECENT)
        self._recent_set: set[FrameId] = set()
        self._allowed: set[FrameId] = set()
        self._excused: set[FrameId] = set()
        """Expected frames the run gave up (a device fault, journaled): never a gap."""
        self.next_index = 0
        """How many expected frames have been passed (arrived, missed or excused)."""
        self.gaps: list[str] = []
        self.unexpected: list[str] = []
        self._last_image_number: int | None = None

    def _find(self, fid: FrameId) -> int | None:
        """``fid``'s place among the expected frames not yet passed (read ahead as needed)."""
        for i, f in enumerate(self._buffer):
            if f == fid:
                return i
        while len(self._buffer) < LOOKAHEAD:
            nxt = next(self._ahead, None)
            if nxt is None:
                return None
            self._buffer.append(nxt)
            if nxt == fid:
                return len(self._buffer) - 1
        return None

    def _pass(self, f: FrameId) -> None:
        self.next_index += 1
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(f)
        self._recent_set.add(f)

    def arrived(self, fid: FrameId) -> str | None:
        """Record an arrival; return a message if it reveals a gap or is not in the protocol."""
        if fid in self._recent_set or fid.c in self._optional:  # a duplicate, a fallback
            return None
        if fid in self._allowed:  # inserted: never looked for among the planned frames
            self._allowed.discard(fid)
            return None
        idx = self._find(fid)
        if idx is None:
            note = f"unexpected frame {fid.as_dict()} (not in the protocol)"
            self.unexpected.append(note)
            return note
        missing = []
        for _ in range(idx + 1):
            f = self._buffer.popleft()
            if f in self._excused:
                self._excused.discard(f)
            elif f != fid:
                missing.append(f)
            self._pass(f)
        if missing:
            msg = (f"frame gap: {len(missing)} frame(s) missing before {fid.as_dict()}, "
                   f"first missing {missing[0].as_dict()}")
            self.gaps.append(msg)
            return msg
        return None

    def excuse(self, fid: FrameId) -> None:
        """A frame the run gave up (journaled as missing with its reason): not a gap, not
        missing at the end."""
        if fid not in self._recent_set:
            self._excused.add(fid)

    def allow(self, fid: FrameId) -> None:
        """An inserted frame: expected from now on, but never counted missing."""
        self._allowed.add(fid)

    def camera_number(self, n: int | None) -> str | None:
        """Check the camera's own frame counter (``ImageNumber``; present in sequence mode).

        Within a hardware sequence it rises by one per frame; a larger step means the camera
        or the circular buffer lost frames. A drop back (a new sequence) is normal.
        """
        prev, self._last_image_number = self._last_image_number, n
        if n is None or prev is None or n <= prev + 1:
            return None
        msg = f"frame gap: camera image number jumped from {prev} to {n} ({n - prev - 1} lost)"
        self.gaps.append(msg)
        return msg

    @property
    def missing_at_end(self) -> int:
        return max(self.total - self.next_index - len(self._excused), 0)

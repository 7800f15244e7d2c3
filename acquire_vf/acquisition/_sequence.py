"""Frame-number bookkeeping: which expected frames arrived, which went missing."""

from __future__ import annotations

from collections.abc import Sequence

from acquire_vf._frames import FrameId


class SequenceChecker:
    """Checks arrivals against the protocol's frame order and reports gaps as they happen.

    Micro-Manager delivers frames in event order, so a frame arriving ahead of the next
    expected one means the frames in between were lost.
    """

    def __init__(self, expected: Sequence[FrameId], optional: set[str] | None = None) -> None:
        optional = optional or set()
        self.expected = [f for f in expected if f.c not in optional]
        """Frames that must arrive (fallback exposures are optional and not counted)."""
        self._index = {fid: i for i, fid in enumerate(self.expected)}
        self._optional = optional
        self._allowed: set[FrameId] = set()
        self._excused: set[int] = set()
        """Expected frames the run gave up (a device fault, journaled): never a gap."""
        self.next_index = 0
        self.gaps: list[str] = []
        self.unexpected: list[str] = []
        self._last_image_number: int | None = None

    def arrived(self, fid: FrameId) -> str | None:
        """Record an arrival; return a message if it reveals a gap or is not in the protocol."""
        idx = self._index.get(fid)
        if idx is None and (fid.c in self._optional or fid in self._allowed):
            return None
        if idx is None:
            note = f"unexpected frame {fid.as_dict()} (not in the protocol)"
            self.unexpected.append(note)
            return note
        msg: str | None = None
        missing = [f for i, f in enumerate(self.expected[self.next_index:idx], self.next_index)
                   if i not in self._excused]
        if missing:
            msg = (f"frame gap: {len(missing)} frame(s) missing before {fid.as_dict()}, "
                   f"first missing {missing[0].as_dict()}")
            self.gaps.append(msg)
        self.next_index = max(self.next_index, idx + 1)
        return msg

    def excuse(self, fid: FrameId) -> None:
        """A frame the run gave up (journaled as missing with its reason): not a gap, not
        missing at the end."""
        idx = self._index.get(fid)
        if idx is not None:
            self._excused.add(idx)

    def allow(self, fid: FrameId) -> None:
        """An inserted frame: expected from now on, but never counted missing."""
        if fid not in self._index:
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
        return len(self.expected) - self.next_index - sum(
            1 for i in self._excused if i >= self.next_index)

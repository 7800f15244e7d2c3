"""The writer thread between acquisition and the file: raw frames first, never dropped.

Acquisition hands frames over and returns at once. Raw frames wait in a queue bounded by memory;
if the disk cannot keep up and that bound is reached, the run must stop (the frames would
otherwise be lost silently), so :meth:`BackgroundWriter.put_raw` raises. Virtual frames wait in
a short queue and are dropped, and counted, when it is full: they can be recomputed, raw ones
cannot. A write error stops the writer at once; frames already written stay intact.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from acquire_vf._errors import StorageError
from acquire_vf._frames import Frame, FrameId

log = logging.getLogger(__name__)


@runtime_checkable
class FrameSink(Protocol):
    """Where frames end up: :class:`~acquire_vf.storage.OmeTiffWriter`, or anything with these
    three methods. The session chooses it and passes it to the run; only the writer thread
    calls it.
    """

    def append(self, frame: Frame) -> int:
        """Store ``frame``; once this returns, it survives a crash of the process."""
        ...

    def skip(self, fid: FrameId, role: str, why: str) -> None:
        """Record that a planned frame will not come (and why)."""
        ...

    def close(self) -> None:
        """Finish the dataset (metadata, index); raises :class:`StorageError` on failure."""
        ...


@runtime_checkable
class FileSink(Protocol):
    """A sink that is a file on disk (the OME-TIFF and OME-Zarr writers): where it is, and
    run-level annotations written into its metadata when it closes."""

    path: Path

    def annotate(self, namespace: str, records: list[dict[str, Any]]) -> None: ...


class BacklogFull(StorageError):
    """Raw frames waiting to be written reached their memory bound: the run must stop (the
    caller names its own setting for the bound)."""


class BackgroundWriter:
    """Owns one :class:`FrameSink` and the only thread that writes to it."""

    def __init__(self, sink: FrameSink, *, raw_limit_bytes: int, virtual_limit: int,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        if not isinstance(sink, FrameSink):
            raise TypeError(f"expected a FrameSink (append, skip, close), got "
                            f"{type(sink).__name__}")
        self._sink = sink
        self._raw: deque[Frame] = deque()
        self._virtual: deque[Frame] = deque()
        self._skips: deque[tuple[FrameId, str, str]] = deque()
        self._raw_bytes = 0
        self._raw_limit = raw_limit_bytes
        self._virtual_limit = virtual_limit
        self._cv = threading.Condition()
        self._closing = False
        self._on_error = on_error
        self.error: BaseException | None = None
        self.raw_written = 0
        self.virtual_written = 0
        self.virtual_dropped = 0
        self.max_raw_backlog_bytes = 0
        self.max_virtual_depth = 0
        self._thread = threading.Thread(target=self._run, name="acquire-vf writer", daemon=True)
        self._thread.start()

    def put_raw(self, frame: Frame) -> None:
        """Queue a raw frame; raises if the writer failed or its memory bound is reached."""
        with self._cv:
            if self.error is not None:
                raise StorageError(str(self.error)) from self.error
            if self._raw_bytes + frame.nbytes > self._raw_limit:
                raise BacklogFull(
                    f"the disk is not keeping up: {self._raw_bytes / 2**20:.0f} MB of raw frames "
                    f"are waiting to be written (limit {self._raw_limit // 2**20} MB); stopped "
                    "so that no frame is lost"
                )
            self._raw.append(frame)
            self._raw_bytes += frame.nbytes
            self.max_raw_backlog_bytes = max(self.max_raw_backlog_bytes, self._raw_bytes)
            self._cv.notify()

    def put_virtual(self, frame: Frame) -> bool:
        """Queue a virtual frame; ``False`` (dropped) if the queue is full or the writer failed."""
        with self._cv:
            if self.error is not None or len(self._virtual) >= self._virtual_limit:
                self.virtual_dropped += 1
                if self.error is None and len(self._skips) < 10_000:
                    self._skips.append((frame.id, "virtual", "skipped: the writer fell behind"))
                    self._cv.notify()
                return False
            self._virtual.append(frame)
            self.max_virtual_depth = max(self.max_virtual_depth, len(self._virtual))
            self._cv.notify()
            return True

    def skip(self, fid: FrameId, role: str, why: str) -> None:
        """Queue a note that a planned frame will not come (never blocks, never raises)."""
        with self._cv:
            if self.error is None and len(self._skips) < 10_000:
                self._skips.append((fid, role, why))
                self._cv.notify()

    @property
    def raw_backlog_bytes(self) -> int:
        return self._raw_bytes

    @property
    def virtual_depth(self) -> int:
        return len(self._virtual)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not (self._raw or self._virtual or self._skips or self._closing):
                    self._cv.wait()
                skip = self._skips.popleft() if self._skips and not self._raw else None
                if skip is not None:
                    frame = None
                    raw = False
                elif self._raw:
                    frame = self._raw.popleft()
                    raw = True
                elif self._virtual:
                    frame = self._virtual.popleft()
                    raw = False
                else:
                    return  # closing and drained
            try:
                if skip is not None:
                    self._sink.skip(*skip)
                    continue
                assert frame is not None
                self._sink.append(frame)
            except BaseException as e:
                self._fail(e)
                return
            with self._cv:
                if raw:
                    self._raw_bytes -= frame.nbytes
                    self.raw_written += 1
                else:
                    self.virtual_written += 1

    def _fail(self, e: BaseException) -> None:
        log.error("writer stopped: %s", e)
        with self._cv:
            self.error = e
            self.virtual_dropped += len(self._virtual)
            self._virtual.clear()
        if self._on_error is not None:
            self._on_error(e)

    def close(self) -> None:
        """Write everything queued, then close the sink. Raises the writer's error, if any."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()
        try:
            self._sink.close()
        except BaseException as e:
            if self.error is None:
                self.error = e
        if self.error is not None:
            err = self.error
            raise err if isinstance(err, StorageError) else StorageError(str(err)) from err

"""Run events for whoever listens (display, logs, tests), through psygnal.

Signals are emitted on the thread where things happen (acquisition, pipeline). A Qt display
connects with ``thread="main"`` (psygnal queues the call to the GUI thread), so pyqtgraph is only
ever touched on the GUI thread and listeners never slow acquisition.
"""

from __future__ import annotations

from psygnal import Signal, SignalGroup


class RunSignals(SignalGroup):
    frameReady = Signal(object)
    """A raw frame arrived (:class:`acquire_vf._frames.Frame`)."""
    virtualReady = Signal(object)
    """A virtual frame was computed (:class:`acquire_vf._frames.Frame`, ``role="virtual"``)."""
    stateChanged = Signal(object)
    """The run's :class:`RunState` changed."""
    fidelity = Signal(object)
    """A sentinel pair was judged: ``{"channel", "t", "p", "z", "psnr", "ssim", "mae", ...,
    "ok"}`` (emitted on the verification thread)."""
    focus = Signal(object)
    """Closed-loop focus: ``{"kind": "estimate" | "correction" | "zscan", "t", "p", ...}``."""
    error = Signal(str)
    """Something went wrong; the message is one line."""

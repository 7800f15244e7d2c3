"""Run events for whoever listens (display, logs, tests, a user's ``acquire()`` callbacks),
through psygnal.

Signals are emitted on the thread where things happen (acquisition, pipeline). A Qt display
connects with ``thread="main"`` (psygnal queues the call to the GUI thread), so pyqtgraph is only
ever touched on the GUI thread and listeners never slow acquisition.

A listener cannot break a run: every slot is wrapped when it connects, so an exception in it is
logged once per listener with its traceback, counted (``RunSignals.listener_errors``, which
``session.json`` reports), and the emit goes on to the other listeners and back to the run. A
plain psygnal signal would raise ``EmitLoopError`` into the acquisition loop or the pipeline
thread instead (pymmcore-plus's runner guards its listeners the same way).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from psygnal import Signal, SignalGroup, SignalInstance

log = logging.getLogger(__name__)


class ListenerErrors:
    """Exceptions raised by listeners: a count per ``signal: listener``, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def record(self, key: str) -> bool:
        """Count one; whether it was the first from that listener."""
        with self._lock:
            self.counts[key] += 1
            return self.counts[key] == 1

    def report(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def _arity(slot: Callable[..., Any]) -> int | None:
    """How many positional arguments ``slot`` takes (``None``: any number)."""
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _name(slot: Callable[..., Any]) -> str:
    if inspect.ismethod(slot):
        return f"{type(slot.__self__).__name__}.{slot.__func__.__name__}"
    if inspect.isfunction(slot):
        return slot.__name__
    return type(slot).__name__


class GuardedSignalInstance(SignalInstance):
    """A signal whose listeners' exceptions are logged and counted, never raised."""

    def connect(self, slot: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
        if slot is None:  # the decorator form
            return lambda s: self.connect(s, **kwargs)
        errors = _errors_of(self.instance)
        key = f"{self.name}: {_name(slot)}"
        n = _arity(slot)

        def guarded(*args: Any) -> None:
            try:
                slot(*(args if n is None else args[:n]))
            except Exception:
                if errors.record(key):
                    log.exception("a listener of %s raised; the run goes on (counted in "
                                  "session.json listener_errors, logged once)", key)

        guarded.__name__ = key
        _wrappers(self)[slot] = guarded
        super().connect(guarded, **kwargs)
        return slot

    def disconnect(self, slot: Callable[..., Any] | None = None, missing_ok: bool = True
                   ) -> None:
        if slot is not None:
            slot = _wrappers(self).pop(slot, slot)
        else:
            _wrappers(self).clear()
        super().disconnect(slot, missing_ok)


def _wrappers(sig: SignalInstance) -> dict[Any, Callable[..., None]]:
    """The guards of ``sig``'s listeners, by listener (to disconnect them)."""
    found: dict[Any, Callable[..., None]] | None = sig.__dict__.get("_guards")
    if found is None:
        found = sig.__dict__["_guards"] = {}
    return found


def _errors_of(group: Any) -> ListenerErrors:
    return group.listener_errors if isinstance(group, RunSignals) else ListenerErrors()


def _guarded(*types: Any) -> Any:
    return Signal(*types, signal_instance_class=GuardedSignalInstance)


class RunSignals(SignalGroup):
    frameReady = _guarded(object)
    """A raw frame arrived (:class:`acquire_vf._frames.Frame`)."""
    virtualReady = _guarded(object)
    """A virtual frame was computed (:class:`acquire_vf._frames.Frame`, ``role="virtual"``)."""
    stateChanged = _guarded(object)
    """The run's :class:`RunState` changed."""
    fidelity = _guarded(object)
    """A sentinel pair was judged: ``{"channel", "t", "p", "z", "psnr", "ssim", "mae", ...,
    "ok"}`` (emitted on the verification thread)."""
    focus = _guarded(object)
    """Closed-loop focus: ``{"kind": "estimate" | "correction" | "zscan", "t", "p", ...}``."""
    error = _guarded(str)
    """Something went wrong; the message is one line."""

    listener_errors: ListenerErrors

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.listener_errors = ListenerErrors()  # before any signal is touched
        super().__init__(*args, **kwargs)

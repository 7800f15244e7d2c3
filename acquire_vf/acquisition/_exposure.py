"""Which optional events expose: the fallback-exposure policy of a run.

A virtual channel is normally never exposed. It is exposed when its verifier asks for a
sentinel, when its engine failed (``on_failure = "expose"``: from then on), and while the
engine host is down (until it is back). Faults reach this policy as :class:`StageFault`s and
engine-host callbacks; the runner only asks :meth:`ExposurePolicy.admits` before each event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

import useq

from acquire_vf.backends import event_channel, event_kind
from acquire_vf.config import Profile
from acquire_vf.pipeline import StageFault


class SentinelPlan(Protocol):
    def wants(self, channel: str, t: int, p: int) -> bool: ...


class EngineHostLike(Protocol):
    state: str
    reason: str | None
    on_fault: Callable[[str], None] | None
    on_recovered: Callable[[], None] | None


class ExposurePolicy:
    """Fallback exposures of ``optional`` channels (the plan's virtual ones), reported to
    ``record_error``; ``sentinels``: the verifier, if the run has one."""

    def __init__(self, profile: Profile, optional: frozenset[str] | set[str],
                 record_error: Callable[[str], None], sentinels: SentinelPlan | None = None,
                 ) -> None:
        self._profile, self._optional = profile, frozenset(optional)
        self._record_error, self._sentinels = record_error, sentinels
        self._lock = threading.Lock()
        self.exposing: set[str] = set()
        """Virtual channels exposed physically now (engine failed, or engine host down)."""
        self.fell_back: set[str] = set()
        """Every virtual channel that was ever exposed as a fallback."""
        self._host_exposing: set[str] = set()
        self.engine_host: Any = None
        """The engine host whose faults this policy follows (:meth:`follow`), if any."""

    def admits(self, event: useq.MDAEvent) -> bool:
        """Whether ``event`` goes to the hardware: always for planned events; for an optional
        one, while its channel falls back or when the verifier wants a sentinel."""
        if event_kind(event) != "optional":
            return True
        c = event_channel(event)
        if c in self.exposing:
            return True
        s = self._sentinels
        return s is not None and s.wants(c, int(event.index.get("t", 0)),
                                         int(event.index.get("p", 0)))

    def stage_failed(self, fault: StageFault) -> None:
        """A synthesis engine failed: expose its channels from now on (a transient fault is
        the engine host's, which restarts, and the channels come back)."""
        if fault.transient:
            return
        for channel in fault.channels:
            with self._lock:
                new = channel in self._optional and channel not in self.exposing
                if new:
                    self.exposing.add(channel)
                    self.fell_back.add(channel)
            if new:
                self._record_error(f"virtual channel '{channel}': engine failed, exposing it "
                                   "physically from now on (on_failure = 'expose')")

    def follow(self, host: EngineHostLike) -> None:
        """The engine host's faults reach the run: while it is down, channels with
        ``on_failure = "expose"`` are exposed physically; when it is back, virtual again."""
        self.engine_host = host
        host.on_fault, host.on_recovered = self.host_down, self.host_up
        if host.state != "up":  # it went down while the engines were being set up
            self.host_down(host.reason or f"engine host {host.state}")

    def host_down(self, reason: str) -> None:
        self._record_error(reason)
        with self._lock:
            for v in self._profile.virtual_channels:
                if v.on_failure == "expose" and v.name in self._optional \
                        and v.name not in self.exposing:
                    self.exposing.add(v.name)
                    self.fell_back.add(v.name)
                    self._host_exposing.add(v.name)

    def host_up(self) -> None:
        self._record_error("engine host restarted; virtual frames resume")
        with self._lock:
            self.exposing -= self._host_exposing
            self._host_exposing.clear()

"""The hardware profile: what a microscope is, what to acquire, what to compute.

Frozen pydantic models with unknown keys rejected, so a typo in a profile fails at load time
with the key named instead of being silently ignored mid-experiment. Each section is its own
module (``_connection``, ``_channels``, ``_autofocus``, ``_specimen``, ``_verification``,
``_compute``, ``_output``, ``_acquisition``); this one puts them together and checks them
against each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from acquire_vf.config._acquisition import Protocol, XYPosition
from acquire_vf.config._autofocus import (
    Autofocus,
    AutofocusAlways,
    AutofocusClosedLoop,
    AutofocusOff,
    AutofocusWhenDefocused,
    Refocusing,
    RefocusPolicy,
)
from acquire_vf.config._base import PROFILE_VERSION, Backend, _Model
from acquire_vf.config._channels import Camera, PhysicalChannel, VirtualChannel
from acquire_vf.config._compute import Compute, Queues, Tiling
from acquire_vf.config._connection import (
    AttachConnection,
    Connection,
    DemoConnection,
    HeadlessConnection,
    MemoryConnection,
    PyMMCorePlusConnection,
)
from acquire_vf.config._faults import Debug, FaultPolicy
from acquire_vf.config._output import Display, Storage
from acquire_vf.config._specimen import FocusStep, Perturbation, Specimen
from acquire_vf.config._verification import Acceptance, Verification

__all__ = ["PROFILE_VERSION", "Acceptance", "AttachConnection", "Autofocus", "AutofocusAlways",
           "AutofocusClosedLoop", "AutofocusOff", "AutofocusWhenDefocused", "Backend",
           "Refocusing",
           "Camera", "Compute", "DemoConnection", "Display", "FocusStep", "HeadlessConnection",
           "MemoryConnection", "Perturbation", "PhysicalChannel", "Profile", "Protocol",
           "PyMMCorePlusConnection",
           "Queues", "RefocusPolicy", "Specimen", "Storage", "Tiling", "Verification",
           "VirtualChannel", "XYPosition"]


class Profile(_Model):
    """A microscope, what to acquire on it, and what to compute from it."""

    version: Literal[1] = PROFILE_VERSION
    """Profile format version."""
    name: str = Field(min_length=1)
    description: str = ""
    connection: Connection = DemoConnection()
    camera: Camera = Camera()
    channels: tuple[PhysicalChannel, ...] = Field(min_length=1)
    """Physical channels, in acquisition order."""
    virtual_channels: tuple[VirtualChannel, ...] = ()
    autofocus: Autofocus = AutofocusOff()
    specimen: Specimen = Specimen()
    compute: Compute = Compute()
    tiling: Tiling = Tiling()
    queues: Queues = Queues()
    storage: Storage = Storage()
    display: Display = Display()
    acquisition: Protocol = Protocol()
    verification: Verification | None = None
    """Sentinel exposures that check the virtual channels (absent: none)."""
    faults: FaultPolicy = FaultPolicy()
    """What the run does when the hardware fails (retry, skip and journal, stop)."""
    debug: Debug = Debug()
    """Faults injected at the backend seam (tests and demonstrations of ``faults``)."""

    @model_validator(mode="after")
    def _channels_consistent(self) -> Profile:
        names = [c.name for c in self.channels] + [v.name for v in self.virtual_channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        for f in self.debug.faults:
            if f.channel is not None and f.channel not in names:
                raise ValueError(f"debug.faults: channel '{f.channel}' is not a channel of the "
                                 f"profile ({', '.join(names)})")
        if dupes:
            raise ValueError(f"channel names must be unique; repeated: {', '.join(dupes)}")
        physical = {c.name for c in self.channels}
        for v in self.virtual_channels:
            missing = [i for i in v.inputs if i not in physical]
            if missing:
                raise ValueError(
                    f"virtual channel '{v.name}' takes inputs {list(v.inputs)}, but "
                    f"{missing} are not physical channels (have {sorted(physical)})"
                )
        af = self.autofocus
        named = [*af.channels, *af.engines] if isinstance(af, Refocusing) else []
        if isinstance(af, AutofocusClosedLoop):  # estimators and z-scans are closed loop's
            named += [*af.estimators, *([af.zscan_channel] if af.zscan_channel else [])]
        unknown = [c for c in named if c not in physical]
        if unknown:
            raise ValueError(f"autofocus channels {unknown} are not physical channels "
                             f"(have {sorted(physical)})")
        if self.verification is not None:
            bad = [v.name for v in self.virtual_channels if not (v.preset and v.exposure_ms)]
            if bad:
                raise ValueError(f"verification exposes every virtual channel: {bad} need "
                                 "'preset' and 'exposure_ms'")
            unknown = sorted(set(self.verification.acceptance) - {v.name for v in
                                                                  self.virtual_channels})
            if unknown:
                raise ValueError(f"verification.acceptance names {unknown}, which are not "
                                 "virtual channels")
        if isinstance(self.connection, MemoryConnection) and self.specimen.kind != "simulated":
            raise ValueError("connection kind 'memory' renders the simulated specimen: it "
                             "needs specimen.kind = 'simulated'")
        if self.specimen.kind == "simulated":
            presets = [c.preset for c in self.channels] + [
                v.preset for v in self.exposable_virtual]
            unmapped = [p for p in presets if p not in self.specimen.stains]
            if unmapped:
                raise ValueError(
                    f"specimen is simulated but presets {unmapped} have no entry in "
                    f"specimen.stains (mapped: {sorted(self.specimen.stains)})")
        return self

    def bare(self, exposure_ms: float | None = None) -> Profile:
        """The same hardware and specimen with no engines (so no verification, and no channel
        that only served a focus estimator, such as the demo's brightfield), no focus drift
        and no interval (the camera flat out): the baseline a benchmark compares engines
        against."""
        used = {i for v in self.virtual_channels for i in v.inputs} | set(
            self.refocus_engines())
        focus_only = {c for c in self.estimator_engines() if c not in used}
        channels = tuple(c if exposure_ms is None else c.model_copy(
            update={"exposure_ms": exposure_ms}) for c in self.channels
            if c.name not in focus_only)
        return self.model_copy(update={
            "channels": channels, "virtual_channels": (), "verification": None,
            "autofocus": AutofocusOff(zscan_planes=self.autofocus.zscan_planes),
            "specimen": self.specimen.model_copy(update={"focus_drift_um": 0.0,
                                                         "focus_steps": ()}),
            "acquisition": self.acquisition.model_copy(update={"interval_s": 0.0})})

    @property
    def exposable_virtual(self) -> tuple[VirtualChannel, ...]:
        """Virtual channels the run may expose: all of them under verification, else those
        with ``on_failure = "expose"``."""
        return tuple(v for v in self.virtual_channels if v.preset and v.exposure_ms and (
            self.verification is not None or v.on_failure == "expose"))

    def estimator_engines(self) -> dict[str, Path]:
        """Physical channel -> defocus estimator, in acquisition order (``closed_loop`` only)."""
        af = self.autofocus
        if not isinstance(af, AutofocusClosedLoop):
            return {}
        return {c.name: af.estimators[c.name] for c in self.channels if c.name in af.estimators}

    def refocus_engines(self) -> dict[str, Path]:
        """Physical channel -> refocus engine file, in acquisition order (empty when off)."""
        af = self.autofocus
        if not isinstance(af, Refocusing):
            return {}
        plan = {c: af.engine for c in af.channels or [c.name for c in self.channels]
                if af.engine is not None and c not in af.engines}
        plan.update(af.engines)
        return {c.name: plan[c.name] for c in self.channels if c.name in plan}

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Physical then virtual channel names: the channel order in files."""
        return tuple(c.name for c in self.channels) + tuple(
            v.name for v in self.virtual_channels
        )

"""Hardware profile models: what a microscope is, what to acquire, what to compute.

Frozen pydantic models with unknown keys rejected, so a typo in a profile fails at load time
with the key named instead of being silently ignored mid-experiment. The connection is a tagged
union on ``kind`` so each mode carries exactly the fields it needs.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROFILE_VERSION: Literal[1] = 1
Backend = Literal["tensorrt", "onnxruntime", "torch"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class DemoConnection(_Model):
    """Micro-Manager's demo configuration, headless, in this process (pymmcore)."""

    kind: Literal["demo"] = "demo"
    config_file: str = "MMConfig_demo.cfg"
    """Config file name inside the ``mm-test-adapters`` folder, or an absolute path."""
    timeout_s: float = Field(30.0, gt=0)
    """Longest wait for Micro-Manager to load before giving up."""


class HeadlessConnection(_Model):
    """A local Micro-Manager installation driven headless in this process (pymmcore)."""

    kind: Literal["headless"]
    mm_dir: Path
    """Micro-Manager installation folder (holds the device adapters)."""
    config_file: Path
    """Hardware configuration file (``.cfg``); relative paths are relative to ``mm_dir``."""
    timeout_s: float = Field(60.0, gt=0)
    """Longest wait for the configuration to load (real hardware can be slow)."""


class AttachConnection(_Model):
    """A running Micro-Manager application, reached through pycromanager's Java bridge.

    The bridge serialises every frame over ZMQ (about 100-200 MB/s): enough for one 2048 x 2048
    16-bit camera at 12-25 fps. The in-process modes (``demo``, ``headless``) are the fast path.
    """

    kind: Literal["attach"]
    port: int = Field(4827, ge=1, le=65535)
    """Port of Micro-Manager's ZMQ server (Tools > Options > Run server on port)."""
    timeout_s: float = Field(10.0, gt=0)
    """Longest wait for the application to answer."""


class MemoryConnection(_Model):
    """No Micro-Manager: the simulated specimen is rendered straight into frames (the
    in-memory backend), a frame in milliseconds. Needs ``specimen.kind = "simulated"``."""

    kind: Literal["memory"]
    shape: tuple[int, int] = (512, 512)
    """Frame height and width in pixels (the DemoCamera's default is 512 x 512)."""
    exposure_time: bool = False
    """Take each frame's exposure time, as a camera would (off: frames as fast as they
    render, which is what fast tests want)."""


Connection = Annotated[
    DemoConnection | HeadlessConnection | AttachConnection | MemoryConnection,
    Field(discriminator="kind"),
]


class Camera(_Model):
    """Camera facts the pipeline needs (Micro-Manager's own values are checked against them)."""

    pixel_size_um: float = Field(1.0, gt=0)
    """Pixel size in the sample plane, µm."""
    bit_depth: int = Field(16, ge=8, le=16)
    """Significant bits per pixel; frames are stored as uint16 (uint8 for 8-bit cameras)."""
    offset_adu: float | None = Field(None, ge=0)
    """Dark level (ADU); with the gain and read noise it lets ``calibrate`` give fine-tuned
    refocus engines the camera's noise for the forward-consistency check (a simulated
    specimen's camera is known)."""
    gain_adu_per_e: float | None = Field(None, gt=0)
    read_noise_e: float | None = Field(None, ge=0)


class PhysicalChannel(_Model):
    """A channel that is exposed: a preset of a Micro-Manager config group."""

    name: str = Field(min_length=1)
    """Name in files, display and model cards (e.g. ``AGP``, ``RNA``)."""
    group: str = "Channel"
    """Micro-Manager config group."""
    preset: str = Field(min_length=1)
    """Preset of that group."""
    exposure_ms: float = Field(gt=0)
    relative_power: float = Field(1.0, gt=0)
    """Excitation power relative to the other channels (light dose = exposure x power)."""


class VirtualChannel(_Model):
    """A channel synthesised by an engine from physical channels instead of being exposed."""

    name: str = Field(min_length=1)
    engine: Path
    """ONNX file (its model card ``NAME.json`` beside it); relative to the profile's folder."""
    inputs: tuple[str, ...] = Field(min_length=1)
    """Physical channels fed to the engine, in the model card's order."""
    on_failure: Literal["skip", "expose"] = "skip"
    """When the engine fails: skip the virtual frame, or expose the channel physically."""
    group: str = "Channel"
    """Config group of the channel's physical exposure (sentinels, ``on_failure = "expose"``)."""
    preset: str | None = None
    """Preset with which the channel would be exposed (sentinels and fallback exposures)."""
    exposure_ms: float | None = Field(None, gt=0)
    """Exposure with which the channel would be exposed."""
    relative_power: float = Field(1.0, gt=0)
    """Excitation power relative to the other channels (light dose = exposure x power)."""

    @model_validator(mode="after")
    def _expose_needs_preset(self) -> VirtualChannel:
        if self.on_failure == "expose" and (self.preset is None or self.exposure_ms is None):
            raise ValueError("on_failure = 'expose' needs 'preset' and 'exposure_ms'")
        return self


class RefocusPolicy(StrEnum):
    """When frames are refocused (``[autofocus] policy``); compared as members, never as
    strings, outside this module."""

    OFF = "off"
    ALWAYS = "always"
    WHEN_DEFOCUSED = "when_defocused"
    CLOSED_LOOP = "closed_loop"


class Autofocus(_Model):
    """Virtual refocusing, which replaces a z-scan autofocus."""

    policy: RefocusPolicy = RefocusPolicy.OFF
    """``always`` refocuses every frame; ``when_defocused`` only frames whose focus score is
    low; ``closed_loop`` estimates each frame set's signed defocus (``estimators``), corrects
    the Z stage toward focus, refocuses virtually inside the refocus engine's trained range,
    and z-scans when unsure (docs/focus.md)."""
    engine: Path | None = None
    """Refocus ONNX file for ``channels``; relative to the profile's folder."""
    channels: tuple[str, ...] = ()
    """Physical channels that ``engine`` refocuses; empty means every physical channel that
    has no engine of its own in ``engines``."""
    engines: dict[str, Path] = Field(default_factory=dict)
    """One refocus engine per physical channel (``AGP = "engines/refocus_agp.onnx"``): a
    refocus engine is trained on one stain."""
    focus_threshold: float = Field(0.6, gt=0, le=1)
    """Refocus when the focus score falls below this fraction of the best score seen."""
    zscan_planes: int = Field(11, ge=0)
    """Comparator protocol: exposures a z-scan autofocus takes per time point and position
    (the light-dose ledger compares the run against that protocol)."""
    zscan_every: int = Field(1, ge=1)
    """Comparator protocol: a z-scan every this many time points."""
    hardware_autofocus: bool = False
    """Comparator protocol: the microscope focuses by hardware (a z-scan costs no light)."""
    estimators: dict[str, Path] = Field(default_factory=dict)
    """``closed_loop``: defocus estimator engines by physical channel (the first steers)."""
    confident_sigma_um: float = Field(1.5, gt=0)
    """``closed_loop``: an estimate with a larger sigma is unsure (a z-scan follows)."""
    deadband_um: float = Field(0.5, ge=0)
    """``closed_loop``: estimates smaller than this move nothing."""
    gain: float = Field(1.0, gt=0, le=1)
    """``closed_loop``: the stage moves this fraction of the way to where the tracked focus
    will be ..."""
    max_step_um: float = Field(3.0, gt=0)
    """... and by at most this much per time point (it cannot oscillate)."""
    zscan_range_um: float = Field(30.0, gt=0)
    """``closed_loop``: a z-scan spans +- this around the current position, in
    ``zscan_planes`` planes."""
    zscan_at_start: bool = True
    """``closed_loop``: the first time point of each position is z-scanned."""
    confirm_steps: bool = True
    """``closed_loop``, signed estimator: a step of focus beyond the refocus engines' trained
    range is followed at once and then confirmed by a fine z-scan around the new position
    (false: the signed estimate alone)."""
    zscan_channel: str | None = None
    """``closed_loop``: the physical channel z-scans expose (default: the steering one). A
    brightfield frame shows least contrast in focus, so with a brightfield estimator name a
    fluorescence channel here."""
    resolution_um: float = Field(1.5, ge=0)
    """``closed_loop``: estimated distances below this count as in focus (the shipped
    fluorescence estimators read about 1 µm at focus: inside the depth of field a frame barely
    changes). Signed estimators (brightfield) are taken at their word."""

    @property
    def refocuses(self) -> bool:
        """Any policy but ``off``."""
        return self.policy is not RefocusPolicy.OFF

    @property
    def closed_loop(self) -> bool:
        return self.policy is RefocusPolicy.CLOSED_LOOP

    @model_validator(mode="after")
    def _policy_needs_engine(self) -> Autofocus:
        if self.policy == "closed_loop":
            if not self.estimators:
                raise ValueError("autofocus policy 'closed_loop' needs 'estimators' (defocus "
                                 "estimator engines by channel)")
        elif self.policy != "off" and self.engine is None and not self.engines:
            raise ValueError(f"autofocus policy '{self.policy}' needs 'engine' or 'engines'")
        if self.policy == "closed_loop" and self.zscan_planes < 3:
            raise ValueError("closed_loop z-scans need zscan_planes >= 3 (a parabola fit)")
        return self


class FocusStep(_Model):
    """A sudden focus change (a plate move): the focal plane jumps by ``dz_um`` at ``at``."""

    at: int = Field(ge=0)
    dz_um: float


class Perturbation(_Model):
    """A disturbance of the simulated specimen from time point ``at`` on (to test verification)."""

    at: int = Field(ge=0)
    kind: Literal["dim", "stain_shift", "new_sample"]
    """``dim``: a tenth of the light; ``stain_shift``: the stains move relative to each other
    (the relation an engine learned no longer holds); ``new_sample``: another cell type."""


class Specimen(_Model):
    """What the camera looks at: the real sample, or acquire-vf's simulated slide.

    With ``kind = "simulated"`` each frame shows the simulated slide as Micro-Manager's devices
    stand for that frame: the XY stage picks the field, the focus stage's distance from
    ``focus_z_um`` sets the defocus, the channel's preset picks the stain (``stains``), and the
    exposure scales the photons. The camera (e.g. the DemoCamera) still sets the timing.
    """

    kind: Literal["camera", "simulated"] = "camera"
    sample: Literal["u2os", "mda231"] = "u2os"
    """U2OS Cell Painting cells, or MDA-MB-231 (phase contrast, DAPI, F-actin, vinculin)."""
    seed: int = 0
    focus_z_um: float = 0.0
    """Focus-stage position (µm) at which the specimen is in focus."""
    na: float = Field(0.45, gt=0, lt=1.7)
    immersion_index: float = Field(1.0, ge=1.0, le=1.8)
    specimen_index: float = Field(1.38, ge=1.0, le=1.8)
    depth_um: float = Field(3.0, ge=0)
    """Depth of the emitters in the specimen (sets the focal shift and defocus asymmetry)."""
    stains: dict[str, Literal["DNA", "ER", "RNA", "AGP", "Mito", "actin", "DAPI", "F-actin",
                              "Vinculin", "PhC", "BF"]] = {}
    """Micro-Manager preset name → the stain it shows (e.g. ``Rhodamine = "AGP"``)."""
    focus_drift_um: float = Field(0.0, ge=0, le=50)
    """Amplitude of a simulated focus drift: the specimen's focal plane moves by
    ``focus_drift_um x sin(2 pi t / focus_drift_period)`` at time point ``t`` (thermal drift
    in a long experiment), so frames go out of focus and come back."""
    focus_drift_period: int = Field(20, ge=2)
    """Time points per drift cycle."""
    perturbation: Perturbation | None = None
    focus_steps: tuple[FocusStep, ...] = ()
    """Sudden focus changes on top of the drift (each lasts from its time point on)."""
    z_drive_inverted: bool = False
    """Simulated: the focus drive moves the other way (stage up brings the specimen's focal
    plane down), as on a rig whose Z drive is inverted; closed-loop focus must find this out
    (its sign check) rather than assume it."""
    realistic: bool = False
    """Simulator version 4's specimen (docs/simulator.md): thick cells, background and
    autofluorescence, vignetting, the sCMOS fixed pattern, linked channels, and
    photobleaching with each exposure. The shipped engines were trained on the thin
    specimen (off)."""
    bleach_s: float = Field(60.0, gt=0)
    """With ``realistic``: seconds of exposure of one field that leave 1/e of a stain."""
    motion_um: float = Field(0.0, ge=0, le=10)
    """Live cells: each cell's random-walk step per time point and axis (µm); 0: still."""
    divisions: float = Field(0.0, ge=0, le=0.2)
    """Live cells: the probability per time point that a cell divides (it rounds up for three
    time points, then splits into two daughters that walk apart)."""
    cells_every: int = Field(5, ge=1)
    """Live cells are shown as they are every this many time points (a new field costs about
    a second to render at 512 x 512, so not at every frame)."""

    def focus_at(self, t: int) -> float:
        """Focus-stage position (µm) at which the specimen is in focus at time point ``t``."""
        steps = sum(s.dz_um for s in self.focus_steps if t >= s.at)
        if not self.focus_drift_um:
            return self.focus_z_um + steps
        return self.focus_z_um + steps + self.focus_drift_um * math.sin(
            2 * math.pi * t / self.focus_drift_period)

    @model_validator(mode="after")
    def _optics_consistent(self) -> Specimen:
        if self.na >= self.immersion_index:
            raise ValueError(f"na {self.na} must be below the immersion index "
                             f"{self.immersion_index}")
        return self


class Acceptance(_Model):
    """The band a virtual channel's sentinel fidelity must stay in (else: exposed physically)."""

    psnr_min: float | None = None
    ssim_min: float | None = None
    mae_max: float | None = Field(None, gt=0)
    """On the engine card's intensity scale (its output range mapped to [0, 1])."""
    uncertainty_max: float | None = Field(None, gt=0)
    """Frame mean of the per-pixel uncertainty, on the same scale."""


class Verification(_Model):
    """Sentinel exposures: virtual channels checked against real exposures during the run.

    At a sentinel time point every virtual channel is also exposed (its ``preset`` and
    ``exposure_ms``) and the pair is compared. A channel outside its acceptance band becomes
    ``suspect`` and is exposed from the next time point on; a second bad pair makes it
    ``physical``; ``recover_after`` good pairs in a row make it ``trusted`` (virtual) again.
    """

    every: int = Field(5, ge=1)
    """A sentinel every this many time points (counted per position)."""
    at_start: bool = True
    """The first time point of each position is a sentinel."""
    recover_after: int = Field(3, ge=1)
    """Good sentinels in a row that return a channel from physical to virtual."""
    uncertainty_passes: int = Field(2, ge=0, le=8)
    """Test-time augmentation passes (flips and 90° rotations) per virtual frame; their
    per-pixel spread is saved as ``uncertainty:NAME``. 0 turns it off; otherwise 2 to 8. The
    spread grows with the passes, so the card's uncertainty band applies only to the count it
    was measured with (2 for the shipped engines)."""
    acceptance: dict[str, Acceptance] = Field(default_factory=dict)
    """Per virtual channel, overrides of the band stored in its engine's card."""

    @model_validator(mode="after")
    def _passes(self) -> Verification:
        if self.uncertainty_passes == 1:
            raise ValueError("uncertainty_passes: expected 0 (off) or 2 to 8, got 1")
        return self


class Compute(_Model):
    """Where engines run."""

    backends: tuple[Backend, ...] = ("onnxruntime",)
    """Preference order; the first that can run is used."""
    allow_fallback: bool = False
    """If false, only the first backend is acceptable and the run refuses when it cannot run."""
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    threads: int = Field(0, ge=0)
    """CPU threads for inference; 0 means all cores but one (the spare one is acquisition's)."""
    device: int = Field(0, ge=0)
    """CUDA device index."""
    host: Literal["process", "thread"] = "process"
    """Where engines run: ``process``, an engine host process (``python -m
    acquire_vf.engine_host``) whose crash, hang or out-of-memory never touches acquisition;
    ``thread``, in the acquisition process (as before; for debugging)."""
    host_deadline_s: float = Field(10.0, gt=0)
    """``process``: a call the host has not answered in this time is a hang (the host is
    killed and restarted)."""
    host_restarts: int = Field(5, ge=0)
    """``process``: restarts allowed per run, with backoff; after them virtual channels stay
    off (``on_failure = "expose"`` channels exposed)."""


class Tiling(_Model):
    """Frames are cut into overlapping tiles, run in batches and blended back."""

    tile: int = Field(512, ge=64, multiple_of=32)
    overlap: int = Field(32, ge=0)
    batch: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _overlap_fits(self) -> Tiling:
        if self.overlap * 2 >= self.tile:
            raise ValueError(f"overlap {self.overlap} must be less than half the tile {self.tile}")
        return self


class Queues(_Model):
    """Bounds between acquisition and its consumers. Acquisition never waits on any of them."""

    pipeline: int = Field(1, ge=1)
    """Frame sets waiting for the engines; 1 is a latest-frame slot (lowest latency)."""
    hold_for_newer: bool = True
    """With the one-set slot: when the engines come free and the waiting set has waited more
    than half the interval sets arrive at, hold for the next set and run that (virtual frames
    about the model's own time old, not up to a whole interval more; when the engines are
    slower than the camera, a few percent fewer of them). ``false`` runs the waiting set."""
    virtual_write: int = Field(64, ge=1)
    """Virtual frames waiting to be written; beyond this they are skipped and recorded."""
    raw_write_mb: int = Field(1024, ge=16)
    """Memory for raw frames waiting to be written; if exceeded the run stops (never drops)."""
    mm_buffer_mb: int = Field(1024, ge=1)
    """Micro-Manager circular buffer size."""


class Storage(_Model):
    folder: Path = Path("acquisitions")
    """Default output folder when ``--out`` is not given (a time-stamped subfolder is made)."""
    name: str = Field("acquisition", pattern=r"^[A-Za-z0-9_.-]+$")
    """File stem: ``NAME.ome.tif`` (or ``NAME.ome.zarr``)."""
    format: Literal["ome-tiff", "ome-zarr"] = "ome-tiff"
    """``ome-tiff``: one BigTIFF with OME-XML; ``ome-zarr``: an OME-Zarr store (NGFF 0.5,
    Zarr v3), a chunk per frame (docs/storage.md). Both journaled and crash-safe."""

    @property
    def suffix(self) -> str:
        return ".ome.zarr" if self.format == "ome-zarr" else ".ome.tif"


class Display(_Model):
    enabled: bool = True
    """Show the live window when a display is available (``--headless`` turns it off)."""
    refresh_hz: float = Field(5.0, gt=0, le=60)
    """Most window redraws per second; frames arriving faster are skipped for display (never
    for saving). A few per second is what an eye follows, and keeps the GUI's CPU share low."""


class XYPosition(_Model):
    name: str = ""
    x_um: float
    y_um: float


class Protocol(_Model):
    """The multi-dimensional acquisition: time points, positions, z offsets, channels."""

    time_points: int = Field(20, ge=1)
    interval_s: float = Field(0.0, ge=0)
    """Time between time-point starts; 0 runs as fast as the hardware allows."""
    z_offsets_um: tuple[float, ...] = Field((0.0,), min_length=1)
    """Offsets from the focus position at the start of the run."""
    positions: tuple[XYPosition, ...] = ()
    """Stage positions; empty acquires at the current position."""


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
    autofocus: Autofocus = Autofocus()
    specimen: Specimen = Specimen()
    compute: Compute = Compute()
    tiling: Tiling = Tiling()
    queues: Queues = Queues()
    storage: Storage = Storage()
    display: Display = Display()
    acquisition: Protocol = Protocol()
    verification: Verification | None = None
    """Sentinel exposures that check the virtual channels (absent: none)."""

    @model_validator(mode="after")
    def _channels_consistent(self) -> Profile:
        names = [c.name for c in self.channels] + [v.name for v in self.virtual_channels]
        dupes = sorted({n for n in names if names.count(n) > 1})
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
        loop = af.policy == "closed_loop"  # estimators and z-scans are closed loop's only
        unknown = [c for c in (*af.channels, *af.engines,
                               *(af.estimators if loop else ()),
                               *([af.zscan_channel] if loop and af.zscan_channel else []))
                   if c not in physical]
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
        focus_only = {c for c in self.autofocus.estimators if c not in used}
        channels = tuple(c if exposure_ms is None else c.model_copy(
            update={"exposure_ms": exposure_ms}) for c in self.channels
            if c.name not in focus_only)
        return self.model_copy(update={
            "channels": channels, "virtual_channels": (), "verification": None,
            "autofocus": Autofocus(zscan_planes=self.autofocus.zscan_planes),
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
        if self.autofocus.policy != "closed_loop":
            return {}
        return {c.name: self.autofocus.estimators[c.name] for c in self.channels
                if c.name in self.autofocus.estimators}

    def refocus_engines(self) -> dict[str, Path]:
        """Physical channel -> refocus engine file, in acquisition order (empty when off)."""
        af = self.autofocus
        if af.policy == "off":
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

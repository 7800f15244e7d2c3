"""``acquire-vf calibrate``: paired training data from the user's own microscope.

At each of N positions, on the hardware the profile describes (on the demo: the simulated
specimen under the DemoCamera), it

1. finds focus with a z-scan of the profile's z-scan channel (coarse over
   ``autofocus.zscan_range_um``, then fine over +-2 µm; the peak of the focus score, as the
   live z-scan finds it),
2. acquires through-focus stacks of the channels that engines refocus or read defocus from, on
   the BBBC006 grid (2 µm apart, plane 16 in focus, ``--z-range`` from focus), and
3. exposes every channel once at focus: the physical ones and the virtual ones that have a
   preset (what a synthesis engine predicts, exposed for real),

and writes ``bbbc006/`` (the stacks, the layout refocus recipes read), ``paired/`` (one folder
per channel, one file per position: the layout synthesis recipes read) and
``calibration.json`` (the manifest: profile, hardware, positions and their focus, planes,
channels, exposures, and the ``train`` commands that use the data).

Positions are laid out on a grid around the current stage position, a frame and a margin
apart, so no two positions share cells: a position held out of training is unseen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import useq

from acquire_vf._errors import AcquisitionError, ProfileError
from acquire_vf.backends import RunEvent
from acquire_vf.focus import focus_score, peak_of
from acquire_vf.layouts import (
    BBBC006_CHANNELS,
    BBBC006_FOCUS_INDEX,
    BBBC006_PLANES,
    BBBC006_Z_STEP_UM,
    bbbc006_path,
    well_name,
)

log = logging.getLogger(__name__)
MANIFEST = "calibration.json"
FINE_PLANES = 9
MARGIN_UM = 20.0
"""Gap between neighbouring positions' frames."""


class CalibrationError(AcquisitionError):
    """Calibration could not be planned or acquired (an acquisition error: exit code 4)."""


@dataclass(frozen=True)
class Exposure:
    """One channel as calibration exposes it."""

    name: str
    group: str
    preset: str
    exposure_ms: float
    virtual: bool = False


@dataclass
class Plan:
    positions: list[tuple[float, float]]
    z_um: list[float]
    """Planes of each stack, µm from focus (multiples of the BBBC006 step; 0 included)."""
    stacks: list[Exposure]
    at_focus: list[Exposure]
    zscan: Exposure
    coarse_span_um: float
    coarse_planes: int
    w_index: dict[str, int] = field(default_factory=dict)
    """Stack channel -> its BBBC006 ``w`` number (the data set's own where it has one)."""


def plan(profile: Any, positions: int, z_range_um: tuple[float, float],
         here: tuple[float, float], shape: tuple[int, int]) -> Plan:
    """What calibration will acquire, checked before any frame."""
    lo, hi = sorted(z_range_um)
    if lo > 0 or hi < 0:
        raise CalibrationError(f"--z-range: expected a range that contains focus (0), got "
                               f"{lo:g} to {hi:g} µm")
    k0, k1 = math.ceil(lo / BBBC006_Z_STEP_UM), math.floor(hi / BBBC006_Z_STEP_UM)
    if BBBC006_FOCUS_INDEX + k0 < 0 or BBBC006_FOCUS_INDEX + k1 >= BBBC006_PLANES:
        raise CalibrationError(
            f"--z-range: the BBBC006 grid holds {-BBBC006_FOCUS_INDEX * BBBC006_Z_STEP_UM:g} to "
            f"{(BBBC006_PLANES - 1 - BBBC006_FOCUS_INDEX) * BBBC006_Z_STEP_UM:g} µm, got "
            f"{lo:g} to {hi:g}")
    z_um = [k * BBBC006_Z_STEP_UM for k in range(k0, k1 + 1)]
    by_name = {c.name: c for c in profile.channels}
    stack_names = list(dict.fromkeys([*profile.refocus_engines(),
                                      *profile.estimator_engines()]))
    if not stack_names:
        raise CalibrationError(f"profile '{profile.name}' names no refocus engines or defocus "
                               "estimators: expected [autofocus] engines (or estimators) for "
                               "the channels to acquire through focus")
    phys = [Exposure(c.name, c.group, c.preset, c.exposure_ms) for c in profile.channels]
    virt = [Exposure(v.name, v.group, v.preset, v.exposure_ms, virtual=True)
            for v in profile.virtual_channels if v.preset and v.exposure_ms]
    af = profile.autofocus
    zname = af.zscan_channel or stack_names[0]
    if zname not in by_name:
        raise CalibrationError(f"z-scan channel '{zname}' is not a physical channel of "
                               f"profile '{profile.name}'")
    zc = by_name[zname]
    return Plan(positions=grid(here, positions, shape, profile.camera.pixel_size_um),
                z_um=z_um, stacks=[e for e in phys if e.name in stack_names],
                at_focus=phys + virt,
                zscan=Exposure(zc.name, zc.group, zc.preset, zc.exposure_ms),
                coarse_span_um=float(af.zscan_range_um), coarse_planes=max(af.zscan_planes, 5),
                w_index=w_numbers(stack_names))


def w_numbers(names: list[str]) -> dict[str, int]:
    """BBBC006 ``w`` numbers: the data set's own for its channels, the next free for others."""
    own = {v: k for k, v in BBBC006_CHANNELS.items()}
    out = {n: own[n] for n in names if n in own}
    free = (w for w in range(1, 10) if w not in out.values())
    for n in names:
        if n not in out:
            out[n] = next(free)
    return out


def grid(here: tuple[float, float], n: int, shape: tuple[int, int],
         pixel_size_um: float) -> list[tuple[float, float]]:
    """``n`` positions on a square grid centred on ``here``, frames ``MARGIN_UM`` apart."""
    cols = math.ceil(math.sqrt(n))
    dx = shape[1] * pixel_size_um + MARGIN_UM
    dy = shape[0] * pixel_size_um + MARGIN_UM
    rows = math.ceil(n / cols)
    return [(here[0] + (k % cols - (cols - 1) / 2) * dx,
             here[1] + (k // cols - (rows - 1) / 2) * dy) for k in range(n)]


def _event(e: Exposure, p: int, z_index: int, x: float, y: float, z: float) -> useq.MDAEvent:
    return RunEvent(index={"t": 0, "p": p, "z": z_index},
                    channel={"config": e.preset, "group": e.group}, exposure=e.exposure_ms,
                    x_pos=x, y_pos=y, z_pos=z, channel_name=e.name)


class Calibration:
    """One calibration run: the plan executed on a connected backend, written as it comes."""

    def __init__(self, backend: Any, plan: Plan, out: Path, *,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.backend, self.plan, self.out = backend, plan, out
        self.progress = progress or (lambda what, k, n: None)
        self._event_no = 0
        self.frames = 0

    def _acquire(self, events: list[useq.MDAEvent]) -> list[np.ndarray]:
        # every call is a batch of its own; distinct (t, p, z, channel) keys within it
        got = {}
        for img in self.backend.execute(events):
            got[(img.event.index.get("z", 0), img.event.metadata.get("channel"))] = img.pixels
        keys = [(e.index.get("z", 0), e.metadata.get("channel")) for e in events]
        missing = [k for k in keys if k not in got]
        if missing:
            raise CalibrationError(f"the camera delivered {len(got)} of {len(events)} frames "
                                   "(aborted, or frames dropped); nothing after position "
                                   f"{events[0].index.get('p', 0)} was acquired")
        self.frames += len(events)
        return [np.asarray(got[k]) for k in keys]

    def focus(self, p: int, x: float, y: float, z0: float) -> dict[str, Any]:
        """The focus at a position: a coarse z-scan, then two finer ones around each peak
        (each spans the previous one's step either side, in ``FINE_PLANES`` planes)."""
        pl, e = self.plan, self.plan.zscan
        span, planes, centre = pl.coarse_span_um, pl.coarse_planes, z0
        passes = []
        for _ in range(3):
            zs = [centre + d for d in np.linspace(-span, span, planes)]
            frames = self._acquire([_event(e, p, k, x, y, z) for k, z in enumerate(zs)])
            scores = [focus_score(f) for f in frames]
            centre = peak_of(zs, scores)
            passes.append({"z_um": [round(z, 3) for z in zs],
                           "scores": [round(s, 6) for s in scores], "peak_um": round(centre, 3)})
            span, planes = 2 * span / (planes - 1), FINE_PLANES
        return {"focus_z_um": round(centre, 3), "zscan": {"channel": e.name, "passes": passes}}

    def run(self, z0: float) -> list[dict[str, Any]]:
        import tifffile

        pl = self.plan
        records = []
        seed = ("calibration", time.time_ns())
        for p, (x, y) in enumerate(pl.positions):
            self.progress(f"position {p + 1}/{len(pl.positions)}: focus", p, len(pl.positions))
            rec: dict[str, Any] = {"index": p, "well": well_name(p), "x_um": round(x, 3),
                                   "y_um": round(y, 3), **self.focus(p, x, y, z0)}
            f = rec["focus_z_um"]
            self.progress(f"position {p + 1}/{len(pl.positions)}: stacks", p,
                          len(pl.positions))
            for e in pl.stacks:
                events = [_event(e, p, k, x, y, f + dz) for k, dz in enumerate(pl.z_um)]
                for dz, img in zip(pl.z_um, self._acquire(events), strict=True):
                    z_index = BBBC006_FOCUS_INDEX + round(dz / BBBC006_Z_STEP_UM)
                    path = bbbc006_path(self.out / "bbbc006", z_index, rec["well"], 1,
                                        pl.w_index[e.name], seed)
                    _write(path, img, tifffile)
            events = [_event(e, p, k, x, y, f) for k, e in enumerate(pl.at_focus)]
            for e, img in zip(pl.at_focus, self._acquire(events), strict=True):
                _write(self.out / "paired" / e.name / f"{rec['well']}_s1.tif", img, tifffile)
            records.append(rec)
        return records


def _write(path: Path, img: np.ndarray, tifffile: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tifffile.imwrite(tmp, img, compression="zlib", photometric="minisblack")
    tmp.replace(path)


def calibrate(profile_ref: str | Path, positions: int, out: Path, *,
              z_range_um: tuple[float, float] = (-12.0, 8.0),
              progress: Callable[[str, int, int], None] | None = None,
              beads: dict[str, Any] | None = None) -> dict[str, Any]:
    """Acquire calibration data with the profile's microscope into ``out``; the manifest.
    ``beads``: a bead stack's fit (:func:`~acquire_vf.calibration._optics.fit_beads`), whose
    optics replace the profile's in the manifest."""
    from acquire_vf import __version__
    from acquire_vf.backends import open_backend
    from acquire_vf.calibration._optics import rig_optics
    from acquire_vf.config import load_profile, resolve_profile_path

    if positions < 3:
        raise CalibrationError(f"--positions: expected 3 or more (training, validation and "
                               f"unseen test positions), got {positions}")
    path = resolve_profile_path(profile_ref)
    profile = load_profile(path)
    backend = open_backend(profile)
    info = backend.describe()
    if info.z_um is None:
        raise ProfileError(f"profile '{profile.name}': calibration needs a focus stage, and "
                           "the microscope reports none")
    pl = plan(profile, positions, z_range_um, info.xy_um or (0.0, 0.0), info.shape)
    run = Calibration(backend, pl, out, progress=progress)
    t0 = time.perf_counter()
    backend.setup(lambda e: True)
    try:
        records = run.run(info.z_um)
    finally:
        backend.teardown()
    (out / "bbbc006" / "channels.json").write_text(json.dumps(
        {str(w): n for n, w in pl.w_index.items()}, indent=2) + "\n")
    manifest = {
        "kind": "acquire-vf calibration", "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "acquire_vf": __version__,
        "profile": {"name": profile.name, "path": str(path.resolve()),
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
        "microscope": {"backend": info.name, "mode": info.mode, "source": info.source,
                       "shape": list(info.shape), "dtype": info.dtype,
                       "pixel_size_um": profile.camera.pixel_size_um,
                       "specimen": profile.specimen.kind},
        "positions": records, "seconds": round(time.perf_counter() - t0, 1),
        "frames": run.frames,
        "stacks": {"layout": "bbbc006", "folder": "bbbc006", "z_um": pl.z_um,
                   "z_step_um": BBBC006_Z_STEP_UM, "focus_index": BBBC006_FOCUS_INDEX,
                   "channels": {e.name: {"w": pl.w_index[e.name], "preset": e.preset,
                                         "exposure_ms": e.exposure_ms} for e in pl.stacks}},
        "paired": {"layout": "paired", "folder": "paired",
                   "channels": {e.name: {"preset": e.preset, "exposure_ms": e.exposure_ms,
                                         "virtual_in_profile": e.virtual}
                                for e in pl.at_focus}},
        "optics": rig_optics(profile, sorted({e.name for e in [*pl.stacks, *pl.at_focus]}),
                             beads),
        "train": _commands(profile, path, out),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _commands(profile: Any, path: Path, out: Path) -> list[str]:
    """The ``train`` commands that fine-tune the profile's engines on this data (a shipped
    profile is never written: they install into a copy)."""
    from acquire_vf.config import PROFILES_DIR

    cmds = []
    if PROFILES_DIR.resolve() in path.resolve().parents:
        cmds.append(f"acquire-vf profile copy {profile.name} my-{profile.name}.toml  # the "
                    "shipped profile is never written: install into a copy")
        path = Path(f"my-{profile.name}.toml")
    for channel, engine in profile.refocus_engines().items():
        cmds.append(f"acquire-vf train {Path(engine).stem} --data {out} --init {engine} "
                    f"--install {path}  # refocus {channel}")
    for v in profile.virtual_channels:
        cmds.append(f"acquire-vf train {Path(v.engine).stem} --data {out} --init {v.engine} "
                    f"--install {path}  # synthesise {v.name}")
    return cmds


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """A calibration folder's manifest, or ``None`` when ``folder`` is not one."""
    f = folder / MANIFEST
    if not f.is_file():
        return None
    try:
        m = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CalibrationError(f"'{f}': not a readable calibration manifest ({e})") from None
    if m.get("kind") != "acquire-vf calibration":
        raise CalibrationError(f"'{f}': expected an acquire-vf calibration manifest, got kind "
                               f"{m.get('kind')!r}")
    return m

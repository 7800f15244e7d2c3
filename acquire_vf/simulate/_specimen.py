"""The live simulated specimen: what the demo's camera frames show.

Micro-Manager's DemoCamera supplies the timing and the frame size; this replaces its pixels
with the simulated slide as the devices stand for that frame:

- the XY stage position (µm) picks the window of the slide (``x / pixel_size`` columns);
- the focus stage's distance from the specimen's focal plane is the defocus, so moving Z in
  Micro-Manager (or in the acquisition's z offsets) blurs the image through the physical PSF;
  ``specimen.focus_drift_um`` makes the focal plane drift over time points;
- the channel's preset picks the stain (``specimen.stains`` in the profile): a fluorescent
  stain, or transmitted light (``PhC`` phase contrast, ``BF`` brightfield);
- the exposure scales the photons, then the camera model adds shot and read noise;
- ``specimen.motion_um`` and ``specimen.divisions`` make the cells live: they walk and
  divide between time points (shown as they are every ``specimen.cells_every``);
- ``specimen.perturbation`` disturbs the slide from a time point on (to test verification):
  ``dim`` gives a tenth of the light, ``stain_shift`` moves each stain's map by its own offset
  (the stains' relation changes), ``new_sample`` shows MDA-MB-231 cells instead of U2OS
  (DNA as DAPI, AGP and Mito as F-actin, RNA and ER as vinculin).

It runs in line with acquisition, so the expensive parts are cached: the in-focus stain maps
per window, the blurred image per (stain, window, defocus rounded to 0.25 µm). A frame at a
known position and focus costs only the noise (a few ms at 512 x 512). Positions named in the
run are rendered by :meth:`LiveSpecimen.prepare` before the first frame.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from acquire_vf._frames import metadata_number
from acquire_vf.optics import Optics, brightfield, convolve, phase_contrast
from acquire_vf.simulate._camera import Camera
from acquire_vf.simulate._phantom import STAINS, Field, fluorescence, render_field
from acquire_vf.simulate._realism import FieldStyle, Realism, light

if TYPE_CHECKING:
    from acquire_vf.config import Specimen

log = logging.getLogger(__name__)
Z_STEP_UM = 0.25
PHASE_FLUX = 0.6
BRIGHTFIELD_FLUX = 1.0
"""Brightfield's background, in stain-intensity units (20 ms: about 3,500 electrons)."""
NEW_SAMPLE_STAIN = {"DNA": "DAPI", "AGP": "F-actin", "Mito": "F-actin", "actin": "F-actin",
                    "RNA": "Vinculin", "ER": "Vinculin"}
"""``new_sample``: the MDA-MB-231 stain that stands in for each U2OS stain."""
STAIN_ORDER = ("AGP", "RNA", "DNA", "ER", "Mito", "actin", "DAPI", "F-actin", "Vinculin", "PhC",
               "BF")
TRANSMITTED = ("PhC", "BF")
"""Transmitted-light "stains": rendered from the cells' optical path difference."""


class LiveSpecimen:
    """The simulated slide as a frame source: for the pycromanager backend (``__call__``, which
    replaces the camera's pixels) and the in-memory backend (:meth:`render`).

    Parameters
    ----------
    specimen
        The specimen description (sample, seed, optics, focus drift).
    pixel_size_um, bit_depth
        The camera's scale and depth.
    stain_of
        Channel name -> the stain it shows (from the channel presets and ``specimen.stains``).
    stage
        Where the stages are, ``() -> (x, y, z)`` in µm, for frames whose metadata lacks them.
    """

    def __init__(self, specimen: Specimen, *, pixel_size_um: float, bit_depth: int,
                 stain_of: Mapping[str, str],
                 stage: Callable[[], tuple[float, float, float]] | None = None,
                 max_cached: int = 48) -> None:
        self.specimen = specimen
        self.pixel_size = pixel_size_um
        self.optics = Optics(na=specimen.na, immersion_index=specimen.immersion_index,
                             specimen_index=specimen.specimen_index,
                             pixel_size_um=self.pixel_size, depth_um=specimen.depth_um)
        self.realism = Realism() if specimen.realistic else None
        self.camera = Camera(bit_depth=bit_depth, fixed_pattern=bool(self.realism),
                             pattern_seed=specimen.seed)
        self._style = FieldStyle(axis=(0.47, 0.54))  # the optical axis a little off centre
        self._exposed: dict[tuple[Any, ...], float] = {}
        """Seconds each (field, stain) has been exposed: photobleaching (``realistic``)."""
        self._stain_of = dict(stain_of)
        self._stage = stage or (lambda: (0.0, 0.0, 0.0))
        self._fields: OrderedDict[tuple[int, int, int, int, str, int], Field] = OrderedDict()
        self._images: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()
        self._max = max_cached
        self._rng = np.random.default_rng([specimen.seed, 0x5EC])
        self._lock = threading.Lock()
        self.frames_made = 0

    def prepare(self, shape: tuple[int, int], xy_um: list[tuple[float, float]]) -> None:
        """Render the slide at these stage positions now, so the run's first frames are fast."""
        for x, y in xy_um:
            field = self._field(self._origin(x, y), shape)
            for stain in set(self._stain_of.values()):
                if stain in field.stains or stain in TRANSMITTED:
                    self._image(field, stain, 0.0)

    def __call__(self, pixels: np.ndarray, t: int, channel: str,
                 md: dict[str, Any]) -> np.ndarray:
        """The camera frame's pixels replaced by the slide as Micro-Manager's devices stand."""
        sx, sy, sz = self._stage()
        x = metadata_number(md.get("XPosition_um_Intended"))
        y = metadata_number(md.get("YPosition_um_Intended"))
        z = metadata_number(md.get("ZPosition_um_Intended"))
        if x is None or y is None:
            x, y = sx, sy
        exposure = metadata_number(md.get("Exposure")) or 10.0
        shape = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        return self.render(shape, t, channel, x, y, sz if z is None else z, exposure)

    def render(self, shape: tuple[int, int], t: int, channel: str, x_um: float, y_um: float,
               z_um: float, exposure_ms: float) -> np.ndarray:
        """One camera frame of ``channel`` at time point ``t`` with the stages at x, y, z."""
        sign = -1.0 if self.specimen.z_drive_inverted else 1.0
        defocus = round(sign * (z_um - self.specimen.focus_at(t)) / Z_STEP_UM) * Z_STEP_UM
        stain = self._stain_of[channel]
        kind = self._perturbed(t)
        sample, origin = self.specimen.sample, self._origin(x_um, y_um)
        if kind == "new_sample":
            sample = "mda231" if sample == "u2os" else "u2os"
            if stain not in TRANSMITTED:
                stain = NEW_SAMPLE_STAIN.get(stain, stain) if sample == "mda231" else "DNA"
        elif kind == "stain_shift":  # each stain's map moved by its own offset
            k = STAIN_ORDER.index(stain) if stain in STAIN_ORDER else 0
            origin = (origin[0] + 23 * k, origin[1] + 37 * k)
        live = self.specimen.motion_um > 0 or self.specimen.divisions > 0
        t_cells = t - t % self.specimen.cells_every if live else 0
        with self._lock:
            field = self._field(origin, shape, sample, t_cells)
            mean = self._image(field, stain, defocus)
            if kind == "dim":
                mean = mean * 0.1
            if self.realism is not None and stain not in TRANSMITTED:
                mean = mean * self._bleached(field, stain, exposure_ms)
            out = self.camera.expose(mean, exposure_ms, self._rng, exact=False)
            self.frames_made += 1
        return out

    def _bleached(self, field: Field, stain: str, exposure_ms: float) -> float:
        """The fraction of the stain left in this field, counting this exposure."""
        key = (field.kind, field.origin_px, stain)
        before = self._exposed.get(key, 0.0)
        self._exposed[key] = before + exposure_ms / 1e3
        return float(np.exp(-(before + exposure_ms / 2e3) / self.specimen.bleach_s))

    def _perturbed(self, t: int) -> str | None:
        pert = self.specimen.perturbation
        return pert.kind if pert is not None and t >= pert.at else None

    def stain_of(self, channel: str) -> str:
        return self._stain_of[channel]

    def _origin(self, x_um: float, y_um: float) -> tuple[int, int]:
        return int(round(y_um / self.pixel_size)), int(round(x_um / self.pixel_size))

    def _field(self, origin: tuple[int, int], shape: tuple[int, int],
               sample: str | None = None, t: int = 0) -> Field:
        sample = sample or self.specimen.sample
        key = (*origin, *shape, sample, t)
        field = self._fields.get(key)
        if field is None:
            log.info("simulated specimen: rendering %s field at %s px (%dx%d)", sample,
                     origin, *shape)
            thick = self.realism is not None
            field = render_field(sample, self.specimen.seed, shape,  # type: ignore[arg-type]
                                 self.pixel_size, origin_px=origin, thick=thick, linked=thick,
                                 t=t, motion_um=self.specimen.motion_um,
                                 divisions=self.specimen.divisions)
            self._fields[key] = field
            while len(self._fields) > 8:
                self._fields.popitem(last=False)
        return field

    def _image(self, field: Field, stain: str, defocus: float) -> np.ndarray:
        key = (field.kind, field.origin_px, field.t,
               field.stains[next(iter(field.stains))].shape, stain, defocus)
        img = self._images.get(key)
        if img is not None:
            self._images.move_to_end(key)
            return img
        if stain == "PhC":
            pc = phase_contrast(field.stains["OPD"], pixel_size_um=self.pixel_size)
            img = convolve(pc, self.optics.psf(0.55, defocus)) * PHASE_FLUX
        elif stain == "BF":
            img = brightfield(field.stains["OPD"], self.optics, defocus) * BRIGHTFIELD_FLUX
        else:
            img = fluorescence(field.stains[stain], stain, self.optics, defocus,
                               field.truth.sections)
        if self.realism is not None:  # background, autofluorescence, vignetting
            wavelength = None if stain in TRANSMITTED else STAINS[stain].wavelength_um
            where = [o % 2**32 for o in field.origin_px]  # left of or above the origin too
            rng = np.random.default_rng([self.specimen.seed, *where])
            img = light(img, wavelength, field.truth.labels, self.realism, self._style, rng)
        self._images[key] = img
        while len(self._images) > self._max:
            self._images.popitem(last=False)
        return img

"""Simulated specimens, widefield optics and camera: the project's own ground truth.

U2OS Cell Painting (five BBBC022 stains, plus phalloidin for BBBC006) and MDA-MB-231 (phase
contrast, DAPI, F-actin, vinculin) phantoms in physical units; a vectorial defocus PSF per
channel (psfmodels); brightfield through defocus; an sCMOS-like camera; writers for the public
dataset layouts; and a live specimen that the demo's camera frames show.
"""

from acquire_vf.optics import (
    BRIGHTFIELD_UM,
    Optics,
    brightfield,
    card_optics,
    convolve,
    convolve_many,
    phase_contrast,
)
from acquire_vf.simulate._camera import Camera
from acquire_vf.simulate._cells import Cell
from acquire_vf.simulate._consistency import (
    consistency_from_card,
    forward_consistency,
)
from acquire_vf.simulate._datasets import (
    OPTICS_20X,
    OPTICS_60X,
    SIMULATOR_VERSION,
    ensure_dataset,
    simulated_version,
    write_dataset,
)
from acquire_vf.simulate._phantom import STAINS, Field, fluorescence, render_field
from acquire_vf.simulate._realism import FieldStyle, Realism
from acquire_vf.simulate._specimen import LiveSpecimen
from acquire_vf.simulate._stacks import defocus_planes, through_focus_bank
from acquire_vf.simulate._stains import Truth

__all__ = ["BRIGHTFIELD_UM", "OPTICS_20X", "OPTICS_60X", "SIMULATOR_VERSION", "STAINS", "Camera",
           "Cell", "Field", "FieldStyle", "LiveSpecimen", "Optics", "Realism", "Truth",
           "brightfield", "card_optics", "consistency_from_card", "convolve", "convolve_many",
           "fluorescence", "phase_contrast", "render_field", "defocus_planes", "ensure_dataset",
           "forward_consistency", "simulated_version", "through_focus_bank", "write_dataset"]

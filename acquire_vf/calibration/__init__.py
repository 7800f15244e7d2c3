"""Calibration on the user's own microscope: acquire paired data (``calibrate``), point a
recipe at it (``train --data``), and judge a fine-tuned engine against the profile's on
positions it never saw before installing it (``train --init --install``)."""

from acquire_vf.calibration._acquire import MANIFEST, CalibrationError, calibrate, read_manifest
from acquire_vf.calibration._install import compare_engines, engine_in_profile
from acquire_vf.calibration._install import install as install_engine
from acquire_vf.calibration._optics import carry_into_card, fit_beads, rig_optics
from acquire_vf.calibration._recipe import recipe_on

__all__ = ["MANIFEST", "CalibrationError", "calibrate", "carry_into_card", "compare_engines",
           "engine_in_profile", "fit_beads", "install_engine", "read_manifest", "recipe_on",
           "rig_optics"]

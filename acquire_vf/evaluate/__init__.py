"""Evaluation with the paper's metrics."""

from typing import Any

from acquire_vf.evaluate._intervals import field_ci
from acquire_vf.metrics import image_metrics, mae, psnr, ssim, to_unit

__all__ = ["field_ci", "image_metrics", "mae", "psnr", "ssim", "to_unit"]


def __getattr__(name: str) -> Any:
    """The evaluation run loads its report machinery (matplotlib) on first use."""
    import importlib

    if name == "recipe_for":  # the recipe an engine's card describes, on other data
        return importlib.import_module("acquire_vf.evaluate._run")._recipe_for
    if name in ("evaluate", "linear_regression", "update_card"):
        return getattr(importlib.import_module("acquire_vf.evaluate._run"), name)
    if name == "linear_fit_text":
        return importlib.import_module("acquire_vf.evaluate._report").linear_fit_text
    if name in ("final_test_used", "record_final_test", "set_spec", "simulate_set"):
        return getattr(importlib.import_module("acquire_vf.evaluate._sets"), name)
    if name in ("evaluate_defocus", "update_defocus_card"):
        return getattr(importlib.import_module("acquire_vf.evaluate._defocus"), name)
    raise AttributeError(name)

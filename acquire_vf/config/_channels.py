"""``[camera]``, ``[[channels]]`` and ``[[virtual_channels]]``: what is exposed and what is
synthesised."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from acquire_vf.config._base import _Model


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

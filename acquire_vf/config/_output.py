"""``[storage]`` and ``[display]``: where frames are written and how they are shown."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from acquire_vf.config._base import _Model


class Storage(_Model):
    folder: Path = Path("acquisitions")
    """Default output folder when ``--out`` is not given (a time-stamped subfolder is made)."""
    name: str = Field("acquisition", pattern=r"^[A-Za-z0-9_.-]+$")
    """File stem: ``NAME.ome.tif`` (or ``NAME.ome.zarr``)."""
    format: Literal["ome-tiff", "ome-zarr"] = "ome-tiff"
    """``ome-tiff``: one BigTIFF with OME-XML; ``ome-zarr``: an OME-Zarr store (NGFF 0.5,
    Zarr v3), a chunk per frame (docs/storage.md). Both journaled and crash-safe."""
    min_free_gb: float = Field(1.0, ge=0)
    """Free space the output's disk keeps (checked at the start and every minute): below it
    the run stops cleanly (state failed, everything saved) before the disk fills; below what
    the rest of the plan will write plus this, it warns."""

    @property
    def suffix(self) -> str:
        return ".ome.zarr" if self.format == "ome-zarr" else ".ome.tif"


class Display(_Model):
    enabled: bool = True
    """Show the live window when a display is available (``--headless`` turns it off)."""
    refresh_hz: float = Field(5.0, gt=0, le=60)
    """Most window redraws per second; frames arriving faster are skipped for display (never
    for saving). A few per second is what an eye follows, and keeps the GUI's CPU share low."""

"""``[connection]``: how the microscope is reached, a tagged union on ``kind`` so each mode
carries exactly the fields it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from acquire_vf.config._base import _Model


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


class PyMMCorePlusConnection(_Model):
    """Micro-Manager's core in this process as pymmcore-plus's ``CMMCorePlus``, the run's
    events through its MDA engine (hardware-sequenced where its engine finds the devices
    allow it). The same config files as ``demo`` and ``headless``: without ``mm_dir``, the
    demo adapters of ``mm-test-adapters``."""

    kind: Literal["pymmcore-plus"]
    config_file: Path = Path("MMConfig_demo.cfg")
    """Hardware configuration file; relative paths are relative to ``mm_dir``."""
    mm_dir: Path | None = None
    """Micro-Manager installation folder (holds the device adapters); none: the demo
    adapters shipped in ``mm-test-adapters``."""
    timeout_s: float = Field(60.0, gt=0)
    """Longest wait for the configuration to load (real hardware can be slow)."""

    @property
    def is_demo(self) -> bool:
        """The demo adapters (``mm_dir`` not given)."""
        return self.mm_dir is None


class MemoryConnection(_Model):
    """No Micro-Manager: the simulated specimen is rendered straight into frames (the
    in-memory backend), a frame in milliseconds. Needs ``specimen.kind = "simulated"``."""

    kind: Literal["memory"]
    shape: tuple[int, int] = (512, 512)
    """Frame height and width in pixels (the DemoCamera's default is 512 x 512)."""
    exposure_time: bool = False
    """Take each frame's exposure time, as a camera would (off: frames as fast as they
    render, which is what fast tests want)."""
    pace_to_engines: bool = False
    """Hand each frame set over only once the engines and the verifier have finished the one
    before, as a replay as fast as possible does: every set reaches every engine, so what
    the engines and checks decide is the same on a fast or a loaded computer (off: the
    simulated camera runs at its own pace, and engines that fall behind skip sets, as on a
    real rig)."""


Connection = Annotated[
    DemoConnection | HeadlessConnection | AttachConnection | MemoryConnection
    | PyMMCorePlusConnection,
    Field(discriminator="kind"),
]

"""What the run's ``fidelity`` and ``focus`` signals carry: one frozen dataclass per kind of
news, so listeners (the live window, the progress line, ``acquire()``'s callbacks) read
fields, not dictionary keys, and a new kind cannot reach a listener that does not know it
without the type saying so. ``SentinelFidelity.row()`` is the flat record (what
``acquire(on_fidelity=...)`` callers read as a dict)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class SentinelFidelity:
    """A sentinel pair judged (``signals.fidelity``, on the verification thread): the
    virtual frame against its exposure."""

    channel: str
    t: int
    p: int
    z: int
    psnr: float
    ssim: float
    mae: float
    ok: bool
    """Inside the channel's acceptance band."""
    more: Mapping[str, float] = field(default_factory=dict)
    """The other figures of :func:`acquire_vf.fidelity.pair_fidelity` (``tl``, ``tl_value``,
    ``error_area``, ``cell_r``)."""

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        return {**{k: v for k, v in out.items() if k != "more"}, **dict(self.more)}


@dataclass(frozen=True)
class FocusEstimate:
    """A frame set's defocus, estimated (``signals.focus``)."""

    t: int
    p: int
    channel: str
    defocus_um: float | None
    """Signed optical defocus (``None``: the side could not be told)."""
    distance_um: float
    sigma_um: float
    true_defocus_um: float | None = None
    """The simulated specimen's true defocus of the frame (simulation only)."""


@dataclass(frozen=True)
class FocusCorrection:
    """The stage moved toward focus at position ``p`` from time point ``t`` on."""

    t: int
    p: int
    dz_um: float
    why: str = ""
    """What the controller saw (the estimate, a jump, a z-scan's result)."""


@dataclass(frozen=True)
class FocusZScan:
    """A z-scan finished: where focus was found and why the scan was taken."""

    t: int
    p: int
    planes: int
    best_z_um: float
    why: str
    from_z_um: float
    dz_um: float


@dataclass(frozen=True)
class SignCheck:
    """The Z drive's sign, checked once per run by a probe above focus."""

    t: int
    p: int
    probe_um: float
    estimate_um: float
    sigma_um: float
    agrees: bool
    confident: bool
    convention: float
    verdict: str


FocusEvent = FocusEstimate | FocusCorrection | FocusZScan | SignCheck
"""Everything ``signals.focus`` carries."""

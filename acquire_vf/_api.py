"""acquire-vf as a library: a profile, a run, its signals (``acquire_vf.acquire``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def acquire(profile: Any, out: str | Path, *, time_points: int | None = None,
            on_frame: Callable[[Any], None] | None = None,
            on_virtual: Callable[[Any], None] | None = None,
            on_fidelity: Callable[[Any], None] | None = None,
            on_run: Callable[[Any], None] | None = None,
            acquisition: str | None = None, quiet: bool = True) -> dict[str, Any]:
    """Run ``profile`` (a :class:`~acquire_vf.config.Profile`, a path or a shipped profile's
    name) into the new folder ``out`` and return the session report (``session.json``).

    ``on_frame`` gets each physical :class:`~acquire_vf._frames.Frame` (``.id.t``, ``.id.c``,
    ``.pixels``), ``on_virtual`` each virtual one (with ``.qc``), ``on_fidelity`` each
    sentinel's comparison of a virtual frame with its exposure (a
    :class:`~acquire_vf.acquisition.SentinelFidelity`: ``.channel``, ``.t``, ``.psnr``,
    ``.ok``; ``.row()`` as a dict); ``on_run`` the
    :class:`~acquire_vf.acquisition.AcquisitionRun` itself, before its first event (its
    ``signals`` and ``cancel()``). Callbacks run on acquisition and pipeline threads: return
    quickly. Errors are raised as :class:`~acquire_vf.AcquireVFError` after the data are
    safe on disk, as on the command line."""
    from acquire_vf._session import run_session
    from acquire_vf.config import Profile, load_profile

    prof = profile if isinstance(profile, Profile) else load_profile(profile)

    def connect(run: Any) -> None:
        if on_frame is not None:
            run.signals.frameReady.connect(on_frame)
        if on_virtual is not None:
            run.signals.virtualReady.connect(on_virtual)
        if on_fidelity is not None:
            run.signals.fidelity.connect(on_fidelity)
        if on_run is not None:
            on_run(run)

    return run_session(prof, Path(out), time_points=time_points, quiet=quiet,
                       acquisition=acquisition, on_run=connect,
                       profile_source=str(profile) if not isinstance(profile, Profile) else "")

"""The pymmcore-plus backend (issue: where Micro-Manager users are now): Micro-Manager's demo
configuration in this process as ``CMMCorePlus``, the run's events through pymmcore-plus's
MDA engine. The same run as through pycromanager: the dataset layout, the frames, the
positions read back, and the fault policy's table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from acquire_vf._session import make_run
from acquire_vf.acquisition import RunState, session_report
from acquire_vf.backends import FaultInjector, open_backend
from acquire_vf.storage import open_dataset
from tests._helpers import make_profile
from tests.test_faults import CASES, IDS, _check, _profile

pytest.importorskip("pymmcore_plus", reason="pymmcore-plus is not installed (its extra)")
pytestmark = pytest.mark.slow


def test_a_demo_run_through_pymmcore_plus(tmp_path: Path) -> None:
    prof = make_profile(acquisition={"time_points": 3, "z_offsets_um": [-2.0, 2.0]})
    backend = open_backend(prof, "pymmcore-plus")
    assert backend.describe().name == "pymmcore-plus"
    run = make_run(prof, tmp_path, backend=backend, stages=[])
    run.run()
    assert run.state is RunState.FINISHED, run.errors
    rep = session_report(run)
    assert rep["frames_acquired"] == rep["frames_expected"] == 3 * 2 * len(prof.channels)
    (ds,) = open_dataset(tmp_path)
    assert [c.name for c in ds.layout.channels][:len(prof.channels)] == \
        [c.name for c in prof.channels]
    assert ds.verify() == []
    z = {r["z"]: r["z_um"] for r in ds.records if r["t"] == 1}
    assert z[1] - z[0] == pytest.approx(4.0, abs=0.05)  # the stage read back, plane to plane
    # the simulated specimen's pixels, not the demo camera's test pattern
    agp = ds.plane(0, "AGP")
    assert agp.std() > 0 and agp.shape == tuple(ds.layout.shape)


def test_a_profile_names_pymmcore_plus_as_its_connection(tmp_path: Path) -> None:
    """``[connection] kind = "pymmcore-plus"`` (no ``mm_dir``: the demo adapters) picks the
    pymmcore-plus backend without ``--acquisition``; pycromanager is refused in one line."""
    from acquire_vf._errors import MicroscopeError

    prof = make_profile(connection={"kind": "pymmcore-plus"}, acquisition={"time_points": 2})
    backend = open_backend(prof)
    info = backend.describe()
    assert (info.name, info.mode) == ("pymmcore-plus", "pymmcore-plus")
    run = make_run(prof, tmp_path, backend=backend, stages=[])
    run.run()
    assert run.state is RunState.FINISHED, run.errors
    assert run.frames_acquired == 2 * len(prof.channels)
    with pytest.raises(MicroscopeError, match="pymmcore-plus's MDA engine"):
        open_backend(prof, "pycromanager")


def test_a_hardware_sequence_reads_no_camera_property_per_frame(tmp_path: Path) -> None:
    """A fast single-channel run (hardware-sequenced by pymmcore-plus): its engine is swapped
    for one whose frame metadata takes the exposure from the event and the pixel size from
    the sequence's start (per-frame camera reads raced the camera's own thread; see
    ``quiet_engine``), the frames say the channel's exposure, and the user's engine is back
    when the run ends."""
    from pymmcore_plus.mda import MDAEngine

    prof = make_profile(channels=[{"name": "AGP", "preset": "Rhodamine", "exposure_ms": 2}],
                        acquisition={"time_points": 40})
    backend = open_backend(prof, "pymmcore-plus")
    core = getattr(backend, "core", None) or backend.inner.core  # type: ignore[attr-defined]
    before = core.mda.engine
    seen: list[tuple[str, float]] = []
    triggered: list[bool] = []
    core.mda.events.frameReady.connect(
        lambda img, ev, meta: (seen.append((type(core.mda.engine).__name__,
                                            meta["exposure_ms"])),
                               triggered.append(bool(meta.get("hardware_triggered")))))
    run = make_run(prof, tmp_path, backend=backend, stages=[])
    run.run()
    assert run.state is RunState.FINISHED, run.errors
    assert len(seen) == 40 and set(seen) == {("QuietEngine", 2.0)}
    assert sum(triggered) > 20  # the camera streamed: a hardware sequence
    assert core.mda.engine is before and type(before) is MDAEngine


@pytest.mark.parametrize(("kind", "rule", "lost", "counted", "retries"),
                         [CASES[0], CASES[2], CASES[4], CASES[7], CASES[8]],
                         ids=[IDS[0], IDS[2], IDS[4], IDS[7], IDS[8]])
def test_a_fault_costs_at_most_its_event_on_pymmcore_plus(
        tmp_path: Path, kind: str, rule: dict[str, Any], lost: list[tuple[int, str]],
        counted: tuple[str, str], retries: int) -> None:
    profile = _profile(kind, rule, "pycromanager")  # the demo config; camera pixels
    backend = open_backend(profile, "pymmcore-plus")
    assert isinstance(backend, FaultInjector)
    run = make_run(profile, tmp_path, backend=backend, stages=[])
    run.run()
    _check(run, tmp_path, lost, counted, retries)

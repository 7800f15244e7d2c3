"""Virtual channels inside someone else's acquisition (issue: where Micro-Manager users are
now): a pymmcore-plus MDA run on the demo configuration, started by the test as
napari-micromanager would start it, with acquire-vf attached; its virtual channels saved
beside it and shown as napari layers (``ViewerModel``, headless)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymmcore_plus", reason="pymmcore-plus is not installed (its extra)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def core() -> Any:
    from pymmcore_plus import CMMCorePlus

    from acquire_vf.backends._connect import demo_adapter_dir

    c = CMMCorePlus()
    c.setDeviceAdapterSearchPaths([str(demo_adapter_dir())])
    c.loadSystemConfiguration(str(demo_adapter_dir() / "MMConfig_demo.cfg"))
    return c


def _mda(core: Any, loops: int, interval_s: float = 0.0) -> float:
    import useq

    seq = useq.MDASequence(channels=[{"config": "Rhodamine", "exposure": 10},
                                     {"config": "FITC", "exposure": 10}],
                           time_plan={"interval": interval_s, "loops": loops})
    t0 = time.perf_counter()
    core.run_mda(seq).join()
    return time.perf_counter() - t0


def test_an_attached_profile_makes_virtual_channels_beside_a_run_it_does_not_drive(
        core: Any, tmp_path: Path) -> None:
    import acquire_vf
    from acquire_vf.storage import open_dataset

    frames: list[Any] = []
    att = acquire_vf.attach(core, "demo", tmp_path, on_virtual=frames.append)
    try:
        _mda(core, loops=4, interval_s=0.5)  # time for the engines between time points
    finally:
        att.detach()
    rep = att.report()
    assert rep["runs"] == 1 and rep["frames_seen"] == 8 and rep["sets_submitted"] == 4
    assert rep["errors"] == []
    made = {(f.id.t, f.id.c) for f in frames}
    assert {(t, "DNA") for t in range(4)} <= made and {(3, "Mito"), (3, "ER")} <= made
    (ds,) = open_dataset(next(tmp_path.glob("virtual-001.ome.zarr")))
    dna = next(c for c in ds.layout.channels if c.name == "DNA")
    assert dna.role == "virtual" and dna.engine == "cps_dna" and dna.inputs == ("AGP", "RNA")
    assert len([r for r in ds.records if r["channel"] == "DNA"]) == 4
    assert ds.verify() == []
    # a napari session's view of them: a layer per virtual channel, marked, the latest frame
    import warnings

    pytest.importorskip("npe2", reason="napari is not installed (the napari extra)")
    with warnings.catch_warnings():  # napari's own models, imported after pymmcore-plus's
        warnings.simplefilter("ignore", DeprecationWarning)
        from napari.components import ViewerModel

    from acquire_vf._napari_attach import VirtualLayers

    viewer = ViewerModel()
    layers = VirtualLayers(viewer, att.outputs)
    for f in frames:
        layers.show(f)
    dna_layer = viewer.layers["virtual:DNA"]
    last = max((f for f in frames if f.id.c == "DNA"), key=lambda f: f.id.t)
    assert np.array_equal(dna_layer.data, last.pixels)
    assert dna_layer.metadata["acquire-vf"]["channel_type"] == "virtual"
    assert dna_layer.colormap.name == "red"
    assert not viewer.layers["virtual:uncertainty:DNA"].visible


def test_the_widget_is_a_napari_contribution() -> None:
    npe2 = pytest.importorskip("npe2", reason="npe2 is not installed (the napari extra)")
    pm = npe2.PluginManager.instance()
    pm.discover()
    widgets = [w for w in pm.iter_widgets() if w.command == "acquire-vf.attach_widget"]
    assert [w.display_name for w in widgets] == ["acquire-vf virtual channels"]
    cmd = pm.get_command("acquire-vf.attach_widget")
    assert cmd.python_name == "acquire_vf._napari_attach:attach_widget"


def test_attaching_costs_the_run_nothing_measurable(core: Any, tmp_path: Path) -> None:
    """Not a timed assertion: the figure is printed; what is asserted is that every frame
    still arrived and the pipeline dropped sets rather than holding the run."""
    import acquire_vf

    alone = _mda(core, loops=30)
    att = acquire_vf.attach(core, "demo", tmp_path)
    try:
        with_ = _mda(core, loops=30)
    finally:
        att.detach()
    print(f"\n  30 time points: {alone:.2f} s alone, {with_:.2f} s attached "
          f"(rate ratio {alone / with_:.3f})")
    rep = att.report()
    assert rep["frames_seen"] == 60 and rep["sets_submitted"] == 30

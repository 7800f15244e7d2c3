"""The napari reader (npe2), headless: napari's own ViewerModel opens acquire-vf datasets in
both formats through the installed plugin's entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.storage import WRITERS, DatasetLayout

# napari's own dependency chain warns at import (pydantic, npe2): not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

LAYOUT = DatasetLayout(
    channels=(ChannelInfo("AGP"), ChannelInfo("RNA"),
              ChannelInfo("DNA", role="virtual", engine="cps_dna", sha256="ab" * 32,
                          inputs=("AGP", "RNA")),
              ChannelInfo("uncertainty:DNA", role="virtual", engine="cps_dna"),
              ChannelInfo("AGP-refocused", role="virtual", engine="refocus_agp")),
    shape=(32, 40), pixel_size_um=0.65)


def _dataset(folder: Path, fmt: str) -> list[Frame]:
    cls, suffix = WRITERS[fmt]
    w = cls(folder / f"acquisition{suffix}", LAYOUT)
    frames = []
    for t in range(3):
        for c in ("AGP", "RNA"):
            frames.append(Frame(FrameId(t, 0, 0, c), np.full((32, 40), 100 * t + len(c),
                                                             np.uint16), seq=t, elapsed_ms=0.0))
        if t != 1:  # no virtual frame at t = 1
            qc = {"input_dim": t == 2, "finite": True}
            for c in ("DNA", "uncertainty:DNA"):
                frames.append(Frame(FrameId(t, 0, 0, c), np.full((32, 40), 7 + t, np.uint16),
                                    seq=t, elapsed_ms=0.0, role="virtual", qc=qc))
    for f in frames:
        w.append(f)
    for t in range(3):  # never refocused: in focus
        w.skip(FrameId(t, 0, 0, "AGP-refocused"), "virtual",
               "not refocused (the frame was in focus, or outside the engine's range)")
    w.close()
    return frames


@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr"])
def test_napari_opens_a_dataset_with_virtual_channels_apart(tmp_path: Path, fmt: str) -> None:
    pytest.importorskip("napari", reason="napari is not installed (the napari extra)")
    import npe2
    from napari.components import ViewerModel

    _dataset(tmp_path, fmt)
    npe2.PluginManager.instance().discover()  # public: what docs/viewer.md tells scripts
    viewer = ViewerModel()
    viewer.open(str(tmp_path), plugin="acquire-vf")
    layers = {layer.name: layer for layer in viewer.layers}
    assert list(layers) == ["AGP", "RNA", "virtual:DNA", "qc:DNA", "virtual:uncertainty:DNA",
                            "virtual:AGP-refocused (no frames)"]
    # a channel with no frame at all is there, hidden, saying why (it was dropped)
    empty = layers["virtual:AGP-refocused (no frames)"]
    assert not empty.visible and empty.data.shape == (3, 1, 32, 40)
    assert empty.metadata["acquire-vf"]["no_frames"].startswith("3 plane(s): not refocused")
    # and without the plugin registry, for scripts: the same layers
    from acquire_vf.interop import add_to_viewer

    other = ViewerModel()
    assert [la.name for la in add_to_viewer(other, tmp_path)] == list(layers)
    agp, dna, unc = layers["AGP"], layers["virtual:DNA"], layers["virtual:uncertainty:DNA"]
    assert agp.data.shape == (3, 1, 32, 40)  # t, z, y, x
    assert np.asarray(agp.data[2, 0]).max() == 203
    assert dna.colormap.name == "red" and agp.colormap.name != "red"
    assert unc.colormap.name == "gray" and not unc.visible and dna.visible
    meta = dna.metadata["acquire-vf"]
    assert meta["channel_type"] == "virtual" and meta["engine"] == "cps_dna"
    assert meta["inputs"] == ["AGP", "RNA"]
    # the virtual plane never made reads as zeros and is listed, with its reason
    assert np.asarray(dna.data[1, 0]).max() == 0
    assert [(m["t"], m["why"][:9]) for m in meta["missing_planes"]] == [(1, "not made ")]
    assert tuple(agp.scale[-2:]) == (0.65, 0.65)
    qc = layers["qc:DNA"]  # one marker, at the frame whose QC raised a flag
    assert qc.data.tolist() == [[2.0, 0.0, 8.0, 8.0]]
    assert list(qc.features["flags"]) == ["input_dim"]


def test_the_reader_declines_what_is_not_a_dataset(tmp_path: Path) -> None:
    pytest.importorskip("npe2", reason="npe2 is not installed (the napari extra)")
    from npe2 import PluginManifest

    from acquire_vf.interop._napari import get_reader

    manifest = PluginManifest.from_file(
        Path(__file__).parents[1] / "acquire_vf" / "interop" / "napari.yaml")
    assert manifest.name == "acquire-vf"
    assert get_reader(str(tmp_path)) is None
    (tmp_path / "x.ome.tif").write_bytes(b"not ours")
    assert get_reader(str(tmp_path / "x.ome.tif")) is None  # no journal beside it
    _dataset(tmp_path, "ome-tiff")
    assert get_reader(str(tmp_path / "acquisition.ome.tif")) is not None

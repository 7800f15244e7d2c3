"""Virtual channels over saved runs on Dask distributed (issue: beyond one machine).

Real runs saved by the memory backend (OME-TIFF and OME-Zarr), the shipped engines on ONNX
Runtime, a real ``LocalCluster`` of two worker processes: the output on the cluster equals the
output in one process, bit for bit; a worker killed mid-run costs nothing; a frame that
cannot be read is one line naming it and the others are written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acquire_vf._errors import DataError
from acquire_vf._session import make_run
from acquire_vf.config import load_profile
from acquire_vf.storage import open_dataset
from tests._helpers import ROOT, make_profile

pytest.importorskip("distributed", reason="Dask distributed is not installed (the cluster "
                    "extra)")
pytestmark = pytest.mark.slow

N_T, POSITIONS = 3, 2


def _saved_run(out: Path, fmt: str) -> Path:
    """A 2-position x 3-time-point run of the demo's physical channels, as a rig saves it."""
    prof = make_profile(connection={"kind": "memory", "shape": [128, 128]},
                        acquisition={"time_points": N_T, "interval_s": 0.0,
                                     "positions": [{"x_um": 0.0, "y_um": 0.0},
                                                   {"x_um": 300.0, "y_um": 0.0}]},
                        storage={"format": fmt})
    run = make_run(prof, out, stages=[])
    run.run()
    return out


def _planes(store: Path) -> dict[tuple[Any, ...], np.ndarray]:
    (ds,) = open_dataset(store)
    return {(r["t"], r["p"], r["z"], r["channel"], r["role"]): ds.read(r) for r in ds.records}


def _predict(src: Path, out: Path, cluster: str, **kw: Any) -> dict[str, Any]:
    from acquire_vf.distributed import predict_dataset

    return predict_dataset(load_profile("demo"), src, out, cluster=cluster,
                           backend="onnxruntime", **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("saved")
    return {fmt: _saved_run(base / fmt, fmt) for fmt in ("ome-tiff", "ome-zarr")}


@pytest.mark.parametrize(("fmt", "chunk"), [("ome-tiff", 1), ("ome-zarr", 3)])
def test_two_workers_write_what_one_process_writes_bit_for_bit(
        runs: dict[str, Path], tmp_path: Path, fmt: str, chunk: int) -> None:
    """Two workers, a task per frame set or three sets per task (``--chunk``)."""
    one = _predict(runs[fmt], tmp_path / "one.ome.zarr", "none")
    two = _predict(runs[fmt], tmp_path / "two.ome.zarr", "local:2", chunk=chunk)
    a, b = _planes(tmp_path / "one.ome.zarr"), _planes(tmp_path / "two.ome.zarr")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    sets = N_T * POSITIONS
    virtual = {k[3] for k in a if k[4] == "virtual"}
    assert {"DNA", "ER", "Mito"} <= virtual  # the demo's synthesised channels, every set
    assert sum(1 for k in a if k[3] == "DNA" and k[4] == "virtual") == sets
    assert sum(w["sets"] for w in two["workers"].values()) == sets and not two["failures"]
    assert one["channels"] == two["channels"]
    side = json.loads((tmp_path / "two.predict.json").read_text())
    assert side["cluster"] == "local:2" and side["frame_sets"] == sets
    # marked as a live run marks them: role, engine and its sha256, inputs
    (ds,) = open_dataset(tmp_path / "two.ome.zarr")
    dna = next(c for c in ds.layout.channels if c.name == "DNA" and c.role == "virtual")
    assert dna.engine == "cps_dna" and dna.sha256 and dna.inputs == ("AGP", "RNA")
    assert dna.stored_name == "virtual:DNA"


def test_a_worker_killed_mid_run_costs_nothing(runs: dict[str, Path], tmp_path: Path) -> None:
    from distributed import get_client

    killed: list[int] = []

    def kill_one(res: Any) -> None:
        if killed:
            return
        pids = get_client().run(os.getpid)  # the workers' processes
        pid = next(p for a, p in sorted(pids.items()) if a != res.worker)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    summary = _predict(runs["ome-tiff"], tmp_path / "k.ome.zarr", "local:2", on_set=kill_one)
    assert killed and not summary["failures"]
    ref = _predict(runs["ome-tiff"], tmp_path / "r.ome.zarr", "none")
    a, b = _planes(tmp_path / "k.ome.zarr"), _planes(tmp_path / "r.ome.zarr")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert summary["channels"] == ref["channels"]


def test_a_plane_that_cannot_be_read_is_one_line_and_the_rest_are_written(
        runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "run"
    shutil.copytree(runs["ome-zarr"], src)
    (store,) = src.glob("*.ome.zarr")
    chunk = next(p for p in sorted((store / "0").rglob("*"))  # a chunk of position 0
                 if p.is_file() and "c" in p.relative_to(store).parts)
    chunk.write_bytes(b"not a chunk")  # one plane of position 0 corrupt
    # two sets per task: the bad set costs itself, not the set it shares a task with
    summary = _predict(src, tmp_path / "out.ome.zarr", "local:2", chunk=2)
    (line,) = summary["failures"]
    assert "cannot be read" in line and "p=0" in line
    written = {(k[0], k[1]) for k in _planes(tmp_path / "out.ome.zarr") if k[3] == "DNA"}
    assert len(written) == N_T * POSITIONS - 1


def test_a_run_without_the_profiles_channels_is_one_clear_line(tmp_path: Path) -> None:
    from acquire_vf._frames import ChannelInfo, Frame, FrameId
    from acquire_vf.storage import DatasetLayout, OmeTiffWriter

    (tmp_path / "run").mkdir()
    w = OmeTiffWriter(tmp_path / "run" / "acquisition.ome.tif",
                      DatasetLayout(channels=(ChannelInfo("AGP"),), shape=(64, 64)))
    w.append(Frame(FrameId(0, 0, 0, "AGP"), np.zeros((64, 64), np.uint16), 0, 0.0))
    w.close()
    with pytest.raises(DataError, match=r"needs physical channel\(s\) \['RNA'\]"):
        _predict(tmp_path / "run", tmp_path / "out.ome.zarr", "none")


def test_the_cli_over_a_saved_demo_run_on_two_workers(runs: dict[str, Path],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "OUT.zarr"
    proc = subprocess.run([sys.executable, "-m", "acquire_vf", "predict", "--profile", "demo",
                           "--cluster", "local:2", "--chunk", "2", str(runs["ome-tiff"]),
                           "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "virtual channel" in proc.stdout and "Mito" in proc.stdout
    from acquire_vf.interop._napari import get_reader

    reader = get_reader(str(out))
    assert reader is not None
    names = [layer[1]["name"] for layer in reader(str(out))]
    assert {"virtual:DNA @Pos0", "virtual:DNA @Pos1", "AGP @Pos0"} <= set(names)


def test_a_rerun_after_ctrl_c_does_only_the_rest(runs: dict[str, Path],
                                                 tmp_path: Path) -> None:
    out, seen = tmp_path / "out.ome.zarr", []

    def interrupt(res: Any) -> None:
        seen.append(res.key)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _predict(runs["ome-zarr"], out, "local:2", on_set=interrupt)
    again = _predict(runs["ome-zarr"], out, "local:2")
    assert again["frame_sets_done_before"] == 2
    assert again["frame_sets"] == N_T * POSITIONS - 2 and not again["failures"]
    _predict(runs["ome-zarr"], tmp_path / "ref.ome.zarr", "none")
    a, b = _planes(out), _planes(tmp_path / "ref.ome.zarr")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    (ds,) = open_dataset(out)
    assert len(ds.records) == len(a)  # nothing written twice


def test_a_rerun_after_the_client_was_killed_does_only_the_rest(
        runs: dict[str, Path], tmp_path: Path) -> None:
    """``kill -9`` of the predicting process mid-run: its store's journal is left open (a
    torn last line, maybe); the same command again finishes it."""
    out = tmp_path / "out.ome.zarr"
    cmd = [sys.executable, "-m", "acquire_vf", "predict", "--profile", "demo",
           str(runs["ome-tiff"]), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out.with_name(out.name + ".journal")
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text().count('"kind":"frame"') >= 12:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert '"kind":"closed"' not in journal.read_text()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done before" in done.stdout
    _predict(runs["ome-tiff"], tmp_path / "ref.ome.zarr", "none")
    a, b = _planes(out), _planes(tmp_path / "ref.ome.zarr")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# dask-jobqueue's local stand-in drops its job's Popen while the worker is still exiting after
# an adaptive scale-down (a ResourceWarning from its own cleanup, not from acquire-vf)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_jobqueue_cluster_from_a_yaml_file(runs: dict[str, Path], tmp_path: Path) -> None:
    """dask-jobqueue's own local stand-in (``kind: local``) runs the jobqueue path here: its
    workers are jobs started by dask-jobqueue, scaled adaptively within --adapt."""
    (tmp_path / "jq.yaml").write_text("kind: local\ncores: 1\nmemory: 2GB\nprocesses: 1\n")
    got = _predict(runs["ome-tiff"], tmp_path / "jq.ome.zarr", f"jobqueue:{tmp_path / 'jq.yaml'}",
                   adapt=(1, 2))
    assert got["frame_sets"] == N_T * POSITIONS and not got["failures"]
    _predict(runs["ome-tiff"], tmp_path / "one.ome.zarr", "none")
    a, b = _planes(tmp_path / "jq.ome.zarr"), _planes(tmp_path / "one.ome.zarr")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    (tmp_path / "bad.yaml").write_text("kind: nonesuch\n")
    from acquire_vf._errors import ProfileError

    with pytest.raises(ProfileError, match="expected kind one of"):
        _predict(runs["ome-tiff"], tmp_path / "x.ome.zarr", f"jobqueue:{tmp_path / 'bad.yaml'}")


def _ngff_from(run: Path, root: Path, plate: bool) -> Path:
    """The saved run's AGP and RNA planes as an NGFF image (position 0) or as an HCS plate
    (wells A/1 and A/2, one field each: positions 0 and 1), written by ome-zarr."""
    import warnings

    zarr = pytest.importorskip("zarr")
    with warnings.catch_warnings():  # ome-zarr 0.18 warns about its own Scaler on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    (ds,) = open_dataset(run)

    def stack(p: int) -> np.ndarray:  # t, c, z, y, x
        return np.stack([np.stack([ds.plane(t, c, p=p)[None] for c in ("AGP", "RNA")])
                         for t in range(N_T)])

    window = {"start": 0, "end": 4095, "min": 0, "max": 65535}
    omero = {"channels": [{"label": c, "color": col, "window": window}
                          for c, col in (("AGP", "FF0000"), ("RNA", "00FF00"))]}
    group = zarr.open_group(str(root), mode="w")
    if not plate:
        write_image(stack(0), group, scale_factors=[], axes="tczyx", omero=omero)
        return root
    write_plate_metadata(group, ["A"], ["1", "2"], ["A/1", "A/2"])
    for p, col in enumerate(("1", "2")):
        well = group.require_group(f"A/{col}")
        write_well_metadata(well, ["0"])
        write_image(stack(p), well.require_group("0"), scale_factors=[], axes="tczyx",
                    omero=omero)
    return root


@pytest.mark.parametrize("plate", [False, True], ids=["ngff-image", "hcs-plate"])
def test_an_ngff_image_or_plate_is_an_input_too(runs: dict[str, Path], tmp_path: Path,
                                                plate: bool) -> None:
    src = _ngff_from(runs["ome-tiff"], tmp_path / "in.zarr", plate)
    one = _predict(src, tmp_path / "one.ome.zarr", "none")
    two = _predict(src, tmp_path / "two.ome.zarr", "local:2")
    a, b = _planes(tmp_path / "one.ome.zarr"), _planes(tmp_path / "two.ome.zarr")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    n_pos = 2 if plate else 1
    assert one["frame_sets"] == N_T * n_pos and not one["failures"]
    assert one["channels"] == two["channels"]
    assert sum(1 for k in a if k[3] == "Mito" and k[4] == "virtual") == N_T * n_pos
    # the same virtual frames as from the run itself, position for position
    ref = _planes(_ref_store(runs["ome-tiff"], tmp_path))
    for (t, p, z, c, role), px in a.items():
        if role == "virtual" and c in ("DNA", "ER", "Mito"):
            assert np.array_equal(px, ref[(t, p, z, c, role)])
    (ds,) = open_dataset(tmp_path / "two.ome.zarr")
    if plate:  # a plate in, a plate out: NGFF's plate and well metadata, fields as images
        assert [pos["name"] for pos in ds.layout.positions] == ["A/1/0", "A/2/0"]
        import zarr

        root = zarr.open_group(str(tmp_path / "two.ome.zarr"), mode="r")
        meta = dict(root.attrs)["ome"]["plate"]
        assert [w["path"] for w in meta["wells"]] == ["A/1", "A/2"]
        assert [c["name"] for c in meta["columns"]] == ["1", "2"]
        assert dict(root["A/2"].attrs)["ome"]["well"]["images"] == [{"path": "0"}]
        assert root["A/2/0/0"].shape[:2] == (N_T, len(ds.layout.channels))


def _ref_store(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "ref.ome.zarr"
    if not out.exists():
        _predict(run, out, "none")
    return out


def test_a_folder_of_tiffs_on_the_command_line_with_uncertainty_off(
        runs: dict[str, Path], tmp_path: Path) -> None:
    import tifffile

    (ds,) = open_dataset(runs["ome-tiff"])
    root = tmp_path / "tiffs"
    for c in ("AGP", "RNA"):
        (root / c).mkdir(parents=True)
        for p in range(POSITIONS):
            tifffile.imwrite(root / c / f"field{p}.tif", ds.plane(0, c, p=p))
    out = tmp_path / "t.ome.zarr"
    base = [sys.executable, "-m", "acquire_vf", "predict", "--profile", "demo", str(root),
            "--out", str(out)]
    bad = subprocess.run([*base, "--uncertainty", "1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "expected 0 (none) or 2 to 8 passes, got 1" in bad.stderr
    assert not out.exists()
    proc = subprocess.run([*base, "--uncertainty", "0"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (got,) = open_dataset(out)
    assert [pos["name"] for pos in got.layout.positions] == ["field0", "field1"]
    names = {c.stored_name for c in got.layout.channels}
    assert {"AGP", "RNA", "virtual:DNA", "virtual:Mito"} <= names
    assert not any("uncertainty" in n for n in names)
    planes = _planes(out)
    ref = _planes(_ref_store(runs["ome-tiff"], tmp_path))
    for p in range(POSITIONS):  # the synthesis itself is the same, whatever the container
        assert planes[(0, p, 0, "AGP", "physical")].shape == ref[(0, p, 0, "AGP",
                                                                    "physical")].shape
        assert (0, p, 0, "DNA", "virtual") in planes

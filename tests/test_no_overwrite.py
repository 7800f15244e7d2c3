"""Nothing a command writes replaces data: an existing output needs --overwrite, and a
command never writes over one of its own inputs (even with --overwrite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from onnx import helper

from acquire_vf._errors import OutputExistsError
from tests._helpers import cli_here, onnx_engine, run_cli


def _setup(tmp_path: Path) -> dict[str, Path]:
    engine = onnx_engine(tmp_path / "id.onnx", [helper.make_node("Identity", ["input"],
                                                                 ["output"])])
    image = tmp_path / "in.tif"
    tifffile.imwrite(image, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    existing = tmp_path / "existing.tif"
    tifffile.imwrite(existing, np.full((8, 8), 7, np.uint16))
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("mine")
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"a checkpoint")
    (tmp_path / "made.onnx").write_bytes(b"an engine of mine")
    return {"engine": engine, "image": image, "existing": existing, "data": data,
            "ckpt": ckpt, "onnx": tmp_path / "made.onnx"}


CASES = {
    "predict-over-its-input": (["predict", "--model", "{engine}", "--out", "{image}", "{image}",
                                "--overwrite"], "image", "is also an input"),
    "predict-over-an-existing-file": (["predict", "--model", "{engine}", "--out", "{existing}",
                                       "{image}"], "existing", "already exists"),
    "simulate-into-a-dataset": (["simulate", "bbbc006", "--out", "{data}", "--fields", "1"],
                                "data", "already exists"),
    "export-over-an-engine": (["export", "{ckpt}", "--out", "{onnx}"], "onnx",
                              "already exists"),
    "evaluate-into-its-data": (["evaluate", "--model", "{engine}", "--data", "{data}", "--out",
                                "{data}/report"], "data", "is also an input"),
    "evaluate-over-a-report": (["evaluate", "--model", "{engine}", "--data", "{image}",
                                "--out", "{data}"], "data", "already exists"),
}


def _snapshot(p: Path) -> dict[str, bytes]:
    files = [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file())
    return {str(f): f.read_bytes() for f in files}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_commands_refuse_to_replace_data(tmp_path: Path, case: str) -> None:
    paths = _setup(tmp_path)
    args, guarded, message = CASES[case]
    before = _snapshot(paths[guarded])
    r = cli_here(*[a.format(**paths) for a in args])  # refused before any heavy work
    assert r.returncode == OutputExistsError.exit_code, r.stderr
    assert message in r.stderr and r.stderr.strip().count("\n") == 0
    assert _snapshot(paths[guarded]) == before, "the refused command changed the data"


@pytest.mark.slow
def test_overwrite_replaces_an_existing_output(tmp_path: Path) -> None:
    paths = _setup(tmp_path)
    r = run_cli("predict", "--model", str(paths["engine"]), "--out", str(paths["existing"]),
                str(paths["image"]), "--overwrite", timeout=120)
    assert r.returncode == 0, r.stderr
    assert tifffile.imread(paths["existing"]).shape == (64, 64)
    r = run_cli("simulate", "bbbc006", "--out", str(paths["data"]), "--fields", "1",
                "--size", "64x64", "--overwrite", timeout=120)
    assert r.returncode == 0, r.stderr
    assert not (paths["data"] / "keep.txt").exists()

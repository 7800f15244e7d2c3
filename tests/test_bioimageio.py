"""bioimage.io model packages: written from a shipped engine and from a checkpoint, validated by
bioimageio.spec's own validation, their test tensors reproduced by ONNX Runtime, and taken by
acquire-vf's predict and profiles as an engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from acquire_vf.config import REPO_ROOT
from tests._helpers import run_cli

pytest.importorskip("bioimageio.spec", reason="bioimageio.spec is not installed (the "
                    "bioimageio extra)")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.mark.slow
def test_a_shipped_engine_becomes_a_valid_package_that_acquire_vf_runs(tmp_path: Path) -> None:
    from bioimageio.spec import load_description

    engine = REPO_ROOT / "engines" / "cps_dna.onnx"
    pkg = tmp_path / "cps_dna"
    r = run_cli("export-bioimageio", str(engine), "--out", str(pkg), timeout=300)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in pkg.iterdir()} >= {"rdf.yaml", "cps_dna.onnx", "cps_dna.json",
                                               "test_input.npy", "test_output.npy",
                                               "cover.png", "README.md"}
    descr = load_description(pkg / "rdf.yaml", perform_io_checks=True)
    assert descr.validation_summary.status == "valid-format", \
        descr.validation_summary.format()
    assert [str(c) for c in descr.inputs[0].axes[1].channel_names] == ["AGP", "RNA"]
    assert "## Training data" in (pkg / "README.md").read_text()
    # the package's processing + weights reproduce its own test output (what bioimage.io
    # tools check), and match acquire-vf's engine on the same input
    from acquire_vf.card import ModelCard
    from acquire_vf.interop._bioimageio import run_engine

    x, y = np.load(pkg / "test_input.npy"), np.load(pkg / "test_output.npy")
    assert x.shape == (1, 2, 256, 256) and y.shape == (1, 1, 256, 256)
    np.testing.assert_allclose(run_engine(pkg / "cps_dna.onnx", ModelCard.load(engine), x), y,
                               rtol=0, atol=1e-2)
    tifffile.imwrite(tmp_path / "agp.tif", x[0, 0].astype(np.uint16))
    tifffile.imwrite(tmp_path / "rna.tif", x[0, 1].astype(np.uint16))
    outs = {}
    for name, model in (("package", pkg), ("engine", engine)):
        r = run_cli("predict", "--model", str(model), "--out", str(tmp_path / f"{name}.tif"),
                    str(tmp_path / "agp.tif"), str(tmp_path / "rna.tif"), timeout=300)
        assert r.returncode == 0, r.stderr
        outs[name] = tifffile.imread(tmp_path / f"{name}.tif")
    np.testing.assert_array_equal(outs["package"], outs["engine"])
    # a profile may name the package folder as a virtual channel's engine
    from acquire_vf.config import load_profile

    text = (REPO_ROOT / "hardware_profiles" / "demo.toml").read_text()
    prof = tmp_path / "p.toml"
    prof.write_text(text.replace('engine = "../engines/cps_dna.onnx"', f'engine = "{pkg}"')
                    .replace('"../engines/', f'"{REPO_ROOT}/engines/'))
    dna = next(v for v in load_profile(prof).virtual_channels if v.name == "DNA")
    assert dna.engine == pkg / "cps_dna.onnx"


@pytest.mark.slow
def test_export_writes_a_package_from_a_checkpoint(engines, tmp_path: Path) -> None:
    from bioimageio.spec import load_description

    pkg = tmp_path / "pkg"
    checkpoint = engines["dna"].parents[1] / "dna" / "checkpoints" / "last.pt"
    r = run_cli("export", str(checkpoint), "--out", str(pkg), "--bioimageio",
                timeout=300)
    assert r.returncode == 0, r.stderr
    descr = load_description(pkg / "rdf.yaml", perform_io_checks=True)
    assert descr.validation_summary.status == "valid-format"
    r = run_cli("export-bioimageio", str(REPO_ROOT / "engines" / "defocus_bf.onnx"), "--out",
                str(tmp_path / "bf"), timeout=120)
    assert r.returncode != 0 and "defocus estimator" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

"""INT8 engines: ``acquire-vf quantize`` writes a QDQ ONNX with its own card, calibrated on
training-layout images; it runs on ONNX Runtime; ``evaluate`` runs its fp32 engine beside it
and reports the quality cost."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from acquire_vf.card import ModelCard
from acquire_vf.simulate import write_dataset
from tests._helpers import ROOT, run_cli


def test_quantize_writes_an_int8_engine_that_evaluate_judges_against_its_fp32(tmp_path: Path
                                                                            ) -> None:
    calib = write_dataset("bbbc022", tmp_path / "calib", fields=3, seed=881, size=(128, 128))
    held = write_dataset("bbbc022", tmp_path / "held", fields=3, seed=882, size=(128, 128))
    out = tmp_path / "cps_dna_int8.onnx"
    r = run_cli("quantize", str(ROOT / "engines" / "cps_dna.onnx"), "--out", str(out),
                "--data", str(calib), "--frames", "3", timeout=300)
    assert r.returncode == 0, r.stderr
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # explicit quantisation (QDQ)
    card = ModelCard.load(out)
    q = card.quantization
    assert q["from"] == "cps_dna" and q["format"] == "QDQ"
    assert q["from_sha256"] == ModelCard.load(ROOT / "engines" / "cps_dna.onnx").onnx_sha256
    r = run_cli("evaluate", "--model", str(out), "--data", str(held), "--out",
                str(tmp_path / "rep"), "--split", "all", timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert "fp32_engine" in m["baselines"]
    assert abs(m["int8_psnr_cost_db"]) <= 0.3, m["int8_psnr_cost_db"]  # the target
    r = run_cli("quantize", str(out), "--out", str(tmp_path / "again.onnx"), "--data",
                str(calib), timeout=300)
    assert r.returncode != 0 and "already quantised" in r.stderr

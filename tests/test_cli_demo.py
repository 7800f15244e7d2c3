"""The main job as a user runs it: ``acquire-vf demo`` in its own process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tifffile

from acquire_vf.storage import open_dataset
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SESSION_KEYS = {"profile", "channels", "frames_acquired", "exposures_taken",
                "exposures_full_protocol", "virtual_frames", "virtual_skipped",
                "refocus_applied", "latency_ms", "errors"}


def test_demo_runs_the_shipped_engines_live(tmp_path: Path) -> None:
    """The shipped demo: AGP + RNA exposed, focus drifting, refocused when defocused, DNA, ER
    and Mito synthesised by the shipped engines, all saved and reported."""
    out = tmp_path / "demo"
    r = run_cli("demo", "--headless", "--time-points", "6", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "frames acquired" in r.stdout and "12 / 12" in r.stdout

    session = json.loads((out / "session.json").read_text())
    assert set(session) >= SESSION_KEYS
    assert session["frames_acquired"] == session["exposures_taken"] == 12
    # the full protocol: 5 channels and an 11-plane z-scan autofocus per time point
    assert session["exposures_full_protocol"] == 6 * 5 + 6 * 11
    names = [(c["name"], c["role"]) for c in session["channels"]]
    assert names[:2] == [("AGP", "physical"), ("RNA", "physical")]
    assert {("DNA", "virtual"), ("ER", "virtual"), ("Mito", "virtual"),
            ("AGP-refocused", "virtual"), ("RNA-refocused", "virtual")} <= set(names)
    assert session["refocus_applied"] >= 2, session  # the drift defocuses frames 2 ... 5
    assert session["virtual_frames"] >= 3 * 5
    assert "onnxruntime" in session["backend"]
    assert session["errors"] == [] and session["state"] == "finished"
    for stage in ("handoff", "focus_score", "pipeline", "refocus", "synthesis:DNA"):
        lat = session["latency_ms"][stage]
        assert 0 < lat["p50"] <= lat["p95"]

    (ds,) = open_dataset(out)
    assert ds.verify() == []
    virtual = {rec["channel"] for rec in ds.records if rec["role"] == "virtual"}
    assert {"DNA", "ER", "Mito"} <= virtual
    (ome,) = out.glob("*.ome.tif")
    with tifffile.TiffFile(ome) as tf:
        assert tf.is_ome and tf.is_bigtiff
        xml = tf.ome_metadata or ""
    assert 'Name="virtual:DNA"' in xml and "cps_dna" in xml


def test_demo_rejects_bad_option() -> None:
    r = run_cli("demo", "--time-points", "0", timeout=60)
    assert r.returncode == 2
    assert "Invalid value for '--time-points'" in r.stderr

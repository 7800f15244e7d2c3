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


def test_demo_writes_ome_tiff_and_session(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = run_cli("demo", "--headless", "--time-points", "20", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "frames acquired" in r.stdout and "40 / 40" in r.stdout

    session = json.loads((out / "session.json").read_text())
    assert set(session) >= SESSION_KEYS
    assert session["frames_acquired"] == session["exposures_taken"] == 40
    assert session["exposures_full_protocol"] == 40
    assert session["channels"] == [{"name": "AGP", "role": "physical"},
                                   {"name": "RNA", "role": "physical"}]
    assert session["errors"] == [] and session["state"] == "finished"
    for stage in ("handoff", "focus_score", "pipeline"):
        lat = session["latency_ms"][stage]
        assert 0 < lat["p50"] <= lat["p95"]

    (ome,) = out.glob("*.ome.tif")
    with tifffile.TiffFile(ome) as tf:
        assert tf.is_ome and tf.is_bigtiff
        assert tf.series[0].shape == (20, 2, 512, 512)
    (ds,) = open_dataset(out)
    assert ds.verify() == []


def test_demo_rejects_bad_option() -> None:
    r = run_cli("demo", "--time-points", "0", timeout=60)
    assert r.returncode == 2
    assert "Invalid value for '--time-points'" in r.stderr

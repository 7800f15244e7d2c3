"""The main job as a user runs it: ``acquire-vf demo`` in its own process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tifffile

from acquire_vf._errors import OutputExistsError
from acquire_vf.storage import open_dataset
from tests._helpers import ROOT, run_cli

pytestmark = pytest.mark.slow

SESSION_KEYS = {"profile", "channels", "frames_acquired", "exposures_taken",
                "exposures_full_protocol", "virtual_frames", "virtual_skipped",
                "refocus_applied", "latency_ms", "errors"}


def test_demo_runs_the_shipped_engines_live(tmp_path: Path) -> None:
    """The shipped demo: AGP, RNA and brightfield exposed, focus drifting and followed,
    refocused when defocused, DNA, ER and Mito synthesised by the shipped engines, all saved
    and reported."""
    out = tmp_path / "demo"
    r = run_cli("demo", "--headless", "--time-points", "6", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "planned frames acquired" in r.stdout and "18 of 18" in r.stdout

    session = json.loads((out / "session.json").read_text())
    assert set(session) >= SESSION_KEYS
    planned = session["light_dose"]["exposures_by_reason"]
    assert planned["plan"] == 18 and planned.get("sentinel", 0) >= 3  # DNA, ER, Mito at t=0
    assert session["exposures_taken"] == sum(planned.values())  # z-scans are exposures ...
    focusing = planned["zscan"] + planned.get("sign_probe", 0)  # z-scans, the sign probe:
    assert session["frames_acquired"] == session["exposures_taken"] - focusing  # not data
    assert planned.get("sign_probe") == 1  # the demo steers by brightfield: its sign checked
    assert session["focus"]["sign_check"]["verdict"] == "the Z drive moves as assumed"
    # the comparator protocol: 6 channels and an 11-plane z-scan autofocus per time point
    assert session["exposures_full_protocol"] == 6 * 6 + 6 * 11
    assert set(session["verification"]) == {"DNA", "ER", "Mito"}
    focus = session["focus"]  # closed loop: the first time point is z-scanned
    assert focus["policy"] == "closed_loop" and focus["zscans"][0]["t"] == 0
    assert {"t", "p", "channel", "defocus_um", "sigma_um", "true_defocus_um"} <= set(
        focus["estimates"][0])
    names = [(c["name"], c["role"]) for c in session["channels"]]
    assert names[:3] == [("AGP", "physical"), ("RNA", "physical"), ("BF", "physical")]
    assert focus["channel"] == "BF" and focus["signed"]
    assert {("DNA", "virtual"), ("ER", "virtual"), ("Mito", "virtual"),
            ("AGP-refocused", "virtual"), ("RNA-refocused", "virtual")} <= set(names)
    # the drift defocuses frames 1 ... 4 until the z-scan that finds their side of focus
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


def _layout(out: Path) -> dict:
    (ds,) = open_dataset(out)
    d = ds.layout.to_json()
    d["extra"] = {k: v for k, v in d["extra"].items() if k != "acquisition_backend"}
    return d


def test_memory_and_micro_manager_runs_write_the_same_keys_and_layout(tmp_path: Path) -> None:
    runs = {}
    for name, extra in (("mm", []), ("memory", ["--acquisition", "memory"])):
        out = tmp_path / name
        r = run_cli("demo", "--headless", "--time-points", "2", "--out", str(out), *extra)
        assert r.returncode == 0, r.stderr
        runs[name] = json.loads((out / "session.json").read_text())
        assert runs[name]["light_dose"]["exposures_by_reason"]["plan"] == 6
        assert runs[name]["errors"] == []
    assert runs["mm"]["acquisition_backend"] == "pycromanager"
    assert runs["memory"]["acquisition_backend"] == "memory"
    assert set(runs["mm"]) == set(runs["memory"])
    assert runs["mm"]["channels"] == runs["memory"]["channels"]
    assert _layout(tmp_path / "mm") == _layout(tmp_path / "memory")


def test_demo_runs_a_useq_plan_file_and_replay_plays_it_back(tmp_path: Path) -> None:
    import useq

    seq = useq.MDASequence(channels=[{"config": "Rhodamine", "exposure": 50},
                                     {"config": "FITC", "exposure": 50},
                                     {"config": "BF", "exposure": 20}],
                           time_plan={"interval": 0.5, "loops": 3},
                           stage_positions=[{"x": 0, "y": 0, "name": "A1"},
                                            {"x": 400, "y": 200, "name": "B2"}],
                           axis_order="tpcz")
    plan = tmp_path / "seq.json"
    plan.write_text(seq.model_dump_json())
    out = tmp_path / "acq"
    r = run_cli("demo", "--headless", "--plan", str(plan), "--out", str(out))
    assert r.returncode == 0, r.stderr
    session = json.loads((out / "session.json").read_text())
    # the table's exposures add up by purpose, units on the figures
    by = session["light_dose"]["exposures_by_reason"]
    assert sum(by.values()) == session["exposures_taken"]
    table = " ".join(r.stdout.split())
    assert f"exposures taken │ {session['exposures_taken']} = {by['plan']} plan" in table, table
    assert "frames/s" in table and "ms at full power" in table
    assert "planes not made" not in table and "policy:" not in table
    assert session["light_dose"]["exposures_by_reason"]["plan"] == 3 * 2 * 3
    assert session["errors"] == []
    assert session["virtual_frames"] > 0
    (ds,) = open_dataset(out)
    assert [p["name"] for p in ds.layout.positions] == ["A1", "B2"]

    again = tmp_path / "replayed"
    r = run_cli("replay", str(out), "--profile", "demo", "--out", str(again),
                "--as-fast-as-possible", "--headless")
    assert r.returncode == 0, r.stderr
    replayed = json.loads((again / "session.json").read_text())
    assert replayed["acquisition_backend"] == "replay"
    table = " ".join(r.stdout.split())
    assert "frames replayed" in table and "exposures a live run would have taken" in table
    assert "light dose it would have taken" in table and "exposures taken │" not in table
    assert replayed["light_dose"]["exposures_by_reason"]["plan"] == 18
    assert replayed["errors"] == []
    assert replayed["virtual_frames"] > 0
    (rds,) = open_dataset(again)
    raw = {(r["t"], r["p"], r["channel"]): r["crc32"] for r in ds.records
           if r["role"] == "physical"}
    played = {(r["t"], r["p"], r["channel"]): r["crc32"] for r in rds.records
              if r["role"] == "physical"}
    assert played.items() <= raw.items(), "replayed frames are the recorded pixels"
    assert {k for k in raw if k[2] in ("AGP", "RNA", "BF")} <= set(played)  # every planned

    r = run_cli("replay", str(out), "--profile", "demo", "--out", str(out), "--headless")
    assert r.returncode == OutputExistsError.exit_code and "is also an input" in r.stderr


def test_the_run_says_where_its_data_go_and_a_refused_start_leaves_no_folder(tmp_path: Path
                                                                             ) -> None:
    out = tmp_path / "here"
    r = run_cli("demo", "--headless", "--time-points", "1", "--acquisition", "memory", "--out",
                str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"saving to {out.resolve()}" and f"saved to {out.resolve()}" in lines
    prof = tmp_path / "broken.toml"  # an engine that is not there: refused before any frame
    text = (ROOT / "hardware_profiles" / "demo.toml").read_text()
    prof.write_text(text.replace("../engines/", f"{ROOT / 'engines'}/").replace(
        "cps_dna.onnx", "no_such.onnx"))
    gone = tmp_path / "never"
    r = run_cli("live", "--profile", str(prof), "--headless", "--out", str(gone))
    assert r.returncode != 0 and "no_such.onnx" in r.stderr
    assert not gone.exists()

"""Verified virtual channels: sentinels, trust, fallback to physical exposure, the ledger.

The state machine is driven directly with made-up pairs (table-driven); whole runs use the
in-memory backend with the shipped engines and a disturbed simulated specimen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acquire_vf._frames import Frame, FrameId
from acquire_vf.acquisition import CheckedChannel, Verifier
from acquire_vf.config import Verification
from acquire_vf.fidelity import cell_correlation, pair_fidelity, segment_cells
from tests._helpers import verified_profile

RNG = np.random.default_rng(7)
TRUTH = (RNG.random((64, 64)) * 3000 + 100).astype(np.uint16)
BAND = {"psnr_min": 25.0}


def _frame(t: int, c: str, pixels: np.ndarray, role: str = "physical",
           qc: dict | None = None) -> Frame:
    return Frame(FrameId(t, 0, 0, c), pixels, t, 0.0, role=role, qc=dict(qc or {}))  # type: ignore[arg-type]


def _wait_judged(v: Verifier, n: int) -> None:
    t0 = time.monotonic()
    while v.records["DNA"].sentinels < n:
        assert time.monotonic() - t0 < 10, "pairs were not judged"
        time.sleep(0.002)


def _drive(steps: str, every: int = 1, recover_after: int = 2) -> tuple[Verifier, list[str]]:
    """Per time point: G (a good pair), B (a bad pair), F (a good pair, QC-flagged virtual
    frame), . (no exposure wanted: nothing happens). Returns the state after each step."""
    v = Verifier(Verification(every=every, recover_after=recover_after),
                 {"DNA": CheckedChannel("DNA", 0.0, 4000.0, BAND)})
    states = []
    judged = 0
    for t, step in enumerate(steps):
        assert (step == ".") == (not v.wants("DNA", t, 0)), (steps, t, v.plan(t, 0))
        if step != ".":
            bad = step == "B"
            virtual = TRUTH if not bad else (TRUTH // 3).astype(np.uint16)
            flags = {"input_dim": True} if step == "F" else {}
            v.virtual(_frame(t, "DNA", virtual, "virtual", flags))
            v.physical(_frame(t, "DNA", TRUTH))
            judged += 1
            _wait_judged(v, judged)
        states.append(v.state("DNA"))
    v.close()
    return v, states


@pytest.mark.parametrize("steps, states", [
    ("GGGG", ["trusted"] * 4),
    ("GBG", ["trusted", "suspect", "trusted"]),
    ("GBBGG", ["trusted", "suspect", "physical", "physical", "trusted"]),
    ("BBGBGG", ["suspect", "physical", "physical", "physical", "physical", "trusted"]),
    ("GFFGG", ["trusted", "suspect", "physical", "physical", "trusted"]),
    ("FGG", ["suspect", "trusted", "trusted"]),
], ids=["good-stays-trusted", "one-bad-is-a-false-alarm", "two-bad-then-recovers",
        "recovery-needs-good-in-a-row", "persistent-qc-flags-go-physical",
        "flag-gone-and-a-good-pair-clear-it"])
def test_trust_state_machine(steps: str, states: list[str]) -> None:
    v, got = _drive(steps)
    assert got == states
    rec = v.report()["DNA"]
    assert rec["state"] == states[-1]
    assert [s["to"] for s in rec["switches"]] == [b for a, b in zip(["trusted"] + states, states,
                                                                   strict=False) if a != b]
    for s in rec["switches"]:
        assert {"t", "p", "to", "why"} <= set(s) and s["why"]


def test_sentinels_fall_every_n_time_points_and_only_then_while_trusted() -> None:
    v = Verifier(Verification(every=5), {"DNA": CheckedChannel("DNA", 0.0, 4000.0, BAND)})
    assert [t for t in range(16) if v.wants("DNA", t, 0)] == [0, 5, 10, 15]
    late = Verifier(Verification(every=5, at_start=False),
                    {"DNA": CheckedChannel("DNA", 0.0, 4000.0, BAND)})
    assert [t for t in range(16) if late.wants("DNA", t, 1)] == [5, 10, 15]
    v.close()
    late.close()


def test_fidelity_figures() -> None:
    same = pair_fidelity(TRUTH, TRUTH, 0, 4000)
    assert same["psnr"] == float("inf") and same["mae"] == 0 and same["error_area"] == 0
    worse = pair_fidelity((TRUTH // 3).astype(np.uint16), TRUTH, 0, 4000)
    assert worse["psnr"] < 15 and worse["error_area"] > 0.1
    cells = np.zeros((64, 64), np.uint16)
    for i, (y, x) in enumerate([(10, 10), (10, 40), (40, 10), (40, 40), (25, 25)]):
        cells[y:y + 8, x:x + 8] = 2000 + 500 * i
    labels = segment_cells([cells], min_area=10)
    assert labels.max() == 5
    assert cell_correlation(cells, cells, labels) == pytest.approx(1.0)
    assert cell_correlation(cells[::-1, ::-1].copy(), cells, labels) < 0.5


# ----- whole runs on the in-memory backend -------------------------------------------------

def _run(tmp_path: Path, n: int, perturbation: dict | None = None, interval_s: float = 0.05,
         paced: bool = False, **ver: Any) -> dict:
    """A verified run on the memory backend; ``paced``: each set waits for the engines and
    the verifier (``pace_to_engines``), so no set is skipped on a loaded machine."""
    from acquire_vf._session import run_session

    spec: dict[str, Any] = {}
    if perturbation:
        spec["perturbation"] = perturbation
    prof = verified_profile(specimen=spec, verification=ver,
                            acquisition={"time_points": n, "interval_s": interval_s},
                            connection={"kind": "memory", "shape": [192, 192],
                                        "pace_to_engines": paced})
    return run_session(prof, tmp_path / "run", quiet=True)


@pytest.mark.slow
def test_without_a_perturbation_no_channel_leaves_trusted_in_200_time_points(tmp_path) -> None:
    rep = _run(tmp_path, 200, paced=True)  # every sentinel checked, however loaded
    for name, v in rep["verification"].items():
        assert v["state"] == "trusted" and v["switches"] == [], (name, v["switches"][:3])
        assert v["sentinels"] == 40, name  # t = 0, 5, ..., 195
    dose = rep["light_dose"]
    assert dose["exposures_by_reason"] == {"plan": 400, "sentinel": 120}
    assert dose["saved_by_cause"]["physical_fallback"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dim", "stain_shift", "new_sample"])
def test_each_perturbation_is_caught_and_exposed_physically(tmp_path, kind) -> None:
    """A perturbation that breaks an engine is caught at the next sentinel and the channel is
    exposed physically; one the engines are trained for (dim) is judged harmless."""
    at, every = 12, 5
    # each set waits for the engines and the verifier (three engines, two passes each), so
    # their switches take effect within the run on any machine (unpaced at 0.05 s a time
    # point they came after the last one)
    rep = _run(tmp_path, 30, {"at": at, "kind": kind}, paced=True, every=every)
    if kind == "dim":  # a tenth of the light: the v4 engines learned doses 100x apart (the v3
        # ones left their bands), so the sentinels after it stay inside every band: trusted
        # is the right verdict, and no channel is switched
        for name, v in rep["verification"].items():
            assert v["state"] == "trusted" and v["switches"] == [], (name, v["switches"])
            assert v["outside_band"] == 0 and v["sentinels"] >= 6, (name, v)
        return
    caught = {}
    for name, v in rep["verification"].items():
        assert all(s["t"] >= at for s in v["switches"]), (name, "a false alarm", v["switches"])
        if v["switches"]:
            caught[name] = v
    assert caught, f"{kind}: no channel left trusted"
    for name, v in caught.items():
        first = v["switches"][0]["t"]
        assert first <= at + every, (name, first)
        assert any(s["to"] == "physical" for s in v["switches"]), (name, v["switches"])
        assert v["exposures"].get("physical", 0) + v["exposures"].get("suspect", 0) > 0


def test_the_dataset_holds_sentinels_uncertainty_and_their_fidelity(tmp_path) -> None:
    import tifffile

    from acquire_vf.storage import open_dataset

    rep = _run(tmp_path, 11)
    (f,) = open_dataset(tmp_path / "run")
    names = {(c.name, c.role) for c in f.layout.channels}
    assert {("DNA", "physical"), ("DNA", "virtual"), ("uncertainty:DNA", "virtual")} <= names
    sentinel_t = sorted(r["t"] for r in f.records if (r["channel"], r["role"]) == ("DNA",
                                                                                     "physical"))
    assert sentinel_t == [0, 5, 10]
    assert [x["t"] for x in rep["verification"]["DNA"]["fidelity"]] == [0, 5, 10]
    # every judged sentinel in the run folder's sentinels.jsonl (session.json: a sample)
    log = [json.loads(line) for line in (tmp_path / "run" / rep["verification"]["DNA"][
        "log"]).read_text().splitlines()]
    assert sorted((e["channel"], e["t"]) for e in log) == sorted(
        (c, x["t"]) for c, v in rep["verification"].items() for x in v["fidelity"])
    assert {e["kind"] for e in log} == {"SentinelFidelity"}
    with tifffile.TiffFile(f.path) as tif:
        ome = tif.ome_metadata or ""
    assert ome.count('Namespace="acquire-vf/sentinel-fidelity"') == 9  # 3 channels x 3
    unc = [r for r in f.records if r["channel"] == "uncertainty:DNA"]
    made = [r for r in f.records if (r["channel"], r["role"]) == ("DNA", "virtual")]
    assert len(unc) == len(made) >= 3  # one uncertainty frame per virtual frame made
    assert all(r["qc"]["uncertainty_mean"] > 0 for r in unc)
    json.dumps(rep)  # the report is plain JSON


def test_the_ledger_adds_up(tmp_path) -> None:
    rep = _run(tmp_path, 10)
    d = rep["light_dose"]
    assert d["comparator"]["dose"] - d["taken"]["dose"] - d["saved_net"] == \
        pytest.approx(d["not_made"], abs=0.05)
    assert d["saved_net"] == pytest.approx(sum(d["saved_by_cause"].values()), abs=0.05)
    # two sentinel time points (0, 5) x (DNA 20 ms + ER 60 ms + Mito 50 ms)
    assert d["saved_by_cause"]["sentinels"] == pytest.approx(-2 * (20 + 60 + 50))
    assert d["comparator_protocol"]["zscan_planes"] == 11 and d["comparator_protocol"][
        "zscans"] == 10
    # AGP, RNA, DNA, ER, Mito at every time point, and an 11-plane z-scan
    assert rep["exposures_full_protocol"] == d["comparator"]["exposures"] == 10 * 5 + 10 * 11


def _truth_dataset(tmp_path: Path, n: int, perturbation: dict) -> Path:
    """Every channel exposed at every time point: the truth a policy is replayed against."""
    from acquire_vf._session import run_session

    five = [{"name": "AGP", "preset": "Rhodamine", "exposure_ms": 50},
            {"name": "RNA", "preset": "FITC", "exposure_ms": 50},
            {"name": "DNA", "preset": "DAPI", "exposure_ms": 20},
            {"name": "ER", "preset": "ER", "exposure_ms": 60},
            {"name": "Mito", "preset": "Cy5", "exposure_ms": 50}]
    prof = verified_profile(channels=five, virtual_channels=[], autofocus={"policy": "off"},
                            specimen={"perturbation": perturbation},
                            acquisition={"time_points": n, "interval_s": 0.0},
                            connection={"kind": "memory", "shape": [192, 192]})
    run_session(prof, tmp_path / "truth", quiet=True, stages=[])
    return tmp_path / "truth"


@pytest.mark.slow
def test_replay_reports_what_a_policy_would_have_let_through(tmp_path) -> None:
    from acquire_vf._session import run_session

    truth = _truth_dataset(tmp_path, 25, {"at": 12, "kind": "stain_shift"})
    reports = {}
    for every in (5, 20):
        prof = verified_profile(verification={"every": every})
        reports[every] = run_session(prof, tmp_path / f"every{every}", replay=truth,
                                     as_fast_as_possible=True, quiet=True)
    for every, rep in reports.items():
        pol = rep["policy"]
        assert pol["light_saved_net"] == rep["light_dose"]["saved_net"] > 0
        for name, ch in pol["channels"].items():
            assert ch["truth_frames"] == 25
            assert all(b["t"] >= 12 for b in ch["bad_at"]), (every, name, ch["bad_at"])
    # a sparser policy relies on more virtual frames and lets more bad ones through
    five, twenty = reports[5]["policy"]["channels"], reports[20]["policy"]["channels"]
    assert sum(c["bad_let_through"] for c in twenty.values()) > \
        sum(c["bad_let_through"] for c in five.values()) > 0
    assert all(twenty[c]["virtual_relied_on"] > five[c]["virtual_relied_on"] for c in five)
    # with every = 5 the sentinel at t = 15 catches it: only t = 12, 13, 14 were relied on
    assert {b["t"] for c in five.values() for b in c["bad_at"]} == {12, 13, 14}


def test_uncertainty_is_higher_on_another_cell_type_than_on_the_engines_own() -> None:
    """The TTA spread of cps_dna on frames of the simulated U2OS slide against frames of the
    same slide after it became MDA-MB-231 cells (another distribution): higher."""
    from acquire_vf.backends import specimen_for
    from acquire_vf.config import Compute
    from acquire_vf.inference import create_engine, infer_with_uncertainty

    engine = create_engine(Path(__file__).resolve().parents[1] / "engines" / "cps_dna.onnx",
                           Compute())
    means = {}
    for kind in ("own", "new_sample"):
        spec = {"perturbation": {"at": 0, "kind": "new_sample"}} if kind != "own" else {}
        sp = specimen_for(verified_profile(specimen=spec))
        frames = [sp.render((192, 192), 1, c, 0.0, 0.0, 0.0, 50.0) for c in ("AGP", "RNA")]
        _, spread, qc = infer_with_uncertainty(engine, frames, 4)
        assert spread.shape == frames[0].shape and qc["uncertainty_passes"] == 4
        means[kind] = qc["uncertainty_mean"]
    # v3's engine spread 1.5x more and up; v4's, trained on randomised styles, 1.25x (0.0129
    # against 0.0103): a weaker signal of another distribution, still a clear one
    assert means["new_sample"] > 1.15 * means["own"], means


def test_qc_flags_reach_the_run_table_session_json_and_a_warning(tmp_path, caplog) -> None:
    """Inputs far brighter than the engines' training data (exposures 8x the cards'): the
    virtual frames are flagged, and the run says so (issue: a run with a failing engine
    reported a clean run)."""
    import logging

    from rich.console import Console

    from acquire_vf._session import run_session
    from acquire_vf.acquisition import print_session

    bright = [{"name": "AGP", "preset": "Rhodamine", "exposure_ms": 400},
              {"name": "RNA", "preset": "FITC", "exposure_ms": 400}]
    prof = verified_profile(channels=bright, acquisition={"time_points": 3, "interval_s": 0.0},
                            verification={"every": 1000, "at_start": False},
                            connection={"kind": "memory", "shape": [192, 192]})
    with caplog.at_level(logging.WARNING):
        rep = run_session(prof, tmp_path / "run", quiet=True)
    qc = rep["qc"]["DNA"]
    assert qc["frames"] >= 1 and qc["flagged"] == qc["frames"]
    assert qc["by_flag"].get("input_out_of_range", 0) == qc["frames"], qc
    warned = [r.getMessage() for r in caplog.records if "QC flag 'input_out_of_range'" in
              r.getMessage()]
    assert any("'DNA'" in w for w in warned), warned
    assert sum("'DNA'" in w for w in warned) == 1  # once, when it starts
    console = Console(record=True, width=140)
    print_session(rep, console)
    assert "QC flags DNA" in console.export_text()

"""The background engine runner (scripts/ship_queue.py): killed mid-training, started again, it
resumes from its last checkpoint and state file, finishes the schedule and then judges the
engine against the one it replaces. A tiny recipe on simulator v4, real training in child
processes."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from acquire_vf.config import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "ship_queue.py"
STEPS = 30

pytestmark = pytest.mark.slow


def _tiny_recipe(folder: Path) -> None:
    text = (REPO_ROOT / "training" / "v4" / "cps_mito.toml").read_text()
    for pattern, value in ((r"^fields = \d+", "fields = 3"), (r"^size = .*", "size = [128, 128]"),
                           (r"^steps = \d+", f"steps = {STEPS}"), (r"^patch = \d+", "patch = 64"),
                           (r"^batch = \d+", "batch = 2"), (r"^val_every = \d+", "val_every = 5"),
                           (r"^checkpoint_every = \d+", "checkpoint_every = 2"),
                           (r"^val_patches = \d+", "val_patches = 2"),
                           (r"^tile = \d+", "tile = 128")):
        text = re.sub(pattern, value, text, flags=re.M)
    folder.mkdir()
    (folder / "cps_mito.toml").write_text(text)


def _runner(tmp: Path, *extra: str) -> subprocess.Popen[str]:
    args = ["--recipes", tmp / "recipes", "--runs", tmp / "runs", "--engines", tmp / "engines",
            "--docs", tmp / "docs", "--nice", "0", *extra]
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_the_runner_resumes_after_a_kill_and_ships_only_a_finished_engine(tmp_path: Path) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("training needs PyTorch (the train extra)")
    _tiny_recipe(tmp_path / "recipes")
    (tmp_path / "engines").mkdir()
    for suffix in (".onnx", ".json"):  # the engine it replaces
        shutil.copy2(REPO_ROOT / "engines" / f"cps_mito{suffix}", tmp_path / "engines")
    old = (tmp_path / "engines" / "cps_mito.onnx").read_bytes()
    run = tmp_path / "runs" / "cps_mito" / "train"
    first = _runner(tmp_path)
    try:  # kill the runner and its training child once a few checkpoints are written
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and _logged_step(run) < 4:
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            time.sleep(0.2)
        second = _runner(tmp_path)  # a second runner beside the first is refused
        out, _ = second.communicate(timeout=60)
        assert second.returncode != 0 and "already running" in out, out
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    killed_at = _logged_step(run)
    assert 4 <= killed_at < STEPS, killed_at
    state = json.loads((tmp_path / "runs" / "state.json").read_text())
    assert state["engines"]["cps_mito"]["phase"] == "train"
    assert (tmp_path / "engines" / "cps_mito.onnx").read_bytes() == old  # nothing shipped yet

    again = _runner(tmp_path)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    assert "--resume" in out, out
    with (run / "log.csv").open(newline="") as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh)]
    assert steps[-1] == STEPS and steps == sorted(set(steps))  # resumed rows replace the killed
    e = json.loads((tmp_path / "runs" / "state.json").read_text())["engines"]["cps_mito"]
    assert e["steps"] == STEPS and set(e["seconds"]) >= {"data", "train", "export", "evaluate"}
    assert e["phase"] in ("shipped", "held"), e
    shipped = (tmp_path / "engines" / "cps_mito.onnx").read_bytes() != old
    assert shipped == (e["phase"] == "shipped")  # held: the old engine stays
    if e["phase"] == "held":
        assert ("worse than the engine it replaces" in e["reason"] and e["replaced_held_out"]) \
            or ("below doing nothing" in e["reason"] and e["baseline"]), e
    else:
        card = json.loads((tmp_path / "engines" / "cps_mito.json").read_text())
        assert card["training"]["data"]["simulated"]["realistic"] is True
        assert (tmp_path / "docs" / "cps_mito" / "metrics.json").is_file()


@functools.cache
def _queue_script() -> Any:
    spec = importlib.util.spec_from_file_location("ship_queue", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logged_step(run: Path) -> int:
    """The runner's own reading of a run's log (scripts/ship_queue.py ``last_step``)."""
    return int(_queue_script().last_step(run))


def test_an_estimator_in_the_queue_is_judged_against_the_one_it_replaces(tmp_path: Path) -> None:
    """A defocus estimator on simulator v4 stacks: trained from scratch, exported, evaluated
    on v4 held-out stacks beside the estimator it replaces (whose card names v3), and shipped
    only if its median error is no worse."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("training needs PyTorch (the train extra)")
    text = (REPO_ROOT / "training" / "v4" / "defocus_agp.toml").read_text()
    for pattern, value in ((r"^range_um = .*", "range_um = 4.0"),
                           (r"^step_um = .*", "step_um = 1.0"), (r"^size = \d+", "size = 64"),
                           (r"^fields = \d+", "fields = 2"),
                           (r"^val_fields = \d+", "val_fields = 1"),
                           (r"^patch = \d+", "patch = 32"), (r"^batch = \d+", "batch = 4"),
                           (r"^steps = \d+", "steps = 6"), (r"^val_every = \d+", "val_every = 3"),
                           (r"^val_patches = \d+", "val_patches = 16")):
        text = re.sub(pattern, value, text, flags=re.M)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "defocus_agp.toml").write_text(text)
    (tmp_path / "engines").mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy2(REPO_ROOT / "engines" / f"defocus_agp{suffix}", tmp_path / "engines")
    run = _runner(tmp_path)
    out, _ = run.communicate(timeout=900)
    assert run.returncode == 0, out
    e = json.loads((tmp_path / "runs" / "state.json").read_text())["engines"]["defocus_agp"]
    assert e["steps"] == 6 and e["phase"] in ("shipped", "held"), e
    assert "median error" in e["held_out"] and "median error" in e["replaced_held_out"]
    for report in ("report", "report-init"):  # both on the same v4 stacks
        m = json.loads((tmp_path / "runs" / "defocus_agp" / report / "metrics.json").read_text())
        assert "simulator v4" in m["data"], m["data"]
    card = json.loads((tmp_path / "runs" / "defocus_agp" / "engine" / "defocus_agp.json")
                      .read_text())
    assert card["defocus"]["realistic"] is True and card["defocus"]["randomise"] is True
    if e["phase"] == "shipped":
        assert (tmp_path / "focus" / "defocus_agp" / "metrics.json").is_file()


def test_an_engine_below_doing_nothing_is_held_however_bad_the_old_one(tmp_path: Path) -> None:
    """The v4 queue's mda_phc_dapi beat its v3 engine (20.15 against 4.86 dB) but not the
    linear baseline (21.41 dB): better than the old one is not enough."""
    sq = _ship_queue()

    def report(folder: str, psnr: float, baselines: dict[str, float]) -> None:
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "metrics.json").write_text(json.dumps({
            "prediction": {"psnr": psnr},
            "baselines": {k: {"psnr": v} for k, v in baselines.items()}}))

    report("report", 20.15, {"linear": 21.41})
    report("report-init", 4.86, {"linear": 21.41})
    why, verdict = sq.judge(tmp_path, 1500, 1500, True)
    assert "below doing nothing" in why and "linear baseline PSNR 21.41" in why, why
    assert verdict["replaced_held_out"] == "PSNR 4.86 dB"
    why, _ = sq.judge(tmp_path, 900, 1500, True)
    assert why == "trained 900 of 1500 steps"
    (tmp_path / "report" / "metrics.json").write_text(json.dumps({
        "prediction": {"psnr": 22.1}, "baselines": {"linear": {"psnr": 21.37}}}))
    assert sq.judge(tmp_path, 1500, 1500, True)[0] == ""  # cps_mito's figures: shipped


def _ship_queue() -> Any:
    spec = importlib.util.spec_from_file_location("ship_queue", SCRIPT)
    assert spec is not None and spec.loader is not None
    sq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sq)
    return sq


def test_a_second_pass_continues_from_the_first_and_is_judged_against_the_shipped_one(
        tmp_path: Path) -> None:
    """training/v4b: mda_factin_vinculin continues from the first pass's engine but must beat
    the shipped (v3) engine; mda_phc_dapi (--scratch) starts from nothing, judged the same."""
    sq = _ship_queue()
    shipped, first = tmp_path / "engines", tmp_path / "runs-v4"
    for name, folder in (("mda_factin_vinculin", shipped), ("mda_phc_dapi", shipped),
                         ("mda_factin_vinculin", first / "mda_factin_vinculin" / "engine"),
                         ("mda_phc_dapi", first / "mda_phc_dapi" / "engine")):
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in (".onnx", ".json"):
            (folder / f"{name}{suffix}").write_text(f"{folder.name} {name}")
    q = sq.Queue(tmp_path / "recipes", tmp_path / "runs", tmp_path / "engines-v4",
                 tmp_path / "docs", fallback=shipped, continue_from=first,
                 scratch=("mda_phc_dapi",))
    e = sq._starting_points(q, "mda_factin_vinculin", tmp_path / "runs" / "mda_factin_vinculin")
    assert Path(e["init"]).name == "mda_factin_vinculin.onnx" and "continue" in e["init"]
    assert Path(e["init"]).read_text() == "engine mda_factin_vinculin"  # the first pass's
    assert Path(e["replaces"]).read_text() == "engines mda_factin_vinculin"  # the shipped one
    e = sq._starting_points(q, "mda_phc_dapi", tmp_path / "runs" / "mda_phc_dapi")
    assert e["init"] is None and Path(e["replaces"]).read_text() == "engines mda_phc_dapi"
    assert sq._replaces({"init": "old.onnx"}) == "old.onnx"  # a state file from before
    assert sq._replaces({"init": None, "replaces": "v3.onnx"}) == "v3.onnx"


def test_a_pass_ships_into_an_engines_folder_it_creates(tmp_path: Path) -> None:
    """The v4c pass shipped into ``engines-v4c/``, which did not exist yet: the copy failed
    after training had finished. The queue now makes the folder."""
    sq = _ship_queue()
    run = tmp_path / "runs" / "mda_phc_dapi"
    (run / "engine").mkdir(parents=True)
    for suffix in (".onnx", ".json"):
        (run / "engine" / f"mda_phc_dapi{suffix}").write_text(f"engine{suffix}")
    for folder, psnr in (("report", 18.05), ("report-init", 4.86)):
        (run / folder).mkdir()
        (run / folder / "metrics.json").write_text(json.dumps({
            "prediction": {"psnr": psnr}, "baselines": {"linear": {"psnr": 16.88}}}))
    q = sq.Queue(tmp_path / "recipes", tmp_path / "runs", tmp_path / "engines-v4c",
                 tmp_path / "docs" / "models")
    recipe = {"task": "synthesis", "train": {"steps": 3000}}
    out = sq._check(q, "mda_phc_dapi", recipe, run, {"steps": 3000, "replaces": "old.onnx"})
    assert out["phase"] == "shipped", out
    assert (tmp_path / "engines-v4c" / "mda_phc_dapi.onnx").read_text() == "engine.onnx"
    assert (tmp_path / "docs" / "models" / "mda_phc_dapi" / "metrics.json").is_file()


def test_the_verdict_says_the_paired_difference_field_by_field(tmp_path: Path) -> None:
    """The v4e pass of mda_factin_vinculin: 24.06 against 24.15 dB on four held-out fields,
    held by the rule; field by field the difference is -0.09 dB [-0.64, +0.46], which the
    verdict records beside the rule's figures (it does not change the rule)."""
    sq = _ship_queue()
    new, old = [0.57, -0.73, 0.34, -0.54], [0.0, 0.0, 0.0, 0.0]
    for folder, shift in (("report", new), ("report-init", old)):
        (tmp_path / folder).mkdir()
        psnr = [24.0 + s for s in shift]
        (tmp_path / folder / "metrics.json").write_text(json.dumps({
            "prediction": {"psnr": sum(psnr) / 4}, "baselines": {"linear": {"psnr": 22.1}}}))
        (tmp_path / folder / "per_image.json").write_text(json.dumps([
            {"key": ["MDA231", f"s{i}"], "prediction": {"psnr": v}} for i, v in enumerate(psnr)]))
    why, verdict = sq.judge(tmp_path, 6000, 6000, True)
    assert "worse than the engine it replaces" in why
    said = verdict["paired_against_replaced"]
    assert said.startswith("-0.09 dB [") and said.endswith("over 4 fields, paired"), said
    lo, hi = (float(v) for v in said.split("[")[1].split("]")[0].split(", "))
    assert lo < -0.09 < hi and lo < 0 < hi
    (tmp_path / "report-init" / "per_image.json").unlink()
    assert sq.judge(tmp_path, 6000, 6000, True)[1]["paired_against_replaced"] is None

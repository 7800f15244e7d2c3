"""The background engine runner: train a queue of recipes one at a time at ``nice 19``, and
resume where it stopped after a kill or a reboot.

    .venv/bin/python scripts/ship_queue.py                   # the v4 queue (training/v4/)
    .venv/bin/python scripts/ship_queue.py --status          # where it stands
    nohup .venv/bin/python scripts/ship_queue.py >> runs/v4/queue.log 2>&1 &

Each engine of the queue goes through the same phases, through the CLI in subprocesses (what
a user's commands do): its dataset simulated (timed alone), ``train`` (``--init`` the engine it
replaces when one ships under that name, copied aside once so a resume starts from the same
weights; ``--resume`` from ``checkpoints/last.pt`` after any stop), ``export`` of the best
checkpoint, ``evaluate --held-out`` (validation) of the new engine and, on the same fields, of
the engine it replaces. It ships (``engines/NAME.onnx`` + card, report in ``docs/models/``)
only when training ran its whole schedule and the new engine's held-out PSNR is at least the
old one's; otherwise it is held in ``runs/`` with the reason. Nothing half-trained is shipped.

The state file (``RUNS/state.json``) says which engine is in which phase, at which step, and
how long each phase took: what ``docs/performance.md`` quotes as steps per second end to end.
A lock file keeps a second runner from starting beside the first.

A second pass over engines the first one held (``training/v4b/``):

    nohup .venv/bin/python scripts/ship_queue.py --recipes training/v4b --runs runs/v4b \
        --engines engines-v4b --fallback-engines engines --continue-from runs/v4 \
        --scratch mda_phc_dapi --scratch defocus_agp >> runs/v4b/queue.log 2>&1 &

starts each engine from the first pass's (``--continue-from``) or from scratch, and judges it
against the shipped engine of that name, as the first pass did.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "acquire_vf"]
ORDER = ("refocus", "refocus_rna", "refocus_agp", "cps_dna", "cps_er", "cps_mito",
         "mda_phc_dapi", "mda_phc_vinculin", "mda_factin_vinculin", "defocus_bf", "defocus_agp",
         "defocus_rna")
"""Queue order: the refocus engines first (the real-image work starts from them); an engine
whose targets compare with another's (``engine:NAME``) after that one; the defocus
estimators last (trained from scratch: their training renders its stacks and does not
resume, so a stop restarts that estimator)."""
DEFOCUS_STACKS = ROOT / ".cache" / "held-out" / "defocus"
PHASES = ("data", "train", "export", "evaluate", "check")


class Queue:
    """Paths and state of one queue."""

    def __init__(self, recipes: Path, runs: Path, engines: Path, docs: Path,
                 fallback: Path | None = None, continue_from: Path | None = None,
                 scratch: tuple[str, ...] = ()) -> None:
        self.recipes, self.runs, self.engines, self.docs = recipes, runs, engines, docs
        self.fallback, self.continue_from, self.scratch = fallback, continue_from, scratch
        self.state_path = runs / "state.json"
        self.state: dict[str, Any] = (json.loads(self.state_path.read_text())
                                      if self.state_path.is_file() else {"engines": {}})

    def names(self, wanted: list[str]) -> list[str]:
        have = {p.stem for p in self.recipes.glob("*.toml")}
        order = [n for n in ORDER if n in have] + sorted(have - set(ORDER))
        return [n for n in order if not wanted or n in wanted]

    def entry(self, name: str) -> dict[str, Any]:
        return self.state["engines"].setdefault(name, {"phase": "data", "seconds": {}})

    def save(self) -> None:
        self.state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.state_path)


def _run(args: list[str]) -> None:
    print("$ acquire-vf " + " ".join(str(a) for a in args), flush=True)
    subprocess.run([*CLI, *map(str, args)], cwd=ROOT, check=True)


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def last_step(run: Path) -> int:
    """The last logged step of a run (0 before the first); an estimator's run logs nothing
    until its summary, which gives its steps."""
    log = run / "log.csv"
    if not log.is_file():
        summary = run / "summary.json"
        return int(json.loads(summary.read_text())["steps"]) if summary.is_file() else 0
    with log.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return int(rows[-1]["step"]) if rows else 0


def _held_out(report: Path) -> tuple[float, str]:
    """The figure an engine is judged by (higher is better) and how to say it: held-out PSNR,
    or for an estimator minus its median error within +-20 um or within 3 um of focus,
    whichever is worse."""
    m = json.loads((report / "metrics.json").read_text())
    if "within_20um" in m:  # and near focus, where the closed loop steers, when reported
        err = float(m["within_20um"]["median_abs_error_um"])
        near = float((m.get("near_focus") or {}).get("median_abs_error_um", 0.0))
        return -max(err, near), (f"median error {err:.2f} um"
                                 + (f", {near:.2f} um near focus" if "near_focus" in m else ""))
    return float(m["prediction"]["psnr"]), f"PSNR {float(m['prediction']['psnr']):.2f} dB"


def advance(q: Queue, name: str) -> str:
    """Run ``name``'s next phase; its new phase."""
    recipe_path = q.recipes / f"{name}.toml"
    recipe = tomllib.loads(recipe_path.read_text())
    run = q.runs / name
    e = q.entry(name)
    phase, t0 = e["phase"], time.perf_counter()
    onnx = run / "engine" / f"{name}.onnx"
    if phase == "data":
        run.mkdir(parents=True, exist_ok=True)
        if "replaces" not in e:  # copied aside once: a resume starts from the same weights
            e.update(_starting_points(q, name, run))
        if recipe["task"] != "defocus":  # an estimator renders its stacks as it trains
            _simulate_data(recipe_path)
        e["phase"] = "train"
    elif phase == "train":
        if recipe["task"] == "defocus":
            _run(["train", _rel(recipe_path), "--out", _rel(run / "train"), "--overwrite"])
            e["steps"] = int(json.loads((run / "train" / "summary.json").read_text())["steps"])
        else:
            resume = (run / "train" / "checkpoints" / "last.pt").is_file()
            _run(["train", _rel(recipe_path), "--out", _rel(run / "train"),
                  *(["--init", e["init"]] if e.get("init") else []),
                  "--resume" if resume else "--overwrite"])
            e["steps"] = last_step(run / "train")
        e["phase"] = "export"
    elif phase == "export":
        _run(["export", _rel(run / "train" / "checkpoints" / "best.pt"), "--out", _rel(onnx),
              "--overwrite"])
        e["phase"] = "evaluate"
    elif phase == "evaluate" and recipe["task"] == "defocus":
        _run(["evaluate", "--model", _rel(onnx), "--data", _rel(DEFOCUS_STACKS), "--out",
              _rel(run / "report"), "--update-card", "--overwrite"])
        if old := _replaces(e):  # the estimator it replaces, on the same v4 held-out stacks
            _old_estimator_on(old, run / "report-init",
                              bool(recipe.get("realistic", False)))
        e["phase"] = "check"
    elif phase == "evaluate":
        _run(["evaluate", "--model", _rel(onnx), "--held-out", "--recipe", _rel(recipe_path),
              "--out", _rel(run / "report"), "--update-card", "--overwrite"])
        if old := _replaces(e):  # the engine it replaces, on the same held-out fields
            held = json.loads((run / "report" / "metrics.json").read_text())
            _run(["evaluate", "--model", old, "--data", held["data"], "--split",
                  held["split"], "--out", _rel(run / "report-init"), "--overwrite"])
        e["phase"] = "check"
    elif phase == "check":
        e.update(_check(q, name, recipe, run, e))
    e["seconds"][phase] = round(e["seconds"].get(phase, 0) + time.perf_counter() - t0, 1)
    q.save()
    return str(e["phase"])


def _copy_aside(engine: Path, to: Path, name: str) -> str:
    to.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json"):
        shutil.copy2(engine.with_suffix(suffix), to / f"{name}{suffix}")
    return _rel(to / f"{name}.onnx")


def _starting_points(q: Queue, name: str, run: Path) -> dict[str, str | None]:
    """What ``name`` is judged against (``replaces``: the engine of that name in the queue's
    engines, or of the queue it follows) and what its training starts from (``init``): by
    default that same engine; with ``--continue-from`` an earlier pass's engine of that name
    (a second pass that trains on where the first one stopped); with ``--scratch``, nothing."""
    old = q.engines / f"{name}.onnx"
    if not old.is_file() and q.fallback is not None:
        old = q.fallback / f"{name}.onnx"
    replaces = _copy_aside(old, run / "init", name) if old.is_file() else None
    init = replaces
    earlier = q.continue_from / name / "engine" / f"{name}.onnx" if q.continue_from else None
    if name in q.scratch:
        init = None
    elif earlier is not None and earlier.is_file():
        init = _copy_aside(earlier, run / "continue", name)
    return {"replaces": replaces, "init": init}


def _replaces(e: dict[str, Any]) -> str | None:
    """The engine ``e`` is judged against (state files written before ``replaces`` existed
    name it ``init``)."""
    return e["replaces"] if "replaces" in e else e.get("init")


def _old_estimator_on(init: str, out: Path, realistic: bool) -> None:
    """The replaced estimator on the new one's held-out stacks (its card names older ones)."""
    code = ("import sys; from pathlib import Path; "
            "from acquire_vf.evaluate import evaluate_defocus; "
            "evaluate_defocus(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), "
            "realistic=sys.argv[4] == '1')")
    print(f"$ (the estimator it replaces on the same stacks) {init}", flush=True)
    subprocess.run([sys.executable, "-c", code, init, str(DEFOCUS_STACKS), str(out),
                    "1" if realistic else "0"], cwd=ROOT, check=True)


def _simulate_data(recipe_path: Path) -> None:
    """The recipe's dataset, written once into its cache (timed as its own phase)."""
    code = ("import sys; from acquire_vf.config import load_recipe; "
            "from acquire_vf.training import data_root; "
            "print(data_root(load_recipe(sys.argv[1])[0]))")
    subprocess.run([sys.executable, "-c", code, str(recipe_path)], cwd=ROOT, check=True)


def _doing_nothing(report: Path) -> tuple[float, str] | None:
    """What a user gets without the engine, on the same held-out fields: the camera's frame
    (refocus) or the per-pixel linear fit of the inputs (synthesis); ``None`` for an
    estimator (its report has no such baseline)."""
    base = json.loads((report / "metrics.json").read_text()).get("baselines") or {}
    for key, words in (("input", "the input"), ("linear", "the linear baseline")):
        if key in base:
            return float(base[key]["psnr"]), f"{words} PSNR {float(base[key]['psnr']):.2f} dB"
    return None


def paired(new: Path, old: Path) -> str | None:
    """The new engine's PSNR less the old one's, field by field over the same held-out fields:
    mean and 95% bootstrap interval (said, not judged by: the rule is the mean PSNR, fixed
    before any pass; with four fields an interval this wide says the two cannot be told
    apart). ``None`` where either report has no per-field figures."""
    try:
        a, b = (json.loads((r / "per_image.json").read_text()) for r in (new, old))
        pa = {json.dumps(x["key"]): float(x["prediction"]["psnr"]) for x in a}
        pb = {json.dumps(x["key"]): float(x["prediction"]["psnr"]) for x in b}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    keys = [k for k in pa if k in pb]
    diff = [pa[k] - pb[k] for k in keys]
    from acquire_vf.evaluate import field_ci  # the evaluation's own interval by field

    ci = field_ci(diff, keys)
    if ci is None:
        return None
    return (f"{sum(diff) / len(diff):+.2f} dB [{ci[0]:+.2f}, {ci[1]:+.2f}] over {len(diff)} "
            "fields, paired")


def judge(run: Path, steps: int, want: int, replaces: bool) -> tuple[str, dict[str, Any]]:
    """Why the engine in ``run`` is held ('' to ship it), and the figures: it must have run
    its whole schedule, be no worse than the engine it replaces, and beat doing nothing (an
    engine below the linear baseline is not worth its weights, however bad the old one)."""
    new, said = _held_out(run / "report")
    old, said_old = _held_out(run / "report-init") if replaces else (None, "")
    nothing = _doing_nothing(run / "report")
    why = "" if steps >= want else f"trained {steps} of {want} steps"
    if not why and old is not None and new < old:
        why = f"held-out {said}, worse than the engine it replaces ({said_old})"
    if not why and nothing is not None and new < nothing[0]:
        why = f"held-out {said}, below doing nothing ({nothing[1]})"
    verdict = {"held_out": said, "replaced_held_out": said_old or None,
               "baseline": nothing[1] if nothing else None}
    if replaces:
        verdict["paired_against_replaced"] = paired(run / "report", run / "report-init")
    return why, verdict


def _check(q: Queue, name: str, recipe: dict[str, Any], run: Path,
           e: dict[str, Any]) -> dict[str, Any]:
    """Ship the engine when :func:`judge` finds nothing against it."""
    want = int(recipe["steps"] if recipe["task"] == "defocus" else recipe["train"]["steps"])
    why, verdict = judge(run, int(e.get("steps", 0)), want, bool(_replaces(e)))
    if why:
        print(f"{name}: held, not shipped: {why}"
              + (f" (paired: {verdict['paired_against_replaced']})"
                 if verdict.get("paired_against_replaced") else ""), flush=True)
        return {**verdict, "phase": "held", "reason": why}
    q.engines.mkdir(parents=True, exist_ok=True)  # a new pass ships into a new folder
    for suffix in (".onnx", ".json"):
        tmp = q.engines / f".{name}{suffix}.tmp"
        shutil.copy2(run / "engine" / f"{name}{suffix}", tmp)
        os.replace(tmp, q.engines / f"{name}{suffix}")
    docs = q.docs.parent / "focus" if recipe["task"] == "defocus" else q.docs
    shutil.copytree(run / "report", docs / name, dirs_exist_ok=True)
    print(f"{name}: shipped (held-out {verdict['held_out']}"
          + (f"; the engine it replaces {verdict['replaced_held_out']}"
             if verdict["replaced_held_out"] else "") + ")", flush=True)
    return {**verdict, "phase": "shipped"}


@contextlib.contextmanager
def _lock(runs: Path) -> Iterator[None]:
    lock = runs / "queue.lock"
    if lock.is_file():
        pid = int(lock.read_text() or 0)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pid:
                os.kill(pid, 0)
                raise SystemExit(f"a queue runner is already running (pid {pid}): "
                                 f"'{lock}' (remove it if that process is not this runner)")
    lock.write_text(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def status(q: Queue, names: list[str]) -> None:
    for n in names:
        e = q.state["engines"].get(n, {"phase": "queued"})
        step = last_step(q.runs / n / "train")
        secs = e.get("seconds", {})
        rate = (f", {e['steps'] / secs['train']:.2f} steps/s" if e.get("steps") and
                secs.get("train") else "")
        print(f"{n:22} {e['phase']:9} step {step}{rate}"
              + (f"  ({e['reason']})" if e.get("reason") else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="recipe names (default: every recipe of --recipes)")
    ap.add_argument("--recipes", type=Path, default=ROOT / "training" / "v4")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "v4")
    ap.add_argument("--engines", type=Path, default=ROOT / "engines")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "models")
    ap.add_argument("--fallback-engines", type=Path, default=None,
                    help="engines a name absent from --engines replaces (the shipped set)")
    ap.add_argument("--continue-from", type=Path, default=None,
                    help="an earlier queue's runs: start each engine from its engine there")
    ap.add_argument("--scratch", action="append", default=[],
                    help="train this engine from scratch (judged as usual); repeatable")
    ap.add_argument("--status", action="store_true", help="print where the queue stands")
    ap.add_argument("--nice", type=int, default=19)
    a = ap.parse_args()
    a.runs.mkdir(parents=True, exist_ok=True)
    q = Queue(a.recipes.resolve(), a.runs.resolve(), a.engines.resolve(), a.docs.resolve(),
              a.fallback_engines.resolve() if a.fallback_engines else None,
              a.continue_from.resolve() if a.continue_from else None, tuple(a.scratch))
    names = q.names(a.names)
    if a.status:
        status(q, names)
        return
    os.nice(a.nice)  # the children inherit it
    with _lock(q.runs):
        for name in names:
            while (phase := q.entry(name)["phase"]) in PHASES:
                print(f"== {name}: {phase}", flush=True)
                advance(q, name)
    status(q, names)


if __name__ == "__main__":
    main()

"""Training: the paper's networks and loss, loaders and splits, learning, resume, DDP, export."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from acquire_vf._errors import DataError  # noqa: E402
from acquire_vf.config import Recipe  # noqa: E402
from acquire_vf.training._data import PatchSampler, load_pairs  # noqa: E402
from acquire_vf.training._loss import (  # noqa: E402
    LossWeights,
    discriminator_loss,
    generator_loss,
)
from acquire_vf.training._models import (  # noqa: E402
    PRESETS,
    Discriminator,
    Generator,
    GeneratorConfig,
    count_parameters,
    gflop,
)
from tests._helpers import ROOT, run_cli  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


def recipe(cache: Path, **over: Any) -> Recipe:
    """A small synthesis recipe: DNA from RNA on six 128 x 128 simulated BBBC022 fields."""
    base: dict[str, Any] = {
        "name": "t", "task": "synthesis", "preset": "realtime",
        "data": {"layout": "bbbc022", "simulate": "bbbc022", "inputs": ["RNA"],
                 "target": "DNA", "simulated": {"fields": 6, "seed": 3, "size": [128, 128]},
                 "cache": str(cache)},
        "train": {"steps": 40, "batch": 8, "patch": 64, "val_every": 10,
                  "checkpoint_every": 10, "val_patches": 16},
    }
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return Recipe.model_validate(base)


def write_recipe(path: Path, rec: Recipe) -> Path:
    import tomllib  # noqa: F401 - the file must round-trip through TOML

    lines = []
    d = rec.model_dump(mode="json", exclude_none=True)
    top = {k: v for k, v in d.items() if not isinstance(v, dict)}
    lines += [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    for section in ("data", "train", "loss", "export"):
        sub = d[section]
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in sub.items() if not isinstance(v, dict)]
        for name, table in ((k, v) for k, v in sub.items() if isinstance(v, dict)):
            lines.append(f"[{section}.{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("cin", [1, 2])
@pytest.mark.parametrize("size", [(64, 64), (128, 192), (320, 256)])
def test_generator_output_shape(cin: int, size: tuple[int, int]) -> None:
    g = Generator(GeneratorConfig(cin, width=8, depth=6)).eval()
    with torch.no_grad():
        y = g(torch.zeros(2, cin, *size))
    assert y.shape == (2, 1, *size)
    assert float(y.abs().max()) <= 1.0  # Tanh


@pytest.mark.parametrize("cin", [1, 2])
def test_residual_generator_starts_as_the_identity_of_its_first_input(cin: int) -> None:
    g = Generator(GeneratorConfig(cin, width=8, depth=4, residual=True)).eval()
    x = torch.empty(2, cin, 64, 96).uniform_(-1.2, 1.2)
    with torch.no_grad():
        assert not torch.equal(g(x), x[:, :1].clamp(-1, 1))  # random last layer: a correction
        g.start_as_identity()
        assert torch.equal(g(x), x[:, :1].clamp(-1, 1))
    with pytest.raises(ValueError, match="only a residual generator"):
        Generator(GeneratorConfig(cin, width=8, depth=4)).start_as_identity()


@pytest.mark.parametrize(
    ("preset", "cin", "params", "gflops"),
    [("realtime", 1, 1_029_729, 0.420), ("realtime", 2, 1_029_873, 0.425),
     ("paper", 1, 30_609_793, 6.691), ("paper", 2, 30_610_369, 6.710)],
    ids=["realtime-1in", "realtime-2in", "paper-1in", "paper-2in"])
def test_preset_sizes(preset: str, cin: int, params: int, gflops: float) -> None:
    g = Generator(GeneratorConfig(cin, **PRESETS[preset]))
    assert count_parameters(g) == params
    assert gflop(g, cin) == pytest.approx(gflops, abs=0.002)


def test_discriminator_is_conditional_and_sized_by_patch() -> None:
    d = Discriminator(in_channels=2, width=8, patch=64)
    x, y = torch.randn(3, 2, 64, 64), torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        p = d.probability(x, y)
    assert p.shape == (3,) and bool(((p > 0) & (p < 1)).all())
    kernel_sizes = {m.kernel_size for m in d.modules() if isinstance(m, torch.nn.Conv2d)}
    assert kernel_sizes == {(5, 5)}
    assert d.features[0].in_channels == 3  # inputs + target
    with pytest.raises(RuntimeError):
        d(x, torch.randn(3, 1, 128, 128))  # the FC layer is built for the patch size


def test_loss_matches_the_formula_on_known_tensors() -> None:
    g = torch.nn.Linear(2, 1)
    with torch.no_grad():
        g.weight.copy_(torch.tensor([[0.5, -1.5]]))
        g.bias.fill_(2.0)
    pred = torch.tensor([[0.2, -0.4], [0.0, 1.0]])
    target = torch.tensor([[0.0, 0.0], [0.5, 0.5]])
    logits = torch.tensor([0.0, 2.0])
    total, parts = generator_loss(pred, target, logits, g, LossWeights())
    mae = (0.2 + 0.4 + 0.5 + 0.5) / 4
    adv = (-np.log(0.5) - np.log(1 / (1 + np.exp(-2.0)))) / 2
    l1_mean = (0.5 + 1.5 + 2.0) / 3
    assert parts["mae"] == pytest.approx(mae)
    assert parts["adv"] == pytest.approx(adv, rel=1e-6)
    assert parts["l1"] == pytest.approx(l1_mean)
    expected = 0.99 * mae + 0.01 * adv + 0.001 * l1_mean
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    total_sum, _ = generator_loss(pred, target, logits, g, LossWeights(l1_reduction="sum"))
    expected_sum = 0.99 * mae + 0.01 * adv + 0.001 * 4.0
    assert float(total_sum.detach()) == pytest.approx(expected_sum, rel=1e-6)
    d = discriminator_loss(torch.tensor([0.0]), torch.tensor([0.0]))
    assert float(d) == pytest.approx(np.log(2.0))


def test_splits_are_by_site_without_leakage(cache: Path) -> None:
    data = load_pairs(recipe(cache))
    keys = {s: {p.key for p in getattr(data, s)} for s in ("train", "val", "test")}
    assert keys["train"] and keys["val"] and keys["test"]
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    norm = data.normalisation
    assert set(norm) == {"RNA", "DNA"} and all(n.high > n.low for n in norm.values())


@pytest.mark.slow
def test_bbbc006_pairs_respect_range_and_exclusion(cache: Path) -> None:
    rec = Recipe.model_validate({
        "name": "rf", "task": "refocus",
        "data": {"layout": "bbbc006", "simulate": "bbbc006", "inputs": ["DNA"],
                 "target": "DNA", "simulated": {"fields": 3, "seed": 4, "size": [128, 128]},
                 "cache": str(cache)}})
    data = load_pairs(rec)
    pairs = data.train + data.val + data.test
    assert sorted({p.z_um for p in pairs}) == [-12.0, -10.0, -8.0, -6.0, -4.0, 4.0, 6.0, 8.0]
    assert len(pairs) == 3 * 8


@pytest.mark.slow
def test_paired_folder_loader_reads_mda_layout(tmp_path: Path) -> None:
    rec = Recipe.model_validate({
        "name": "m", "task": "synthesis",
        "data": {"layout": "paired", "simulate": "mda231", "inputs": ["F-actin"],
                 "target": "Vinculin", "simulated": {"fields": 3, "seed": 2,
                                                     "size": [256, 192]},
                 "cache": str(tmp_path)}})
    data = load_pairs(rec)
    pairs = data.train + data.val + data.test
    assert len(pairs) == 3 and pairs[0].inputs.shape == (1, 192, 256)


@pytest.mark.slow
def test_training_learns_within_a_cpu_minute(cache: Path, tmp_path: Path) -> None:
    from acquire_vf.training._loop import train

    rec = recipe(cache, train={"steps": 400, "val_every": 50, "checkpoint_every": 400})
    data = load_pairs(rec)
    vx, vy = PatchSampler(data, data.val, 64, augment=False).fixed(16)
    identity = float(np.mean(np.abs((vx + 1) / 2 - (vy + 1) / 2)))
    summary = train(rec, "", tmp_path / "run", progress=False)
    assert summary["steps"] == 400
    assert summary["best_val_mae"] < 0.7 * identity, (summary, identity)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
    assert list((tmp_path / "run" / "tensorboard").glob("events.*"))


def _losses(log: Path) -> dict[int, float]:
    with open(log, newline="") as fh:
        return {int(r["step"]): float(r["g_loss"]) for r in csv.DictReader(fh)}


def _steps(log: Path) -> list[int]:
    with open(log, newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_killed_training_resumes_where_it_stopped(cache: Path, tmp_path: Path) -> None:
    path = write_recipe(tmp_path / "r.toml", recipe(cache))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "acquire_vf", "train", str(path), "--out",
                             str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((out / "log.csv").exists() and max(_steps(out / "log.csv"), default=0) >= 25):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _losses(out / "log.csv")
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"]
    assert ck == 20
    r = run_cli("train", str(path), "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert _steps(out / "log.csv") == list(range(1, 41))
    after = _losses(out / "log.csv")
    assert json.loads((out / "summary.json").read_text())["steps"] == 40
    recent = np.mean([before[s] for s in range(16, 21)])
    assert 0.5 * recent < after[21] < 2.0 * recent  # the curve continues, no restart


@pytest.mark.slow
def test_ddp_two_gloo_processes_stay_identical(cache: Path, tmp_path: Path) -> None:
    path = write_recipe(tmp_path / "r.toml", recipe(cache))
    load_pairs(recipe(cache))  # the dataset exists before two processes start
    torchrun = Path(sys.executable).with_name("torchrun")
    logs = tmp_path / "logs"  # each rank's own stderr, so a failure names its cause
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2",
                        "--log-dir", str(logs), "--redirects", "3",
                        "-m", "acquire_vf.training",
                        str(path), "--max-steps", "4", "--out", str(tmp_path / "ddp")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    ranks = "\n".join(f"--- {f.relative_to(logs)}:\n{f.read_text()[-1500:]}"
                      for f in sorted(logs.rglob("stderr.log")))
    assert r.returncode == 0, f"{r.stderr[-1000:]}\n{ranks}"
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["in_sync"] is True
    assert summary["effective_batch"] == 2 * 8


@pytest.mark.slow
def test_export_round_trip(cache: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from acquire_vf.card import ModelCard, pad_to_multiple
    from acquire_vf.training._export import load_generator
    from acquire_vf.training._loop import train

    train(recipe(cache, train={"steps": 5}), "recipe text", tmp_path / "run", progress=False)
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    onnx_path = tmp_path / "engines" / "dna.onnx"
    r = run_cli("export", str(ckpt), "--out", str(onnx_path))
    assert r.returncode == 0, r.stderr
    assert "export check: onnx.checker ok" in r.stderr
    card = ModelCard.load(onnx_path)  # verifies the sha256 against the file
    assert (card.task, card.inputs, card.output) == ("synthesis", ("RNA",), "DNA")
    assert card.multiple_of == 64 and card.opset >= 17
    assert set(card.metrics["export_check_max_abs_error"]) == {"64x64", "256x256",
                                                              "1024x1024", "197x145"}
    model = onnx.load(str(onnx_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[2].dim_param and dims[3].dim_param  # dynamic
    G, _ = load_generator(ckpt)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 1, 150, 333)).astype(np.float32)
    xp, (h, w) = pad_to_multiple(x, 64)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": xp})[0][..., :h, :w]
    with torch.no_grad():
        ref = G(torch.from_numpy(xp)).numpy()[..., :h, :w]
    assert got.shape == (1, 1, 150, 333) and np.abs(got - ref).max() < 1e-4


@pytest.mark.slow
def test_training_again_into_the_same_folder_starts_a_fresh_log(cache: Path,
                                                                tmp_path: Path) -> None:
    from acquire_vf.training._loop import train

    for _ in range(2):
        train(recipe(cache, train={"steps": 3}), "recipe text", tmp_path / "run", progress=False)
    assert _steps(tmp_path / "run" / "log.csv") == [1, 2, 3]


@pytest.mark.slow
def test_export_refuses_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli("export", str(bad), "--out", str(tmp_path / "x.onnx"), timeout=120)
    assert r.returncode == DataError.exit_code
    assert "is not an acquire-vf training checkpoint" in r.stderr
    r = run_cli("export", str(bad), "--out", str(tmp_path / "x.engine"), timeout=120)
    assert r.returncode == DataError.exit_code and "expected a path ending in .onnx" in r.stderr
    r = run_cli("export", str(tmp_path / "runs" / "best.pt"), "--out", str(tmp_path / "y.onnx"),
                timeout=120)
    assert r.returncode == DataError.exit_code and "checkpoint not found" in r.stderr, r.stderr


class _Payload:
    """Unpickling this writes a file: what a hostile checkpoint could do instead."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "ran"))


@pytest.mark.slow
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    """Checkpoints are read with torch's restricted unpickler: weights and plain data load,
    a pickled callable is refused with one line and never runs."""
    marker = tmp_path / "ran.txt"
    ckpt = tmp_path / "best.pt"
    torch.save({"kind": "defocus", "state": {"w": torch.zeros(2)}, "extra": _Payload(str(marker))},
               ckpt)
    r = run_cli("export", str(ckpt), "--out", str(tmp_path / "x.onnx"), timeout=120)
    assert r.returncode == DataError.exit_code, r.stderr
    assert "was refused" in r.stderr and "could run code" in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
    assert not marker.exists()
    from acquire_vf.training._checkpoint import load_checkpoint

    plain = tmp_path / "plain.pt"
    torch.save({"kind": "defocus", "step": 3, "val": {"median": 0.5}, "w": torch.ones(3)}, plain)
    assert load_checkpoint(plain)["step"] == 3


@pytest.mark.slow
def test_recipe_typo_is_one_clear_line(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text((ROOT / "training" / "cps_dna.toml").read_text().replace("steps =", "stpes ="))
    r = run_cli("train", str(p), timeout=120)
    assert r.returncode == 2
    assert "unknown key 'train.stpes' (did you mean 'steps'?)" in r.stderr


def test_shipped_recipes_are_valid() -> None:
    from acquire_vf.config import load_defocus_recipe, load_recipe, recipe_task

    def load(p: Path) -> str:
        loader = load_defocus_recipe if recipe_task(p) == "defocus" else load_recipe
        return loader(p)[0].name

    names = {load(p) for p in (ROOT / "training").glob("*.toml")}
    assert names == {"refocus", "refocus_agp", "refocus_rna", "cps_dna", "cps_er", "cps_mito",
                     "mda_phc_dapi", "mda_phc_vinculin", "mda_factin_vinculin",
                     "refocus_paper", "cps_er_paper", "defocus_agp", "defocus_rna",
                     "defocus_bf"}


def test_residual_is_for_refocus_recipes(cache: Path) -> None:
    assert recipe(cache, task="refocus", residual=True, data={
        "layout": "bbbc006", "simulate": "bbbc006", "inputs": ["DNA"], "target": "DNA"}).residual
    with pytest.raises(ValueError, match="residual = true is for refocus recipes"):
        recipe(cache, residual=True)


def test_recipe_patch_must_fit_the_preset(cache: Path) -> None:
    from acquire_vf.config import PRESET_DEPTH
    from acquire_vf.training._models import PRESETS

    assert {k: v["depth"] for k, v in PRESETS.items()} == PRESET_DEPTH
    with pytest.raises(ValueError, match="preset 'paper' needs patches in multiples of 256"):
        recipe(cache, preset="paper")


def test_card_names_the_repository_cache_relative_to_the_checkout(tmp_path: Path) -> None:
    """A shipped card's data_root must name the same cache folder in any clone."""
    from acquire_vf.config import REPO_ROOT
    from acquire_vf.training._loop import _portable

    assert _portable(REPO_ROOT / ".cache" / "datasets" / "x") == str(Path(".cache/datasets/x"))
    assert _portable(tmp_path) == str(tmp_path)  # elsewhere: kept absolute


def test_ema_update_is_the_weighted_average() -> None:
    from acquire_vf.training._loop import _ema_update

    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    with torch.no_grad():
        for p in a.parameters():
            p.fill_(0.0)
        for p in b.parameters():
            p.fill_(1.0)
    _ema_update(a, b, 0.75)
    assert all(torch.allclose(p, torch.full_like(p, 0.25)) for p in a.parameters())


@pytest.mark.slow
def test_ema_generator_is_saved_exported_and_resumed(cache: Path, tmp_path: Path) -> None:
    """With train.ema the checkpoints hold the average (what export reads) and the raw
    weights (what training resumes from); without it, only the raw weights."""
    from acquire_vf.training._export import load_generator
    from acquire_vf.training._loop import train

    rec = recipe(cache, train={"steps": 6, "ema": 0.9, "val_every": 3, "checkpoint_every": 3})
    train(rec, "recipe text", tmp_path / "run", progress=False)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    avg, raw = state["generator"], state["generator_train"]
    gap = max(float((avg[k] - raw[k]).abs().max()) for k in raw if raw[k].is_floating_point())
    assert gap > 0  # the average lags the last step
    G, _ = load_generator(last)
    assert all(torch.equal(G.state_dict()[k], avg[k]) for k in avg)
    more = recipe(cache, train={"steps": 9, "ema": 0.9, "val_every": 3, "checkpoint_every": 3})
    assert train(more, "recipe text", tmp_path / "run", resume=True, progress=False)["steps"] == 9
    plain = tmp_path / "plain"
    train(recipe(cache, train={"steps": 3}), "recipe text", plain, progress=False)
    assert "generator_train" not in torch.load(plain / "checkpoints" / "last.pt",
                                               weights_only=False)


def test_simulated_data_of_another_simulator_version_is_rewritten(tmp_path: Path) -> None:
    """A cached dataset is reused only if this simulator wrote it (the cache key names the
    settings, not the simulator's code)."""
    from acquire_vf.config import simulated_root
    from acquire_vf.simulate import SIMULATOR_VERSION, simulated_version
    from acquire_vf.training._data import data_root

    rec = recipe(tmp_path)
    stale = simulated_root(rec)
    stale.mkdir(parents=True)
    (stale / "simulation.json").write_text(json.dumps({"dataset": "bbbc022", "fields": 6}))
    (stale / "leftover.tif").write_bytes(b"old")
    root = data_root(rec)
    assert root == stale and simulated_version(root) == SIMULATOR_VERSION
    assert not (root / "leftover.tif").exists()
    written = (root / "simulation.json").stat().st_mtime_ns
    assert data_root(rec) == root  # now reused as it is
    assert (root / "simulation.json").stat().st_mtime_ns == written
    from acquire_vf.training._data import load_pairs

    assert load_pairs(rec).train  # the rewritten data is complete


def test_a_second_train_into_a_run_folder_is_refused_unless_asked(tmp_path: Path) -> None:
    """Training again into a folder that holds a run would rewrite its checkpoints and cut its
    log: refused with one line naming --resume and --overwrite, before any work."""
    from acquire_vf._errors import OutputExistsError

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(b"an earlier run")
    for recipe in ("cps_dna", "defocus_agp"):
        r = run_cli("train", str(ROOT / "training" / f"{recipe}.toml"), "--out", str(run),
                    timeout=120)
        assert r.returncode == OutputExistsError.exit_code, r.stderr
        assert "already holds a training run" in r.stderr and "--overwrite" in r.stderr
    assert (run / "checkpoints" / "best.pt").read_bytes() == b"an earlier run"


def test_fine_tuning_starts_as_the_shipped_engine() -> None:
    """``--init NAME.onnx``: the generator rebuilt from the engine's folded weights, with frozen
    BatchNorm, computes what ONNX Runtime computes with the engine, in training mode too."""
    import onnxruntime as ort

    from acquire_vf.training._init import freeze_batchnorm, onnx_state

    for name, residual, n_in in (("refocus_rna", True, 1), ("cps_dna", False, 2)):
        engine = ROOT / "engines" / f"{name}.onnx"
        G = Generator(GeneratorConfig(in_channels=n_in, residual=residual,
                                      **PRESETS["realtime"]))
        G.load_state_dict(onnx_state(engine, G))
        assert freeze_batchnorm(G) == 2 * (G.cfg.depth - 1)
        G.train()  # frozen BatchNorm stays on its statistics
        x = np.random.default_rng(0).uniform(-1, 1, (2, n_in, 128, 128)).astype(np.float32)
        sess = ort.InferenceSession(str(engine), providers=["CPUExecutionProvider"])
        want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        got = G(torch.from_numpy(x)).detach().numpy()
        assert np.abs(want - got).max() < 1e-4, name

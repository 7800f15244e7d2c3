"""Defocus estimators: a small CNN regressor from one frame to its distance from focus (µm)
and its uncertainty, trained on simulated through-focus stacks with a Gaussian
negative-log-likelihood loss.

The distance, not its sign: at 20x / NA 0.45 in air the widefield PSF of the simulated slide
is symmetric about focus to within 0.1% (frame contrast at -2.5 and +2.5 µm: 0.1269 and
0.1285; at -5 and +5: 0.0368 and 0.0371), so no single frame tells above from below; a
network trained on the signed distance learns to answer 0. The closed-loop controller takes
the sign from the focus it is tracking (acquisition/_focus.py), and a z-scan where that is
ambiguous.

The network sees a frame scaled by its own robust range (:func:`frame_normalise`), so exposure
and stain brightness do not move the estimate; global average pooling makes it run on any frame
size; it returns ``(mu_um, log_sigma_um)`` per image. Trained on random crops of fields of the
simulated U2OS slide at defocus planes ``-range..+range``, with the camera's shot and read noise
at random exposures (a quarter to twice the stain's usual one), flips and 90° rotations.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from acquire_vf.card import ModelCard
from acquire_vf.config import DefocusRecipe
from acquire_vf.inference import frame_normalise

LOG_SIGMA = (-3.0, 3.0)
"""Bounds of the predicted log sigma (µm): 0.05 to 20 µm."""


class DefocusNet(nn.Module):
    """Five stride-2 stages (16-128 channels), global average pooling, a two-number head."""

    def __init__(self, width: int = 16, range_um: float = 20.0) -> None:
        super().__init__()
        chans = [width, width * 2, width * 4, width * 4, width * 8]
        layers: list[nn.Module] = []
        c_in = 1
        for c in chans:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(True),
                       nn.Conv2d(c, c, 3, padding=1, stride=2), nn.BatchNorm2d(c),
                       nn.ReLU(True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(c_in, 64), nn.ReLU(True), nn.Linear(64, 2))
        self.range_um = range_um
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).mean(dim=(2, 3))
        out = self.head(f)
        mu = out[:, 0:1] * self.range_um
        log_sigma = torch.clamp(out[:, 1:2], *LOG_SIGMA)
        return torch.cat([mu, log_sigma], dim=1)


def gaussian_nll(pred: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    mu, log_sigma = pred[:, 0], pred[:, 1]
    return (log_sigma + 0.5 * ((z - mu) / torch.exp(log_sigma)) ** 2).mean()


class StackSampler:
    """Noisy, augmented crops of a through-focus bank with their defocus."""

    def __init__(self, bank: np.ndarray, zs: np.ndarray, patch: int, exposure_ms: float,
                 seed: int, signed: bool = False, *, near_focus: float = 0.0,
                 near_focus_um: float = 3.0, sensors: int = 0) -> None:
        from acquire_vf.simulate import Camera

        self.bank, self.zs, self.patch = bank, zs, patch
        self.exposure = exposure_ms
        self.signed = signed
        self.near = near_focus
        self.near_planes = np.flatnonzero(np.abs(zs) <= near_focus_um)
        # sensors > 0: sCMOS cameras with their own fixed pattern, as simulator v4's live
        # specimen has (a frame of the demo carries its camera's pattern)
        self.cameras = ([Camera(fixed_pattern=True, pattern_seed=1000 + k)
                         for k in range(sensors)] or [Camera()])
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        r = self.rng
        f, zi = r.integers(0, self.bank.shape[0], n), r.integers(0, self.bank.shape[1], n)
        if self.near and self.near_planes.size:
            near = r.random(n) < self.near
            zi[near] = r.choice(self.near_planes, int(near.sum()))
        size = self.bank.shape[-1]
        xs = np.empty((n, 1, self.patch, self.patch), np.float32)
        for i in range(n):
            y0, x0 = r.integers(0, size - self.patch + 1, 2)
            mean = self.bank[f[i], zi[i], y0:y0 + self.patch, x0:x0 + self.patch]
            exposure = self.exposure * float(np.exp(r.uniform(np.log(0.25), np.log(2.0))))
            camera = self.cameras[int(r.integers(len(self.cameras)))]
            img = camera.expose(mean, exposure, r, exact=False)
            img = np.rot90(img, int(r.integers(4)))
            if r.random() < 0.5:
                img = img[:, ::-1]
            xs[i, 0] = frame_normalise(img)
        z = self.zs[zi] if self.signed else np.abs(self.zs[zi])
        return xs, z.astype(np.float32)


def _bank(recipe: DefocusRecipe, seed: int, fields: int) -> tuple[np.ndarray, np.ndarray]:
    from acquire_vf.simulate import OPTICS_20X, Realism, through_focus_bank

    realism = Realism(randomise=recipe.randomise) if recipe.realistic else None
    return through_focus_bank(recipe.stain, seed=seed, fields=fields, size=recipe.size,
                              range_um=recipe.range_um, step_um=recipe.step_um,
                              optics=OPTICS_20X, realism=realism)


def train_defocus(recipe: DefocusRecipe, out: Path,
                  progress: Callable[[int, int, dict[str, float]], None] | None = None,
                  recipe_text: str = "") -> dict[str, Any]:
    """Train; write ``out/checkpoints/best.pt`` (lowest validation median |error|) and
    ``out/summary.json``; return the summary."""
    torch.manual_seed(recipe.seed)
    t0 = time.perf_counter()
    bank, zs = _bank(recipe, recipe.data_seed, recipe.fields)
    val_bank, _ = _bank(recipe, recipe.data_seed + 50_000, recipe.val_fields)
    sensors = 8 if recipe.realistic else 0
    train = StackSampler(bank, zs, recipe.patch, recipe.exposure_ms, recipe.seed, recipe.signed,
                         near_focus=recipe.near_focus, near_focus_um=recipe.near_focus_um,
                         sensors=sensors)
    val = StackSampler(val_bank, zs, recipe.patch, recipe.exposure_ms, recipe.seed + 1,
                       recipe.signed, sensors=sensors)
    vx, vz = val.batch(recipe.val_patches)
    net = DefocusNet(recipe.width, recipe.range_um)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps,
                                                pct_start=0.1)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    best = math.inf
    history = []
    for step in range(1, recipe.steps + 1):
        net.train()
        x, z = train.batch(recipe.batch)
        zt = torch.from_numpy(z)
        pred = net(torch.from_numpy(x))
        loss = gaussian_nll(pred, zt)
        # the first tenth also on the mean alone: the NLL with a wild sigma learns slowly
        if step <= recipe.steps // 10:
            loss = loss + torch.nn.functional.smooth_l1_loss(pred[:, 0], zt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % recipe.val_every == 0 or step == recipe.steps:
            m = _validate(net, vx, vz, recipe.near_focus_um)
            m.update(step=step, loss=round(float(loss.item()), 4))
            history.append(m)
            score = (max(m["median_abs_error_um"], m["near_focus_median_abs_error_um"])
                     if recipe.near_focus else m["median_abs_error_um"])
            if score < best:
                best = score
                torch.save({"kind": "defocus", "state": net.state_dict(), "step": step,
                            "recipe": recipe.model_dump(mode="json"), "val": m,
                            "recipe_text": recipe_text},
                           out / "checkpoints" / "best.pt")
            if progress is not None:
                progress(step, recipe.steps, m)
    summary = {"recipe": recipe.name, "steps": recipe.steps, "best_val_median_abs_error_um": best,
               "seconds": round(time.perf_counter() - t0, 1), "history": history}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def _validate(net: DefocusNet, x: np.ndarray, z: np.ndarray, near_um: float = 3.0
              ) -> dict[str, float]:
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(x[i:i + 64])) for i in range(0, len(x), 64)])
    mu, sigma = pred[:, 0].numpy(), np.exp(pred[:, 1].numpy())
    err = np.abs(mu - z)
    near = np.abs(z) <= near_um
    return {"median_abs_error_um": round(float(np.median(err)), 4),
            "near_focus_median_abs_error_um": round(float(np.median(err[near])), 4)
            if near.any() else float("nan"),
            "coverage_2sigma": round(float(np.mean(err <= 2 * sigma)), 4)}


def export_defocus(checkpoint: str | Path, out: str | Path) -> ModelCard:
    """ONNX (dynamic batch, height, width in multiples of 32) and its card, checked against
    PyTorch with ONNX Runtime at two sizes."""
    import contextlib
    import io
    import warnings

    import onnxruntime as ort

    from acquire_vf.card import sha256_file
    from acquire_vf.simulate import BRIGHTFIELD_UM, OPTICS_20X, STAINS
    from acquire_vf.training._export import OPSET, ExportError

    out = Path(out)
    from acquire_vf.training._checkpoint import load_checkpoint

    state = load_checkpoint(checkpoint)
    if state.get("kind") != "defocus":
        raise ExportError(f"'{checkpoint}' is not a defocus estimator checkpoint")
    rec = DefocusRecipe.model_validate(state["recipe"])
    net = DefocusNet(rec.width, rec.range_um)
    net.load_state_dict(state["state"])
    net.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    batch, h, w = (torch.export.Dim("batch", min=1, max=64), torch.export.Dim("h", min=1),
                   torch.export.Dim("w", min=1))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (torch.zeros(1, 1, 64, 64),), dynamo=True,
                                    opset_version=OPSET, input_names=["input"],
                                    output_names=["output"],
                                    dynamic_shapes={"x": {0: batch, 2: 32 * h, 3: 32 * w}},
                                    optimize=True, verbose=False)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    program.save(str(out))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    errors = {}
    for size in (96, 256):
        x = np.random.default_rng(size).random((2, 1, size, size), np.float32)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"input": x})[0]
        errors[f"{size}x{size}"] = float(np.abs(ref - got).max())
        if not errors[f"{size}x{size}"] < 1e-3:
            raise ExportError(f"ONNX Runtime differs from PyTorch by {errors} at {size}")
    o = OPTICS_20X
    card = ModelCard(
        name=out.stem, task="defocus", inputs=(rec.stain,),
        output="defocus_um" if rec.signed else "defocus_magnitude_um",
        normalisation={}, tile=256, overlap=0, multiple_of=32, preset="defocus",
        width=rec.width, depth=5, parameters=sum(p.numel() for p in net.parameters()),
        gflop_per_256=0.0, onnx_sha256=sha256_file(out), opset=OPSET,
        training={"recipe": rec.name, "recipe_text": state.get("recipe_text", ""),
                  "steps": state["step"], "seed": rec.seed, "val": state["val"],
                  "command": f"acquire-vf train training/{rec.name}.toml && acquire-vf "
                             f"export <out>/checkpoints/best.pt --out {out}",
                  "exported": time.strftime("%Y-%m-%dT%H:%M:%S")},
        metrics={"export_check_max_abs_error": errors},
        defocus={"stain": rec.stain, "range_um": rec.range_um, "step_um": rec.step_um,
                 "patch": rec.patch,
                 "pixel_size_um": o.pixel_size_um, "na": o.na,
                 "immersion_index": o.immersion_index, "specimen_index": o.specimen_index,
                 "depth_um": o.depth_um,
                 "wavelength_um": (BRIGHTFIELD_UM if rec.stain == "BF"
                                   else STAINS[rec.stain].wavelength_um),
                 "exposure_ms": rec.exposure_ms, "realistic": rec.realistic,
                 "randomise": rec.randomise,
                 "normalisation": "per frame: (x - p1) / (p99.5 - p1)",
                 "signed": rec.signed,
                 "output": ("[signed defocus (um, above focus positive), log(sigma_um)] per "
                            "image" if rec.signed else
                            "[distance from focus (um), log(sigma_um)] per image; the sign "
                            "is the controller's (a symmetric PSF gives none)")})
    card.save(out)
    return card

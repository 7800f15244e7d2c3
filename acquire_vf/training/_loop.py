"""The training loop: alternating discriminator and generator steps, validated and resumable.

Several GPUs (or CPU processes) run through PyTorch DistributedDataParallel launched with
``torchrun``: each process draws its own random patches (seeded by rank), gradients are averaged
across processes, so the effective batch is ``batch x processes``; BatchNorm statistics are
per process during training and broadcast from rank 0 (DDP's default), so all processes hold
identical weights and buffers. Rank 0 validates, logs and writes checkpoints.

Outputs in ``out``: ``checkpoints/last.pt`` (every ``checkpoint_every`` steps and at the end),
``checkpoints/best.pt`` (lowest validation MAE), ``log.csv``, ``tensorboard/``.
``resume`` continues from ``last.pt`` with its optimiser and random states, so an interrupted
run goes on where its last checkpoint left it.
"""

from __future__ import annotations

import copy
import csv
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from acquire_vf.config import REPO_ROOT, Recipe
from acquire_vf.metrics import image_metrics
from acquire_vf.training._data import PairedData, PatchSampler, load_pairs
from acquire_vf.training._loss import LossWeights, discriminator_loss, generator_loss
from acquire_vf.training._models import PRESETS, Discriminator, Generator, GeneratorConfig

log = logging.getLogger(__name__)
CSV_FIELDS = ["step", "time_s", "g_loss", "d_loss", "mae", "adv", "val_mae", "val_psnr",
              "val_ssim", "patches_per_s"]


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return rank, world


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def train(recipe: Recipe, recipe_text: str, out: Path, *, max_steps: int | None = None,
          resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the recipe's engine; returns a summary (steps, best validation metrics, speed)."""
    rank, world = _dist_info()
    device = _device(rank)
    ckpt_dir = out / "checkpoints"
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        data = load_pairs(recipe)  # writes the simulated dataset once, before others read it
    if world > 1:
        dist.barrier()
    if rank != 0:
        data = load_pairs(recipe)
    torch.manual_seed(recipe.seed + rank)
    rng = np.random.default_rng([recipe.seed, rank])
    t = recipe.train
    preset = PRESETS[recipe.preset]
    gcfg = GeneratorConfig(in_channels=len(data.inputs), residual=recipe.residual, **preset)
    G = Generator(gcfg).to(device)
    D = Discriminator(len(data.inputs), preset["width"], t.patch).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=t.lr, betas=t.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr, betas=t.betas)
    weights = LossWeights(**recipe.loss.model_dump())
    sampler = PatchSampler(data, data.train, t.patch, augment=t.augment, equalize=t.equalize)
    val_x, val_y = PatchSampler(data, data.val, t.patch, augment=False,
                                equalize=t.equalize).fixed(t.val_patches)
    total = min(max_steps, t.steps) if max_steps is not None else t.steps
    start, best = 0, float("inf")
    last = ckpt_dir / "last.pt"
    saved_average = None
    if resume and last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        saved_average = state["generator"] if "generator_train" in state else None
        G.load_state_dict(state.get("generator_train", state["generator"]))
        D.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start, best = int(state["step"]), float(state["best_val_mae"])
        rng = np.random.default_rng([recipe.seed, rank, start])
        torch.manual_seed(recipe.seed + rank + start)
        if rank == 0:
            _truncate_csv(out / "log.csv", start)
            log.info("resumed from step %d", start)
    else:
        if resume and rank == 0:
            log.warning("--resume: no checkpoint in %s, starting from step 0", ckpt_dir)
        if rank == 0:
            _truncate_csv(out / "log.csv", 0)  # a fresh run replaces an earlier run's log
        if gcfg.residual:
            G.start_as_identity()
        else:
            init_output_bias(G, sampler)
    G_ema = _ema_copy(G, saved_average) if t.ema is not None else None
    keep = G_ema if G_ema is not None else G  # validated, saved as best, exported
    g_model: nn.Module = G
    d_model: nn.Module = D
    if world > 1:
        g_model = nn.parallel.DistributedDataParallel(G)
        d_model = nn.parallel.DistributedDataParallel(D)
    use_amp = t.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    writer = _tensorboard(out) if rank == 0 else None
    logger = _CsvLog(out / "log.csv") if rank == 0 else None
    bar = _Progress(total, start, enabled=progress and rank == 0)
    t0, seen, step = time.perf_counter(), 0, start
    summary: dict[str, Any] = {}
    try:
        for step in range(start + 1, total + 1):
            xb, yb = sampler.batch(rng, t.batch)
            x = torch.from_numpy(xb).to(device)
            y = torch.from_numpy(yb).to(device)
            with torch.autocast(device.type, enabled=use_amp):
                fake = g_model(x)
                d_loss = discriminator_loss(d_model(x, y), d_model(x, fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            scaler.scale(d_loss).backward()
            scaler.step(opt_d)
            with torch.autocast(device.type, enabled=use_amp):
                g_loss, parts = generator_loss(fake, y, D(x, fake), G, weights)
            opt_g.zero_grad(set_to_none=True)
            scaler.scale(g_loss).backward()
            scaler.step(opt_g)
            scaler.update()
            if G_ema is not None:
                _ema_update(G_ema, G, t.ema or 0.0)
            seen += t.batch * world
            row: dict[str, Any] = {"step": step, "g_loss": float(g_loss.detach()),
                                   "d_loss": float(d_loss.detach()), **parts}
            if rank == 0 and (step % t.val_every == 0 or step == total):
                metrics = validate(keep, val_x, val_y, device)
                row.update({f"val_{k}": v for k, v in metrics.items()})
                if metrics["mae"] < best:
                    best = metrics["mae"]
                    _save(ckpt_dir / "best.pt", step, G, D, opt_g, opt_d, best, recipe,
                          recipe_text, data, gcfg, world, G_ema)
            elapsed = time.perf_counter() - t0
            row.update(time_s=round(elapsed, 3), patches_per_s=round(seen / elapsed, 2))
            if rank == 0 and (step % t.checkpoint_every == 0 or step == total):
                _save(last, step, G, D, opt_g, opt_d, best, recipe, recipe_text, data, gcfg,
                      world, G_ema)
            if logger is not None:
                logger.write(row)
            if writer is not None:
                for k, v in row.items():
                    if k not in ("step", "time_s"):
                        writer.add_scalar(k, v, step)
            bar.update(step, row)
        summary = {"steps": step, "best_val_mae": best, "patches_per_s": round(
            seen / max(time.perf_counter() - t0, 1e-9), 2), "world_size": world,
            "effective_batch": t.batch * world, "in_sync": _weights_in_sync(G, world)}
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if world > 1 and dist.is_initialized():
            if summary:  # both ranks reach here together, so neither closes a link in use
                dist.barrier()
            dist.destroy_process_group()
    return summary


@torch.no_grad()
def _ema_copy(G: Generator, saved: dict[str, Any] | None) -> Generator:
    """The averaged generator (``train.ema``): a copy of ``G``, or the saved average when
    resuming a run that kept one."""
    ema = copy.deepcopy(G)
    if saved is not None:
        ema.load_state_dict(saved)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def _ema_update(ema: nn.Module, G: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), G.parameters(), strict=True):
        pe.lerp_(p.detach(), 1.0 - decay)
    for be, b in zip(ema.buffers(), G.buffers(), strict=True):  # BatchNorm statistics
        be.copy_(b)


@torch.no_grad()
def init_output_bias(G: Generator, sampler: PatchSampler) -> None:
    """Start the output at the training targets' mean level (in tanh space).

    Fluorescence targets are mostly dark background (near -1 after normalisation) while an
    untrained Tanh output sits at 0; starting from the mean level, the first steps learn
    structure instead of the background. Deterministic: the same patches for every rank.
    """
    _, y = sampler.fixed(64, seed=99)
    mean = float(np.clip(y.mean(), -0.95, 0.95))
    last = G.final[1]
    assert isinstance(last, nn.ConvTranspose2d) and last.bias is not None
    last.bias.fill_(float(np.arctanh(mean)))


@torch.no_grad()
def validate(G: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device,
             ) -> dict[str, float]:
    """MAE, PSNR, SSIM of the generator on fixed validation patches, in [0, 1] units."""
    was = G.training
    G.eval()
    pred = G(torch.from_numpy(x).to(device)).float().cpu().numpy()
    G.train(was)
    scores = [image_metrics((p[0] + 1) / 2, (t[0] + 1) / 2) for p, t in zip(pred, y, strict=True)]
    return {k: float(np.mean([s[k] for s in scores])) for k in ("mae", "psnr", "ssim")}


def _weights_in_sync(G: nn.Module, world: int) -> bool:
    """Every process holds the same generator weights (checked with an all-gather)."""
    if world == 1:
        return True
    flat = torch.cat([p.detach().float().flatten().cpu() for p in G.parameters()])
    digest = torch.tensor([float(flat.sum()), float((flat * flat).sum()), float(flat.abs().max())])
    gathered = [torch.zeros_like(digest) for _ in range(world)]
    dist.all_gather(gathered, digest)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _save(path: Path, step: int, G: nn.Module, D: nn.Module, opt_g: Any, opt_d: Any,
          best: float, recipe: Recipe, recipe_text: str, data: PairedData,
          gcfg: GeneratorConfig, world: int, G_ema: nn.Module | None = None) -> None:
    # "generator" is what export reads: the average when the recipe keeps one
    state = {
        "step": step, "generator": (G_ema or G).state_dict(), "discriminator": D.state_dict(),
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "best_val_mae": best,
        "generator_config": asdict(gcfg), "recipe": recipe.model_dump(mode="json"),
        "recipe_text": recipe_text, "inputs": list(data.inputs), "target": data.target,
        "normalisation": {k: v.model_dump() for k, v in data.normalisation.items()},
        "data_root": _portable(data.root), "world_size": world,
        "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
    }
    if G_ema is not None:
        state["generator_train"] = G.state_dict()  # the raw weights, to resume from
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-save never leaves a broken checkpoint


def _portable(path: Path) -> str:
    """``path`` relative to the repository when inside it (the simulated-data cache), so that
    a card written here names the same folder in another checkout."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


class _CsvLog:
    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self._fh = open(path, "a", newline="")  # noqa: SIM115 - kept open for the run
        self._w = csv.DictWriter(self._fh, CSV_FIELDS, extrasaction="ignore")
        if new:
            self._w.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow(row)
        self._fh.flush()

    def __del__(self) -> None:
        self._fh.close()


def _truncate_csv(path: Path, step: int) -> None:
    """Drop log rows after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard not installed; logging to log.csv only")
        return None
    return SummaryWriter(str(out / "tensorboard"))


class _Progress:
    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"))
            self._task = self._bar.add_task("train", total=total, completed=start, info="")
            self._bar.start()

    def update(self, step: int, row: dict[str, Any]) -> None:
        if self._bar is not None:
            info = f"G {row['g_loss']:.3f} D {row['d_loss']:.3f} MAE {row['mae']:.3f}"
            if "val_mae" in row:
                info += f" | val MAE {row['val_mae']:.3f} PSNR {row['val_psnr']:.1f}"
            self._bar.update(self._task, completed=step, info=info)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

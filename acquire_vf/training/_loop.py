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
from acquire_vf.training._checkpoint import load_checkpoint
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
          resume: bool = False, progress: bool = True,
          recipe_path: Path | None = None, init: Path | None = None) -> dict[str, Any]:
    """Train the recipe's engine; returns a summary (steps, best validation metrics, speed).

    ``recipe_path`` (the file as given) goes into the checkpoints, so the card names the
    recipe that was actually run, absolute and as typed. ``init`` (an engine or a checkpoint)
    fine-tunes: the generator starts as it (:mod:`acquire_vf.training._init`), with its
    normalisation, frozen BatchNorm and a tenth of the recipe's learning rate."""
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
    run = _Trainer(recipe, recipe_text, data, out, device, rank, world, init=init)
    if recipe_path is not None:
        run.provenance.update({"recipe_path": str(recipe_path),
                               "recipe_path_absolute": str(Path(recipe_path).resolve()),
                               "run_folder": str(Path(out).resolve()),
                               "data_path": str(recipe.data.path) if recipe.data.path else None})
    total = min(max_steps, recipe.train.steps) if max_steps is not None else recipe.train.steps
    run.start_or_resume(resume)
    return run.loop(total, progress)


class _Trainer:
    """The state of one training run: models, optimisers, sampler, schedule position.

    One method per concern: set-up (``__init__``), resume or fresh start, one GAN step, and
    what follows a step on rank 0 (validation, checkpoints, logs).
    """

    def __init__(self, recipe: Recipe, recipe_text: str, data: PairedData, out: Path,
                 device: torch.device, rank: int, world: int, init: Path | None = None) -> None:
        self.recipe, self.recipe_text, self.out = recipe, recipe_text, out
        self.device, self.rank, self.world = device, rank, world
        self.provenance: dict[str, Any] = {}
        self.rng = np.random.default_rng([recipe.seed, rank])
        t = self.t = recipe.train
        preset = PRESETS[recipe.preset]
        self.gcfg = GeneratorConfig(in_channels=len(data.inputs), residual=recipe.residual,
                                    **preset)
        self.G = Generator(self.gcfg)
        lr = t.lr
        self.init = init
        if init is not None:
            from acquire_vf.training._init import load_initial, start_normalisation

            self.provenance["init"] = load_initial(self.G, init, recipe, data.inputs,
                                                   data.target)
            data = start_normalisation(data, self.provenance["init"]["normalisation"])
            lr = t.lr * self.provenance["init"]["lr_factor"]
        self.data = data
        self.G = self.G.to(device)
        self.D = Discriminator(len(data.inputs), preset["width"], t.patch).to(device)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=lr, betas=t.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=lr, betas=t.betas)
        self.weights = LossWeights(**recipe.loss.model_dump())
        self.sampler = PatchSampler(data, data.train, t.patch, augment=t.augment,
                                    equalize=t.equalize)
        self.val_x, self.val_y = PatchSampler(data, data.val, t.patch, augment=False,
                                              equalize=t.equalize).fixed(t.val_patches)
        self.ckpt_dir = out / "checkpoints"
        self.start, self.best = 0, float("inf")
        self.G_ema: Generator | None = None
        self.use_amp = t.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def start_or_resume(self, resume: bool) -> None:
        """Continue from ``last.pt`` (weights, optimisers, random state) or start afresh."""
        last = self.ckpt_dir / "last.pt"
        saved_average = None
        seed, rank = self.recipe.seed, self.rank
        if resume and last.exists():
            state = load_checkpoint(last, map_location=self.device)
            saved_average = state["generator"] if "generator_train" in state else None
            self.G.load_state_dict(state.get("generator_train", state["generator"]))
            self.D.load_state_dict(state["discriminator"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.start, self.best = int(state["step"]), float(state["best_val_mae"])
            self.rng = np.random.default_rng([seed, rank, self.start])
            torch.manual_seed(seed + rank + self.start)
            if rank == 0:
                _truncate_csv(self.out / "log.csv", self.start)
                log.info("resumed from step %d", self.start)
        else:
            if resume and rank == 0:
                log.warning("--resume: no checkpoint in %s, starting from step 0",
                            self.ckpt_dir)
            if rank == 0:
                _truncate_csv(self.out / "log.csv", 0)  # a fresh run replaces an earlier log
            if self.init is not None:
                pass  # the generator starts as the engine it fine-tunes
            elif self.gcfg.residual:
                self.G.start_as_identity()
            else:
                init_output_bias(self.G, self.sampler)
        if self.t.ema is not None:
            self.G_ema = _ema_copy(self.G, saved_average)

    def loop(self, total: int, progress: bool) -> dict[str, Any]:
        """Steps ``start + 1 .. total``; the summary once every rank is done."""
        g_model: nn.Module = self.G
        d_model: nn.Module = self.D
        if self.world > 1:
            g_model = nn.parallel.DistributedDataParallel(self.G)
            d_model = nn.parallel.DistributedDataParallel(self.D)
        rank0 = self.rank == 0
        writer = _tensorboard(self.out) if rank0 else None
        logger = _CsvLog(self.out / "log.csv") if rank0 else None
        bar = _Progress(total, self.start, enabled=progress and rank0)
        t0, seen, step = time.perf_counter(), 0, self.start
        summary: dict[str, Any] = {}
        try:
            for step in range(self.start + 1, total + 1):
                row = self.gan_step(step, g_model, d_model)
                seen += self.t.batch * self.world
                if rank0:
                    self.after_step(step, total, row)
                elapsed = time.perf_counter() - t0
                row.update(time_s=round(elapsed, 3), patches_per_s=round(seen / elapsed, 2))
                if logger is not None:
                    logger.write(row)
                if writer is not None:
                    for k, v in row.items():
                        if k not in ("step", "time_s"):
                            writer.add_scalar(k, v, step)
                bar.update(step, row)
            summary = {"steps": step, "best_val_mae": self.best, "patches_per_s": round(
                seen / max(time.perf_counter() - t0, 1e-9), 2), "world_size": self.world,
                "effective_batch": self.t.batch * self.world,
                "in_sync": _weights_in_sync(self.G, self.world)}
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            if self.world > 1 and dist.is_initialized():
                if summary:  # both ranks reach here together, so neither closes a link in use
                    dist.barrier()
                dist.destroy_process_group()
        return summary

    def gan_step(self, step: int, g_model: nn.Module, d_model: nn.Module) -> dict[str, Any]:
        """One discriminator and one generator update (and the weight average)."""
        xb, yb = self.sampler.batch(self.rng, self.t.batch)
        x = torch.from_numpy(xb).to(self.device)
        y = torch.from_numpy(yb).to(self.device)
        dev = self.device.type
        with torch.autocast(dev, enabled=self.use_amp):
            fake = g_model(x)
            d_loss = discriminator_loss(d_model(x, y), d_model(x, fake.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(d_loss).backward()
        self.scaler.step(self.opt_d)
        with torch.autocast(dev, enabled=self.use_amp):
            g_loss, parts = generator_loss(fake, y, self.D(x, fake), self.G, self.weights)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(g_loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        if self.G_ema is not None:
            _ema_update(self.G_ema, self.G, self.t.ema or 0.0)
        return {"step": step, "g_loss": float(g_loss.detach()),
                "d_loss": float(d_loss.detach()), **parts}

    def after_step(self, step: int, total: int, row: dict[str, Any]) -> None:
        """Rank 0: validate (the average when there is one), keep the best, checkpoint."""
        keep = self.G_ema if self.G_ema is not None else self.G  # validated, saved, exported
        if step % self.t.val_every == 0 or step == total:
            metrics = validate(keep, self.val_x, self.val_y, self.device)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            if metrics["mae"] < self.best:
                self.best = metrics["mae"]
                self.save(self.ckpt_dir / "best.pt", step)
        if step % self.t.checkpoint_every == 0 or step == total:
            self.save(self.ckpt_dir / "last.pt", step)

    def save(self, path: Path, step: int) -> None:
        _save(path, step, self.G, self.D, self.opt_g, self.opt_d, self.best, self.recipe,
              self.recipe_text, self.data, self.gcfg, self.world, self.G_ema,
              self.provenance)


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
          gcfg: GeneratorConfig, world: int, G_ema: nn.Module | None = None,
          provenance: dict[str, Any] | None = None) -> None:
    # "generator" is what export reads: the average when the recipe keeps one
    state = {
        "step": step, "generator": (G_ema or G).state_dict(), "discriminator": D.state_dict(),
        "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "best_val_mae": best,
        "generator_config": asdict(gcfg), "recipe": recipe.model_dump(mode="json"),
        "recipe_text": recipe_text, "inputs": list(data.inputs), "target": data.target,
        "normalisation": {k: v.model_dump() for k, v in data.normalisation.items()},
        "data_root": _portable(data.root), "world_size": world,
        "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "provenance": provenance or {},
    }
    if G_ema is not None:
        state["generator_train"] = G.state_dict()  # the raw weights, to resume from
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-save never leaves a broken checkpoint


def _portable(path: Path) -> str:
    """``path`` as ``.cache/...`` when in acquire-vf's cache (the simulated data), else relative
    to the checkout when inside it, else absolute: so a card written here names the same
    folder in another checkout or installation (:func:`acquire_vf.config.data_root`)."""
    from acquire_vf._paths import cache_root

    full = path.resolve()
    for base, prefix in ((cache_root().resolve(), Path(".cache")), (REPO_ROOT, Path())):
        try:
            return str(prefix / full.relative_to(base))
        except ValueError:
            continue
    return str(full)


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

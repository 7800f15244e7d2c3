"""Training throughput (patches per second) of both presets on this machine.

Times the real training step (a discriminator step and a generator step with the paper's
losses) on random patches, after a warm-up. ``.venv/bin/python scripts/perf_training.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from acquire_vf.training._loss import LossWeights, discriminator_loss, generator_loss  # noqa: E402
from acquire_vf.training._models import (  # noqa: E402
    PRESETS,
    Discriminator,
    Generator,
    GeneratorConfig,
)


def patches_per_second(preset: str, patch: int, batch: int, steps: int) -> float:
    p = PRESETS[preset]
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    G = Generator(GeneratorConfig(2, **p)).to(dev)
    D = Discriminator(2, p["width"], patch).to(dev)
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    x = torch.rand(batch, 2, patch, patch, device=dev) * 2 - 1
    y = torch.rand(batch, 1, patch, patch, device=dev) * 2 - 1

    def step() -> None:
        fake = G(x)
        d = discriminator_loss(D(x, y), D(x, fake.detach()))
        od.zero_grad()
        d.backward()
        od.step()
        g, _ = generator_loss(fake, y, D(x, fake), G, LossWeights())
        og.zero_grad()
        g.backward()
        og.step()

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")
    print("| preset | patch | batch | patches/s |")
    for preset, patch, batch, steps in (("realtime", 128, 8, 12), ("realtime", 256, 8, 6),
                                        ("paper", 256, 4, 3)):
        rate = patches_per_second(preset, patch, batch, steps)
        print(f"| {preset} | {patch} | {batch} | {rate:.1f} |")


if __name__ == "__main__":
    main()

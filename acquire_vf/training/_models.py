"""The VirFluoNet conditional GAN (paper, Methods and Fig. 9), width and depth as parameters.

Generator: a U-Net with kernel 3 — an initial stride-2 convolution, encoder blocks
LeakyReLU-Conv(stride 2)-BatchNorm, decoder blocks ReLU-ConvTranspose(stride 2)-BatchNorm with
skip connections, ending in ReLU-ConvTranspose and Tanh; any number of input channels, one
output. Optionally residual (not in the paper): the network predicts a correction that is added
to the input, for refocusing, where the answer is close to the input; a plain U-Net whose first
and last layers work at half resolution has to relearn every fine detail of the input instead.
Channel counts double per level up to 8x the base width, as in pix2pix.

Discriminator: conditional (the input image(s) concatenated with the real or generated target),
kernel 5: a stride-2 convolution and BatchNorm, three Conv(stride 2)-BatchNorm-LeakyReLU blocks,
one fully connected layer, sigmoid. One choice the paper leaves open: a LeakyReLU follows the
first BatchNorm (without it the first two convolutions would compose into one linear map).
The fully connected layer sees the whole patch, so the discriminator is built for a patch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import torch
from torch import nn


class Preset(TypedDict):
    width: int
    depth: int


PRESETS: dict[str, Preset] = {
    "paper": {"width": 64, "depth": 8},
    "realtime": {"width": 16, "depth": 6},
}


@dataclass(frozen=True)
class GeneratorConfig:
    in_channels: int
    width: int = 16
    depth: int = 6
    max_mult: int = 8
    residual: bool = False
    """Predict a correction added to the first input (refocusing: the output is the input
    channel itself, sharpened), ``clip(x + 2 tanh(.), -1, 1)`` instead of ``tanh(.)``."""

    @property
    def multiple_of(self) -> int:
        """Height and width must be divisible by this (one halving per level)."""
        return 2**self.depth

    def channels(self) -> list[int]:
        return [self.width * min(2**i, self.max_mult) for i in range(self.depth)]


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        if cfg.depth < 2:
            raise ValueError(f"generator depth must be at least 2, got {cfg.depth}")
        self.cfg = cfg
        ch = cfg.channels()
        self.initial = nn.Conv2d(cfg.in_channels, ch[0], 3, stride=2, padding=1)
        self.down = nn.ModuleList(
            nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(ch[i - 1], ch[i], 3, 2, 1, bias=False),
                          nn.BatchNorm2d(ch[i]))
            for i in range(1, cfg.depth)
        )
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.ConvTranspose2d(ch[i] if i == cfg.depth - 1 else 2 * ch[i], ch[i - 1], 3, 2,
                                   padding=1, output_padding=1, bias=False),
                nn.BatchNorm2d(ch[i - 1]))
            for i in range(cfg.depth - 1, 0, -1)
        )
        self.final = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(2 * ch[0], 1, 3, 2, padding=1, output_padding=1),
            nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.initial(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        y = skips[-1]
        for i, block in enumerate(self.up):
            y = block(y if i == 0 else torch.cat([y, skips[-1 - i]], dim=1))
        out = self.final(torch.cat([y, skips[0]], dim=1))
        if self.cfg.residual:
            return (x[:, :1] + 2 * out).clamp(-1.0, 1.0)
        return out

    @torch.no_grad()
    def start_as_identity(self) -> None:
        """Residual generators: zero the last layer, so training starts from the input."""
        if not self.cfg.residual:
            raise ValueError("only a residual generator starts as the identity")
        last = self.final[1]
        assert isinstance(last, nn.ConvTranspose2d) and last.bias is not None
        last.weight.zero_()
        last.bias.zero_()


class Discriminator(nn.Module):
    def __init__(self, in_channels: int, width: int = 16, patch: int = 256) -> None:
        super().__init__()
        if patch % 16:
            raise ValueError(f"discriminator patch must be a multiple of 16, got {patch}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels + 1, width, 5, 2, 2), nn.BatchNorm2d(width), nn.LeakyReLU(0.2),
            *(layer for k in range(1, 4) for layer in (
                nn.Conv2d(width * 2 ** (k - 1), width * 2**k, 5, 2, 2, bias=False),
                nn.BatchNorm2d(width * 2**k), nn.LeakyReLU(0.2))),
        )
        self.fc = nn.Linear(width * 8 * (patch // 16) ** 2, 1)

    def forward(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Logit that ``target`` is real given ``inputs`` (the losses use logits, stably)."""
        f = self.features(torch.cat([inputs, target], dim=1))
        return self.fc(f.flatten(1)).squeeze(1)

    def probability(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The paper's output: sigmoid of the logit."""
        return torch.sigmoid(self(inputs, target))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflop(model: nn.Module, in_channels: int, size: int = 256) -> float:
    """Forward cost in GFLOP (2 x multiply-adds of convolutions) for one size x size input."""
    total = 0

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += 2 * out.numel() * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels // mod.groups
            total += 2 * inp[0].numel() * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, size, size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total / 1e9

"""The paper's losses (eq. 3-6), with configurable weights.

``l = lambda1 * MAE + lambda2 * (-log D(I, G(I))) + lambda3 * ||theta_G||_1`` with
(0.99, 0.01, 0.001). ``||theta_G||_1`` is taken as the mean absolute parameter value
(``l1_reduction = "mean"``): the literal sum over a few hundred thousand to tens of millions of
parameters, times 0.001, is 10-1000x the MAE term and would train a network of zeros; the mean
keeps the paper's intent (a weak L1 penalty on the weights) at a scale comparable to the MAE.
``"sum"`` is available for the literal formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class LossWeights:
    mae: float = 0.99
    adversarial: float = 0.01
    weights_l1: float = 0.001
    l1_reduction: Literal["mean", "sum"] = "mean"


def weights_l1(model: nn.Module, reduction: str = "mean") -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    total = torch.stack([p.abs().sum() for p in params]).sum()
    return total / sum(p.numel() for p in params) if reduction == "mean" else total


def generator_loss(pred: torch.Tensor, target: torch.Tensor, fake_logits: torch.Tensor,
                   generator: nn.Module, w: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Total generator loss and its parts. ``-log D = softplus(-logit)``, computed stably."""
    mae = (pred - target).abs().mean()
    adv = F.softplus(-fake_logits).mean()
    l1 = weights_l1(generator, w.l1_reduction)
    total = w.mae * mae + w.adversarial * adv + w.weights_l1 * l1
    return total, {"mae": float(mae.detach()), "adv": float(adv.detach()),
                   "l1": float(l1.detach())}


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``-[log D(I, Phi) + log(1 - D(I, G(I)))]`` (eq. 2), halved as in pix2pix."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())

"""Pieces shared by the attacks: the defense in the loop, the step schedule, the final predictions."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def loop_defense(defense) -> Callable[[torch.Tensor], torch.Tensor]:
    """What an attack applies before the model: ``defense`` (the identity without one), which must
    pass a gradient: differentiable, or wrapped in BPDA."""
    if defense is None:
        return nn.Identity()
    if not getattr(defense, "differentiable", True):
        spec = getattr(defense, "spec", type(defense).__name__)
        raise ValueError(
            f"the defense {spec!r} is not differentiable, so a gradient attack cannot see through it: "
            "wrap it in lgs_gpu.attacks.BPDA (identity backward) or attack without it"
        )
    return defense


def cosine_step(step: int, total: int, initial: float, final: float) -> float:
    """Step size decayed from ``initial`` to ``final`` along half a cosine over ``total`` steps."""
    return final + 0.5 * (initial - final) * (1 + math.cos(math.pi * step / max(total, 1)))


@torch.no_grad()
def top1(model: nn.Module, defense, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 32):
    """``(predictions, confidence in the target)`` of ``model(defense(images))``, in batches."""
    predictions, confidences = [], []
    for chunk, chunk_targets in zip(images.split(batch_size), targets.split(batch_size), strict=True):
        probabilities = model(defense(chunk)).softmax(dim=-1)
        predictions.append(probabilities.argmax(dim=-1))
        confidences.append(probabilities.gather(1, chunk_targets[:, None].to(probabilities.device))[:, 0])
    return torch.cat(predictions), torch.cat(confidences)

"""Pieces shared by the attacks: the defended forward pass, the step schedule, targets."""

from __future__ import annotations

import math

import torch
from torch import nn


def check_defense_in_loop(defense) -> None:
    """A defense inside a gradient attack must pass a gradient: differentiable, or wrapped in BPDA."""
    if defense is not None and not getattr(defense, "differentiable", True):
        spec = getattr(defense, "spec", type(defense).__name__)
        raise ValueError(
            f"the defense {spec!r} is not differentiable, so a gradient attack cannot see through it: "
            "wrap it in lgs_gpu.attacks.BPDA (identity backward) or attack without it"
        )


def defended_logits(model: nn.Module, defense, images: torch.Tensor) -> torch.Tensor:
    """``model(defense(images))`` (``model(images)`` without a defense)."""
    return model(images if defense is None else defense(images))


def cosine_step(step: int, total: int, initial: float, final: float) -> float:
    """Step size decayed from ``initial`` to ``final`` along half a cosine over ``total`` steps."""
    return final + 0.5 * (initial - final) * (1 + math.cos(math.pi * step / max(total, 1)))


def random_targets(sources: torch.Tensor, classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random class for each image, never its source class."""
    offsets = torch.randint(1, classes, sources.shape, generator=generator)
    return (sources.cpu() + offsets) % classes


@torch.no_grad()
def top1(model: nn.Module, defense, images: torch.Tensor, targets: torch.Tensor, batch_size: int = 32):
    """``(predictions, confidence in the target)`` of ``model(defense(images))``, in batches."""
    predictions, confidences = [], []
    for start in range(0, images.shape[0], batch_size):
        logits = defended_logits(model, defense, images[start : start + batch_size])
        probabilities = logits.softmax(dim=-1)
        predictions.append(probabilities.argmax(dim=-1))
        confidences.append(probabilities.gather(1, targets[start : start + batch_size, None].to(logits.device))[:, 0])
    return torch.cat(predictions), torch.cat(confidences)

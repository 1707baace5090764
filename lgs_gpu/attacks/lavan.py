"""LaVAN (Karmon, Zoran & Goldberg, 2018; the LGS paper's eq. 2-3): a localized, visible,
targeted patch that *replaces* a square region of each image.

``x' = (1 − m)·x + m·δ`` with ``δ ∈ [0, 1]``; each step moves ``δ`` along the sign of the
gradient of ``CE(target) − CE(source)``, i.e. towards the target class and away from the source
class at once, with a step size decayed along a cosine. An image stops once the target's
confidence reaches ``target_confidence`` (0.99) or after ``iterations`` steps; the attack
succeeds on an image when its top-1 class is the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core.patch_geometry import patch_side
from ..core.validate import as_image_batch, to_unit_float
from ._loop import cosine_step, loop_defense, top1
from .placement import border_locations, check_locations, square_masks

DEFAULT_ITERATIONS = 1000
DEFAULT_STEP_SIZE = 0.05
DEFAULT_FINAL_STEP_SIZE = 0.002


@dataclass
class AttackResult:
    """What an attack produced, per image (all tensors on the images' device except where noted)."""

    adversarial: torch.Tensor  # [B, 3, H, W] float in [0, 1]
    masks: torch.Tensor  # [B, 1, H, W] bool: the pixels the attack controls
    sources: torch.Tensor  # [B] int64: the true (or clean-predicted) class
    targets: torch.Tensor  # [B] int64
    success: torch.Tensor  # [B] bool: top-1 == target through the model (and defense) attacked
    target_confidence: torch.Tensor  # [B] float
    iterations: torch.Tensor  # [B] int64: steps each image took


def lavan(
    model: nn.Module,
    images: torch.Tensor,
    sources: torch.Tensor,
    *,
    area_fraction: float = 0.04,
    side: int | None = None,
    targets: torch.Tensor | None = None,
    locations: torch.Tensor | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    step_size: float = DEFAULT_STEP_SIZE,
    final_step_size: float = DEFAULT_FINAL_STEP_SIZE,
    target_confidence: float = 0.99,
    defense: nn.Module | None = None,
    eot_samples: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> AttackResult:
    """Run LaVAN on a batch, each image with its own target and location.

    Args:
        model: logits from ``[B, 3, H, W]`` images in [0, 1] (e.g. :func:`lgs_gpu.models.load_model`).
        images: ``[B, 3, H, W]`` float in [0, 1] or uint8, any device.
        sources: ``[B]`` true classes (the attack moves away from them).
        area_fraction: patch area / image area (ignored when ``side`` is given).
        side: patch side in pixels.
        targets: ``[B]`` target classes; default random, never the source.
        locations: ``[B, 2]`` (top, left); default drawn along the border strips.
        iterations: most steps per image.
        step_size, final_step_size: the cosine schedule's first and last step.
        target_confidence: an image stops once the target's probability reaches this.
        defense: applied before the model in the loop (must be differentiable: an adaptive
            attack through LGS's torch path, or a :class:`~lgs_gpu.attacks.BPDA` wrapper).
        eot_samples: forward passes averaged per step (for randomised defenses).
        seed: seeds targets, locations and the patch's initial noise.
    Returns:
        :class:`AttackResult`.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        >>> result = lavan(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 1]), side=8, iterations=5)
        >>> result.adversarial.shape, bool((result.targets != result.sources).all())
        (torch.Size([2, 3, 32, 32]), True)
    """
    batch, _ = as_image_batch(images, "images")
    count, channels, height, width = batch.shape
    device = batch.device
    sources = torch.as_tensor(sources).long().to(device)
    if sources.shape != (count,):
        raise ValueError(f"sources must have shape [{count}]. Got {tuple(sources.shape)}")
    defense = loop_defense(defense)
    if iterations < 1 or eot_samples < 1:
        raise ValueError(f"iterations and eot_samples must be >= 1. Got {iterations} and {eot_samples}")
    side = patch_side(min(height, width), area_fraction) if side is None else int(side)
    if not 1 <= side <= min(height, width):
        raise ValueError(f"a {side}x{side} patch does not fit in {height}x{width} images")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        classes = model(to_unit_float(batch[:1])).shape[-1]
    if targets is None:  # uniformly random, never the source class
        targets = (sources.cpu() + torch.randint(1, classes, sources.shape, generator=generator)) % classes
    targets = torch.as_tensor(targets).long().to(device)
    if targets.shape != (count,) or (targets == sources).any():
        raise ValueError(f"targets must be [{count}] classes, none equal to its image's source class")
    if locations is None:
        locations = border_locations(count, height, width, side, generator)
    locations = check_locations(locations, count, height, width, side)
    masks = square_masks(height, width, side, locations, device)

    clean = to_unit_float(batch).float()
    patch = torch.rand(clean.shape, generator=generator).to(device)  # only the masked pixels matter
    active = torch.ones(count, dtype=torch.bool, device=device)
    steps = torch.zeros(count, dtype=torch.long, device=device)
    for step in tqdm(range(iterations), desc="LaVAN", unit="step", disable=not progress, leave=False):
        patch.requires_grad_(True)
        adversarial = torch.where(masks, patch, clean)
        loss = 0  # summed over the images: each image's gradient is its own loss's
        for _ in range(eot_samples):
            logits = model(defense(adversarial))
            loss += F.cross_entropy(logits, targets, reduction="sum")
            loss -= F.cross_entropy(logits, sources, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, patch)
        with torch.no_grad():
            reached = logits.softmax(dim=-1).gather(1, targets[:, None])[:, 0] >= target_confidence
            active &= ~reached
            if not active.any():
                break
            steps += active.long()
            size = cosine_step(step, iterations, step_size, final_step_size)
            moved = (patch - size * gradient.sign()).clamp(0, 1)
            patch = torch.where(active.view(-1, 1, 1, 1) & masks, moved, patch.detach())
    patch = patch.detach()
    adversarial = torch.where(masks, patch, clean)
    predictions, confidence = top1(model, defense, adversarial, targets)
    return AttackResult(adversarial, masks, sources, targets, predictions == targets, confidence, steps)

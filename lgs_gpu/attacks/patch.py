"""The universal adversarial patch (Brown et al., 2017; the LGS paper's eq. 4), trained with
expectation over transformation (EoT).

One square patch for all images, targeted (default: ImageNet class 859, toaster). Each step pastes
it on every training image at a random location, rotation and scale, and moves it along the sign
of the averaged gradient of ``CE(target)``. At evaluation the patch covers ``area_fraction`` of
the image (paper: 10%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core.patch_geometry import patch_side
from ..core.validate import as_image_batch, to_unit_float
from ._loop import cosine_step, loop_defense

TOASTER = 859


@dataclass
class PatchPlacement:
    """Per-image EoT draws: centre (row, col) in pixels, rotation in radians, scale (1 = nominal side)."""

    centres: torch.Tensor  # [B, 2] float
    angles: torch.Tensor  # [B]
    scales: torch.Tensor  # [B]


def random_placement(
    count: int,
    image_size: int,
    side: int,
    generator: torch.Generator,
    max_rotation: float = math.pi / 8,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> PatchPlacement:
    """Random rotations in ``±max_rotation``, scales in ``scale_range``, centres keeping the patch inside."""
    scales = torch.empty(count).uniform_(*scale_range, generator=generator)
    angles = torch.empty(count).uniform_(-max_rotation, max_rotation, generator=generator)
    # the rotated square's half-extent along an axis is (side * scale / 2) * (|cos| + |sin|)
    half = side * scales / 2 * (angles.cos().abs() + angles.sin().abs())
    low, high = half, image_size - half
    if (high < low).any():
        raise ValueError(f"a {side}px patch at scale {scale_range[1]} does not fit in {image_size}px images")
    centres = low[:, None] + torch.rand(count, 2, generator=generator) * (high - low)[:, None]
    return PatchPlacement(centres, angles, scales)


def paste(images: torch.Tensor, patch: torch.Tensor, placement: PatchPlacement) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``patch`` ``[3, s, s]`` on ``images`` ``[B, 3, H, W]`` (float) per ``placement``; differentiable.

    Each output pixel looks the patch up through the inverse rotation / scaling about the
    patch's centre (bilinear, zero outside): with rotation 0, scale 1 and a centre at a whole
    pixel offset the patch lands pixel for pixel. Returns ``(patched, coverage [B, 1, H, W])``.
    """
    count, _, height, width = images.shape
    side = patch.shape[-1]
    device, dtype = images.device, images.dtype
    rows = torch.arange(height, device=device, dtype=dtype) + 0.5  # pixel centres
    cols = torch.arange(width, device=device, dtype=dtype) + 0.5
    centres = placement.centres.to(device, dtype)
    d_row = rows.view(1, height, 1) - centres[:, 0].view(-1, 1, 1)  # [B, H, 1]
    d_col = cols.view(1, 1, width) - centres[:, 1].view(-1, 1, 1)  # [B, 1, W]
    cos = placement.angles.to(device, dtype).cos().view(-1, 1, 1)
    sin = placement.angles.to(device, dtype).sin().view(-1, 1, 1)
    half = (side * placement.scales.to(device, dtype) / 2).view(-1, 1, 1)
    # rotate the offset back by -angle, then express it in the patch's normalised [-1, 1] frame
    x = (cos * d_col + sin * d_row) / half
    y = (-sin * d_col + cos * d_row) / half
    grid = torch.stack([x.expand(-1, height, width), y.expand(-1, height, width)], dim=-1)
    with_alpha = torch.cat([patch, torch.ones_like(patch[:1])], dim=0).to(dtype)
    sampled = F.grid_sample(
        with_alpha.expand(count, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    colour, coverage = sampled[:, :-1], sampled[:, -1:]
    return images * (1 - coverage) + colour, coverage


@dataclass
class PatchResult:
    patch: torch.Tensor  # [3, side, side] in [0, 1]
    target: int
    side: int
    losses: list[float]  # mean CE(target) per step


def train_patch(
    model: nn.Module,
    images: torch.Tensor,
    *,
    target: int = TOASTER,
    area_fraction: float = 0.1,
    steps: int = 500,
    batch_size: int = 8,
    step_size: float = 0.05,
    final_step_size: float = 0.002,
    max_rotation: float = math.pi / 8,
    scale_range: tuple[float, float] = (0.9, 1.1),
    defense: nn.Module | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PatchResult:
    """Train one universal targeted patch over ``images`` with EoT.

    Args:
        model: logits from ``[B, 3, S, S]`` images in [0, 1].
        images: ``[N, 3, S, S]`` square training images (float in [0, 1] or uint8).
        target: the class the patch pushes every image to (default 859, toaster).
        area_fraction: nominal patch area / image area (paper: 0.1).
        steps, batch_size: sign-gradient steps, each on ``batch_size`` random training images.
        max_rotation, scale_range: the EoT distribution (radians; relative side).
        defense: a differentiable defense (or BPDA) in the loop, for adaptive patches.
    Returns:
        :class:`PatchResult`.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        >>> train_patch(model, torch.rand(4, 3, 32, 32), target=3, steps=2).patch.shape
        torch.Size([3, 11, 11])
    """
    batch, _ = as_image_batch(images, "images")
    count, _, height, width = batch.shape
    if height != width:
        raise ValueError(f"train_patch takes square images. Got {height}x{width}")
    defense = loop_defense(defense)
    side = patch_side(height, area_fraction)
    generator = torch.Generator().manual_seed(seed)
    device = batch.device
    clean = to_unit_float(batch).float()
    patch = torch.rand(3, side, side, generator=generator).to(device)
    targets = torch.full((min(batch_size, count),), target, dtype=torch.long, device=device)
    losses = []
    for step in tqdm(range(steps), desc="adversarial patch", unit="step", disable=not progress, leave=False):
        chosen = torch.randperm(count, generator=generator)[: targets.shape[0]].to(device)
        placement = random_placement(targets.shape[0], height, side, generator, max_rotation, scale_range)
        patch.requires_grad_(True)
        patched, _ = paste(clean[chosen], patch, placement)
        loss = F.cross_entropy(model(defense(patched)), targets)
        (gradient,) = torch.autograd.grad(loss, patch)  # fresh every step: never accumulated into .grad
        with torch.no_grad():
            patch = (patch - cosine_step(step, steps, step_size, final_step_size) * gradient.sign()).clamp(0, 1)
        losses.append(loss.item())
    return PatchResult(patch.detach(), target, side, losses)


def apply_patch(
    images: torch.Tensor,
    patch: torch.Tensor,
    seed: int = 0,
    max_rotation: float = math.pi / 8,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a trained patch on each of ``images`` at a seeded random placement (test-time EoT draw).

    Returns ``(patched float images in [0, 1], coverage [B, 1, H, W])``.
    """
    batch, _ = as_image_batch(images, "images")
    if batch.shape[-2] != batch.shape[-1]:
        raise ValueError(f"apply_patch takes square images. Got {tuple(batch.shape[-2:])}")
    if patch.shape[-1] > min(batch.shape[-2:]):
        raise ValueError(f"a {patch.shape[-1]}px patch is larger than {tuple(batch.shape[-2:])} images")
    generator = torch.Generator().manual_seed(seed)
    placement = random_placement(batch.shape[0], batch.shape[-1], patch.shape[-1], generator, max_rotation, scale_range)
    return paste(to_unit_float(batch).float(), patch.to(batch.device).float(), placement)

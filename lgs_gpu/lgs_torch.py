"""Vectorised Local Gradients Smoothing in plain PyTorch: the CPU fallback, also valid on CUDA.

Implements the same contract as :mod:`lgs_gpu.reference` (see there for the symbols) with no
Python loop over images or windows, and stays differentiable. The window test is two batched
matrix products with 0/1 window-membership matrices (``rows @ g @ cols^T`` gives every window's
sum; multiplying by 0 and 1 is exact, so each sum is a plain float sum of the window's pixels),
and the collation is the same products transposed applied to the pass flags.

Memory traffic per pixel for a ``C``-channel float32 image (each line reads or writes full-size
tensors; ``n`` = windows per axis, about ``L / stride``):

* Sobel on a replicate-padded copy: read C, write C (pad); read C, write 2C (differences);
  read 2C, write 2C (Sx, Sy); read 2C, write 1 (sum of squares); read 1, write 1 (sqrt).
* normalisation: read 1 (min/max), read 1, write 1 (g).
* window sums and collation: read 1 (rows @ g), tiny ``n x n`` work, write 1 (coverage).
* suppression: read 2, write 1 (ĝ, factor); read C + 1, write C (output).
"""

from __future__ import annotations

import torch

from .reference import safe_sqrt, suppress
from .windows import axis_windows, membership_matrix


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 5 on ``[B, C, H, W]`` images, as separable Sobel differences. Returns ``[B, H, W]``."""
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    across = padded[..., 2:] - padded[..., :-2]  # [B, C, H + 2, W]: x[.., c + 1] - x[.., c - 1]
    down = padded[..., 2:, :] - padded[..., :-2, :]  # [B, C, H, W + 2]: x[r + 1] - x[r - 1]
    sobel_x = across[:, :, :-2] + 2 * across[:, :, 1:-1] + across[:, :, 2:]
    sobel_y = down[..., :-2] + 2 * down[..., 1:-1] + down[..., 2:]
    return safe_sqrt((sobel_x.square() + sobel_y.square()).sum(dim=1))


def normalise(magnitude: torch.Tensor) -> torch.Tensor:
    """Eq. 6 per image on ``[B, H, W]``; 0 where an image's max equals its min."""
    lowest = magnitude.amin(dim=(1, 2), keepdim=True)
    value_range = magnitude.amax(dim=(1, 2), keepdim=True) - lowest
    varies = value_range > 0
    # The safe denominator keeps the unused branch finite so gradients through `where` stay finite.
    return torch.where(varies, (magnitude - lowest) / torch.where(varies, value_range, 1), 0)


def window_mask(normalised: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """``[B, H, W]`` boolean: pixels inside at least one window whose mean of ``g`` exceeds γ."""
    _, height, width = normalised.shape
    device, dtype = normalised.device, normalised.dtype
    rows = membership_matrix(height, window_size, overlap, device, dtype)  # [n_rows, H]
    cols = membership_matrix(width, window_size, overlap, device, dtype)  # [n_cols, W]
    area = axis_windows(height, window_size, overlap).extent * axis_windows(width, window_size, overlap).extent
    with torch.no_grad():  # the pass decision is a step function: no gradient flows through it
        window_sums = rows @ normalised @ cols.T  # [B, n_rows, n_cols]
        passing = (window_sums / area > threshold).to(dtype)
        covering_count = rows.T @ passing @ cols  # [B, H, W]: passing windows over each pixel
    return covering_count > 0


def lgs_map(x: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """``ĝ`` for ``[B, C, H, W]`` images of the compute dtype, as ``[B, H, W]``."""
    normalised = normalise(gradient_magnitude(x))
    return torch.where(window_mask(normalised, threshold, window_size, overlap), normalised, 0)


def lgs(x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """LGS on ``[B, C, H, W]`` images of the compute dtype; same shape out."""
    return suppress(x, lgs_map(x, threshold, window_size, overlap), smoothing_factor)

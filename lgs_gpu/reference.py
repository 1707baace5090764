"""Local Gradients Smoothing exactly as the paper's equations read: the oracle for every test.

Naseer, Khan & Porikli, "Local Gradients Smoothing: Defense against localized adversarial
attacks", WACV 2019. This module favours being obviously right over being fast: it loops over
images and windows in Python. Use :mod:`lgs_gpu.lgs_torch` or the Triton kernels for speed.

The symbols of the paper, named as words here and everywhere in the package:

* ``smoothing_factor`` (λ, default 2.3): how strongly the normalised gradient suppresses pixels.
* ``threshold`` (γ, default 0.1): a window is kept when the mean normalised gradient over it is
  strictly greater than this.
* ``window_size`` (default 15) and ``overlap`` (default 5): the square windows, whose starts are
  ``window_size - overlap`` apart (see :mod:`lgs_gpu.windows`).

Inputs here are ``[B, C, H, W]`` floating tensors of the compute dtype (validation, dtype
conversion and dispatch live in :mod:`lgs_gpu.lgs`). Autograd flows through every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .windows import axis_windows

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def safe_sqrt(value: torch.Tensor) -> torch.Tensor:
    """``sqrt`` whose gradient at 0 is 0 instead of infinity (flat regions stay differentiable)."""
    positive = value > 0
    return torch.where(positive, torch.where(positive, value, 1).sqrt(), 0)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``m = sqrt(sum_c (Sx_c^2 + Sy_c^2))`` with 3x3 Sobel and replicate padding.

    Args:
        x: ``[B, C, H, W]`` images.
    Returns:
        ``[B, H, W]`` gradient magnitude, joint over channels.
    """
    batch, channels, height, width = x.shape
    sobel_x = torch.tensor(SOBEL_X, dtype=x.dtype, device=x.device)
    kernels = torch.stack([sobel_x, sobel_x.T])[:, None]  # [2, 1, 3, 3]: Sx, Sy
    padded = F.pad(x.reshape(batch * channels, 1, height, width), (1, 1, 1, 1), mode="replicate")
    responses = F.conv2d(padded, kernels)  # cross-correlation, [B*C, 2, H, W]
    squared = responses.square().sum(dim=1).reshape(batch, channels, height, width).sum(dim=1)
    return safe_sqrt(squared)


def normalise(magnitude: torch.Tensor) -> torch.Tensor:
    """Eq. 6, per image: ``g = (m - min m) / (max m - min m)``, and 0 where ``max == min``."""
    normalised = torch.zeros_like(magnitude)
    for image in range(magnitude.shape[0]):
        lowest, highest = magnitude[image].min(), magnitude[image].max()
        if highest > lowest:
            normalised[image] = (magnitude[image] - lowest) / (highest - lowest)
    return normalised


def window_mask(normalised: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """Eq. 8 and the collation: True where a pixel lies in at least one window whose mean exceeds γ.

    Args:
        normalised: ``[B, H, W]`` normalised gradient ``g``.
    Returns:
        ``[B, H, W]`` boolean mask.
    """
    batch, height, width = normalised.shape
    rows = axis_windows(height, window_size, overlap)
    cols = axis_windows(width, window_size, overlap)
    mask = torch.zeros(normalised.shape, dtype=torch.bool, device=normalised.device)
    for image in range(batch):
        for top in rows.starts:
            for left in cols.starts:
                window = normalised[image, top : top + rows.extent, left : left + cols.extent]
                if window.mean() > threshold:
                    mask[image, top : top + rows.extent, left : left + cols.extent] = True
    return mask


def lgs_map(x: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """``ĝ``: the normalised gradient kept only inside passing windows, ``[B, H, W]``."""
    normalised = normalise(gradient_magnitude(x))
    return torch.where(window_mask(normalised, threshold, window_size, overlap), normalised, 0)


def lgs(x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """Eq. 7: ``x * (1 - clip(λ·ĝ, 0, 1))``, the same factor for every channel. Shape of ``x``."""
    suppressed = lgs_map(x, threshold, window_size, overlap)
    return x * (1 - (smoothing_factor * suppressed).clamp(0, 1))[:, None]

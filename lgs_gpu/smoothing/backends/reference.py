"""Local Gradients Smoothing exactly as the paper's equations read: the oracle for every test.

This module favours being obviously right over being fast: it loops over images and windows in
Python. It imports only :mod:`lgs_gpu.core.windows` and shares no code with the paths it checks
(:mod:`.torch_path`, :mod:`.compiled_path`, :mod:`.triton_path`), which import nothing from it.
The symbols and stages are documented in :mod:`lgs_gpu.core.parameters`.

Inputs here are ``[B, C, H, W]`` floating tensors of the compute dtype (validation in
:mod:`lgs_gpu.core.validate`, dtype conversion and dispatch in :mod:`lgs_gpu.smoothing.routing`).
Autograd flows through every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...core.windows import axis_windows

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def safe_sqrt(value: torch.Tensor) -> torch.Tensor:
    """``sqrt`` whose gradient at 0 is 0 instead of infinity (flat regions stay differentiable)."""
    positive = value > 0
    return torch.where(positive, torch.where(positive, value, 1).sqrt(), 0)


def sobel(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-correlations of a padded image with Sobel x (:data:`SOBEL_X`) and its transpose.

    Each written as the kernel reads, pairing the +w and -w taps of a row (Sx) or column (Sy)
    first, so that a flat neighbourhood gives exactly 0 (``conv2d`` or another summation order
    can leave ~1e-16 there, and LGS takes a square root and a min of these values).

    Args:
        padded: ``[..., H + 2, W + 2]`` images padded by one pixel.
    Returns:
        ``(Sx, Sy)``, each ``[..., H, W]``.
    """
    height, width = padded.shape[-2] - 2, padded.shape[-1] - 2

    def tap(row: int, col: int) -> torch.Tensor:  # padded[r + row, c + col] for every output pixel
        return padded[..., row : row + height, col : col + width]

    sobel_x = (tap(0, 2) - tap(0, 0)) + 2 * (tap(1, 2) - tap(1, 0)) + (tap(2, 2) - tap(2, 0))
    sobel_y = (tap(2, 0) - tap(0, 0)) + 2 * (tap(2, 1) - tap(0, 1)) + (tap(2, 2) - tap(0, 2))
    return sobel_x, sobel_y


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``m = sqrt(sum_c (Sx_c^2 + Sy_c^2))`` with 3x3 Sobel and replicate padding.

    Args:
        x: ``[B, C, H, W]`` images.
    Returns:
        ``[B, H, W]`` gradient magnitude, joint over channels.
    """
    sobel_x, sobel_y = sobel(F.pad(x, (1, 1, 1, 1), mode="replicate"))
    return safe_sqrt((sobel_x.square() + sobel_y.square()).sum(dim=1))


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


def window_means(normalised: torch.Tensor, window_size: int, overlap: int) -> torch.Tensor:
    """The mean of ``g`` over every window: ``[B, H, W]`` in, ``[B, n_rows, n_cols]`` out."""
    batch, height, width = normalised.shape
    rows = axis_windows(height, window_size, overlap)
    cols = axis_windows(width, window_size, overlap)
    means = normalised.new_zeros(batch, rows.count, cols.count)
    for image in range(batch):
        for row, top in enumerate(rows.starts):
            for col, left in enumerate(cols.starts):
                means[image, row, col] = normalised[image, top : top + rows.extent, left : left + cols.extent].mean()
    return means


def suppress(
    x: torch.Tensor, suppressed: torch.Tensor, smoothing_factor: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 7: ``x * (1 - clip(λ·ĝ, 0, 1))`` with ``ĝ`` ``[B, H, W]``, the same factor for every channel.

    ``out``, if given, receives the result (no autograd then).
    """
    return torch.mul(x, (1 - (smoothing_factor * suppressed).clamp(0, 1))[:, None], out=out)


def stages(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: tuple[str, ...] | None = None,
) -> dict[str, torch.Tensor]:
    """The stages of LGS on ``[B, C, H, W]`` images (see :mod:`lgs_gpu.core.parameters`), all computed.

    Returns those named in ``wanted`` (every one by default) of: ``output`` ``[B, C, H, W]``,
    ``normalised_gradient``, ``window_mask`` and ``suppression_map`` ``[B, H, W]``, and
    ``window_means`` ``[B, n_rows, n_cols]``.
    """
    wanted = (
        ("output", "normalised_gradient", "window_mask", "suppression_map", "window_means")
        if wanted is None
        else wanted
    )
    normalised = normalise(gradient_magnitude(x))
    mask = window_mask(normalised, threshold, window_size, overlap)
    suppressed = torch.where(mask, normalised, 0)
    computed = {"normalised_gradient": normalised, "window_mask": mask, "suppression_map": suppressed}
    if "output" in wanted:
        computed["output"] = suppress(x, suppressed, smoothing_factor)
    if "window_means" in wanted:  # a second loop over the windows: only when asked for
        computed["window_means"] = window_means(normalised, window_size, overlap)
    return {name: computed[name] for name in wanted}

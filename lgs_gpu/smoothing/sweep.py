"""LGS over a grid of (λ, γ) from one gradient: what calibration sweeps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..core.parameters import DEFAULT_OVERLAP, DEFAULT_WINDOW_SIZE
from ..core.validate import check_smoothing_factor, from_unit_float, lgs_arguments, real_scalar, to_unit_float
from .backends import torch_path
from .front import lgs  # noqa: F401  (the doctest compares with it)
from .stages import lgs_stages


@torch.no_grad()
def lgs_sweep(
    x: torch.Tensor,
    smoothing_factors: Sequence[float],
    thresholds: Sequence[float],
    window_size: int = DEFAULT_WINDOW_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    backend: str = "auto",
) -> Iterator[tuple[float, float, torch.Tensor]]:
    """LGS at every (λ, γ) pair of a grid, from one gradient: yields ``(λ, γ, defended images)``.

    ``g`` and the window means do not depend on λ or γ, and γ only changes which windows pass:
    one :func:`lgs_stages` pass gives both, then each γ costs one mask and each (λ, γ) one
    suppression (eq. 7) instead of a whole LGS call. Results equal :func:`lgs` at each setting
    (the same backend's ``g`` and means; on the torch backend bit for bit). No autograd.

    Args:
        x: as :func:`lgs`.
        smoothing_factors, thresholds: the λ and γ values; pairs run γ-major, in the given order.
        window_size, overlap, backend: as :func:`lgs` (one window geometry per sweep).
    Yields:
        ``(λ, γ, images)``, the images with ``x``'s shape, dtype and device.

    Example:
        >>> images = torch.rand(2, 3, 64, 64)
        >>> results = list(lgs_sweep(images, [1.0, 2.3], [0.1, 0.2], backend="torch"))
        >>> [(λ, γ) for λ, γ, _ in results]
        [(1.0, 0.1), (2.3, 0.1), (1.0, 0.2), (2.3, 0.2)]
        >>> torch.equal(results[1][2], lgs(images, 2.3, 0.1, backend="torch"))
        True
    """
    batch, single, _, _, window_size, overlap = lgs_arguments(x, 0.0, 0.0, window_size, overlap)
    lambdas = [check_smoothing_factor(value, "smoothing_factors", batch) for value in smoothing_factors]
    gammas = [real_scalar(value, "thresholds", batch.device) for value in thresholds]
    if not lambdas or not gammas:
        raise ValueError("smoothing_factors and thresholds need at least one value each")
    found = lgs_stages(batch, 0.0, 0.0, window_size, overlap, backend, stages=("normalised_gradient", "window_means"))
    _, _, height, width = batch.shape
    unit = to_unit_float(batch)
    gradient = found.normalised_gradient[:, 0]  # [B, H, W]
    # Results in another dtype than the compute dtype are converted copies: one float buffer then
    # serves every setting. Otherwise each setting gets its own tensor (callers may keep them all).
    buffer = torch.empty_like(unit) if unit.dtype != batch.dtype else None
    for threshold in gammas:
        # The torch path's collation and eq. 7, on the small window table and the shared g.
        covered = torch_path.collate(found.window_means > threshold, height, width, window_size, overlap)
        suppressed = torch.where(covered, gradient, 0)
        for smoothing_factor in lambdas:
            product = torch_path.suppress(unit, suppressed, smoothing_factor, out=buffer)
            defended = from_unit_float(product, batch.dtype, scratch=buffer is not None)
            yield smoothing_factor, threshold, defended[0] if single else defended

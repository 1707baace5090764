"""Gaussian filtering per channel, separable, borders extended like scipy's "reflect".

Checked against ``scipy.ndimage.gaussian_filter(channel, sigma, truncate=(window // 2) / sigma,
mode="reflect")``: the same normalised taps ``exp(-t**2 / (2 sigma**2))`` for ``|t| <= window // 2``,
applied along rows then columns. The paper's "GF window 5" is ``window=5, sigma=1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.transform import ImageDefense, spec_number
from ._common import apply_defense, odd_window, positive_real, window_fits
from ._padding import reflect_indices

PAPER_WINDOWS = (5,)
DEFAULT_SIGMA = 1.0


def gaussian_taps(window: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``window`` normalised 1-D Gaussian taps, computed in float64 like scipy."""
    offsets = torch.arange(window, dtype=torch.float64) - window // 2
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _gaussian(batch: torch.Tensor, window: int, sigma: float) -> torch.Tensor:
    window_fits(window, batch)
    channels, radius = batch.shape[1], window // 2
    taps = gaussian_taps(window, sigma, batch.dtype, batch.device)
    # Each pass pads only the axis it filters: memory (H + 2r) W + H (W + 2r), not (H + 2r)(W + 2r).
    tall = batch.index_select(-2, reflect_indices(batch.shape[-2], radius, batch.device))
    down = F.conv2d(tall, taps.view(1, 1, window, 1).expand(channels, 1, window, 1), groups=channels)
    wide = down.index_select(-1, reflect_indices(batch.shape[-1], radius, batch.device))
    return F.conv2d(wide, taps.view(1, 1, 1, window).expand(channels, 1, 1, window), groups=channels)


def _check(window: object, sigma: object) -> tuple[int, float]:
    return odd_window(window), positive_real(sigma, "sigma")


def gaussian_filter(x: torch.Tensor, window: int = 5, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Gaussian blur of each channel with a ``window x window`` kernel of standard deviation ``sigma``.

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]``, float in [0, 1] or uint8; any device.
        window: odd kernel side (the kernel is truncated at ``window // 2`` pixels), at most
            :func:`~lgs_gpu.defenses._common.largest_window` of the image.
        sigma: standard deviation in pixels.
    Returns:
        Same shape, dtype and device. Differentiable (linear).

    Example:
        >>> gaussian_filter(torch.ones(1, 3, 8, 8)).allclose(torch.ones(1, 3, 8, 8))
        True
    """
    window, sigma = _check(window, sigma)
    return apply_defense(x, lambda batch: _gaussian(batch, window, sigma), differentiable=True)


class GaussianFilter(ImageDefense):
    """:func:`gaussian_filter` as a module / transform. Example: ``GaussianFilter(5)(torch.rand(2, 3, 8, 8))``."""

    name = "gaussian"
    differentiable = True

    def __init__(self, window: int = 5, sigma: float = DEFAULT_SIGMA) -> None:
        super().__init__()
        self.window, self.sigma = _check(window, sigma)

    @property
    def spec(self) -> str:
        return f"gaussian:{self.window}" + ("" if self.sigma == DEFAULT_SIGMA else f",sigma={spec_number(self.sigma)}")

    def _defend(self, x: torch.Tensor) -> torch.Tensor:
        return gaussian_filter(x, self.window, self.sigma)

    def extra_repr(self) -> str:
        return f"window={self.window}, sigma={self.sigma}"

"""Gaussian filtering per channel, separable, borders extended like scipy's "reflect".

Checked against ``scipy.ndimage.gaussian_filter(channel, sigma, truncate=(window // 2) / sigma,
mode="reflect")``: the same normalised taps ``exp(-t**2 / (2 sigma**2))`` for ``|t| <= window // 2``,
applied along rows then columns. The paper's "GF window 5" is ``window=5, sigma=1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import FunctionDefense, apply_defense, odd_window, pad_reflect, positive_real, window_fits

PAPER_WINDOWS = (5,)


def _gaussian(batch: torch.Tensor, window: int, sigma: float) -> torch.Tensor:
    window_fits(window, batch)
    channels, radius = batch.shape[1], window // 2
    offsets = torch.arange(window, dtype=torch.float64) - radius
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    taps = (taps / taps.sum()).to(batch)  # computed in float64, like scipy
    # Each pass pads only the axis it filters: memory (H + 2r) W + H (W + 2r), not (H + 2r)(W + 2r).
    for dim, shape in ((-2, (window, 1)), (-1, (1, window))):
        padded = pad_reflect(batch, radius, dims=(dim,))
        batch = F.conv2d(padded, taps.view(1, 1, *shape).expand(channels, 1, *shape), groups=channels)
    return batch


def _check(window: object, sigma: object) -> tuple[int, float]:
    return odd_window(window), positive_real(sigma, "sigma")


def gaussian_filter(x: torch.Tensor, window: int = 5, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur of each channel with a ``window x window`` kernel of standard deviation ``sigma``.

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]``, float in [0, 1] or uint8; any device.
        window: odd kernel side (the kernel is truncated at ``window // 2`` pixels), at most
            ``2 x`` the image's larger side ``+ 1`` (or 15).
        sigma: standard deviation in pixels.
    Returns:
        Same shape, dtype and device. Differentiable (linear).

    Example:
        >>> gaussian_filter(torch.ones(1, 3, 8, 8)).allclose(torch.ones(1, 3, 8, 8))
        True
    """
    window, sigma = _check(window, sigma)
    return apply_defense(x, lambda batch: _gaussian(batch, window, sigma), differentiable=True)


class GaussianFilter(FunctionDefense):
    """:func:`gaussian_filter` as a module / transform. Example: ``GaussianFilter(5)(torch.rand(2, 3, 8, 8))``."""

    name = "gaussian"
    differentiable = True
    _function = staticmethod(gaussian_filter)
    _arguments = ("window", "sigma")

    def __init__(self, window: int = 5, sigma: float = 1.0) -> None:
        super().__init__()
        self.window, self.sigma = _check(window, sigma)

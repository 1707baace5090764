"""Bilateral filtering: each pixel becomes a weighted mean of its ``window x window`` neighbours,
weighted by spatial closeness and by colour similarity (Euclidean distance over the channels).

Two weightings, chosen by ``style``:

* ``"skimage"`` (default): what ``skimage.restoration.denoise_bilateral(img, win_size=window,
  sigma_spatial=..., channel_axis=-1)`` computes in scikit-image 0.26, quirks included, so
  "BF 5" means what a user of scikit-image gets: neighbours outside the image count as 0
  (``mode="constant"``); the colour distance is scaled by ``(10000 // C) / 10000`` (its
  ``bins / dims`` integer division); and the spatial weight of window offset ``(kr, kc)`` is
  entry ``kr * window + kc`` of the flattened ``(window + 1)``-square Gaussian grid on offsets
  ``-(window + 1) / 2 .. (window - 1) / 2`` (its grid has one point more than the window, so the
  weights are not radially symmetric). scikit-image looks colour weights up in a 10,000-bin
  table; this computes them exactly, which moves outputs by < 1e-4.
* ``"textbook"``: Tomasi & Manduchi's filter: spatial weight ``exp(-d**2 / (2 sigma_spatial**2))``
  of the offset's length, colour weight ``exp(-|Δ|**2 / (2 sigma_color**2))``, zeros outside.

``sigma_color`` defaults to each image's standard deviation over all its values (scikit-image's
default), and an image whose values are all equal is returned unchanged (as scikit-image does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._common import FunctionDefense, apply_defense, odd_window, positive_real, window_fits

PAPER_WINDOWS = (5,)
STYLES = ("skimage", "textbook")
SKIMAGE_BINS = 10000  # scikit-image's default ``bins``: it sets the colour scale and the clamp


def _spatial_table(window: int, sigma_spatial: float, style: str) -> list[list[float]]:
    # Python floats, not a tensor: the weights are constants of the filter, so a traced graph
    # (torch.compile, torch.export) holds them as numbers rather than reading a tensor back.
    if style == "skimage":
        grid = range(-(window + 1) // 2, window // 2 + 1)
    else:
        grid = range(-(window // 2), window - window // 2)
    flat = [math.exp(-0.5 * (row * row + col * col) / sigma_spatial**2) for row in grid for col in grid]
    return [flat[row * window : (row + 1) * window] for row in range(window)]


def _bilateral(batch: torch.Tensor, window: int, sigma_spatial: float, sigma_color: float | None, style: str):
    window_fits(window, batch)  # memory is a few planes whatever the window; its time grows with window**2
    _, channels, height, width = batch.shape
    flat = batch.flatten(1)
    if sigma_color is None:
        sigma = flat.std(dim=1, correction=0).view(-1, 1, 1, 1)
    else:
        sigma = torch.full((batch.shape[0], 1, 1, 1), sigma_color, dtype=batch.dtype, device=batch.device)
    constant = (flat.amax(dim=1) == flat.amin(dim=1)).view(-1, 1, 1, 1)
    sigma = torch.where(sigma > 0, sigma, 1)  # constant images are returned as they are below
    if style == "skimage":
        colour_scale = (SKIMAGE_BINS // channels) / SKIMAGE_BINS
        # scikit-image clamps the colour distance to its last table bin, just below the image max
        clamp = (flat.amax(dim=1) * (SKIMAGE_BINS - 1) / SKIMAGE_BINS).view(-1, 1, 1, 1) ** 2
    else:
        colour_scale, clamp = 1.0, None
    spatial = _spatial_table(window, sigma_spatial, style)
    radius = window // 2
    padded = F.pad(batch, (radius, radius, radius, radius))  # neighbours outside the image are 0
    weighted_sum = torch.zeros_like(batch)
    total_weight = torch.zeros_like(batch[:, :1])
    for row in range(window):
        for col in range(window):
            neighbour = padded[..., row : row + height, col : col + width]
            distance = (neighbour - batch).square().sum(dim=1, keepdim=True) * colour_scale**2
            if clamp is not None:
                distance = torch.minimum(distance, clamp)
            weight = spatial[row][col] * torch.exp(-0.5 * distance / sigma.square())
            weighted_sum = weighted_sum + weight * neighbour
            total_weight = total_weight + weight
    return torch.where(constant, batch, weighted_sum / total_weight)


def _check(window: object, sigma_spatial: object, sigma_color: object, style: object):
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(map(repr, STYLES))}. Got {style!r}")
    if sigma_color is not None:
        sigma_color = positive_real(sigma_color, "sigma_color")
    return odd_window(window), positive_real(sigma_spatial, "sigma_spatial"), sigma_color, style


def bilateral_filter(
    x: torch.Tensor,
    window: int = 5,
    sigma_spatial: float = 1.0,
    sigma_color: float | None = None,
    style: str = "skimage",
) -> torch.Tensor:
    """Edge-preserving bilateral smoothing (see the module docstring for both weightings).

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]``, float in [0, 1] or uint8; any device.
        window: odd window side, at most ``2 x`` the image's larger side ``+ 1`` (or 15).
        sigma_spatial: spatial standard deviation, in pixels.
        sigma_color: colour standard deviation on the [0, 1] scale; ``None`` uses each image's
            standard deviation.
        style: ``"skimage"`` (agrees with scikit-image) or ``"textbook"``.
    Returns:
        Same shape, dtype and device. Differentiable.

    Example:
        >>> bilateral_filter(torch.rand(2, 3, 16, 16), window=5).shape
        torch.Size([2, 3, 16, 16])
    """
    window, sigma_spatial, sigma_color, style = _check(window, sigma_spatial, sigma_color, style)
    return apply_defense(
        x, lambda batch: _bilateral(batch, window, sigma_spatial, sigma_color, style), differentiable=True
    )


class BilateralFilter(FunctionDefense):
    """:func:`bilateral_filter` as a module / transform. Example: ``BilateralFilter(5)(torch.rand(1, 3, 8, 8))``."""

    name = "bilateral"
    differentiable = True
    _function = staticmethod(bilateral_filter)
    _arguments = ("window", "sigma_spatial", "sigma_color", "style")

    def __init__(
        self, window: int = 5, sigma_spatial: float = 1.0, sigma_color: float | None = None, style: str = "skimage"
    ) -> None:
        super().__init__()
        self.window, self.sigma_spatial, self.sigma_color, self.style = _check(
            window, sigma_spatial, sigma_color, style
        )

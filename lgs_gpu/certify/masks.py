"""PatchCleanser's mask set: rectangles such that every patch position lies inside at least one.

Per axis of length ``n``, for a patch side ``p`` and ``k`` masks per axis (Xiang, Mahloujifar &
Mittal, USENIX Security 2022, §4.2):

* stride ``s = ceil((n - p + 1) / k)``,
* mask side ``m = min(p + s - 1, n)``,
* offsets ``0, s, 2s, ...`` up to ``n - m``, plus ``n - m`` when it is not a multiple of ``s``.

A patch starting at ``a`` (``0 <= a <= n - p``) lies inside the mask at the largest offset ``o <= a``
(``a - o <= s - 1``, so ``a + p <= o + m``). The 2-D masks are the products of row and column
offsets, in row-major order of (row offset, column offset). When ``k > n - p + 1`` an axis has
fewer than ``k`` offsets; when a mask spans a whole axis the certificate is about a blank image
along it, and :func:`mask_set` warns.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import torch

from ..core.patch_geometry import patch_side
from ..core.validate import is_integer


@dataclass(frozen=True)
class AxisMasks:
    """The masks along one axis."""

    length: int  # n
    patch: int  # p, the patch side the masks are built for
    stride: int  # s
    size: int  # m, every mask's side along this axis
    offsets: tuple[int, ...]  # each mask's first index

    @property
    def count(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True)
class MaskGeometry:
    """The rows and columns of a mask set; ``count`` masks of ``mask_size`` every ``stride`` pixels."""

    rows: AxisMasks
    cols: AxisMasks

    @property
    def count(self) -> int:
        return self.rows.count * self.cols.count

    @property
    def patch_size(self) -> tuple[int, int]:
        return self.rows.patch, self.cols.patch

    @property
    def mask_size(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size

    @property
    def stride(self) -> tuple[int, int]:
        return self.rows.stride, self.cols.stride

    @property
    def spans_an_axis(self) -> bool:
        """Whether a mask covers a whole row or column of the image."""
        return self.rows.size == self.rows.length or self.cols.size == self.cols.length


def axis_masks(length: int, patch: int, masks_per_axis: int) -> AxisMasks:
    """The masks along an axis of ``length`` pixels for a ``patch``-pixel patch (rules in the module docstring).

    Example:
        >>> axis_masks(224, 32, 6)
        AxisMasks(length=224, patch=32, stride=33, size=64, offsets=(0, 33, 66, 99, 132, 160))
    """
    if not 1 <= patch <= length:
        raise ValueError(f"the patch side must be in 1..{length} (the image side). Got {patch}")
    stride = math.ceil((length - patch + 1) / masks_per_axis)
    size = min(patch + stride - 1, length)
    offsets = list(range(0, length - size + 1, stride))
    if (length - size) % stride:
        offsets.append(length - size)
    return AxisMasks(length, patch, stride, size, tuple(offsets))


def _pair(value: object, name: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list, torch.Size)) else (value, value)
    if len(pair) != 2 or any(not is_integer(v) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints (height, width). Got {value!r}")
    return pair  # type: ignore[return-value]


def mask_geometry(
    image_size: int | tuple[int, int],
    patch_size: int | tuple[int, int] | None = None,
    masks_per_axis: int = 6,
    *,
    patch_fraction: float | None = None,
) -> MaskGeometry:
    """The mask set's geometry: mask size, stride and offsets per axis (see :func:`mask_set`).

    Example:
        >>> geometry = mask_geometry(224, patch_fraction=0.02)
        >>> geometry.count, geometry.mask_size, geometry.stride
        (36, (64, 64), (33, 33))
    """
    height, width = _pair(image_size, "image_size")
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be >= 1 along both axes. Got {(height, width)}")
    if patch_size is not None and patch_fraction is not None:
        raise ValueError("give patch_size or patch_fraction, not both")
    if patch_size is None:
        fraction = 0.02 if patch_fraction is None else patch_fraction
        patch = patch_side(height, fraction), patch_side(width, fraction)
    else:
        patch = _pair(patch_size, "patch_size")
        for side, length, axis in ((patch[0], height, "height"), (patch[1], width, "width")):
            if not 1 <= side <= length:
                raise ValueError(f"the patch {axis} must be in 1..{length} (the image {axis}). Got {side}")
    if not is_integer(masks_per_axis) or masks_per_axis < 1:
        raise ValueError(f"masks_per_axis must be an int >= 1. Got {masks_per_axis!r}")
    return MaskGeometry(axis_masks(height, patch[0], masks_per_axis), axis_masks(width, patch[1], masks_per_axis))


def mask_set(
    image_size: int | tuple[int, int],
    patch_size: int | tuple[int, int] | None = None,
    masks_per_axis: int = 6,
    *,
    patch_fraction: float | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """PatchCleanser's mask set for ``image_size`` images: ``BoolTensor[K, H, W]``, True = covered.

    Args:
        image_size: ``H`` (square) or ``(H, W)``.
        patch_size: the patch side, an int or ``(height, width)``; or give ``patch_fraction``
            (its share of the image's area, ``ceil(sqrt(f) * n)`` per axis). Neither: 2%.
        masks_per_axis: ``k``; ``K <= k * k`` masks in all.
        device: where the masks are made.
    Returns:
        ``[K, H, W]`` bool. :func:`mask_geometry` reports the mask size, stride and offsets.

    Example:
        >>> masks = mask_set(224, patch_fraction=0.02)
        >>> masks.shape, masks[0, :64, :64].all().item(), masks[0].sum().item()
        (torch.Size([36, 224, 224]), True, 4096)
    """
    geometry = mask_geometry(image_size, patch_size, masks_per_axis, patch_fraction=patch_fraction)
    if geometry.spans_an_axis:
        warnings.warn(
            f"a mask of {geometry.mask_size} spans a whole axis of the {geometry.rows.length}x{geometry.cols.length} "
            "image: the certificate is then about a blank image along it (use a smaller patch or more masks)",
            stacklevel=2,
        )
    rows, cols = geometry.rows, geometry.cols
    masks = torch.zeros(geometry.count, rows.length, cols.length, dtype=torch.bool, device=device)
    for index, (top, left) in enumerate(itertools.product(rows.offsets, cols.offsets)):  # row-major
        masks[index, top : top + rows.size, left : left + cols.size] = True
    return masks

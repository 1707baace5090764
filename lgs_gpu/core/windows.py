"""Window geometry of LGS (paper eq. 8), shared by every path and by the tests.

Along an axis of length ``L`` the windows have ``extent = min(window_size, L)`` and start at
``0, stride, 2*stride, ...`` (``stride = window_size - overlap``) while ``start < L - window_size``,
plus a last window clamped to start at ``L - window_size``. Every pixel is therefore covered by
at least one full window, and no border strip is left unprotected. When ``L <= window_size`` a
single window covers ``[0, L)``. A 2-D window is the product of a row window and a column window.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AxisWindows:
    """The windows along one image axis.

    Attributes:
        length: the axis length ``L``.
        extent: the length of every window on this axis, ``min(window_size, L)``.
        starts: the first index of each window, strictly increasing.
    """

    length: int
    extent: int
    starts: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.starts)

    @functools.cached_property
    def covering(self) -> tuple[list[int], list[int]]:
        """For every pixel, the index of the first window covering it and how many do.

        Windows covering a pixel form a contiguous run of indices because the starts increase.
        """
        first, count = [], []
        lo = 0
        for pixel in range(self.length):
            while self.starts[lo] + self.extent <= pixel:
                lo += 1
            hi = lo
            while hi + 1 < self.count and self.starts[hi + 1] <= pixel:
                hi += 1
            first.append(lo)
            count.append(hi - lo + 1)
        return first, count

    @property
    def max_cover(self) -> int:
        """The largest number of windows that cover one pixel on this axis."""
        return max(self.covering[1])

    @functools.cached_property
    def classes(self) -> tuple[list[int], list[int], list[int]]:
        """Pixels grouped by the windows that cover them: ``(class_of_pixel, class_first, class_count)``.

        Neighbouring pixels covered by the same windows share a class, so an axis has about
        ``2 * count`` classes however long it is; collating at class resolution and expanding at
        the end touches full-size data once.
        """
        first, count = self.covering
        class_of_pixel, class_first, class_count = [], [], []
        for pixel_first, pixel_count in zip(first, count, strict=True):
            if not class_first or (class_first[-1], class_count[-1]) != (pixel_first, pixel_count):
                class_first.append(pixel_first)
                class_count.append(pixel_count)
            class_of_pixel.append(len(class_first) - 1)
        return class_of_pixel, class_first, class_count


def axis_geometry(length, window_size: int, overlap: int) -> tuple:
    """``(count, extent, last_start)`` of an axis in closed form: window ``i`` starts at
    ``min(i * stride, last_start)``. ``length`` may be a symbolic size while a compiler traces a
    call (no guard is taken on it): the traced form and the Triton launcher compute it so.

    Example:
        >>> axis_geometry(32, 15, 5), len(axis_windows(32, 15, 5).starts), axis_windows(32, 15, 5).starts[-1]
        ((3, 15, 17), 3, 17)
    """
    stride = window_size - overlap
    # Python's min and max would guard on a symbolic size; sym_min on plain ints is a graph break
    # under torch.compile in some torch versions ("torch.* op returned non-Tensor").
    if not isinstance(length, torch.SymInt):
        extent = min(length, window_size)
        return max((length - extent + stride - 1) // stride, 0) + 1, extent, length - extent
    extent = torch.sym_min(length, window_size)
    return torch.sym_max((length - extent + stride - 1) // stride, 0) + 1, extent, length - extent


def max_cover(window_size: int, overlap: int) -> int:
    """The most windows that can cover one pixel along an axis, for any length (the clamped last one included).

    Example:
        >>> max_cover(15, 5)
        3
    """
    return math.ceil(window_size / (window_size - overlap)) + 1


@functools.lru_cache(maxsize=512)
def axis_windows(length: int, window_size: int, overlap: int) -> AxisWindows:
    """The windows along an axis of ``length`` pixels.

    Example:
        >>> axis_windows(32, 15, 5).starts
        (0, 10, 17)
    """
    if length < 1:
        raise ValueError(f"an image axis must have length >= 1. Got {length}")
    if length <= window_size:
        return AxisWindows(length, length, (0,))
    stride = window_size - overlap
    last = length - window_size
    starts = list(range(0, last, stride)) + [last]
    return AxisWindows(length, window_size, tuple(starts))


@functools.lru_cache(maxsize=256)
def starts_tensor(
    length: int, window_size: int, overlap: int, device: torch.device, dtype: torch.dtype = torch.int32
) -> torch.Tensor:
    """``axis_windows(...).starts`` as an integer tensor on ``device`` (cached: built once per shape)."""
    starts = axis_windows(length, window_size, overlap).starts
    return torch.tensor(starts, dtype=dtype, device=device)


@functools.lru_cache(maxsize=256)
def collation_tensors(
    length: int, window_size: int, overlap: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``axis_windows(...).classes`` as tensors on ``device`` (cached).

    Returns:
        ``class_of_pixel`` (int64 ``[length]``); ``class_window`` (int64 ``[max_cover, n_classes]``):
        the k-th window covering each class, clamped to a valid index where a class has fewer
        than ``k + 1``; ``class_valid`` (bool, same shape): whether that k-th window exists.
    """
    windows = axis_windows(length, window_size, overlap)
    class_of_pixel, class_first, class_count = windows.classes
    first = torch.tensor(class_first, device=device)
    count = torch.tensor(class_count, device=device)
    offsets = torch.arange(windows.max_cover, device=device)[:, None]
    class_window = (first + offsets).clamp(max=windows.count - 1)
    return torch.tensor(class_of_pixel, device=device), class_window, offsets < count

"""Vectorised Local Gradients Smoothing in plain PyTorch: the CPU fallback, also valid on CUDA.

Implements the same contract as :mod:`lgs_gpu.reference` (see there for the symbols) with no
Python loop over images or windows, and stays differentiable. The window test sums rows
then columns of windows on strided views (:func:`window_means`), and the collation ORs window
flags on a small table of pixel classes before expanding it once (:func:`collate`).

On CPU the batch runs about :data:`CPU_CHUNK_BYTES` of images at a time (see there).

Memory traffic per pixel for a ``C``-channel float32 image (each line reads or writes full-size
tensors; ``n`` = windows per axis, about ``L / stride``):

* Sobel on a replicate-padded copy: read C, write C (pad); read C, write 2C (differences);
  read 2C, write 2C (Sx, Sy); read 2C, write 1 (sum of squares); read 1, write 1 (sqrt).
* normalisation: read 1 (min/max), read 1, write 1 (g).
* window sums and collation: read about 1.5 (row windows overlap), small ``n x W`` work,
  write 1 byte (the mask).
* suppression: read 2, write 1 (ĝ, factor); read C + 1, write C (output).
"""

from __future__ import annotations

import functools

import torch

from .reference import safe_sqrt, suppress
from .windows import axis_windows, collation_tensors, starts_tensor


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
    lowest, highest = image_range(magnitude)
    return normalise_between(magnitude, lowest, highest)


def image_range(magnitude: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image min and max of ``[B, H, W]``, each ``[B, 1, 1]``."""
    return magnitude.amin(dim=(1, 2), keepdim=True), magnitude.amax(dim=(1, 2), keepdim=True)


def normalise_between(magnitude: torch.Tensor, lowest: torch.Tensor, highest: torch.Tensor) -> torch.Tensor:
    """``(m - lowest) / (highest - lowest)``, and 0 for images whose range is empty."""
    value_range = highest - lowest
    varies = value_range > 0
    # The safe denominator keeps the unused branch finite so gradients through `where` stay finite.
    return torch.where(varies, (magnitude - lowest) / torch.where(varies, value_range, 1), 0)


def window_means(normalised: torch.Tensor, window_size: int, overlap: int) -> torch.Tensor:
    """Mean of ``g`` over every window: ``[B, H, W]`` in, ``[B, n_rows, n_cols]`` out."""
    _, height, width = normalised.shape
    return window_means_at(normalised, *window_geometry(height, width, window_size, overlap, normalised.device))


def window_geometry(
    height: int, width: int, window_size: int, overlap: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(row_starts, col_starts, row_extent, col_extent)`` of the windows, starts as int64 tensors."""
    rows, cols = axis_windows(height, window_size, overlap), axis_windows(width, window_size, overlap)
    row_starts = starts_tensor(height, window_size, overlap, device, torch.int64)
    col_starts = starts_tensor(width, window_size, overlap, device, torch.int64)
    return row_starts, col_starts, rows.extent, cols.extent


def window_means_at(
    normalised: torch.Tensor, row_starts: torch.Tensor, col_starts: torch.Tensor, row_extent: int, col_extent: int
) -> torch.Tensor:
    """:func:`window_means` given the geometry (no Python-side caches: ``torch.compile`` traces it as is).

    Sums each row window (a strided view indexed by the window starts), then each column window
    of those sums: no full-size intermediate, and compiled it becomes one fused loop.
    """
    row_sums = normalised.unfold(1, row_extent, 1)[:, row_starts].sum(-1)  # [B, n_rows, W]
    sums = row_sums.unfold(2, col_extent, 1)[:, :, col_starts].sum(-1)  # [B, n_rows, n_cols]
    return sums / (row_extent * col_extent)


def collate(passing: torch.Tensor, height: int, width: int, window_size: int, overlap: int) -> torch.Tensor:
    """``[B, n_rows, n_cols]`` window flags to the ``[B, H, W]`` mask of pixels in a passing window."""
    row_class, *per_class = collation_geometry(height, width, window_size, overlap, passing.device)
    return collate_by_row_class(passing, *per_class).index_select(1, row_class)


def collation_geometry(
    height: int, width: int, window_size: int, overlap: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """``(row_class, row_window, row_valid, col_class, col_window, col_valid)``: see
    :func:`lgs_gpu.windows.collation_tensors`."""
    return (
        *collation_tensors(height, window_size, overlap, device),
        *collation_tensors(width, window_size, overlap, device),
    )


def collate_by_row_class(
    passing: torch.Tensor, row_window: torch.Tensor, row_valid: torch.Tensor, col_class: torch.Tensor,
    col_window: torch.Tensor, col_valid: torch.Tensor,
) -> torch.Tensor:
    """The collated mask before its rows are expanded: ``[B, n_row_classes, W]``.

    ORs the (at most ``max_cover`` per axis) windows over each class of pixels (see
    :attr:`lgs_gpu.windows.AxisWindows.classes`) on a small table and expands its columns; row
    ``r`` of the full mask is row ``row_class[r]`` of the result. No Python-side caches here, so
    that ``torch.compile`` traces it as is.
    """
    by_row_class = functools.reduce(
        torch.logical_or, [passing.index_select(1, window) & valid[:, None] for window, valid in zip(row_window, row_valid, strict=True)]
    )  # [B, n_row_classes, n_cols]
    by_class = functools.reduce(
        torch.logical_or, [by_row_class.index_select(2, window) & valid for window, valid in zip(col_window, col_valid, strict=True)]
    )  # [B, n_row_classes, n_col_classes]
    return by_class.index_select(2, col_class)


def window_mask(normalised: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """``[B, H, W]`` boolean: pixels inside at least one window whose mean of ``g`` exceeds γ."""
    _, height, width = normalised.shape
    with torch.no_grad():  # the pass decision is a step function: no gradient flows through it
        passing = window_means(normalised, window_size, overlap) > threshold
        return collate(passing, height, width, window_size, overlap)


# On CPU, whole-batch intermediates above glibc's mmap threshold (32 MiB) come from fresh pages
# on every call, and the page faults cost as much as the arithmetic: a few images at a time stay
# in reused heap memory and in cache. Every step is per image, so chunking changes no value.
CPU_CHUNK_BYTES = 2 * 2**20


def _chunk_size(x: torch.Tensor) -> int:
    if x.device.type != "cpu":
        return max(1, x.shape[0])
    return max(1, CPU_CHUNK_BYTES // max(1, x[0].nbytes))


def _lgs_map_whole(x: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    normalised = normalise(gradient_magnitude(x))
    return torch.where(window_mask(normalised, threshold, window_size, overlap), normalised, 0)


def lgs_map(x: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """``ĝ`` for ``[B, C, H, W]`` images of the compute dtype, as ``[B, H, W]``."""
    chunks = x.split(_chunk_size(x))
    return torch.cat([_lgs_map_whole(chunk, threshold, window_size, overlap) for chunk in chunks])


def lgs(x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """LGS on ``[B, C, H, W]`` images of the compute dtype; same shape out."""
    size = _chunk_size(x)
    if size >= x.shape[0] or (torch.is_grad_enabled() and x.requires_grad):
        chunks = x.split(size)
        return torch.cat([
            suppress(chunk, _lgs_map_whole(chunk, threshold, window_size, overlap), smoothing_factor)
            for chunk in chunks
        ])  # fmt: skip
    # Without autograd each chunk is written straight into the output: per-chunk results kept
    # for a final cat would grow and shrink the heap, and fault its pages in, on every call.
    out = torch.empty_like(x)
    for chunk, target in zip(x.split(size), out.split(size), strict=True):
        suppress(chunk, _lgs_map_whole(chunk, threshold, window_size, overlap), smoothing_factor, out=target)
    return out

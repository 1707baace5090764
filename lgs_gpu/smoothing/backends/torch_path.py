"""Vectorised Local Gradients Smoothing in plain PyTorch: the differentiable path, on any device.

Implements the contract of :mod:`lgs_gpu.smoothing.front` (symbols in :mod:`lgs_gpu.core.parameters`) with no
Python loop over images or windows. The window test sums rows then columns of windows on strided
views (:func:`window_means`), and the collation ORs window flags on a small table of pixel
classes before expanding it once (:func:`collate`). About thirty unfused full-size passes: their
bytes are counted once, in ``traffic`` in ``benchmarks/roofline.py``.

On CPU the batch runs about :data:`CPU_CHUNK_BYTES` of images at a time (see there).
"""

from __future__ import annotations

import functools

import torch

from ...core.parameters import STAGES
from ...core.windows import axis_windows, collation_tensors, starts_tensor


def safe_sqrt(value: torch.Tensor) -> torch.Tensor:
    """``sqrt`` whose gradient at 0 is 0 instead of infinity (flat regions stay differentiable)."""
    positive = value > 0
    return torch.where(positive, torch.where(positive, value, 1).sqrt(), 0)


def sobel(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel x and y of images carrying a one-pixel border: ``[..., H + 2, W + 2]`` -> two ``[..., H, W]``.

    Separable: central differences first, then the 1-2-1 smoothing across them, which pairs the
    +1 and -1 taps before adding, so a flat neighbourhood gives exactly 0.
    """
    across = padded[..., 2:] - padded[..., :-2]  # [.., H + 2, W]: x[.., c + 1] - x[.., c - 1]
    down = padded[..., 2:, :] - padded[..., :-2, :]  # [.., H, W + 2]: x[r + 1] - x[r - 1]
    sobel_x = across[..., :-2, :] + 2 * across[..., 1:-1, :] + across[..., 2:, :]
    sobel_y = down[..., :-2] + 2 * down[..., 1:-1] + down[..., 2:]
    return sobel_x, sobel_y


def magnitude_of_padded(padded: torch.Tensor) -> torch.Tensor:
    """Eq. 5 on ``[B, C, H + 2, W + 2]`` images that carry their own border: ``[B, H, W]``."""
    sobel_x, sobel_y = sobel(padded)
    return safe_sqrt((sobel_x.square() + sobel_y.square()).sum(dim=1))


def suppress(
    x: torch.Tensor, suppressed: torch.Tensor, smoothing_factor: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 7: ``x * (1 - clip(λ·ĝ, 0, 1))`` with ``ĝ`` ``[B, H, W]`` for every channel (``out``: no autograd)."""
    return torch.mul(x, (1 - (smoothing_factor * suppressed).clamp(0, 1))[:, None], out=out)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 5 on ``[B, C, H, W]`` images, replicate borders. Returns ``[B, H, W]``."""
    return magnitude_of_padded(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"))


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
    :func:`lgs_gpu.core.windows.collation_tensors`."""
    return (
        *collation_tensors(height, window_size, overlap, device),
        *collation_tensors(width, window_size, overlap, device),
    )


def collate_by_row_class(
    passing: torch.Tensor,
    row_window: torch.Tensor,
    row_valid: torch.Tensor,
    col_class: torch.Tensor,
    col_window: torch.Tensor,
    col_valid: torch.Tensor,
) -> torch.Tensor:
    """The collated mask before its rows are expanded: ``[B, n_row_classes, W]``.

    ORs the (at most ``max_cover`` per axis) windows over each class of pixels (see
    :attr:`lgs_gpu.core.windows.AxisWindows.classes`) on a small table and expands its columns; row
    ``r`` of the full mask is row ``row_class[r]`` of the result. No Python-side caches here, so
    that ``torch.compile`` traces it as is.
    """
    by_row_class = functools.reduce(
        torch.logical_or,
        [passing.index_select(1, window) & valid[:, None] for window, valid in zip(row_window, row_valid, strict=True)],
    )  # [B, n_row_classes, n_cols]
    by_class = functools.reduce(
        torch.logical_or,
        [by_row_class.index_select(2, window) & valid for window, valid in zip(col_window, col_valid, strict=True)],
    )  # [B, n_row_classes, n_col_classes]
    return by_class.index_select(2, col_class)


# On CPU, whole-batch intermediates above glibc's mmap threshold (32 MiB) come from fresh pages
# on every call, and the page faults cost as much as the arithmetic: a few images at a time stay
# in reused heap memory and in cache. Every step is per image, so chunking changes no value.
CPU_CHUNK_BYTES = 2 * 2**20


def _chunk_size(x: torch.Tensor) -> int:
    if x.device.type != "cpu":
        return max(1, x.shape[0])
    return max(1, CPU_CHUNK_BYTES // max(1, x[:1].nbytes))


def _suppression_map(x: torch.Tensor, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    return _stages_whole(x, 0.0, threshold, window_size, overlap, ("suppression_map",))["suppression_map"]


def lgs(x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int) -> torch.Tensor:
    """LGS on ``[B, C, H, W]`` images of the compute dtype; same shape out."""
    size = _chunk_size(x)
    if size >= x.shape[0] or (torch.is_grad_enabled() and x.requires_grad):
        chunks = x.split(size)
        return torch.cat(
            [
                suppress(chunk, _suppression_map(chunk, threshold, window_size, overlap), smoothing_factor)
                for chunk in chunks
            ]
        )
    # Without autograd each chunk is written straight into the output: per-chunk results kept
    # for a final cat would grow and shrink the heap, and fault its pages in, on every call.
    out = torch.empty_like(x)
    for chunk, target in zip(x.split(size), out.split(size), strict=True):
        suppress(chunk, _suppression_map(chunk, threshold, window_size, overlap), smoothing_factor, out=target)
    return out


def _stages_whole(x: torch.Tensor, smoothing_factor, threshold, window_size, overlap, wanted) -> dict:
    _, _, height, width = x.shape
    normalised = normalise(gradient_magnitude(x))
    with torch.no_grad():  # the pass decision is a step function: no gradient flows through it
        means = window_means(normalised, window_size, overlap)
        mask = collate(means > threshold, height, width, window_size, overlap)
    suppressed = torch.where(mask, normalised, 0)
    computed = {
        "normalised_gradient": normalised,
        "window_mask": mask,
        "suppression_map": suppressed,
        "window_means": means,
    }
    if "output" in wanted:
        computed["output"] = suppress(x, suppressed, smoothing_factor)
    return {name: computed[name] for name in wanted}


def stages(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: tuple[str, ...] = STAGES,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages of LGS (names in :data:`STAGES`) from one gradient computation.

    ``output`` ``[B, C, H, W]``; ``normalised_gradient``, ``window_mask`` (bool),
    ``suppression_map`` ``[B, H, W]``; ``window_means`` ``[B, n_rows, n_cols]``.
    """
    if tuple(wanted) == ("output",):  # lgs writes chunks straight into its output (see CPU_CHUNK_BYTES)
        return {"output": lgs(x, smoothing_factor, threshold, window_size, overlap)}
    parts = [
        _stages_whole(chunk, smoothing_factor, threshold, window_size, overlap, wanted)
        for chunk in x.split(_chunk_size(x))
    ]
    return {name: torch.cat([part[name] for part in parts]) for name in wanted}

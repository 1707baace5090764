"""Local Gradients Smoothing in torch operations a compiler can trace: the form for compile, export and ONNX.

The torch path computes its window geometry in Python from the image size (tables of window
starts and pixel classes), so a tracer specialises on every size. This path computes the same
geometry from closed forms (:func:`lgs_gpu.core.windows.axis_geometry`) on index tensors, so ``torch.compile``,
``torch.export`` (batch, height and width dynamic), AOTInductor and the ONNX exporter see one
graph for every size. Along an axis of length ``L`` with ``step = window_size - overlap``:

* ``extent = min(window_size, L)``, ``count = max(ceil((L - extent) / step), 0) + 1``, and window
  ``i`` starts at ``min(i * step, L - extent)``;
* the windows covering pixel ``p`` are ``first(p) .. last(p)`` with
  ``first = min(max(p - extent + step, 0) // step, count - 1)`` and
  ``last = count - 1 if p >= L - extent else p // step``, at most :func:`max_cover` of them.

Window sums are differences of running sums (in float64, so that the difference of two large
sums keeps every bit of the window's); the collation ORs the pass flags of the covering windows,
rows then columns. Only operations the ONNX exporter translates (pad, slicing, cumsum, gather,
reductions, comparisons, where). Differentiable like the torch path: the pass decisions are
step functions, and the gradient flows through ``g`` and eq. 7. Inputs are ``[B, C, H, W]``
images of the compute dtype in [0, 1] (as for every path); outputs differ from the torch path's
by rounding only (window sums in another order).
"""

from __future__ import annotations

import torch

from ...core.parameters import STAGES
from ...core.windows import axis_geometry, max_cover
from .torch_path import gradient_magnitude, image_range, normalise_between, suppress


def window_sums(plane: torch.Tensor, dim: int, starts: torch.Tensor, extent) -> torch.Tensor:
    """Sums of ``plane`` over ``[start, start + extent)`` along ``dim`` for each start (float64)."""
    running = plane.to(torch.float64).cumsum(dim)
    zero = torch.zeros_like(running.narrow(dim, 0, 1))
    running = torch.cat([zero, running], dim)  # running[k] = sum of the first k entries
    return running.index_select(dim, starts + extent) - running.index_select(dim, starts)


def _floor_divide(values: torch.Tensor, step: int) -> torch.Tensor:
    """``values // step`` for non-negative integers, as float64 arithmetic (exact below 2**53).

    An integer floor division by a constant above 8 is what Inductor's CPU loop split rewrites,
    and torch 2.11's rewrite fails on this graph ("'int' object has no attribute 'has'").
    """
    return torch.floor(values.to(torch.float64) / step).to(values.dtype)


def covering(length, count, extent, last_start, window_size: int, overlap: int, device: torch.device):
    """For each of ``max_cover`` ranks k: the k-th window covering every pixel (clamped) and whether it exists."""
    step = window_size - overlap
    pixels = torch.arange(length, device=device)
    first = torch.clamp(_floor_divide(torch.clamp(pixels - extent + step, min=0), step), max=count - 1)
    last = torch.where(pixels >= last_start, count - 1, _floor_divide(pixels, step))
    ranks = torch.arange(max_cover(window_size, overlap), device=device)[:, None]
    window = first[None, :] + ranks  # [K, L]
    return torch.clamp(window, max=count - 1), window <= last[None, :]


def padded_window_means(normalised: torch.Tensor, window_size: int, overlap: int) -> torch.Tensor:
    """Mean of ``g`` over every window, ``[B, H, W]`` in, ``[B, n_rows + 1, n_cols + 1]`` out: one
    extra row and column of windows (repeats of the last) so that no traced size is a window count.

    A window count can be 1, and a tracer meeting a dimension that may be 1 specialises on it
    (broadcasting and contiguity ask); ``count + 1`` is never 1, so one graph serves every size.
    """
    _, height, width = normalised.shape
    step = window_size - overlap
    row_count, row_extent, row_last = axis_geometry(height, window_size, overlap)
    col_count, col_extent, col_last = axis_geometry(width, window_size, overlap)
    device = normalised.device
    row_starts = torch.clamp(torch.arange(row_count + 1, device=device) * step, max=row_last)
    col_starts = torch.clamp(torch.arange(col_count + 1, device=device) * step, max=col_last)
    sums = window_sums(window_sums(normalised, 1, row_starts, row_extent), 2, col_starts, col_extent)
    return (sums / (row_extent * col_extent)).to(normalised.dtype)


def collate(passing: torch.Tensor, height, width, window_size: int, overlap: int) -> torch.Tensor:
    """``[B, n_rows, n_cols]`` window flags to the ``[B, H, W]`` mask of pixels inside a passing window
    (flags of extra windows past the counts, as :func:`padded_window_means` gives, are never read)."""
    device = passing.device
    row_window, row_valid = covering(height, *axis_geometry(height, window_size, overlap), window_size, overlap, device)
    col_window, col_valid = covering(width, *axis_geometry(width, window_size, overlap), window_size, overlap, device)
    by_row = passing.index_select(1, row_window[0]) & row_valid[0][None, :, None]  # [B, H, n_cols]
    for rank in range(1, row_window.shape[0]):
        by_row = by_row | (passing.index_select(1, row_window[rank]) & row_valid[rank][None, :, None])
    covered = by_row.index_select(2, col_window[0]) & col_valid[0][None, None, :]  # [B, H, W]
    for rank in range(1, col_window.shape[0]):
        covered = covered | (by_row.index_select(2, col_window[rank]) & col_valid[rank][None, None, :])
    return covered


def stages(
    x: torch.Tensor,
    smoothing_factor: float,
    threshold: float,
    window_size: int,
    overlap: int,
    wanted: tuple[str, ...] = STAGES,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages (see :func:`.torch_path.stages`) of ``[B, C, H, W]`` images, traceable for any size.

    Example:
        >>> x = torch.rand(2, 3, 40, 52)
        >>> found = stages(x, 2.3, 0.1, 15, 5, ("output", "window_means"))
        >>> found["output"].shape, found["window_means"].shape
        (torch.Size([2, 3, 40, 52]), torch.Size([2, 4, 5]))
    """
    _, _, height, width = x.shape
    magnitude = gradient_magnitude(x)
    normalised = normalise_between(magnitude, *image_range(magnitude))
    with torch.no_grad():  # the pass decision is a step function: no gradient flows through it
        padded_means = padded_window_means(normalised, window_size, overlap)
        mask = collate(padded_means > threshold, height, width, window_size, overlap)  # never reads the extra windows
    suppressed = torch.where(mask, normalised, 0)
    computed = {"normalised_gradient": normalised, "window_mask": mask, "suppression_map": suppressed}
    if "window_means" in wanted:
        rows, cols = axis_geometry(height, window_size, overlap)[0], axis_geometry(width, window_size, overlap)[0]
        computed["window_means"] = padded_means[:, :rows, :cols]
    if "output" in wanted:
        computed["output"] = suppress(x, suppressed, smoothing_factor)
    return {name: computed[name] for name in wanted}

"""Local Gradients Smoothing compiled for the CPU with ``torch.compile``: the fast CPU path.

Implements the contract of :mod:`lgs_gpu.lgs` for inference (no autograd) on CPU tensors
of the compute dtype. TorchInductor turns each stage below into one vectorised C++/OpenMP loop;
the stages are compiled separately because a single graph lets Inductor fuse the global
per-image reduction into every consumer and recompute the gradient many times over.

Full-size traffic per pixel of a ``C``-channel image (the copy roof moves C in and C out; the
bytes are counted in :func:`lgs_gpu.tooling.roofline.traffic`):

1. :func:`_interior_magnitude`: read C, write 1 (``m`` on pixels whose 3x3 neighbourhood lies
   inside the image, read from ``x`` through shifted slices: no padded copy, unit-stride loads).
2. :func:`_frame_magnitude`: the one-pixel frame, from replicate-padded two-pixel strips (tiny).
3. :func:`_window_test`: read ``m`` about 2.5 times (min/max, then the overlapping windows),
   write the ``n_rows x n_cols`` pass flags.
4. :func:`.torch_path.collate_by_row_class` (eager): the mask as a small table, one row
   per class of rows (about ``2 * n_rows`` of them), no full-size mask.
5. :func:`_suppress`: read C + 1 (``m``) and the table's row for each pixel row, write C.

The Sobel taps are paired as in :func:`.torch_path.sobel`, so flat regions give
exactly 0. Outputs differ from the eager paths by rounding only: generated code uses the
correctly rounded square root (eager ``torch.sqrt`` on x86 CPUs is off by one unit in the last
place on a few percent of inputs) and sums windows in its own order; the parity tests hold it
to the same tolerances as the Triton path.

The first call for a new dtype or layout compiles (tens of seconds on two cores, a few seconds
when Inductor's on-disk cache already holds the code), which is why ``backend="auto"`` does not
pick this path on its own: ask for ``backend="compiled"``. Needs the C++ compiler
``torch.compile`` uses on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..parameters import STAGES
from .torch_path import (
    collate_by_row_class,
    collation_geometry,
    image_range,
    magnitude_of_padded,
    normalise_between,
    window_geometry,
    window_means_at,
)

_magnitude = magnitude_of_padded  # eq. 5 on images that carry their own one-pixel border


@torch.compile(dynamic=True)
def _interior_magnitude(x: torch.Tensor, magnitude: torch.Tensor) -> None:
    magnitude[:, 1:-1, 1:-1] = _magnitude(x)  # the image is its own padding for inner pixels


@torch.compile(dynamic=True)
def _frame_magnitude(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``m`` on the first / last row (``[B, 1, W]``) and column (``[B, H - 2, 1]``, inner rows)."""
    first_row = _magnitude(F.pad(x[..., :2, :], (1, 1, 1, 0), mode="replicate"))
    last_row = _magnitude(F.pad(x[..., -2:, :], (1, 1, 0, 1), mode="replicate"))
    first_column = _magnitude(F.pad(x[..., :2], (1, 0, 0, 0), mode="replicate"))
    last_column = _magnitude(F.pad(x[..., -2:], (0, 1, 0, 0), mode="replicate"))
    return first_row, last_row, first_column, last_column


# Every entry point runs under no_grad: one grad mode, so callers with and without it share the
# compiled code (Dynamo guards on the mode).
@torch.no_grad()
def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Eq. 5 on ``[B, C, H, W]`` images with ``H, W >= 3``. Returns ``[B, H, W]``."""
    batch, _, height, width = x.shape
    magnitude = x.new_empty(batch, height, width)
    _interior_magnitude(x, magnitude)
    first_row, last_row, first_column, last_column = _frame_magnitude(x)
    magnitude[:, :1] = first_row
    magnitude[:, -1:] = last_row
    magnitude[:, 1:-1, :1] = first_column
    magnitude[:, 1:-1, -1:] = last_column
    return magnitude


@torch.compile(dynamic=True)
def _window_test(
    magnitude: torch.Tensor, threshold: float, geometry: tuple
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pass flags ``[B, n_rows, n_cols]`` (mean normalised gradient above γ), the means, and each image's range of ``m``.

    ``geometry`` is :func:`.torch_path.window_geometry`.
    """
    lowest, highest = image_range(magnitude)
    means = window_means_at(normalise_between(magnitude, lowest, highest), *geometry)
    return means > threshold, means, lowest, highest


def _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class):
    # Rows of the mask are gathered inside the loop (one index per row, unit-stride loads), so the
    # full-size mask never exists; it is a 0/1 float table: Inductor's loops on bool are slower.
    covered = covered_by_row_class[:, row_class]
    return torch.where(covered > 0, normalise_between(magnitude, lowest, highest), 0)


@torch.compile(dynamic=True)
def _suppressed_map(magnitude, lowest, highest, covered_by_row_class, row_class):
    return _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class)


@torch.compile(dynamic=True)
def _suppress(x, magnitude, lowest, highest, covered_by_row_class, row_class, smoothing_factor: float):
    suppressed = _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class)
    return x * (1 - (smoothing_factor * suppressed).clamp(0, 1))[:, None]


def _map_inputs(x: torch.Tensor, threshold: float, window_size: int, overlap: int, means_out: list | None = None):
    """``(m, lowest, highest, covered_by_row_class, row_class)``: everything the last stage needs.

    ``means_out``, if given, receives the window means.
    """
    _, _, height, width = x.shape
    magnitude = gradient_magnitude(x)
    geometry = window_geometry(height, width, window_size, overlap, x.device)
    row_class, *collation = collation_geometry(height, width, window_size, overlap, x.device)
    passing, means, lowest, highest = _window_test(magnitude, threshold, geometry)
    if means_out is not None:
        means_out.append(means)
    # Collation works on small tables, eagerly: compiled, Inductor's bool loops made it 4x slower.
    covered_by_row_class = collate_by_row_class(passing, *collation).to(x.dtype)
    return magnitude, lowest, highest, covered_by_row_class, row_class


@torch.no_grad()
def stages(
    x: torch.Tensor, smoothing_factor: float, threshold: float, window_size: int, overlap: int,
    wanted: tuple[str, ...] = STAGES,
) -> dict[str, torch.Tensor]:
    """The ``wanted`` stages (see :func:`.torch_path.stages`) of contiguous CPU images, ``H, W >= 3``."""
    means: list[torch.Tensor] = []
    magnitude, lowest, highest, covered_by_row_class, row_class = _map_inputs(x, threshold, window_size, overlap, means)
    computed: dict[str, torch.Tensor] = {"window_means": means[0]}
    if "output" in wanted:
        computed["output"] = _suppress(x, magnitude, lowest, highest, covered_by_row_class, row_class, smoothing_factor)
    if "suppression_map" in wanted:
        computed["suppression_map"] = _suppressed_map(magnitude, lowest, highest, covered_by_row_class, row_class)
    if "normalised_gradient" in wanted:
        computed["normalised_gradient"] = normalise_between(magnitude, lowest, highest)
    if "window_mask" in wanted:
        computed["window_mask"] = covered_by_row_class[:, row_class] > 0
    return {name: computed[name] for name in wanted}

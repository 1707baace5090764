"""The graphs the compiled CPU path compiles: the torch path's stages as ``nn.Module`` programs, the
key each is cached under, and the examples and dynamic shapes each is exported with.

:mod:`.compiled_build` exports and compiles them in a process of its own; :mod:`.compiled_path`
loads and runs them (its docstring says what each reads and writes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .torch_path import image_range, magnitude_of_padded, normalise_between

# Smallest height and width the programs take: an interior of at least 2 x 2 pixels (sizes 1 would
# be compiled in as constants). Smaller images take the eager torch path.
MIN_SIDE = 4
# Largest size of any dimension the programs take (no image has one that large). Unbounded, some torch
# versions' export takes a guard of its own that a size is not 2**63 - 1, and refuses the dynamic size.
MAX_SIZE = 2**31 - 1


class GradientProgram(torch.nn.Module):
    """Eq. 5 on the pixels whose 3x3 neighbourhood lies inside the image, written into ``magnitude``.

    The image is its own padding there: shifted slices, unit-stride loads (a replicate pad folded
    into the loads clamps every index, which was slower). ``magnitude`` ``[B, H, W]`` is an input the
    program writes, so the interior lands in place; the one-pixel frame is :func:`_frame`'s.
    """

    def forward(self, x: torch.Tensor, magnitude: torch.Tensor) -> tuple:
        magnitude[:, 1:-1, 1:-1] = magnitude_of_padded(x)
        return ()


class WindowTestProgram(torch.nn.Module):
    """``m`` -> pass flags and means ``[B, n_rows, n_cols]`` and each image's range of ``m`` ``[B, 1, 1]``."""

    def __init__(self, row_extent: int, col_extent: int) -> None:
        super().__init__()
        self.row_extent, self.col_extent = row_extent, col_extent

    def forward(self, magnitude, row_starts, col_starts, threshold):
        lowest, highest = image_range(magnitude)
        normalised = normalise_between(magnitude, lowest, highest)
        # Windows summed by gathering their rows then columns (not ``unfold``, whose ``H - extent + 1``
        # would be specialised at 1): Inductor turns each gather-and-sum into one loop.
        row_offsets = torch.arange(self.row_extent, device=magnitude.device)
        col_offsets = torch.arange(self.col_extent, device=magnitude.device)
        row_sums = normalised[:, row_starts[:, None] + row_offsets].sum(2)  # [B, n_rows, W]
        sums = row_sums[:, :, col_starts[:, None] + col_offsets].sum(3)  # [B, n_rows, n_cols]
        means = sums / (self.row_extent * self.col_extent)
        return means > threshold, means, lowest, highest


def _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class):
    # Rows of the mask are gathered inside the loop (one index per row, unit-stride loads), so the
    # full-size mask never exists; it is a 0/1 float table: Inductor's loops on bool are slower.
    covered = covered_by_row_class[:, row_class]
    return torch.where(covered > 0, normalise_between(magnitude, lowest, highest), 0)


class SuppressionMapProgram(torch.nn.Module):
    """``ĝ`` ``[B, H, W]`` from ``m``, its range and the collated table."""

    def forward(self, magnitude, lowest, highest, covered_by_row_class, row_class):
        return _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class)


class SuppressProgram(torch.nn.Module):
    """Eq. 7: the defended ``[B, C, H, W]`` images, written into ``out`` (an input, so that the caller
    owns the memory: a reused buffer, or the ``out=`` of :func:`lgs_gpu.lgs`)."""

    def forward(self, x, magnitude, lowest, highest, covered_by_row_class, row_class, smoothing_factor, out):
        suppressed = _suppressed(magnitude, lowest, highest, covered_by_row_class, row_class)
        out.copy_(x * (1 - (smoothing_factor * suppressed).clamp(0, 1))[:, None])
        return ()


@dataclass(frozen=True)
class Program:
    """One compiled program: its graph (``name``), the compute dtype, and what is compiled in.

    ``extents``: the window test's window (rows x columns). ``channels``: the channel count of the
    programs that read the images (gradient, suppress); compiled in, their loops over channels unroll
    (faster: docs/kernels.md), so each count a
    machine meets builds its own.
    """

    name: str
    dtype: torch.dtype
    extents: tuple[int, int] | None = None
    channels: int | None = None

    @property
    def key(self) -> str:
        """The package's name in the cache, e.g. ``gradient-float32-c3`` or ``window_test-float32-15x15``."""
        dtype_name = str(self.dtype).removeprefix("torch.")
        extents = f"-{self.extents[0]}x{self.extents[1]}" if self.extents else ""
        return f"{self.name}-{dtype_name}{extents}" + (f"-c{self.channels}" if self.channels else "")

    def fields(self) -> list:
        """JSON-able fields for the build process (:mod:`.compiled_build`)."""
        return [
            self.name,
            str(self.dtype).removeprefix("torch."),
            list(self.extents) if self.extents else None,
            self.channels,
        ]

    @classmethod
    def from_fields(cls, name: str, dtype: str, extents: list[int] | None, channels: int | None) -> Program:
        return cls(name, getattr(torch, dtype), tuple(extents) if extents else None, channels)


def examples(program: Program):
    """``(module, example inputs, dynamic shapes)`` to export ``program``.

    Example sizes are distinct and above 1 (sizes 0 and 1 would be compiled in as constants).
    """
    from torch.export import Dim

    dtype = program.dtype
    row_extent, col_extent = program.extents or (1, 1)
    batch, channels, classes = (Dim(name, max=MAX_SIZE) for name in ("batch", "channels", "row_classes"))
    height = Dim("height", min=max(MIN_SIDE, row_extent), max=MAX_SIZE)
    width = Dim("width", min=max(MIN_SIDE, col_extent), max=MAX_SIZE)
    n_rows, n_cols = Dim("n_rows", max=MAX_SIZE), Dim("n_cols", max=MAX_SIZE)
    shape = (2, program.channels or 3, max(MIN_SIDE, row_extent) * 3 + 2, max(MIN_SIDE, col_extent) * 3 + 5)
    x = torch.rand(shape, dtype=dtype)
    magnitude = torch.rand(shape[0], *shape[2:], dtype=dtype)
    lowest, highest = torch.zeros(2, 1, 1, dtype=dtype), torch.ones(2, 1, 1, dtype=dtype)
    table = torch.ones(2, 4, shape[3], dtype=dtype)
    row_class = torch.arange(shape[2]) % 4
    scalar = torch.tensor(0.5, dtype=dtype)
    image = {0: batch, 2: height, 3: width} | ({} if program.channels else {1: channels})
    plane, range_ = {0: batch, 1: height, 2: width}, {0: batch}
    if program.name == "gradient":
        return GradientProgram(), (x, magnitude), (image, plane)
    if program.name == "window_test":
        starts = (
            torch.tensor([0, row_extent, 2 * row_extent]),
            torch.tensor([0, col_extent, 2 * col_extent, 2 * col_extent + 5]),
        )
        return (
            WindowTestProgram(row_extent, col_extent),
            (magnitude, *starts, scalar),
            (plane, {0: n_rows}, {0: n_cols}, None),
        )
    table_shape, rows = {0: batch, 1: classes, 2: width}, {0: height}
    if program.name == "suppression_map":
        return (
            SuppressionMapProgram(),
            (magnitude, lowest, highest, table, row_class),
            (plane, range_, range_, table_shape, rows),
        )
    return (
        SuppressProgram(),
        (x, magnitude, lowest, highest, table, row_class, scalar, torch.empty_like(x)),
        (
            image,
            plane,
            range_,
            range_,
            table_shape,
            rows,
            None,
            image,
        ),
    )

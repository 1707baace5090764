"""Median filtering per channel over a square window, borders extended like scipy's "reflect".

Checked against ``scipy.ndimage.median_filter(channel, size=window, mode="reflect")``; a median
selects one of the input values, so the result is exact. The 3x3 window (the paper's) uses a
19-comparator sorting network over the 9 shifted neighbour planes (elementwise min/max, no
unfolded copy); other windows select from an unfolded ``window**2`` stack, a tile of the image at
a time, so that memory stays bounded (:data:`TILE_VALUES`) whatever the window and the image.
"""

from __future__ import annotations

import torch

from ..core.tracing import exporting_to_onnx, tracing
from ._common import FunctionDefense, apply_defense, odd_window, pad_reflect, window_fits

PAPER_WINDOWS = (3,)
TILE_VALUES = 1 << 24  # values in one unfolded tile (64 MiB in float32), whatever the window and the batch

# Compare-exchange pairs of a median-of-9 network (Paeth, Graphics Gems, 1990): it sorts each row
# of three, then after the last pair the element at index 4 is the median of the 9 inputs.
MEDIAN_OF_9_NETWORK = (
    *((row + low, row + high) for low, high in ((1, 2), (0, 1), (1, 2)) for row in (0, 3, 6)),
    *((0, 3), (5, 8), (4, 7), (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2)),
)


def median_of_9(values: list[torch.Tensor]) -> torch.Tensor:
    """The elementwise median of 9 same-shaped tensors via :data:`MEDIAN_OF_9_NETWORK`."""
    values = list(values)
    for low, high in MEDIAN_OF_9_NETWORK:
        values[low], values[high] = torch.minimum(values[low], values[high]), torch.maximum(values[low], values[high])
    return values[4]


def _median(batch: torch.Tensor, window: int) -> torch.Tensor:
    window_fits(window, batch)
    planes = batch.shape[0] * batch.shape[1]
    # Checked before any size is compared: under a trace the sizes are symbolic, and a comparison would guard them.
    if not tracing(batch) and window > 3 and planes > 1 and planes * window * window > TILE_VALUES:
        # One pixel of every plane would not fit a tile: plane by plane, not in tiles of one pixel.
        return torch.cat([_median(plane[None, None], window) for plane in batch.flatten(0, 1)]).view_as(batch)
    height, width = batch.shape[-2:]
    padded = pad_reflect(batch, window // 2)
    if window == 3:
        return median_of_9([padded[..., r : r + height, c : c + width] for r in range(3) for c in range(3)])
    if tracing(batch):  # symbolic sizes: one piece (a traced graph holds no loop over tiles)
        return _median_of_stack(padded, window)
    per_pixel = planes * window * window  # values unfolded per output pixel
    tile_width = min(width, max(1, TILE_VALUES // per_pixel))
    tile_height = min(height, max(1, TILE_VALUES // (per_pixel * tile_width)))
    reach = window - 1  # an output tile reads this many more padded rows and columns
    rows = [
        torch.cat(
            [
                _median_of_stack(padded[..., top : top + tile_height + reach, left : left + tile_width + reach], window)
                for left in range(0, width, tile_width)
            ],
            dim=-1,
        )
        for top in range(0, height, tile_height)
    ]
    return torch.cat(rows, dim=-2)


def _median_of_stack(padded: torch.Tensor, window: int) -> torch.Tensor:
    patches = padded.unfold(-2, window, 1).unfold(-2, window, 1)  # [B, C, h, w, window, window]
    stack = patches.reshape(*patches.shape[:4], window * window)
    if exporting_to_onnx():  # ONNX has no median: the middle of the sorted stack (window**2 is odd), same values
        return stack.sort(dim=-1).values[..., window * window // 2]
    return stack.median(dim=-1).values  # a selection, faster than the sort


def median_filter(x: torch.Tensor, window: int = 3) -> torch.Tensor:
    """Median of each channel over a ``window x window`` neighbourhood.

    Args:
        x: ``[B, C, H, W]`` or ``[C, H, W]``, float in [0, 1] or uint8; any device.
        window: odd window side, at most ``2 x`` the image's larger side ``+ 1`` (or 15).
    Returns:
        Same shape, dtype and device. Differentiable (the gradient goes to the selected pixel).

    Example:
        >>> median_filter(torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]))
        tensor([[[0., 0., 0.],
                 [0., 0., 0.],
                 [0., 0., 0.]]])
    """
    window = odd_window(window)
    return apply_defense(x, lambda batch: _median(batch, window), differentiable=True)


class MedianFilter(FunctionDefense):
    """:func:`median_filter` as a module / transform. Example: ``MedianFilter(3)(torch.rand(2, 3, 8, 8))``."""

    name = "median"
    differentiable = True
    _function = staticmethod(median_filter)
    _arguments = ("window",)

    def __init__(self, window: int = 3) -> None:
        super().__init__()
        self.window = odd_window(window)

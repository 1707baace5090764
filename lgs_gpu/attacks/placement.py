"""Where a square patch goes: border-strip locations, validated locations, masks."""

from __future__ import annotations

import torch


def border_locations(
    count: int, height: int, width: int, side: int, generator: torch.Generator, strip_fraction: float = 0.2
) -> torch.Tensor:
    """``[count, 2]`` (top, left) of patches lying inside the image's border strips.

    Each patch is drawn on one of the four strips (top, bottom, left, right; chosen uniformly),
    each ``max(side, strip_fraction * side_of_image)`` wide, where salient objects are least
    likely; along the strip its position is uniform. The patch always fits inside the image.
    """
    if side > min(height, width):
        raise ValueError(f"a {side}x{side} patch does not fit in a {height}x{width} image")
    strip_rows = max(side, round(strip_fraction * height))
    strip_cols = max(side, round(strip_fraction * width))
    edge = torch.randint(0, 4, (count,), generator=generator)
    across_rows = torch.randint(0, height - side + 1, (count,), generator=generator)
    across_cols = torch.randint(0, width - side + 1, (count,), generator=generator)
    into_rows = torch.randint(0, strip_rows - side + 1, (count,), generator=generator)
    into_cols = torch.randint(0, strip_cols - side + 1, (count,), generator=generator)
    top = torch.where(edge == 0, into_rows, torch.where(edge == 1, height - side - into_rows, across_rows))
    left = torch.where(edge == 2, into_cols, torch.where(edge == 3, width - side - into_cols, across_cols))
    return torch.stack([top, left], dim=1)


def square_masks(height: int, width: int, side: int, locations: torch.Tensor, device=None) -> torch.Tensor:
    """``[B, 1, H, W]`` boolean masks of ``side``-square patches at ``locations`` ``[B, 2]`` (top, left)."""
    locations = locations.to(device)
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    top, left = locations[:, 0].view(-1, 1, 1), locations[:, 1].view(-1, 1, 1)
    inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return inside[:, None]


def check_locations(locations: torch.Tensor, count: int, height: int, width: int, side: int) -> torch.Tensor:
    """Validate user-given ``[count, 2]`` integer locations: every patch must fit in the image."""
    locations = torch.as_tensor(locations)
    if locations.shape != (count, 2) or locations.dtype.is_floating_point:
        raise ValueError(
            f"locations must be an integer tensor of shape [{count}, 2] (top, left). Got {tuple(locations.shape)}"
        )
    if (locations < 0).any() or (locations[:, 0] > height - side).any() or (locations[:, 1] > width - side).any():
        raise ValueError(f"a {side}x{side} patch at one of the given locations does not fit in {height}x{width} images")
    return locations.long()
